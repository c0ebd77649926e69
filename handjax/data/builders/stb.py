"""tfds builder for STB (Stereo Hand Pose Tracking Benchmark, Zhang et al. 2016), read from the
user's download (`manual_dir`); layout, cameras and encodings in ../shared/specs/datasets.md.

Sequences B1..B6 x {Counting, Random}; splits `train` = B2..B6, `test` = B1 (the usual split).
Labels are STB's `handPara` (3, 21, N) in millimetres, converted to metres and to the handjax order
(`skeleton.stb_to_handjax`); STB annotates left hands only (`hand_side` = LEFT) and all 21 joints
of every frame, so `visible` is all True with `has_visible` = False (no occlusion labels).

Configs (the camera, and the palm-root option of specs/datasets.md):
* `sk` (default) / `sk_wrist`: the SK (RealSense) colour images. SK labels live in the
  depth-camera frame; they are moved to the colour frame by X_c = R^T (X_d - t) with R the
  Rodrigues rotation of the published extrinsics. The depth map is **forward-warped** into the
  colour camera: every depth pixel is back-projected with the depth intrinsics, moved to the colour
  frame, projected with the colour intrinsics, rounded to the nearest pixel, and the nearest point
  wins (z-buffer). Colour pixels that no depth pixel reaches stay 0 (no hole filling), so the
  registered depth is exact where it is non-zero but sparser than the raw map. STB has no hand
  mask: `mask` and `points` are zeros with has_mask / has_points = False.
* `bb` / `bb_wrist`: the BB (Bumblebee) stereo pair as two examples per frame (keys `..._left`,
  `..._right`); labels are in the left camera frame and the right camera is the left one moved by
  the baseline (x_r = x_l - 120.054 mm). No depth.
* joint 0 is STB's palm centre in `sk` / `bb`; `*_wrist` replaces it by the extrapolated wrist
  ringMCP + 2 (palm - ringMCP). (To compare with RHD/FreiHAND on the palm root instead, use their
  `*_palm` configs.)

Evaluation protocol: root-relative with the ground-truth scale (`EVAL_PROTOCOL`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import numpy as np
import scipy.io
import tensorflow_datasets as tfds

from handjax.data.builders import _common
from handjax.hand import skeleton

EVAL_PROTOCOL = _common.ROOT_RELATIVE_GT_SCALE
SEQUENCES = tuple(f"B{i}{kind}" for i in range(1, 7) for kind in ("Counting", "Random"))
TEST_SEQUENCES = ("B1Counting", "B1Random")
TRAIN_SEQUENCES = tuple(s for s in SEQUENCES if s not in TEST_SEQUENCES)

MM = 1e-3  # metres per millimetre.
BB_K = np.array([[822.79041, 0.0, 318.47345], [0.0, 822.79041, 250.31296], [0.0, 0.0, 1.0]])
BB_BASELINE_M = 120.054 * MM
SK_COLOR_K = np.array([[607.92271, 0.0, 314.78337], [0.0, 607.88192, 236.42484], [0.0, 0.0, 1.0]])
SK_DEPTH_K = np.array([[475.62768, 0.0, 336.41179], [0.0, 474.77709, 238.77962], [0.0, 0.0, 1.0]])
SK_ROTATION_VECTOR = np.array([0.00531, -0.01196, 0.00301])
SK_TRANSLATION_M = np.array([-24.0381, -0.4563, -1.2326]) * MM

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download the Stereo Hand Pose Tracking Benchmark (https://github.com/zhjwustc/icip17_stereo_hand_pose_dataset),
unpack it and pass --manual_dir=<folder holding images/ and labels/>. Expected:
images/<seq>/SK_color_%d.png, SK_depth_%d.png, BB_left_%d.png, BB_right_%d.png (frames 0..N-1,
no zero padding) and labels/<seq>_SK.mat, labels/<seq>_BB.mat (variable handPara, 3 x 21 x N, mm)
for the 12 sequences B1Counting, B1Random, ..., B6Counting, B6Random."""


