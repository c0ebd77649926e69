"""grain input pipelines: source -> labelled mask -> shuffle -> transforms -> shard -> batch.

`make_dataset(config, split, process_index=, process_count=, seed=)` returns a `grain.IterDataset`
whose iterator yields this process's share of each global batch as the standard flat dict of
DESIGN.md ("Batch"), and whose `get_state()` / `set_state()` make it checkpointable: an iterator
restored from the state saved after k batches yields exactly batch k + 1 of an uninterrupted run.

Order of operations and why:
  1. `map_with_index` over the *source* index marks the first round(m * N) examples as labelled
     (the semi/weakly supervised settings: the other examples keep image, depth, mask, points, uv
     but lose the 3D pose labels), so "which examples are labelled" never depends on the shuffle.
  2. train: a global shuffle by `seed`, repeated forever, reshuffled every epoch.
  3. `random_map` (augmentation, crop, targets) seeded by `seed` and the *global* position, so an
     example is processed identically whatever the process count, and differently every epoch.
  4. `ds[process_index::process_count]`, then batches of global_batch / process_count: batch j of
     process p holds global positions (j b + k) P + p, k < b, so the P processes together hold
     exactly global positions j B ... (j + 1) B - 1 (disjoint, covering the global batch).
  5. optional `mp_prefetch` worker processes (`config.num_workers`; 0 = in-process).
"""

from __future__ import annotations

import importlib
from typing import Any

from absl import flags
import grain
import ml_collections
import numpy as np

from handjax.data import transforms as T
from handjax.hand import skeleton

# Labels that the "labelled fraction" removes: the 3D pose and what is computed from it.
POSE_LABEL_KEYS = ("pose3d", "canonical_pose", "viewpoint")
# Keys of an output example that carry a `has_<key>` flag.
FLAGGED_KEYS = ("depth", "mask", "points", "pose3d", "uv", "visible", "heatmaps", "viewpoint",
                "canonical_pose", "scale", "pose3d_normalized", "root")


def default_data_config() -> ml_collections.ConfigDict:
  """The data fields `make_dataset` and `load_source` read, with defaults.

  Fields:
    dataset: tfds builder name ("synthetic_hands", or a public-dataset builder).
    builder_config: tfds builder config name (None: the builder's default).
    data_dir: tfds data directory (None: tfds default). manual_dir: for RHD/STB/FreiHAND downloads.
    resolution: synthetic_hands only: without `builder_config`, the config "default_<resolution>".
    train_split / eval_split: split names.
    image_size: side of the square network input (the crop is resized to it).
    crop: use the reference crop of specs/datasets.md (else the whole image is resized).
    crop_min_side / crop_max_side: clip of the crop side in source pixels ([50, 500] in RHD).
    batch_size: the *global* batch size (all processes together).
    num_points: fixed size of the sampled point cloud.
    labelled_fraction: in [0, 1]; the first round(m N) examples of the train split keep `pose3d`
      (evaluation splits keep every label).
    weak_labels: keys of POSE_LABEL_KEYS the other examples keep (e.g. ("viewpoint",): the
      weakly supervised setting of the dissertation's Fig. 4.9); the rest are dropped.
    content_image: add `content_image`, the crop of another member of the example's content group
      (same background, skin, lighting; another pose): the dVAE's tag image (dissertation
      Sec. 4.3.3). Needs a grouped builder config (synthetic_hands/groups_*). The partner changes
      every epoch and is cropped around its own hand without augmentation.
    heatmap_size / heatmap_sigma: side and sigma (heat-map pixels) of the heat-map targets.
    view_correction: apply view correction after cropping (Yang et al. ICCV 2019, Sec. 4.1).
    root_joint: root of `pose3d_normalized` (0 = wrist).
    num_workers: grain worker processes (0: in-process). read_threads: reader threads.
    augment.enabled: augment the train split. augment.rotation_deg: max |in-plane rotation|.
    augment.scale: max relative change of the crop side. augment.translate: max shift of the crop
    centre as a fraction of its side. augment.flip_prob: probability of a horizontal flip (swaps
    hand side). augment.hue_deg: max |hue rotation|. augment.brightness: max relative change.
  """
  c = ml_collections.ConfigDict()
  c.dataset = "synthetic_hands"
  c.builder_config = ml_collections.config_dict.placeholder(str)
  c.data_dir = ml_collections.config_dict.placeholder(str)
  c.manual_dir = ml_collections.config_dict.placeholder(str)
  c.resolution = 128
  c.train_split = "train"
  c.eval_split = "test"
  c.image_size = 64
  c.crop = True
  c.crop_min_side = 50.0
  c.crop_max_side = 500.0
  c.batch_size = 32
  c.num_points = 256
  c.labelled_fraction = 1.0
  c.weak_labels = ()
  c.content_image = False
  c.heatmap_size = 32
  c.heatmap_sigma = 1.0
  c.view_correction = False
  c.root_joint = skeleton.WRIST
  c.num_workers = 0
  c.read_threads = 2
  c.augment = ml_collections.ConfigDict()
  c.augment.enabled = True
  c.augment.rotation_deg = 30.0
  c.augment.scale = 0.1
  c.augment.translate = 0.05
  c.augment.flip_prob = 0.0
  c.augment.hue_deg = 10.0
  c.augment.brightness = 0.2
  return c


