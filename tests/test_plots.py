"""handjax.eval.plots: PNG files of the expected size whose pixels show what was drawn."""

import numpy as np
import pytest
from PIL import Image

from handjax.eval import metrics, plots
from handjax.hand import skeleton


def _read(path) -> np.ndarray:
  with Image.open(path) as im:
    assert im.format == "PNG"
    return np.asarray(im.convert("RGB")).astype(np.int32)


def _rgb255(color) -> np.ndarray:
  return np.round(np.asarray(color) * 255).astype(np.int32)


def _near(pixels: np.ndarray, color, tol: int = 40) -> np.ndarray:
  return np.all(np.abs(pixels - _rgb255(color)) <= tol, axis=-1)


def _thumb_layout(row: float) -> np.ndarray:
  """Wrist at (2, row), thumb straight along that row to u = 26, all other joints at (1, 30)."""
  uv = np.tile(np.array([1.0, 30.0]), (skeleton.NUM_JOINTS, 1))
  uv[skeleton.WRIST] = (2.0, row)
  for k, joint in enumerate(skeleton.FINGERS["thumb"]):
    uv[joint] = (8.0 + 6.0 * k, row)
  return uv


def test_bone_colours_follow_fingers():
  colors = plots.bone_colors()
  assert len(colors) == skeleton.NUM_BONES
  for (parent, child), color in zip(skeleton.BONES, colors):
    finger = next(f for f, joints in skeleton.FINGERS.items() if child in joints)
    assert color == plots.FINGER_COLORS[finger]


def test_plot_hand_2d_draws_bones_where_expected(tmp_path):
  image = np.zeros((32, 32, 3), np.uint8)
  path = tmp_path / "hand2d.png"
  scale = 4
  plots.plot_hand_2d(image, _thumb_layout(16.0), _thumb_layout(6.0), path, scale=scale)
  pixels = _read(path)
  assert pixels.shape == (32 * scale, 32 * scale, 3)
  thumb = plots.FINGER_COLORS["thumb"]
  to_px = lambda c: int(scale * (c + 0.5))
  # Ground truth (solid): the bone's centre line is thumb-coloured along its whole length.
  for u in (5, 11, 17, 23):
    assert _near(pixels[to_px(16.0), to_px(u)], thumb), (u, pixels[to_px(16.0), to_px(u)])
  # Prediction (dashed) on row 6: thumb-coloured dashes along the row, with gaps.
  pred_row = _near(pixels[to_px(6.0), to_px(3) : to_px(25)], thumb)
  assert 0.3 < pred_row.mean() < 1.0
  # Away from every bone the black image shows through.
  for v, u in ((2, 20), (26, 28), (11, 20)):
    np.testing.assert_array_equal(pixels[to_px(v), to_px(u)], 0)


def test_plot_hand_2d_float_image_and_no_prediction(tmp_path):
  image = np.full((16, 24, 1), 0.5, np.float32)  # white in the project's [-0.5, 0.5] range
  path = tmp_path / "float.png"
  plots.plot_hand_2d(image, _thumb_layout(8.0)[:, :] * [0.8, 1.0], None, path, scale=2)
  pixels = _read(path)
  assert pixels.shape == (32, 48, 3)
  np.testing.assert_array_equal(pixels[2, 40], 255)
  assert _near(pixels[int(2 * 8.5), int(2 * 12.5)], plots.FINGER_COLORS["thumb"])


def test_plot_hand_3d_shows_every_finger(tmp_path):
  rng = np.random.default_rng(0)
  gt = rng.normal(size=(21, 3)) * 0.03 + [0.0, 0.0, 0.5]
  path = tmp_path / "hand3d.png"
  plots.plot_hand_3d(gt, gt + 0.005, path, size_px=(300, 240))
  pixels = _read(path)
  assert pixels.shape == (240, 300, 3)
  for finger, color in plots.FINGER_COLORS.items():
    assert _near(pixels, color, tol=25).sum() > 10, finger
  plots.plot_hand_3d(gt, None, tmp_path / "gt_only.png")  # prediction optional
  with pytest.raises(ValueError, match="21, 3"):
    plots.plot_hand_3d(gt[:20], None, tmp_path / "bad.png")


def test_plot_pck_writes_curves(tmp_path):
  errors = np.random.default_rng(1).random((50, 21)) * 0.05
  thresholds = metrics.THRESHOLDS_0_50_REFERENCE
  curves = {"a": (thresholds, metrics.pck_curve(errors, thresholds)),
            "b": (thresholds, metrics.pck_curve(errors * 0.5, thresholds))}
  path = tmp_path / "sub" / "pck.png"
  plots.plot_pck(curves, path, title="RHD")
  pixels = _read(path)
  assert pixels.shape == (480, 640, 3)
  # matplotlib's first two cycle colours draw the two curves.
  assert _near(pixels, (0.122, 0.467, 0.706), tol=20).sum() > 100
  assert _near(pixels, (1.0, 0.498, 0.055), tol=20).sum() > 100


def test_draw_functions_compose_into_a_grid(tmp_path):
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  fig = Figure(figsize=(4, 2), dpi=100)
  FigureCanvasAgg(fig)
  left, right = fig.subplots(1, 2)
  plots.draw_hand_2d(left, np.zeros((32, 32, 3), np.uint8), _thumb_layout(16.0))
  thresholds = metrics.THRESHOLDS_2D_PX
  plots.draw_pck(right, {"2d": (thresholds, np.linspace(0, 1, thresholds.size))}, unit="px")
  assert right.get_xlabel() == "error threshold (px)"
  assert "AUC=0.500" in right.get_legend().get_texts()[0].get_text()
  fig.savefig(tmp_path / "grid.png")
  assert _read(tmp_path / "grid.png").shape == (200, 400, 3)
  images = [np.zeros((16, 16, 3), np.uint8)] * 3
  plots.plot_hand_grid(images, [_thumb_layout(8.0) * 0.5] * 3, None, tmp_path / "g.png",
                       columns=2, tile_px=50)
  assert _read(tmp_path / "g.png").shape == (100, 100, 3)
