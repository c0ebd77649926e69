"""tfds builder for RHD (Rendered Hand Pose Dataset, Zimmermann & Brox ICCV 2017), read from the
user's download (`manual_dir`); layout and encodings in ../shared/specs/datasets.md.

Splits: `train` = RHD's `training/` (41258 images), `test` = `evaluation/` (2728). Per example:
`image` (320, 320, 3) uint8 as distributed; `depth` metres decoded from the PNG,
depth_m = (R * 256 + G) / 65535 * 5; `mask` the chosen hand's part labels in the synthetic part
table (RHD left labels 2..17 -> 1..16, right 18..33 -> 1..16; the person (1) and the other hand ->
17 "other foreground"); `rhd_mask` the original label map; `pose3d`, `uv`, `visible` of the chosen
hand converted to the handjax order (`skeleton.rhd_to_handjax`); `K` per sample; `hand_side`;
`points` P visible-surface points back-projected from depth inside the chosen hand's mask (the
point-cloud modality of Yang et al. ICCV 2019; sampling rule of synthetic_hands);
`canonical_pose` / `viewpoint` from `handjax.hand.viewpoint.canonicalize`.

Configs: `dominant` (default: one example per image, the hand with the larger mask area; the left
hand iff its count of labels 2..17 is strictly larger than the count of labels >= 18, so ties go to
the right hand, the reference rule), `both_hands` (two examples per image, keys `<id>_left`,
`<id>_right`), and `*_palm` variants whose joint 0 is the reference palm 0.5 (wrist + middle MCP)
instead of the wrist (its uv is the projection of the 3D palm, visible iff both joints are).

Evaluation protocol: root-relative with the ground-truth scale (`EVAL_PROTOCOL`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from handjax.data.builders import _common
from handjax.hand import skeleton

EVAL_PROTOCOL = _common.ROOT_RELATIVE_GT_SCALE
DEPTH_MAX_M = 5.0
SPLITS = {"train": "training", "test": "evaluation"}
LEFT_LABELS = (2, 17)  # inclusive range of the left hand's mask labels.
RIGHT_LABELS = (18, 33)

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download RHD_v1-1.zip from https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html,
unzip it and pass --manual_dir=<folder holding RHD_published_v2/> (or the RHD_published_v2 folder
itself). Expected: training/ and evaluation/, each with color/%05d.png, mask/%05d.png,
depth/%05d.png and anno_training.pickle / anno_evaluation.pickle."""


@dataclasses.dataclass
class RhdConfig(tfds.core.BuilderConfig):
  """both_hands: two examples per image; root: "wrist" (native) or "palm"."""
  both_hands: bool = False
  root: str = "wrist"
  num_points: int = _common.NUM_POINTS


def decode_depth(rgb: np.ndarray) -> np.ndarray:
  """RHD depth PNG -> metres: (R * 256 + G) / (2^16 - 1) * 5 (specs/datasets.md)."""
  rgb = np.asarray(rgb, np.float64)
  return (rgb[..., 0] * 256.0 + rgb[..., 1]) / 65535.0 * DEPTH_MAX_M


def hand_pixel_counts(mask: np.ndarray) -> tuple[int, int]:
  """(left, right) mask pixel counts: labels 2..17 and >= 18 (the reference rule)."""
  mask = np.asarray(mask)
  left = int(np.sum((mask >= LEFT_LABELS[0]) & (mask <= LEFT_LABELS[1])))
  right = int(np.sum(mask >= RIGHT_LABELS[0]))
  return left, right


def dominant_hand(mask: np.ndarray) -> int:
  """skeleton.LEFT iff the left hand's pixel count is strictly larger, else skeleton.RIGHT."""
  left, right = hand_pixel_counts(mask)
  return skeleton.LEFT if left > right else skeleton.RIGHT


def part_mask(mask: np.ndarray, side: int) -> np.ndarray:
  """RHD labels -> synthetic part table for hand `side` (its parts 1..16, other foreground 17)."""
  lo, hi = LEFT_LABELS if side == skeleton.LEFT else RIGHT_LABELS
  mask = np.asarray(mask, np.int32)
  own = (mask >= lo) & (mask <= hi)
  out = np.where(mask > 0, _common.PART_FOREARM, _common.PART_BACKGROUND)
  return np.where(own, mask - lo + 1, out).astype(np.uint8)


def _check_annotation(anno: Any, sample_id: Any, path: str) -> dict[str, np.ndarray]:
  expected = "a dict with 'xyz' (42, 3), 'uv_vis' (42, 3) and 'K' (3, 3)"
  if not isinstance(anno, dict) or not all(k in anno for k in ("xyz", "uv_vis", "K")):
    keys = sorted(anno) if isinstance(anno, dict) else type(anno).__name__
    raise _common.DatasetFormatError(
        f"{path}: sample {sample_id!r} has {keys}; expected {expected}")
  what = f"{path} sample {sample_id!r}"
  return {"xyz": _common.check_array(anno["xyz"], (42, 3), f"{what} 'xyz'"),
          "uv_vis": _common.check_array(anno["uv_vis"], (42, 3), f"{what} 'uv_vis'"),
          "K": _common.check_array(anno["K"], (3, 3), f"{what} 'K'")}


