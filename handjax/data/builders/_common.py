"""Shared pieces of the public-dataset builders (RHD, STB, FreiHAND): input checks, decoders,
the common feature dict, point clouds from depth and the canonical pose.

Every public builder reads the user's unpacked original download from tfds' `manual_dir`
(../shared/specs/datasets.md gives the layouts) and writes ArrayRecord files with the keys of
`synthetic_hands` (DESIGN.md, "Batch"): `image` uint8, `depth` float32 metres, `mask` uint8 part
labels, `pose3d` metres, `uv`, `visible`, `K`, `hand_side`, `points`, `canonical_pose`,
`viewpoint`, plus a boolean `has_<key>` for what a dataset lacks (zeros then). Images are stored
at their native resolution as zlib-compressed uint8 tensors (no TensorFlow codec is needed to read
them); cropping and resizing happen later in `handjax.data.transforms`.

Mask labels follow the synthetic part table (`handjax.data.synthetic.hand_model.PART_NAMES`):
0 background, 1-15 finger segments (thumb, index, middle, ring, pinky; 3 segments each, base ->
tip), 16 palm, 17 forearm / other non-hand foreground. Hand pixels are labels 1..16.

Bad input raises `DatasetFormatError` (a ValueError) naming the file and what was expected. tfds
writes into an `incomplete.*` folder and renames it only after every split finished, so a failed
prepare leaves nothing that `builder.is_prepared()` would accept.
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
import zlib
from typing import Any, Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from handjax import image_files
from handjax.hand import skeleton

# Size of the stored visible-surface point cloud; equal to synthetic_hands'
# (`handjax.data.synthetic.render.NUM_POINTS`, checked by the tests).
NUM_POINTS = 1024
# Mask labels of the synthetic part table (hand_model.PART_NAMES), repeated here so that the
# builders do not import the JAX renderer; the tests check they agree.
PART_BACKGROUND = 0
PART_PALM = 16
PART_FOREARM = 17

# Evaluation protocols (specs/datasets.md, "Evaluation protocols"); the evaluator reads the
# builder's `EVAL_PROTOCOL` (also stored in the dataset metadata).
ROOT_RELATIVE_GT_SCALE = "root_relative_gt_scale"
PROCRUSTES = "procrustes"

# Keys with a `has_<key>` flag in every public builder.
FLAGGED_KEYS = ("depth", "mask", "points", "pose3d", "uv", "visible", "canonical_pose",
                "viewpoint")


class DatasetFormatError(ValueError):
  """A file of a manual download is missing or not in the documented format."""


# --- Paths ----------------------------------------------------------------------------------


def find_root(manual_dir: os.PathLike | str | None, dataset: str, subfolder: str,
              marker: str, instructions: str) -> str:
  """The dataset root inside `manual_dir`: `manual_dir/subfolder` if it exists, else manual_dir.

  Args:
    manual_dir: the folder the user passed (`--manual_dir`).
    dataset: dataset name for messages.
    subfolder: the top folder of the original archive (e.g. "RHD_published_v2").
    marker: a path relative to the root that must exist (e.g. "training").
    instructions: the builder's MANUAL_DOWNLOAD_INSTRUCTIONS, repeated in the error.

  Raises:
    DatasetFormatError: no manual_dir, or neither candidate holds `marker`.
  """
  if manual_dir is None:
    raise DatasetFormatError(
        f"{dataset} needs a manual_dir holding the unpacked download; none was given.\n"
        f"{instructions}")
  manual_dir = os.fspath(manual_dir)
  if not os.path.isdir(manual_dir):
    raise DatasetFormatError(
        f"{dataset}: manual_dir {manual_dir} does not exist (expected the unpacked download)."
        f"\n{instructions}")
  for root in (os.path.join(manual_dir, subfolder), manual_dir):
    if os.path.exists(os.path.join(root, marker)):
      return root
  raise DatasetFormatError(
      f"{dataset}: expected {os.path.join(manual_dir, subfolder, marker)} or "
      f"{os.path.join(manual_dir, marker)}; neither exists.\n{instructions}")


def require_file(path: str, expected: str) -> str:
  if not os.path.isfile(path):
    raise DatasetFormatError(f"missing file {path} (expected {expected})")
  return path


def manual_dir_of(dl_manager: Any) -> str | None:
  """tfds' manual_dir without its own assertion (so that our message names the layout)."""
  return getattr(dl_manager, "_manual_dir", None)


