"""`synthetic_hands`: the procedural hand dataset as a tfds builder (ArrayRecord, no TensorFlow).

    import handjax.data  # registers the builder
    builder = tfds.builder("synthetic_hands/quickstart", data_dir=...)
    builder.download_and_prepare(file_format="array_record")
    train = builder.as_data_source()["train"]  # train[i] == render_batch(seed, i, 1, ...) of split "train"

Nothing is downloaded: each shard renders its examples in batches with
`handjax.data.synthetic.render_batch`. Example i of a split is a pure function of (seed, split, i)
and is stored at index i (shards hold consecutive ranges, in order), so a data source index is the
example index. The builder is a `tfds.core.ShardBasedBuilder`: every shard streams straight to its
ArrayRecord file. (A `GeneratorBasedBuilder` funnels a whole split through tfds' write buffer,
which spills to disk through `tf.io.gfile` beyond 1 GB, so splits of 128 px and more needed
TensorFlow; this way no split size does, and memory is bounded by one shard.)
Tensors are stored raw (floats) or zlib-compressed (images, masks, depth), so reading needs no codec
and no TensorFlow. tfds writes into an `incomplete.*` directory and renames it when every split is
done, so an interrupted preparation leaves nothing half-written behind, and calling
`download_and_prepare` again on a prepared dataset does nothing.

Rendering takes minutes (default_128: about seven on a 2-core CPU), so it reports progress through
the `handjax.data.builders.synthetic_hands` logger at INFO, which the binaries show: a line when a
split starts, after its first batch, then every ~10 s and when it is done, with examples done,
examples/s and ETA (`RenderProgress`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import time
from typing import Callable, Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from handjax.data import synthetic
from handjax.data.synthetic import groups
from handjax.hand import skeleton

_ZLIB = tfds.features.Encoding.ZLIB
log = logging.getLogger(__name__)
_clock = time.perf_counter  # The builder's progress clock (a test replaces it).


def _clock_text(seconds: float) -> str:
  seconds = int(round(seconds))
  return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class RenderProgress:
  """Progress lines of one split's rendering: examples done, examples/s and ETA.

  ``update(done)`` returns a line after the first batch (so a rate shows within seconds), then
  once ``every_s`` seconds have passed since the last line, and always when the split is done;
  otherwise None. The rate after the first line leaves out the first batch, whose time includes
  compiling the renderer, so the ETA is not inflated by it.
  """

  def __init__(self, name: str, split: str, total: int, every_s: float = 10.0,
               clock: Callable[[], float] = time.perf_counter):
    self.prefix = f"{name} {split}"
    self.total = total
    self.every_s = every_s
    self._clock = clock
    self._start = clock()
    self._first: tuple[int, float] | None = None  # (done, time) at the first batch
    self._last_line = self._start

  def start_line(self, resolution: int) -> str:
    return f"{self.prefix}: rendering {self.total} examples at {resolution} px"

  def update(self, done: int) -> str | None:
    now = self._clock()
    finished = done >= self.total
    if self._first is not None and not finished and now - self._last_line < self.every_s:
      return None
    if self._first is None:
      self._first = (done, now)
      rate = done / max(now - self._start, 1e-9)
    elif done > self._first[0] and now > self._first[1]:
      rate = (done - self._first[0]) / (now - self._first[1])
    else:
      rate = done / max(now - self._start, 1e-9)
    self._last_line = now
    head = (f"{self.prefix}: {done}/{self.total} examples ({100 * done / self.total:.0f}%), "
            f"{rate:.1f} examples/s")
    if finished:
      return f"{head}, done in {_clock_text(now - self._start)}"
    return f"{head}, ETA {_clock_text((self.total - done) / rate)}"


@dataclasses.dataclass(eq=False)
class SyntheticHandsConfig(tfds.core.BuilderConfig):
  """Resolution, split sizes, appearance style and seed of one `synthetic_hands` variant."""
  resolution: int = 128
  num_train: int = 20_000
  num_test: int = 2_000
  style: str = "default"
  seed: int = 0
  batch_size: int = 64
  num_points: int = synthetic.render.NUM_POINTS
  # Examples per ArrayRecord shard, a multiple of batch_size. tfds holds one shard's examples in
  # memory while writing it: ~0.15 GB at 128 px, ~0.55 GB at 256 px with 1024.
  examples_per_shard: int = 1024
  # 0: independent examples. k > 0: content groups of k consecutive examples sharing background,
  # skin, lighting and camera noise (`synthetic.groups`; the dVAE's tag supervision, dissertation
  # Sec. 4.3.3); `content_id` is the group index.
  group_size: int = 0


def _config(name: str, resolution: int, num_train: int, num_test: int, style: str = "default",
            description: str = "", batch_size: int = 64,
            examples_per_shard: int = 1024, group_size: int = 0) -> SyntheticHandsConfig:
  if examples_per_shard % batch_size:
    raise ValueError(f"synthetic_hands/{name}: examples_per_shard={examples_per_shard} must be a "
                     f"multiple of batch_size={batch_size}")
  if group_size and (batch_size % group_size or num_train % group_size or num_test % group_size):
    raise ValueError(f"synthetic_hands/{name}: group_size={group_size} must divide batch_size and "
                     "both split sizes")
  return SyntheticHandsConfig(
      name=name, resolution=resolution, num_train=num_train, num_test=num_test, style=style,
      batch_size=batch_size, examples_per_shard=examples_per_shard, group_size=group_size,
      description=description or f"{style} style, {resolution} px, {num_train}/{num_test} examples")


class SyntheticHands(tfds.core.ShardBasedBuilder):
  """Procedural RHD-like hands: RGB, depth, part mask, 3D/2D keypoints, visibility, point cloud."""

  VERSION = tfds.core.Version("1.3.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release.",
      "1.1.0": "Written shard by shard (any split size prepares without TensorFlow); the CPU "
               "renderer draws examples one by one: same scenes, float rounding differs (about "
               "1e-4 of mask pixels).",
      "1.2.0": "`content_id` feature; grouped configs (tiny_groups, groups_64, groups_128). "
               "Other keys as 1.1.0.",
      "1.3.0": "Scenes as the public datasets' crops show hands (style 'natural': palm or back "
               "towards the camera, fingers up the image, the hand filling 60-95% of the frame) "
               "for quickstart, default_*, large_128, groups_* and shifted_*; 1.2.0's scenes "
               "are the uniform_* configs (same examples as 1.2.0's default_* / quickstart).",
  }
  BUILDER_CONFIGS = [
      _config("tiny", 32, 16, 8, description="32 px, 16/8 examples: tests", batch_size=8,
              examples_per_shard=8),
      _config("tiny_groups", 32, 16, 8, batch_size=8, examples_per_shard=8, group_size=4,
              description="32 px, 16/8 examples in content groups of 4: tests"),
      _config("groups_64", 64, 4_000, 400, style="natural", group_size=8,
              description="64 px, 4000/400 examples in content groups of 8 (dVAE tag images)"),
      _config("groups_128", 128, 20_000, 2_000, style="natural", group_size=8,
              description="128 px, 20000/2000 examples in content groups of 8 (dVAE tag images)"),
      _config("quickstart", 64, 4_000, 400, style="natural",
              description="64 px, 4000/400 examples: a first run"),
      _config("default_64", 64, 20_000, 2_000, style="natural"),
      # Examples are keyed by (seed, split, index): its first 20,000 training examples and all
      # 2,000 test examples are default_64's, so it measures the training-set size alone.
      _config("default_64_40k", 64, 40_000, 2_000, style="natural",
              description="default_64 with twice the training examples (the same test split)"),
      _config("default_128", 128, 20_000, 2_000, style="natural"),
      _config("default_256", 256, 20_000, 2_000, style="natural"),
      _config("large_128", 128, 200_000, 5_000, style="natural"),
      _config("shifted_quickstart", 64, 4_000, 400, style="natural_shifted",
              description="quickstart in the shifted style: the CPU-scale target domain"),
      _config("shifted_64", 64, 20_000, 2_000, style="natural_shifted"),
      _config("shifted_128", 128, 20_000, 2_000, style="natural_shifted"),
      _config("shifted_256", 256, 20_000, 2_000, style="natural_shifted"),
      # Builder 1.2.0's scenes (any viewpoint, hands 14-43 px across at 64 px): a harder task.
      _config("uniform_quickstart", 64, 4_000, 400,
              description="quickstart with 1.2.0's scenes: uniform viewpoints, small hands"),
      _config("uniform_64", 64, 20_000, 2_000),
      _config("uniform_128", 128, 20_000, 2_000),
      _config("uniform_shifted_quickstart", 64, 4_000, 400, style="shifted",
              description="shifted_quickstart with 1.2.0's scenes"),
      # The diagnostics suite: quickstart with one factor of the natural scenes undone.
      *[_config(f"diag_{style}", 64, 4_000, 400, style=style,
                description=f"quickstart in style {style!r}: the diagnostics suite")
        for style in ("natural_uniform_view", "natural_any_roll", "natural_small_hand",
                      "natural_clean")],
      # The same 4000 + 400 scenes as quickstart (examples are keyed by seed, split and index,
      # not by resolution), rendered at 128 px: the suite's input-resolution rows.
      _config("diag_natural_128", 128, 4_000, 400, style="natural",
              description="quickstart's scenes at 128 px: the diagnostics suite's resolution rows"),
  ]
  DEFAULT_CONFIG_NAME = "default_128"

  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path | None:
    # tfds's default probes `importlib_resources` (not installed, not needed: no checksums file).
    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return epath.Path(path) if path else None

  def _info(self) -> tfds.core.DatasetInfo:
    res = self.builder_config.resolution
    n = skeleton.NUM_JOINTS
    tensor = tfds.features.Tensor
    features = tfds.features.FeaturesDict({
        "index": tfds.features.Scalar(dtype=np.int64),
        "image": tensor(shape=(res, res, 3), dtype=np.uint8, encoding=_ZLIB),
        "depth": tensor(shape=(res, res, 1), dtype=np.float32, encoding=_ZLIB),
        "mask": tensor(shape=(res, res, 1), dtype=np.uint8, encoding=_ZLIB),
        "pose3d": tensor(shape=(n, 3), dtype=np.float32),
        "uv": tensor(shape=(n, 2), dtype=np.float32),
        "visible": tensor(shape=(n,), dtype=np.bool_),
        "K": tensor(shape=(3, 3), dtype=np.float32),
        "hand_side": tfds.features.Scalar(dtype=np.int32),
        "points": tensor(shape=(self.builder_config.num_points, 3), dtype=np.float32),
        "canonical_pose": tensor(shape=(n, 3), dtype=np.float32),
        "viewpoint": tensor(shape=(3, 3), dtype=np.float32),
        "content_id": tfds.features.Scalar(dtype=np.int64),
    })
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=features,
        disable_shuffling=True,  # Keeps data-source index == example index.
        homepage="https://github.com/handjax/handjax",
    )

  def _shard_iterators_per_split(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    step = cfg.examples_per_shard
    return {
        split: [functools.partial(self._generate_examples, split, start, min(start + step, n))
                for start in range(0, n, step)]
        for split, n in (("train", cfg.num_train), ("test", cfg.num_test))
    }

  def _generate_examples(self, split: str, begin: int, end: int) -> Iterator[tuple[int, dict]]:
    """Examples begin .. end-1 of `split`, rendered in full batches of `batch_size`.

    Shards are generated in order in this process (tfds without Beam), so one `RenderProgress`
    per split, made when its first shard starts, follows the whole split.
    """
    cfg = self.builder_config
    if begin == 0:
      total = cfg.num_train if split == "train" else cfg.num_test
      self._progress = RenderProgress(f"synthetic_hands/{cfg.name}", split, total, clock=_clock)
      log.info("%s", self._progress.start_line(cfg.resolution))
    for start in range(begin, end, cfg.batch_size):
      # Always full batches (one compilation); the surplus of the last one is dropped.
      if cfg.group_size:
        batch = groups.render_groups(
            cfg.seed, start // cfg.group_size, cfg.batch_size // cfg.group_size, cfg.group_size,
            cfg.resolution, cfg.style, split, num_points=cfg.num_points)
      else:
        batch = synthetic.render_batch(cfg.seed, start, cfg.batch_size, cfg.resolution, cfg.style,
                                       split, num_points=cfg.num_points)
        batch["content_id"] = np.arange(start, start + cfg.batch_size)  # Each its own content.
      for i in range(min(cfg.batch_size, end - start)):
        example = {k: v[i] for k, v in batch.items()}
        example["index"] = start + i
        yield start + i, example
      progress = getattr(self, "_progress", None)
      if progress is not None and (line := progress.update(min(start + cfg.batch_size, end))):
        log.info("%s", line)