def load_source(config: ml_collections.ConfigDict, split: str) -> Any:
  """The random-access source (len + __getitem__ -> example dict) of a tfds builder.

  Imports `handjax.data.builders.<config.dataset>` when it exists (registering the builder),
  picks `config.builder_config` (synthetic_hands default: "default_<config.resolution>"),
  prepares it (`download_and_prepare`, reading `config.manual_dir` for the public datasets) and
  returns `builder.as_data_source(split=split)` (ArrayRecord; no TensorFlow needed). `split`
  takes tfds slicing ("train[:10%]", "train[100:200]"): e.g. training on the labelled m% alone,
  the supervised-only curves of the semi/weakly supervised figures.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  module = f"handjax.data.builders.{config.dataset}"
  try:
    importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name != module:
      raise  # the builder exists but one of its imports is missing
    # Otherwise a builder registered elsewhere (or a tfds catalog name).
  builder_config = config.get("builder_config")
  if builder_config is None and config.dataset == "synthetic_hands":
    builder_config = f"default_{config.resolution}"
  builder = tfds.builder(config.dataset, config=builder_config,
                         data_dir=config.get("data_dir"), file_format="array_record")
  download_config = None
  if config.get("manual_dir"):
    download_config = tfds.download.DownloadConfig(manual_dir=config.manual_dir)
  builder.download_and_prepare(download_config=download_config)
  return builder.as_data_source(split=split)


def num_labelled(num_examples: int, fraction: float) -> int:
  """round(fraction * N): how many leading source examples keep their 3D pose labels."""
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"labelled_fraction must be in [0, 1], got {fraction}")
  return int(round(fraction * num_examples))


class _MarkLabelled(grain.transforms.MapWithIndex):
  """Drops the 3D pose labels of source examples at index >= num_labelled (zeros + has_ = False),
  except the weak labels `keep`."""

  def __init__(self, num_labelled_examples: int, num_examples: int, keep: tuple[str, ...] = ()):
    self.num_labelled = num_labelled_examples
    self.num_examples = num_examples
    self.dropped = tuple(k for k in POSE_LABEL_KEYS if k not in keep)

  def map_with_index(self, index: int, element: dict[str, Any]) -> dict[str, Any]:
    # After shuffle + repeat, grain hands this map the *unwrapped* position (epoch e sees indices
    # e * N .. e * N + N - 1); the source example is index mod N, and labels must follow the example.
    index = index % self.num_examples
    example = {k: np.asarray(v) for k, v in element.items()}
    example["index"] = np.asarray(index, np.int64)
    if index >= self.num_labelled:
      for key in self.dropped:
        if key in example:
          example[key] = np.zeros_like(example[key])
        example[f"has_{key}"] = np.asarray(False)
    return example


_PARTNER_KEYS = ("image", "uv", "visible", "K")
_PARTNER_PREFIX = "content_source_"


def content_group_size(source: Any, split: str) -> int:
  """Members per content group of a grouped source: the run of equal `content_id` at its start."""
  if "content_id" not in source[0]:
    raise ValueError(f"data.content_image needs examples with `content_id`; split {split!r} has "
                     f"none (use a grouped builder config, e.g. synthetic_hands/groups_64)")
  first = int(source[0]["content_id"])
  size = 1
  while size < len(source) and int(source[size]["content_id"]) == first:
    size += 1
  if size < 2 or len(source) % size:
    raise ValueError(f"data.content_image needs content groups of >= 2 examples dividing the "
                     f"split; split {split!r} starts with a group of {size} of {len(source)}")
  return size


def content_partner(index: int, num_examples: int, group_size: int) -> int:
  """Source index of the tag image of grain position `index`: another member of its group, a
  different one every epoch (cycling through the other group_size - 1 members)."""
  i, epoch = index % num_examples, index // num_examples
  group, member = divmod(i, group_size)
  return group * group_size + (member + 1 + epoch % (group_size - 1)) % group_size


class _AddContentPartner(grain.transforms.MapWithIndex):
  """Attaches the raw image (+ what its crop needs) of the example's content partner."""

  def __init__(self, source: Any, group_size: int):
    self.source = source
    self.group_size = group_size

  def map_with_index(self, index: int, element: dict[str, Any]) -> dict[str, Any]:
    partner = self.source[content_partner(index, len(self.source), self.group_size)]
    out = dict(element)
    for key in _PARTNER_KEYS:
      out[_PARTNER_PREFIX + key] = np.asarray(partner[key])
    return out