# --- Decoders -------------------------------------------------------------------------------


# Modes `read_image` converts to the requested mode (RGB or L); anything else (16/32-bit, float,
# CMYK, ...) is refused, since the public datasets distribute 8-bit images only and converting
# would clip or guess colours silently.
_CONVERTIBLE_MODES = {"RGB": ("RGB", "RGBA", "L", "P"), "L": ("L", "1", "P", "LA", "RGB", "RGBA")}


def read_image(path: str, mode: str, expected: str) -> np.ndarray:
  """Decodes an image file fully into a uint8 array of PIL `mode` ("RGB", "L").

  The header is checked first (`handjax.image_files`: at most `MAX_PIXELS` pixels, a mode in
  `_CONVERTIBLE_MODES[mode]`), so an oversized or unexpected file is refused before decoding.

  Raises:
    DatasetFormatError: missing, truncated, undecodable, too large or of an unexpected mode.
  """
  require_file(path, expected)
  try:
    with image_files.open_image(path) as im:
      if im.mode not in _CONVERTIBLE_MODES[mode]:
        raise DatasetFormatError(
            f"{path}: {image_files.describe_mode(im.mode)} image; expected {expected} (PIL "
            f"modes {', '.join(_CONVERTIBLE_MODES[mode])} are read as {mode}, others refused)")
      im.load()  # forces the full decode; a truncated file fails here, not later.
      return np.asarray(im.convert(mode), np.uint8)
  except image_files.ImageTooLargeError as e:
    raise DatasetFormatError(f"{e} Expected {expected}.") from None
  except DatasetFormatError:
    raise
  except (OSError, SyntaxError, ValueError) as e:
    raise DatasetFormatError(f"{path}: cannot decode ({e}); expected {expected}") from e


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
  """`_codecs.encode` as pickle protocols 0-2 call it for `bytes` (NumPy's raw array data), and
  nothing else: only the latin-1 codec those pickles name."""
  if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
    raise pickle.UnpicklingError(f"_codecs.encode({type(text).__name__}, {encoding!r}): only "
                                 "latin-1 encoding of a str is allowed")
  return text.encode("latin-1", errors)


def _numpy_pickle_globals() -> dict[tuple[str, str], Any]:
  """The functions and classes NumPy's own pickles name, under NumPy 2 and NumPy 1 names.

  Taken from NumPy's `__reduce__` / `__reduce_ex__` (not imported by name), so that a NumPy 1.x
  or Python 2 pickle (`numpy.core.*`) and a NumPy 2 one (`numpy._core.*`) map to the same objects
  without importing the deprecated `numpy.core` alias.
  """
  objects = [np.ndarray, np.dtype,
             np.zeros(1).__reduce__()[0],  # _reconstruct(ndarray, shape, dtype) (protocols 0-4)
             np.zeros(1).__reduce_ex__(5)[0],  # _frombuffer(buffer, dtype, shape, order) (5)
             np.float64(0).__reduce__()[0]]  # scalar(dtype, bytes)
  table = {}
  for obj in objects:
    module = obj.__module__
    names = {module, module.replace("numpy._core", "numpy.core"),
             module.replace("numpy.core", "numpy._core")}
    table.update({(m, obj.__name__): obj for m in names})
  return table