def load_annotations(split_dir: str, folder: str) -> dict[int, dict[str, np.ndarray]]:
  """The split's pickle, validated: {sample_id: {'xyz', 'uv_vis', 'K'}}."""
  path = os.path.join(split_dir, f"anno_{folder}.pickle")
  data = _common.read_pickle(path, "a dict sample_id -> {'xyz', 'uv_vis', 'K'}")
  if not isinstance(data, dict):
    raise _common.DatasetFormatError(
        f"{path}: a {type(data).__name__}; expected a dict sample_id -> {{'xyz', 'uv_vis', 'K'}}")
  return {int(k): _check_annotation(v, k, path) for k, v in sorted(data.items())}


def hand_example(anno: dict[str, np.ndarray], image: np.ndarray,
                 depth: np.ndarray, mask: np.ndarray, side: int, root: str,
                 num_points: int, key: str) -> dict[str, Any]:
  """The example of one hand of one RHD image (see the module docstring)."""
  left, right = skeleton.split_rhd_hands(anno["xyz"])
  uv_left, uv_right = skeleton.split_rhd_hands(anno["uv_vis"])
  xyz, uv_vis = (left, uv_left) if side == skeleton.LEFT else (right, uv_right)
  pose = skeleton.rhd_to_handjax(xyz)
  uv_vis = skeleton.rhd_to_handjax(uv_vis)
  uv, visible = uv_vis[:, :2].copy(), uv_vis[:, 2] > 0.5
  if root == "palm":
    visible = visible.copy()
    visible[0] = visible[skeleton.WRIST] and visible[skeleton.MIDDLE_MCP]
    pose = _common.root_joint(pose, "palm", native="wrist")
    uv[0] = _common.project_np(pose[:1], anno["K"])[0]
  parts = part_mask(mask, side)
  hand = (parts > _common.PART_BACKGROUND) & (parts < _common.PART_FOREARM)
  points, any_point = _common.points_from_depth(depth, hand, anno["K"], num_points,
                                                _common.example_seed(key))
  example = _common.make_example(
      image=image, K=anno["K"], hand_side=side, depth=depth, mask=parts, pose3d=pose,
      uv=uv, visible=visible, points=points if any_point else None, num_points=num_points)
  example["rhd_mask"] = np.asarray(mask, np.uint8)[..., None]
  return example


class Rhd(_common.ManualBuilder):
  """RHD from a manual download (module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  EVAL_PROTOCOL = EVAL_PROTOCOL
  BUILDER_CONFIGS = [
      RhdConfig(name="dominant", description="Dominant hand (reference rule), wrist root."),
      RhdConfig(name="both_hands", both_hands=True, description="Both hands, wrist root."),
      RhdConfig(name="dominant_palm", root="palm", description="Dominant hand, palm root."),
      RhdConfig(name="both_hands_palm", both_hands=True, root="palm",
                description="Both hands, palm root."),
  ]
  DEFAULT_CONFIG_NAME = "dominant"

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=_common.feature_dict(
            self.builder_config.num_points,
            rhd_mask=tfds.features.Tensor(shape=(None, None, 1), dtype=np.uint8,
                                          encoding=tfds.features.Encoding.ZLIB)),
        homepage="https://lmb.informatik.uni-freiburg.de/resources/datasets/RenderedHandposeDataset.en.html",
        metadata=tfds.core.MetadataDict(eval_protocol=EVAL_PROTOCOL),
        # Examples keep the download's order (sample ids; FreiHAND submissions need it); grain
        # shuffles for training.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = _common.find_root(_common.manual_dir_of(dl_manager), "RHD", "RHD_published_v2",
                             "training", MANUAL_DOWNLOAD_INSTRUCTIONS)
    out = {}
    for split, folder in SPLITS.items():
      split_dir = os.path.join(root, folder)
      if not os.path.isdir(split_dir):
        raise _common.DatasetFormatError(
            f"RHD: missing folder {split_dir} (expected {folder}/ with color/, mask/, depth/ and "
            f"anno_{folder}.pickle)")
      # Annotations are validated before anything is written.
      out[split] = self._indexed(split_dir, load_annotations(split_dir, folder))
    return out

  def _generate_examples(self, split_dir: str, annotations: dict[int, dict[str, np.ndarray]]
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    cfg = self.builder_config
    for sample_id, anno in annotations.items():
      name = f"{sample_id:05d}.png"
      image = _common.read_image(os.path.join(split_dir, "color", name), "RGB",
                                 "an RGB PNG (RHD colour image)")
      mask = _common.read_image(os.path.join(split_dir, "mask", name), "L",
                                "a single-channel uint8 PNG of RHD part labels")
      depth = decode_depth(_common.read_image(
          os.path.join(split_dir, "depth", name), "RGB",
          "an RGB PNG with depth (R * 256 + G) / 65535 * 5 m"))
      if mask.shape != image.shape[:2] or depth.shape != image.shape[:2]:
        raise _common.DatasetFormatError(
            f"{split_dir}/*/{name}: colour {image.shape[:2]}, mask {mask.shape}, depth "
            f"{depth.shape}; expected equal sizes")
      sides = (skeleton.LEFT, skeleton.RIGHT) if cfg.both_hands else (dominant_hand(mask),)
      for side in sides:
        key = f"{sample_id:05d}_{'left' if side == skeleton.LEFT else 'right'}"
        yield key, hand_example(anno, image, depth, mask, side, cfg.root,
                                cfg.num_points, key)
