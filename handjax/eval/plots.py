"""Figures for evaluation: PCK curves and hand skeletons (ground truth vs prediction).

matplotlib is imported lazily inside the functions and only the Agg backend is used (through
`matplotlib.figure.Figure`, never `pyplot`), so importing this module is cheap, needs no display and
leaves the caller's pyplot state alone. `draw_*` functions paint into a given Axes so callers can
compose grids; `plot_*` functions write one PNG.

Skeleton style: bones from `skeleton.BONES`, one colour per finger (`FINGER_COLORS`; wrist-to-base
bones take their finger's colour), ground truth solid with round markers, prediction dashed with
crosses.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from handjax.hand import skeleton

# RGB in [0, 1], one per finger, in skeleton.FINGER_NAMES order.
FINGER_COLORS: dict[str, tuple[float, float, float]] = {
    "thumb": (0.894, 0.102, 0.110),
    "index": (1.000, 0.498, 0.000),
    "middle": (0.200, 0.627, 0.173),
    "ring": (0.122, 0.471, 0.706),
    "pinky": (0.596, 0.306, 0.639),
}
WRIST_COLOR = (0.3, 0.3, 0.3)
GT_STYLE = {"linestyle": "-", "marker": "o"}
PRED_STYLE = {"linestyle": "--", "marker": "x"}


def bone_colors() -> list[tuple[float, float, float]]:
  """Colour of each bone in `skeleton.BONES`: the finger of its child joint."""
  finger_of = {j: f for f, joints in skeleton.FINGERS.items() for j in joints}
  return [FINGER_COLORS[finger_of[child]] for _, child in skeleton.BONES]


def _check_pose(pose: ArrayLike, dims: int, name: str) -> np.ndarray:
  pose = np.asarray(pose, dtype=np.float64)
  if pose.shape != (skeleton.NUM_JOINTS, dims):
    raise ValueError(f"{name} must have shape ({skeleton.NUM_JOINTS}, {dims}), got {pose.shape}")
  return pose


def _new_figure(width_px: int, height_px: int, dpi: int = 100) -> Any:
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
  FigureCanvasAgg(fig)
  return fig


def _save(fig: Any, path: str | os.PathLike) -> None:
  os.makedirs(os.path.dirname(os.fspath(path)) or ".", exist_ok=True)
  fig.savefig(path, dpi=fig.dpi, format="png")


# --- PCK curves ---------------------------------------------------------------------------------


def draw_pck(ax: Any, curves: Mapping[str, tuple[ArrayLike, ArrayLike]], unit: str = "m") -> None:
  """Draws PCK curves into `ax`, AUC (normalised over each curve's thresholds) in the legend.

  Args:
    ax: a matplotlib Axes.
    curves: name -> (thresholds, pck); thresholds in metres (`unit="m"`, shown in mm) or pixels.
    unit: "m" or "px".
  """
  from handjax.eval import metrics  # Local: keeps the dependency one-way at import time.

  factor, label = (1000.0, "mm") if unit == "m" else (1.0, unit)
  for name, (thresholds, pck) in curves.items():
    thresholds, pck = np.asarray(thresholds, np.float64), np.asarray(pck, np.float64)
    area = metrics.auc(thresholds, pck)
    ax.plot(thresholds * factor, pck, label=f"{name} (AUC={area:.3f})")
  ax.set_xlabel(f"error threshold ({label})")
  ax.set_ylabel("PCK")
  ax.set_ylim(0.0, 1.0)
  ax.grid(True, alpha=0.3)
  ax.legend(loc="lower right")


def plot_pck(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    path: str | os.PathLike,
    unit: str = "m",
    title: str | None = None,
    size_px: tuple[int, int] = (640, 480),
) -> None:
  """Writes the PCK curves of `curves` (name -> (thresholds, pck)) to a PNG of `size_px` (w, h)."""
  fig = _new_figure(*size_px)
  ax = fig.add_subplot(1, 1, 1)
  draw_pck(ax, curves, unit)
  if title:
    ax.set_title(title)
  fig.tight_layout()
  _save(fig, path)


# --- Skeletons ----------------------------------------------------------------------------------


def draw_skeleton_2d(
    ax: Any,
    uv: ArrayLike,
    style: Mapping[str, Any] | None = None,
    linewidth: float = 2.0,
    markersize: float = 3.0,
    visible: ArrayLike | None = None,
) -> None:
  """Draws a 21-joint skeleton in pixel coordinates (u = column, v = row) into `ax`.

  Args:
    ax: a matplotlib Axes showing an image (y axis pointing down).
    uv: (21, 2) keypoints.
    style: line style keywords (`GT_STYLE` by default).
    linewidth: bone width in points.
    markersize: joint marker size in points.
    visible: optional (21,) flags; bones touching an invisible joint are skipped.
  """
  uv = _check_pose(uv, 2, "uv")
  style = dict(GT_STYLE if style is None else style)
  shown = np.ones(skeleton.NUM_JOINTS, bool) if visible is None else np.asarray(visible, bool)
  for (parent, child), color in zip(skeleton.BONES, bone_colors()):
    if shown[parent] and shown[child]:
      ax.plot(uv[[parent, child], 0], uv[[parent, child], 1], color=color, linewidth=linewidth,
              markersize=markersize, **style)


def draw_hand_2d(
    ax: Any,
    image: ArrayLike,
    uv_gt: ArrayLike | None = None,
    uv_pred: ArrayLike | None = None,
    value_range: tuple[float, float] = (-0.5, 0.5)
) -> None:
  """Shows `image` with pixel centres at integer (u, v) and overlays ground truth and prediction.

  Args:
    ax: a matplotlib Axes.
    image: (h, w, 3) or (h, w) / (h, w, 1) image; uint8, or float in `value_range`.
    uv_gt: optional (21, 2) ground-truth keypoints in image pixels.
    uv_pred: optional (21, 2) predicted keypoints.
    value_range: range of float images (NHWC float32 in [-0.5, 0.5] by the project's convention).
  """
  image = np.asarray(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[-1] != 3):
    raise ValueError(f"image must be (h, w), (h, w, 1) or (h, w, 3), got {image.shape}")
  if image.dtype != np.uint8:
    lo, hi = value_range
    image = np.clip((image.astype(np.float64) - lo) / (hi - lo), 0.0, 1.0)
  height, width = image.shape[:2]
  ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0,
            vmax=255 if image.dtype == np.uint8 else 1,
            extent=(-0.5, width - 0.5, height - 0.5, -0.5), interpolation="nearest")
  if uv_gt is not None:
    draw_skeleton_2d(ax, uv_gt, GT_STYLE)
  if uv_pred is not None:
    draw_skeleton_2d(ax, uv_pred, PRED_STYLE, linewidth=1.5)
  ax.set_xlim(-0.5, width - 0.5)
  ax.set_ylim(height - 0.5, -0.5)
  ax.set_axis_off()


def plot_hand_2d(
    image: ArrayLike,
    uv_gt: ArrayLike | None,
    uv_pred: ArrayLike | None,
    path: str | os.PathLike,
    scale: int = 4,
    value_range: tuple[float, float] = (-0.5, 0.5),
) -> None:
  """Writes `image` with both skeletons to a PNG of exactly (scale h, scale w) pixels.

  The image fills the canvas, so image pixel (u, v) covers PNG pixels [scale u, scale (u + 1)) x
  [scale v, scale (v + 1)): keypoint (u, v) lands at PNG pixel (scale (u + 0.5), scale (v + 0.5)).

  Args:
    image: (h, w, 3) / (h, w) image, uint8 or float in `value_range`.
    uv_gt: (21, 2) ground truth, or None.
    uv_pred: (21, 2) prediction, or None.
    path: output PNG path.
    scale: output pixels per image pixel.
    value_range: range of float images.
  """
  height, width = np.shape(image)[:2]
  fig = _new_figure(width * scale, height * scale)
  ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
  draw_hand_2d(ax, image, uv_gt, uv_pred, value_range)
  _save(fig, path)


def _camera_to_plot(xyz: np.ndarray) -> np.ndarray:
  # OpenCV camera frame (x right, y down, z forward) -> plot axes (x, z, -y): up is up and depth
  # recedes into the picture.
  return np.stack([xyz[:, 0], xyz[:, 2], -xyz[:, 1]], axis=-1)


def draw_skeleton_3d(
    ax: Any, xyz: ArrayLike, style: Mapping[str, Any] | None = None, linewidth: float = 2.0
) -> None:
  """Draws a (21, 3) camera-frame skeleton into a 3D Axes (`projection="3d"`)."""
  points = _camera_to_plot(_check_pose(xyz, 3, "xyz"))
  style = dict(GT_STYLE if style is None else style)
  for (parent, child), color in zip(skeleton.BONES, bone_colors()):
    seg = points[[parent, child]]
    ax.plot(seg[:, 0], seg[:, 1], seg[:, 2], color=color, linewidth=linewidth, markersize=3.0,
            **style)


def draw_hand_3d(
    ax: Any,
    gt: ArrayLike | None = None,
    pred: ArrayLike | None = None,
    elev: float = 20.0, azim: float = -70.0,
) -> None:
  """Draws ground truth and prediction (metres, camera frame) into a 3D Axes with equal scaling."""
  poses = [p for p in (gt, pred) if p is not None]
  if not poses:
    raise ValueError("draw_hand_3d needs at least one of gt, pred")
  if gt is not None:
    draw_skeleton_3d(ax, gt, GT_STYLE)
  if pred is not None:
    draw_skeleton_3d(ax, pred, PRED_STYLE, linewidth=1.5)
  points = np.concatenate([_camera_to_plot(_check_pose(p, 3, "pose")) for p in poses])
  centre = 0.5 * (points.min(0) + points.max(0))
  half = max(0.5 * float(np.max(points.max(0) - points.min(0))), 1e-3)
  ax.set_xlim(centre[0] - half, centre[0] + half)
  ax.set_ylim(centre[1] - half, centre[1] + half)
  ax.set_zlim(centre[2] - half, centre[2] + half)
  ax.set_box_aspect((1.0, 1.0, 1.0))
  ax.set_xlabel("x")
  ax.set_ylabel("z")
  ax.set_zlabel("-y")
  ax.view_init(elev=elev, azim=azim)


def plot_hand_3d(
    gt: ArrayLike | None,
    pred: ArrayLike | None,
    path: str | os.PathLike,
    size_px: tuple[int, int] = (480, 480),
) -> None:
  """Writes a 3D view of ground truth (solid) and prediction (dashed, optional) to a PNG.

  Args:
    gt: (21, 3) ground truth in metres, camera frame, or None.
    pred: (21, 3) prediction, or None.
    path: output PNG path.
    size_px: (width, height) of the PNG.
  """
  fig = _new_figure(*size_px)
  ax = fig.add_subplot(1, 1, 1, projection="3d")
  draw_hand_3d(ax, gt, pred)
  _save(fig, path)


def plot_hand_grid(
    images: Sequence[ArrayLike],
    uv_gt: Sequence[ArrayLike] | None,
    uv_pred: Sequence[ArrayLike] | None,
    path: str | os.PathLike,
    columns: int = 4,
    tile_px: int = 160,
    value_range: tuple[float, float] = (-0.5, 0.5),
) -> None:
  """Writes a grid of images with 2D skeletons (one tile per sample, `columns` per row)."""
  count = len(images)
  if count == 0:
    raise ValueError("plot_hand_grid needs at least one image")
  columns = min(columns, count)
  rows = -(-count // columns)
  fig = _new_figure(columns * tile_px, rows * tile_px)
  for i in range(count):
    ax = fig.add_subplot(rows, columns, i + 1)
    gt_i = None if uv_gt is None else uv_gt[i]
    pred_i = None if uv_pred is None else uv_pred[i]
    draw_hand_2d(ax, images[i], gt_i, pred_i, value_range)
  fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, wspace=0.02, hspace=0.02)
  _save(fig, path)