# Every global an RHD annotation pickle may name (BUILD_NOTES, "Public-dataset builders": how
# this was checked): NumPy array / scalar / dtype reconstruction, the builtin containers and
# scalars that pickle cannot write as opcodes, and `_codecs.encode` restricted to latin-1.
# Protocol 0-2 pickles write `__builtin__` for `builtins` (pickle's fix_imports maps it).
_SAFE_PICKLE_GLOBALS = {
    **_numpy_pickle_globals(),
    **{("builtins", t.__name__): t for t in (set, frozenset, bytes, bytearray, complex)},
    ("_codecs", "encode"): _latin1_encode,
}
_PY2_MODULES = {"__builtin__": "builtins"}


class _RefusedGlobal(pickle.UnpicklingError):
  """A pickle named a global outside _SAFE_PICKLE_GLOBALS (the message is "module.name")."""


class _DataUnpickler(pickle.Unpickler):
  """An Unpickler that resolves only _SAFE_PICKLE_GLOBALS: data, never code.

  Why: `pickle.load` calls whatever global a file names (`posix.system` from a `__reduce__`),
  so a crafted download would run code while tfds builds. Every call a pickle can make goes
  through `find_class`; refusing there stops it before anything is called.
  """

  def find_class(self, module: str, name: str) -> Any:
    key = (_PY2_MODULES.get(module, module), name)
    if key not in _SAFE_PICKLE_GLOBALS:
      raise _RefusedGlobal(f"{module}.{name}")
    return _SAFE_PICKLE_GLOBALS[key]


def read_pickle(path: str, expected: str) -> Any:
  """Unpickles a data file (RHD annotations) with `_DataUnpickler`.

  `encoding="latin1"` decodes Python 2 `str` objects as NumPy asks for its Python 2 pickles; it
  changes nothing for a Python 3 pickle.

  Raises:
    DatasetFormatError: missing or corrupt file, or a global outside _SAFE_PICKLE_GLOBALS (named
      in the message; nothing it names is called).
  """
  require_file(path, expected)
  try:
    with open(path, "rb") as f:
      return _DataUnpickler(f, encoding="latin1").load()
  except _RefusedGlobal as e:
    raise DatasetFormatError(
        f"{path}: refused to unpickle global {e} (only NumPy arrays, builtin containers and "
        f"scalars are loaded from a data file; a pickle naming other globals can run code); "
        f"expected {expected}") from None
  except Exception as e:  # pickle raises many types on corrupt input.
    raise DatasetFormatError(f"{path}: cannot unpickle ({e}); expected {expected}") from e


def check_array(value: Any, shape: tuple[int | None, ...], what: str) -> np.ndarray:
  """`value` as a float64 array of `shape` (None = any size), else DatasetFormatError."""
  try:
    arr = np.asarray(value, np.float64)
  except (TypeError, ValueError) as e:
    raise DatasetFormatError(f"{what}: not a numeric array ({e}); expected shape {shape}") from e
  if arr.ndim != len(shape) or any(s is not None and s != a for s, a in zip(shape, arr.shape)):
    raise DatasetFormatError(f"{what}: shape {arr.shape}, expected {shape}")
  if not np.all(np.isfinite(arr)):
    raise DatasetFormatError(f"{what}: non-finite values")
  return arr


# --- Geometry -------------------------------------------------------------------------------


def project_np(points: np.ndarray, K: np.ndarray) -> np.ndarray:
  """uv = (K X)_{1,2} / (K X)_3 (numpy; the builders run on the host without JAX dispatch)."""
  uvw = np.asarray(points, np.float64) @ np.asarray(K, np.float64).T
  return uvw[..., :2] / uvw[..., 2:3]


def backproject_pixels(rows: np.ndarray, cols: np.ndarray, z: np.ndarray,
                       K: np.ndarray) -> np.ndarray:
  """X = z K^-1 [u, v, 1]^T at pixel centres (u = column, v = row); z is the depth, not range."""
  uv1 = np.stack([cols, rows, np.ones_like(cols)], -1).astype(np.float64)
  return (uv1 @ np.linalg.inv(np.asarray(K, np.float64)).T) * np.asarray(z, np.float64)[:, None]


def example_seed(key: str) -> int:
  """A stable per-example seed (crc32 of the example key), independent of the write order."""
  return zlib.crc32(key.encode())