@dataclasses.dataclass
class StbConfig(tfds.core.BuilderConfig):
  """camera: "sk" (colour + registered depth) or "bb" (stereo); root: "palm" (native) or "wrist"."""
  camera: str = "sk"
  root: str = "palm"


def rodrigues(rotation_vector: np.ndarray) -> np.ndarray:
  """R = I + sin(theta) [k]_x + (1 - cos(theta)) [k]_x^2, k = r / theta, theta = ||r||."""
  r = np.asarray(rotation_vector, np.float64)
  theta = float(np.linalg.norm(r))
  if theta < 1e-12:
    return np.eye(3)
  k = r / theta
  kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
  return np.eye(3) + np.sin(theta) * kx + (1.0 - np.cos(theta)) * kx @ kx


SK_ROTATION = rodrigues(SK_ROTATION_VECTOR)


def sk_depth_to_color(points: np.ndarray) -> np.ndarray:
  """SK depth-camera frame -> colour frame, X_c = R^T (X_d - t) (metres; rows are points)."""
  return (np.asarray(points, np.float64) - SK_TRANSLATION_M) @ SK_ROTATION


def decode_depth(rgb: np.ndarray) -> np.ndarray:
  """STB depth PNG -> metres: (R + 256 G) mm (specs/datasets.md)."""
  rgb = np.asarray(rgb, np.float64)
  return (rgb[..., 0] + 256.0 * rgb[..., 1]) * MM


def register_depth(depth: np.ndarray, K_depth: np.ndarray, K_color: np.ndarray,
                   to_color, out_shape: tuple[int, int]) -> np.ndarray:
  """Forward-warps a depth map into another camera with a z-buffer (module docstring).

  Args:
    depth: (H, W) metres in the source camera, 0 = no measurement.
    K_depth: source intrinsics.
    K_color: target intrinsics.
    to_color: maps (N, 3) source-frame points to the target frame.
    out_shape: (height, width) of the target image.

  Returns:
    (height, width) target-frame z in metres at the nearest pixel of each projected point,
    the smallest z where several land on one pixel, 0 where none lands.
  """
  rows, cols = np.nonzero(depth > 0)
  height, width = out_shape
  out = np.full(height * width, np.inf)
  if len(rows):
    points = to_color(_common.backproject_pixels(rows, cols, depth[rows, cols], K_depth))
    z = points[:, 2]
    front = z > 0
    uv = _common.project_np(points[front], K_color)
    u = np.floor(uv[:, 0] + 0.5).astype(np.int64)
    v = np.floor(uv[:, 1] + 0.5).astype(np.int64)
    inside = (u >= 0) & (u < width) & (v >= 0) & (v < height)
    np.minimum.at(out, v[inside] * width + u[inside], z[front][inside])
  out[~np.isfinite(out)] = 0.0
  return out.reshape(height, width)


def load_labels(path: str) -> np.ndarray:
  """`handPara` (3, 21, N) millimetres -> (N, 21, 3) metres, STB joint order."""
  _common.require_file(path, "a .mat file with variable handPara of shape (3, 21, N) in mm")
  try:
    mat = scipy.io.loadmat(path)
  except Exception as e:  # scipy raises ValueError / TypeError / OSError on corrupt files.
    raise _common.DatasetFormatError(
        f"{path}: cannot read .mat ({e}); expected variable handPara (3, 21, N) in mm") from e
  if "handPara" not in mat:
    found = sorted(k for k in mat if not k.startswith("__"))
    raise _common.DatasetFormatError(
        f"{path}: no variable handPara (found {found}); expected handPara (3, 21, N) in mm")
  para = _common.check_array(mat["handPara"], (3, skeleton.NUM_JOINTS, None),
                             f"{path} handPara (3, 21, N) in mm")
  return np.transpose(para, (2, 1, 0)) * MM


def _pose(stb_pose: np.ndarray, root: str) -> np.ndarray:
  return _common.root_joint(skeleton.stb_to_handjax(stb_pose), root, native="palm")