def _has(example: dict[str, Any], key: str) -> bool:
  return key in example and bool(example.get(f"has_{key}", True))


def _choose_view(example: T.Example, config: ml_collections.ConfigDict, rng: np.random.Generator,
                 augment: bool) -> T.View:
  """Crop (with scale/translation jitter), rotation, flip, view correction as one camera change."""
  aug = config.augment
  view = T.identity_view(example)
  size = int(config.image_size)
  if config.crop and _has(example, "uv"):
    center, side = T.reference_crop_box(
        example["uv"], example.get("visible"),
        min_side=config.crop_min_side, max_side=config.crop_max_side)
    if augment:
      center = center + rng.uniform(-aug.translate, aug.translate, 2) * side
      side = side * (1.0 + rng.uniform(-aug.scale, aug.scale))
    view = T.crop_view(view, center, side, size)
  else:
    view = T.resize_view(view, (size, size))
  if augment and aug.rotation_deg > 0:
    view = T.rotate_view(view, np.deg2rad(rng.uniform(-aug.rotation_deg, aug.rotation_deg)))
  if augment and rng.random() < aug.flip_prob:
    view = T.flip_view(view)
  if config.view_correction:
    view = T.view_correct_view(view)
  return view


def finalize_example(example: T.Example, config: ml_collections.ConfigDict,
                     rng: np.random.Generator) -> dict[str, np.ndarray]:
  """The fixed set of keys and dtypes of DESIGN.md's batch (missing modalities: zeros + has_=False).

  Adds `index` (the source position, -1 if unknown), `heatmaps` (h, w, 21) at uv, `points`
  (num_points, 3) sampled afresh from `rng`, `pose3d_normalized` (21, 3) = (pose3d - root) / scale,
  `root` (3,), `scale` () (the middle MCP->PIP bone) and the float32 image in [-0.5, 0.5].
  """
  size = example["image"].shape[:2]
  j = skeleton.NUM_JOINTS
  out: dict[str, np.ndarray] = {"image": T.normalize_image(example["image"]),
                                "K": np.asarray(example["K"], np.float32),
                                "hand_side": np.asarray(example.get("hand_side", 0), np.int32),
                                "index": np.asarray(example.get("index", -1), np.int64)}
  has = {}

  def put(key, value, zeros_shape, dtype):
    has[key] = value is not None
    out[key] = (np.zeros(zeros_shape, dtype) if value is None else np.asarray(value, dtype))

  def get(key):
    return np.asarray(example[key]) if _has(example, key) else None

  depth, mask = get("depth"), get("mask")
  put("depth", None if depth is None else depth.reshape(size + (1,)), size + (1,), np.float32)
  put("mask", None if mask is None else mask.reshape(size + (1,)), size + (1,), np.uint8)
  uv = get("uv")
  put("uv", uv, (j, 2), np.float32)
  put("visible", get("visible"), (j,), bool)
  hm = int(config.heatmap_size)
  put("heatmaps", None if uv is None else T.heatmaps(uv, size, (hm, hm), config.heatmap_sigma),
      (hm, hm, j), np.float32)
  points = get("points")
  if points is not None:
    points, ok = T.sample_points(points, int(config.num_points), rng)
    points = points if ok else None
  put("points", points, (int(config.num_points), 3), np.float32)
  pose = get("pose3d")
  put("pose3d", pose, (j, 3), np.float32)
  normalized = None if pose is None else T.normalize_pose(pose, int(config.root_joint))
  put("pose3d_normalized", None if pose is None else normalized[0], (j, 3), np.float32)
  put("root", None if pose is None else normalized[1], (3,), np.float32)
  put("scale", None if pose is None else normalized[2], (), np.float32)
  put("canonical_pose", get("canonical_pose"), (j, 3), np.float32)
  put("viewpoint", get("viewpoint"), (3, 3), np.float32)
  for key in FLAGGED_KEYS:
    out[f"has_{key}"] = np.asarray(has[key])
  return out


