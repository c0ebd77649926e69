"""`synthetic_hands`: the procedural hand dataset as a tfds builder (ArrayRecord, no TensorFlow).

    import handjax.data  # registers the builder
    builder = tfds.builder("synthetic_hands/quickstart", data_dir=...)
    builder.download_and_prepare(file_format="array_record")
    train = builder.as_data_source()["train"]  # train[i] == render_batch(seed, i, 1, ...) of split "train"

Nothing is downloaded: `_generate_examples` renders batches with
`handjax.data.synthetic.render_batch`. Example i of a split is a pure function of (seed, split, i)
and is stored at index i (shuffling is disabled), so a data source index is the example index.
Tensors are stored raw (floats) or zlib-compressed (images, masks, depth), so reading needs no codec
and no TensorFlow. tfds writes into an `incomplete.*` directory and renames it when every split is
done, so an interrupted preparation leaves nothing half-written behind, and calling
`download_and_prepare` again on a prepared dataset does nothing.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from handjax.data import synthetic
from handjax.hand import skeleton

_ZLIB = tfds.features.Encoding.ZLIB


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


def _config(name: str, resolution: int, num_train: int, num_test: int, style: str = "default",
            description: str = "", batch_size: int = 64) -> SyntheticHandsConfig:
  return SyntheticHandsConfig(
      name=name, resolution=resolution, num_train=num_train, num_test=num_test, style=style,
      batch_size=batch_size,
      description=description or f"{style} style, {resolution} px, {num_train}/{num_test} examples")


class SyntheticHands(tfds.core.GeneratorBasedBuilder):
  """Procedural RHD-like hands: RGB, depth, part mask, 3D/2D keypoints, visibility, point cloud."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      _config("tiny", 32, 16, 8, description="32 px, 16/8 examples: tests", batch_size=8),
      _config("quickstart", 64, 4_000, 400, description="64 px, 4000/400 examples: a first run"),
      _config("default_64", 64, 20_000, 2_000),
      _config("default_128", 128, 20_000, 2_000),
      _config("default_256", 256, 20_000, 2_000),
      _config("large_128", 128, 200_000, 5_000),
      _config("shifted_64", 64, 20_000, 2_000, style="shifted"),
      _config("shifted_128", 128, 20_000, 2_000, style="shifted"),
      _config("shifted_256", 256, 20_000, 2_000, style="shifted"),
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
    })
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=features,
        disable_shuffling=True,  # Keeps data-source index == example index.
        homepage="https://github.com/handjax/handjax",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download.
    cfg = self.builder_config
    return {
        "train": self._generate_examples("train", cfg.num_train),
        "test": self._generate_examples("test", cfg.num_test),
    }

  def _generate_examples(self, split: str, num_examples: int) -> Iterator[tuple[int, dict]]:
    cfg = self.builder_config
    for start in range(0, num_examples, cfg.batch_size):
      # Always full batches (one compilation); the surplus of the last one is dropped.
      batch = synthetic.render_batch(cfg.seed, start, cfg.batch_size, cfg.resolution, cfg.style,
                                     split, num_points=cfg.num_points)
      for i in range(min(cfg.batch_size, num_examples - start)):
        example = {k: v[i] for k, v in batch.items()}
        example["index"] = start + i
        yield start + i, example
