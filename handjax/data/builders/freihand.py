"""tfds builder for FreiHAND (Zimmermann et al. ICCV 2019), read from the user's download
(`manual_dir`); layout in ../shared/specs/datasets.md.

Splits: `train` = training/rgb, one example per (unique id, version) for the configured versions
(0 green screen, 1 homogenized, 2 sample, 3 auto; image index = id + N * version with N the number
of unique ids, 32560 in the release); `test` = evaluation/rgb (3960), present only when the
download has it, with its 3D annotations when evaluation_xyz.json is there (else pose3d / uv are
zeros with has_pose3d = has_uv = False).

Per example: `image` (224, 224, 3) uint8 as distributed; `K`; `pose3d` = xyz (metres, already the
handjax order, `skeleton.freihand_to_handjax`); `uv` = K xyz / z; `visible` all True with
has_visible = False (every joint annotated, no occlusion labels); `hand_side` = RIGHT (FreiHAND's
MANO hands are right hands); `mask` from training/mask/%08d.jpg (by unique id; JPEG, thresholded at
128): hand pixels get label 16 (synthetic part table "palm" = hand of unknown part); `mano` the 61
values of *_mano.json as given (48 pose, 10 shape, 2 uv_root, 1 scale) with `has_mano`. FreiHAND
has no depth: `depth` and `points` are zeros with has_depth = has_points = False.

Configs: `all` (default, the 4 versions), `gs` (green-screen version only), `all_palm` (joint 0 =
0.5 (wrist + middle MCP), to compare with STB's palm root).

Evaluation protocol: Procrustes-aligned (`EVAL_PROTOCOL`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Iterator

import numpy as np
import tensorflow_datasets as tfds

from handjax.data.builders import _common
from handjax.hand import skeleton

EVAL_PROTOCOL = _common.PROCRUSTES
NUM_VERSIONS = 4
VERSION_NAMES = ("gs", "hom", "sample", "auto")
MANO_SIZE = 61
MASK_THRESHOLD = 128

MANUAL_DOWNLOAD_INSTRUCTIONS = """\
Download FreiHAND_pub_v2.zip (and optionally FreiHAND_pub_v2_eval.zip) from
https://lmb.informatik.uni-freiburg.de/projects/freihand/, unzip them into one folder and pass
--manual_dir=<that folder> (or the FreiHAND_pub_v2 folder itself). Expected: training/rgb/%08d.jpg,
training/mask/%08d.jpg, training_K.json, training_xyz.json, training_mano.json and, for the test
split, evaluation/rgb/%08d.jpg, evaluation_K.json (+ evaluation_xyz.json, evaluation_mano.json)."""


@dataclasses.dataclass
class FreihandConfig(tfds.core.BuilderConfig):
  """versions: training versions to include; root: "wrist" (native) or "palm"."""
  versions: tuple[int, ...] = (0, 1, 2, 3)
  root: str = "wrist"


def load_json_list(path: str, shape: tuple[int, ...], what: str, count: int | None = None
                   ) -> np.ndarray:
  """A JSON list of arrays of `shape` -> (N, *shape) float64, checked (N == count if given)."""
  _common.require_file(path, f"a JSON list of {what} arrays of shape {shape}")
  try:
    with open(path) as f:
      data = json.load(f)
  except (OSError, ValueError) as e:
    raise _common.DatasetFormatError(
        f"{path}: cannot parse JSON ({e}); expected a list of {what} {shape}") from e
  if not isinstance(data, list):
    raise _common.DatasetFormatError(f"{path}: a {type(data).__name__}; expected a list of {what}")
  entries = []
  for i, x in enumerate(data):
    try:
      # squeeze: training_mano.json nests each 61-vector in a list of one.
      entry = np.squeeze(np.asarray(x, np.float64))
    except (TypeError, ValueError) as e:
      raise _common.DatasetFormatError(f"{path}: entry {i} is not numeric ({e})") from e
    if entry.shape != shape:
      raise _common.DatasetFormatError(
          f"{path}: entry {i} has shape {np.shape(x)}; expected {what} of shape {shape}")
    entries.append(entry)
  arr = np.asarray(entries).reshape((len(entries),) + shape)
  arr = _common.check_array(arr, (None,) + shape, f"{path} ({what})")
  if count is not None and len(arr) != count:
    raise _common.DatasetFormatError(
        f"{path}: {len(arr)} entries; expected {count} (one per unique sample)")
  return arr


def read_mask(path: str) -> np.ndarray:
  """FreiHAND mask JPEG -> (H, W) labels: 16 (hand) where the grey level >= 128, else 0."""
  grey = _common.read_image(path, "L", "a greyscale JPEG hand mask (FreiHAND)")
  return np.where(grey >= MASK_THRESHOLD, _common.PART_PALM, _common.PART_BACKGROUND).astype(
      np.uint8)


class Freihand(_common.ManualBuilder):
  """FreiHAND from a manual download (module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
  EVAL_PROTOCOL = EVAL_PROTOCOL
  BUILDER_CONFIGS = [
      FreihandConfig(name="all", description="The 4 training versions, wrist root."),
      FreihandConfig(name="gs", versions=(0,), description="Green-screen version only."),
      FreihandConfig(name="all_palm", root="palm", description="The 4 versions, palm root."),
  ]
  DEFAULT_CONFIG_NAME = "all"

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=_common.feature_dict(
            mano=tfds.features.Tensor(shape=(MANO_SIZE,), dtype=np.float32),
            has_mano=tfds.features.Scalar(dtype=np.bool_)),
        homepage="https://lmb.informatik.uni-freiburg.de/projects/freihand/",
        metadata=tfds.core.MetadataDict(eval_protocol=EVAL_PROTOCOL),
        # Examples keep the download's order (sample ids; FreiHAND submissions need it); grain
        # shuffles for training.
        disable_shuffling=True,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = _common.find_root(_common.manual_dir_of(dl_manager), "FreiHAND", "FreiHAND_pub_v2",
                             "training_xyz.json", MANUAL_DOWNLOAD_INSTRUCTIONS)
    for v in self.builder_config.versions:
      if not 0 <= v < NUM_VERSIONS:
        raise ValueError(f"FreiHAND versions must be in 0..{NUM_VERSIONS - 1}, got {v}")
    xyz = load_json_list(os.path.join(root, "training_xyz.json"), (21, 3), "xyz (metres)")
    n = len(xyz)
    K = load_json_list(os.path.join(root, "training_K.json"), (3, 3), "K", n)
    mano = load_json_list(os.path.join(root, "training_mano.json"), (MANO_SIZE,), "MANO", n)
    splits = {"train": self._indexed(root, "training", K, xyz, mano,
                                               self.builder_config.versions)}
    if os.path.isdir(os.path.join(root, "evaluation", "rgb")):
      K_eval = load_json_list(os.path.join(root, "evaluation_K.json"), (3, 3), "K")
      n_eval = len(K_eval)
      xyz_eval = mano_eval = None
      if os.path.exists(os.path.join(root, "evaluation_xyz.json")):
        xyz_eval = load_json_list(os.path.join(root, "evaluation_xyz.json"), (21, 3),
                                  "xyz (metres)", n_eval)
      if os.path.exists(os.path.join(root, "evaluation_mano.json")):
        mano_eval = load_json_list(os.path.join(root, "evaluation_mano.json"), (MANO_SIZE,),
                                   "MANO", n_eval)
      splits["test"] = self._indexed(root, "evaluation", K_eval, xyz_eval, mano_eval,
                                               (0,))
    return splits

  def _generate_examples(self, root: str, folder: str, K: np.ndarray, xyz: np.ndarray | None,
                         mano: np.ndarray | None, versions: tuple[int, ...]
                         ) -> Iterator[tuple[str, dict[str, Any]]]:
    n = len(K)
    mask_dir = os.path.join(root, folder, "mask")
    has_masks = folder == "training" or os.path.isdir(mask_dir)
    for version in versions:
      for sample in range(n):
        index = sample + n * version
        key = f"{index:08d}"
        image = _common.read_image(os.path.join(root, folder, "rgb", f"{key}.jpg"), "RGB",
                                   "an RGB JPEG (FreiHAND image)")
        mask = read_mask(os.path.join(mask_dir, f"{sample:08d}.jpg")) if has_masks else None
        if mask is not None and mask.shape != image.shape[:2]:
          raise _common.DatasetFormatError(
              f"{mask_dir}/{sample:08d}.jpg: mask {mask.shape}; expected the image size "
              f"{image.shape[:2]}")
        pose = uv = visible = None
        if xyz is not None:
          pose = _common.root_joint(skeleton.freihand_to_handjax(xyz[sample]),
                                    self.builder_config.root, native="wrist")
          uv = _common.project_np(pose, K[sample])
          visible = np.ones(skeleton.NUM_JOINTS, bool)
        example = _common.make_example(image=image, K=K[sample], hand_side=skeleton.RIGHT,
                                       mask=mask, pose3d=pose, uv=uv, visible=visible)
        example["has_visible"] = np.bool_(False)  # all joints annotated, occlusion unknown.
        example["mano"] = (np.zeros(MANO_SIZE, np.float32) if mano is None
                           else mano[sample].astype(np.float32))
        example["has_mano"] = np.bool_(mano is not None)
        yield key, example