def reference_to_view(reference: T.View, view: T.View) -> np.ndarray:
  """(3, 3) float32 homography from the pixels of ``reference`` to those of ``view``.

  Both views see the same source camera: x_view ~ K_v M_v M_r^-1 K_r^-1 x_ref. Crop jitter, in-plane
  rotation and flips make it affine (last row [0, 0, 1]) and leave every joint's depth unchanged
  (a roll about the optical axis or a mirror keeps z), so a 2.5D label made on the reference view
  moves to the augmented view by this map on uv alone. Normalised to H[2, 2] = 1.
  """
  h = view.K @ view.M @ np.linalg.inv(reference.M) @ np.linalg.inv(reference.K)
  return (h / h[2, 2]).astype(np.float32)


class OrderedPass:
  """One ordered, unaugmented pass over a training split, with its number of examples.

  The pseudo-labelling pass of self-training methods (`make_dataset(..., labelling_pass=True)`):
  iterating gives the batches; ``num_examples`` is the split's size (all processes together).
  """

  def __init__(self, batches: Any, num_examples: int):
    self.batches = batches
    self.num_examples = int(num_examples)

  def __iter__(self):
    return iter(self.batches)


class ProcessExample(grain.transforms.RandomMap):
  """Crop + augmentation + targets for one example (picklable for grain worker processes)."""

  def __init__(self, config: ml_collections.ConfigDict, augment: bool):
    self.config = ml_collections.ConfigDict(config.to_dict())  # an unlocked, picklable copy
    self.augment = augment

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    example = {k: np.asarray(v) for k, v in element.items()}
    partner = {k[len(_PARTNER_PREFIX):]: example.pop(k) for k in list(example)
               if k.startswith(_PARTNER_PREFIX)}
    content_image = None
    if partner:
      partner_view = _choose_view(partner, self.config, rng, augment=False)
      content_image = T.normalize_image(T.warp(partner, partner_view)["image"])
    view = _choose_view(example, self.config, rng, self.augment)
    # The pixel map from the unaugmented view (what the pseudo-labelling pass sees) to this one.
    reference = _choose_view(example, self.config, rng, augment=False) if self.augment else view
    example = T.warp(example, view)
    aug = self.config.augment
    if self.augment and (aug.hue_deg > 0 or aug.brightness > 0):
      example["image"] = T.color_jitter(
          example["image"], np.deg2rad(rng.uniform(-aug.hue_deg, aug.hue_deg)),
          1.0 + rng.uniform(-aug.brightness, aug.brightness))
    out = finalize_example(example, self.config, rng)
    out["reference_to_view"] = reference_to_view(reference, view)
    if content_image is not None:
      out["content_image"] = content_image
    return out