class Stb(_common.ManualBuilder):
  """STB from a manual download (module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  EVAL_PROTOCOL = EVAL_PROTOCOL
  BUILDER_CONFIGS = [
      StbConfig(name="sk", description="SK colour + registered depth, palm root."),
      StbConfig(name="sk_wrist", root="wrist", description="SK colour + depth, wrist root."),
      StbConfig(name="bb", camera="bb", description="BB stereo views, palm root."),
      StbConfig(name="bb_wrist", camera="bb", root="wrist",
                description="BB stereo views, wrist root."),
  ]
  DEFAULT_CONFIG_NAME = "sk"

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=_common.feature_dict(),
        homepage="https://github.com/zhjwustc/icip17_stereo_hand_pose_dataset",
        metadata=tfds.core.MetadataDict(eval_protocol=EVAL_PROTOCOL),
        # Examples keep the download's order (sample ids; FreiHAND submissions need it); grain
        # shuffles for training.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = _common.find_root(_common.manual_dir_of(dl_manager), "STB", "STB", "labels",
                             MANUAL_DOWNLOAD_INSTRUCTIONS)
    camera = self.builder_config.camera
    suffix = "SK" if camera == "sk" else "BB"
    # All labels are read and checked before anything is written.
    labels = {seq: load_labels(os.path.join(root, "labels", f"{seq}_{suffix}.mat"))
              for seq in SEQUENCES}
    return {
        "train": self._indexed(root, {s: labels[s] for s in TRAIN_SEQUENCES}),
        "test": self._indexed(root, {s: labels[s] for s in TEST_SEQUENCES}),
    }

  def _generate_examples(self, root: str, labels: dict[str, np.ndarray]
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    cfg = self.builder_config
    for seq, poses in labels.items():
      folder = os.path.join(root, "images", seq)
      for frame, stb_pose in enumerate(poses):
        if cfg.camera == "sk":
          yield f"{seq}_{frame}", self._sk_example(folder, frame, stb_pose)
        else:
          for view in ("left", "right"):
            yield f"{seq}_{frame}_{view}", self._bb_example(folder, frame, stb_pose, view)

  def _sk_example(self, folder: str, frame: int, stb_pose: np.ndarray) -> dict[str, Any]:
    image = _common.read_image(os.path.join(folder, f"SK_color_{frame}.png"), "RGB",
                               "an RGB PNG (STB SK colour image)")
    raw_depth = decode_depth(_common.read_image(
        os.path.join(folder, f"SK_depth_{frame}.png"), "RGB",
        "an RGB PNG with depth R + 256 G mm (STB SK depth)"))
    depth = register_depth(raw_depth, SK_DEPTH_K, SK_COLOR_K, sk_depth_to_color, image.shape[:2])
    pose = _pose(sk_depth_to_color(stb_pose), self.builder_config.root)
    return self._example(image, SK_COLOR_K, pose, depth=depth)

  def _bb_example(self, folder: str, frame: int, stb_pose: np.ndarray, view: str
                  ) -> dict[str, Any]:
    image = _common.read_image(os.path.join(folder, f"BB_{view}_{frame}.png"), "RGB",
                               f"an RGB PNG (STB BB {view} view)")
    if view == "right":
      stb_pose = stb_pose - np.array([BB_BASELINE_M, 0.0, 0.0])
    pose = _pose(stb_pose, self.builder_config.root)
    return self._example(image, BB_K, pose)

  @staticmethod
  def _example(image: np.ndarray, K: np.ndarray, pose: np.ndarray,
               depth: np.ndarray | None = None) -> dict[str, Any]:
    example = _common.make_example(
        image=image, K=K, hand_side=skeleton.LEFT, depth=depth, pose3d=pose,
        uv=_common.project_np(pose, K), visible=np.ones(skeleton.NUM_JOINTS, bool))
    example["has_visible"] = np.bool_(False)  # all joints annotated, occlusion unknown.
    return example