def points_from_depth(depth: np.ndarray, hand: np.ndarray, K: np.ndarray, num_points: int,
                      seed: int) -> tuple[np.ndarray, bool]:
  """A fixed-size visible-surface cloud back-projected from hand pixels of a depth map.

  The sampling rule of synthetic_hands (`render._sample_points`): the n hand pixels with depth > 0
  are put in a random order and point i is pixel (i mod n), X = z K^-1 [u, v, 1]^T at the pixel
  centre (Yang et al. ICCV 2019, Sec. 3: the point-cloud modality is the hand's depth points);
  with no hand pixel the cloud is all zeros.

  Args:
    depth: (H, W) or (H, W, 1) metres, 0 = no measurement.
    hand: (H, W) or (H, W, 1) bool, the pixels that belong to the hand.
    K: (3, 3) intrinsics of the depth map.
    num_points: P.
    seed: random seed of the order.

  Returns:
    ((P, 3) float32 metres, whether any hand pixel existed).
  """
  depth = np.asarray(depth).reshape(np.shape(depth)[:2])
  hand = np.asarray(hand).reshape(depth.shape) & (depth > 0)
  rows, cols = np.nonzero(hand)
  n = len(rows)
  if n == 0:
    return np.zeros((num_points, 3), np.float32), False
  order = np.random.default_rng(seed).permutation(n)
  pick = order[np.arange(num_points) % n]
  pts = backproject_pixels(rows[pick], cols[pick], depth[rows[pick], cols[pick]], K)
  return pts.astype(np.float32), True


@functools.lru_cache(maxsize=None)
def _canonicalize_fn():
  import jax  # pylint: disable=g-import-not-at-top
  from handjax.hand import viewpoint  # pylint: disable=g-import-not-at-top

  return jax.jit(viewpoint.canonicalize)


def canonical_pose_and_viewpoint(pose3d: np.ndarray, hand_side: int
                                 ) -> tuple[np.ndarray, np.ndarray]:
  """`handjax.hand.viewpoint.canonicalize` of one pose (Zimmermann & Brox ICCV 2017)."""
  canonical, rotation = _canonicalize_fn()(np.asarray(pose3d, np.float32), np.int32(hand_side))
  return np.asarray(canonical, np.float32), np.asarray(rotation, np.float32)


# --- Builder base ---------------------------------------------------------------------------