def make_dataset(
    config: ml_collections.ConfigDict,
    split: str,
    *,
    process_index: int = 0,
    process_count: int = 1,
    seed: int = 0,
    source: Any = None,
    labelling_pass: bool = False,
) -> grain.IterDataset | OrderedPass:
  """A grain pipeline over this process's shard of every global batch (see the module docstring).

  Args:
    config: a `default_data_config()`-like ConfigDict (or a config with those fields).
    split: split name; `config.train_split` is shuffled, repeated forever, augmented (if
      `config.augment.enabled`) and drops the remainder; other splits run once, in order,
      unaugmented, and keep a smaller last batch.
    process_index: this process (jax.process_index()).
    process_count: number of processes (jax.process_count()); must divide config.batch_size.
    seed: shuffle and augmentation seed.
    source: a random-access source (len + __getitem__); default `load_source(config, split)`.
    labelling_pass: read ``split`` as training data (its labelled fraction applies: the
      unlabelled examples keep has_pose3d False) but once, in order, unaugmented, keeping the last
      partial batch: the pass in which a self-training method labels its training examples.

  Returns:
    A `grain.IterDataset`; `iter(ds)` gives a checkpointable iterator (`get_state` / `set_state`).
    With ``labelling_pass``, an `OrderedPass` over it.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(
        f"need 0 <= process_index < process_count, got {process_index}, {process_count}")
  if config.batch_size % process_count:
    raise ValueError(f"global batch_size {config.batch_size} is not divisible by "
                     f"process_count {process_count}")
  if source is None:
    source = load_source(config, split)
  if len(source) == 0:
    raise ValueError(f"split {split!r} of {config.dataset} is empty")
  train = split == config.train_split and not labelling_pass
  ds = grain.MapDataset.source(source)
  weak = tuple(config.get("weak_labels", ()) or ())
  if not set(weak) <= set(POSE_LABEL_KEYS):
    raise ValueError(f"data.weak_labels must be keys of {POSE_LABEL_KEYS}, got {weak}")
  # The labelled fraction is a training setting: evaluation splits keep every label.
  fraction = config.labelled_fraction if train or labelling_pass else 1.0
  ds = ds.map_with_index(_MarkLabelled(num_labelled(len(source), fraction), len(source), weak))
  if config.get("content_image", False):
    ds = ds.map_with_index(_AddContentPartner(source, content_group_size(source, split)))
  if train:
    ds = ds.shuffle(seed=seed).repeat(None)
  ds = ds.random_map(ProcessExample(config, augment=train and config.augment.enabled), seed=seed)
  ds = ds[process_index::process_count]
  ds = ds.batch(config.batch_size // process_count, drop_remainder=train)
  iter_ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=int(config.read_threads),
                                                 prefetch_buffer_size=2 * int(config.read_threads)))
  if config.num_workers > 0:
    if not flags.FLAGS.is_parsed():
      # grain's worker processes read its absl flags; outside an absl binary (tests, notebooks)
      # nothing parsed them, so take the defaults instead of failing in the workers.
      flags.FLAGS.mark_as_parsed()
    iter_ds = iter_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=int(config.num_workers)))
  return OrderedPass(iter_ds, len(source)) if labelling_pass else iter_ds