class ManualBuilder(tfds.core.GeneratorBasedBuilder):
  """GeneratorBasedBuilder whose `code_path` is its module's file.

  Why: tfds locates a builder's checksums file from `code_path`, which for a class inside an
  installed package probes `importlib_resources` (not a dependency here, and not needed: these
  builders download nothing). Abstract, hence not registered itself.
  """

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    return epath.Path(path) if path else None

  def _indexed(self, *args: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """`_generate_examples(*args)` with `index` added (`with_index`)."""
    return with_index(self._generate_examples(*args))  # pytype: disable=attribute-error


# --- Features -------------------------------------------------------------------------------


def _zlib_tensor(channels: int, dtype) -> tfds.features.Tensor:
  return tfds.features.Tensor(shape=(None, None, channels), dtype=dtype,
                              encoding=tfds.features.Encoding.ZLIB)


def feature_dict(num_points: int = NUM_POINTS, **extra: tfds.features.FeatureConnector
                 ) -> tfds.features.FeaturesDict:
  """The synthetic_hands keys (native image size, zlib uint8/float32 tensors) plus `extra`."""
  j = skeleton.NUM_JOINTS
  features = {
      "index": tfds.features.Scalar(dtype=np.int64),
      "image": _zlib_tensor(3, np.uint8),
      "depth": _zlib_tensor(1, np.float32),
      "mask": _zlib_tensor(1, np.uint8),
      "pose3d": tfds.features.Tensor(shape=(j, 3), dtype=np.float32),
      "uv": tfds.features.Tensor(shape=(j, 2), dtype=np.float32),
      "visible": tfds.features.Tensor(shape=(j,), dtype=np.bool_),
      "K": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
      "hand_side": tfds.features.Scalar(dtype=np.int32),
      "points": tfds.features.Tensor(shape=(num_points, 3), dtype=np.float32),
      "canonical_pose": tfds.features.Tensor(shape=(j, 3), dtype=np.float32),
      "viewpoint": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
  }
  features.update({f"has_{key}": tfds.features.Scalar(dtype=np.bool_) for key in FLAGGED_KEYS})
  features.update(extra)
  return tfds.features.FeaturesDict(features)


def with_index(examples: Iterator[tuple[str, dict[str, Any]]]
               ) -> Iterator[tuple[str, dict[str, Any]]]:
  """Adds `index` = position in the split (== the data-source index; shuffling is disabled), as
  synthetic_hands does."""
  for index, (key, example) in enumerate(examples):
    example["index"] = np.int64(index)
    yield key, example


def make_example(*, image: np.ndarray, K: np.ndarray, hand_side: int,
                 depth: np.ndarray | None = None, mask: np.ndarray | None = None,
                 pose3d: np.ndarray | None = None, uv: np.ndarray | None = None,
                 visible: np.ndarray | None = None, points: np.ndarray | None = None,
                 num_points: int = NUM_POINTS) -> dict[str, Any]:
  """One example with every common key; absent modalities become zeros + has_<key> = False.

  `canonical_pose` / `viewpoint` are computed from `pose3d` when given (`canonicalize`); nothing
  else is derived (the builders compute `points` themselves). `index` is added by `with_index`.
  """
  h, w = image.shape[:2]
  j = skeleton.NUM_JOINTS
  has = {}

  def put(name, value, shape, dtype):
    has[name] = value is not None
    return np.zeros(shape, dtype) if value is None else np.asarray(value, dtype).reshape(shape)

  out = {
      "image": np.ascontiguousarray(image, np.uint8),
      "K": np.asarray(K, np.float32),
      "hand_side": np.int32(hand_side),
      "depth": put("depth", depth, (h, w, 1), np.float32),
      "mask": put("mask", mask, (h, w, 1), np.uint8),
      "pose3d": put("pose3d", pose3d, (j, 3), np.float32),
      "uv": put("uv", uv, (j, 2), np.float32),
      "visible": put("visible", visible, (j,), np.bool_),
      "points": put("points", points, (num_points, 3), np.float32),
  }
  canonical = rotation = None
  if pose3d is not None:
    canonical, rotation = canonical_pose_and_viewpoint(out["pose3d"], hand_side)
  out["canonical_pose"] = put("canonical_pose", canonical, (j, 3), np.float32)
  out["viewpoint"] = put("viewpoint", rotation, (3, 3), np.float32)
  out.update({f"has_{name}": np.bool_(has[name]) for name in FLAGGED_KEYS})
  return out


def root_joint(pose: np.ndarray, root: str, native: str) -> np.ndarray:
  """Applies a builder's palm-root option to a handjax-order pose (..., 21, D).

  Args:
    pose: pose whose joint 0 is the dataset's native root.
    root: "native" (keep), "wrist" or "palm".
    native: what joint 0 is in the dataset: "wrist" (RHD, FreiHAND) or "palm" (STB).

  Returns:
    "palm" on a wrist dataset: `skeleton.wrist_to_palm` (0.5 (wrist + middle MCP));
    "wrist" on a palm dataset: `skeleton.palm_to_wrist(convention="ring_mcp")` (specs/datasets.md:
    wrist = ringMCP + 2 (palm - ringMCP)); otherwise the pose unchanged.
  """
  if root not in ("native", "wrist", "palm"):
    raise ValueError(f"root must be 'native', 'wrist' or 'palm', got {root!r}")
  if root == "native" or root == native:
    return pose
  if root == "palm":
    return skeleton.wrist_to_palm(pose)
  return skeleton.palm_to_wrist(pose, convention="ring_mcp")
