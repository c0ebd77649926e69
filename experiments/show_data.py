r"""Writes a grid of examples before and after the train-time transforms of handjax.data.pipeline.

    python -m experiments.show_data --dataset=synthetic_hands --out=samples.png
    python -m experiments.show_data --dataset=synthetic_hands --builder_config=tiny --out=s.png
    python -m experiments.show_data --render --out=samples.png   # synthetic, no tfds preparation

One row per example; columns: image + 2D skeleton, depth, mask, point cloud (x, y in the camera
frame, coloured by depth z), first as stored ("before") and then after crop + augmentation +
targets ("after"), exactly as `make_dataset` produces them for the train split. Skeletons are
drawn with handjax.eval.plots.draw_hand_2d.
"""

from __future__ import annotations

from typing import Any, Sequence

from absl import app
from absl import flags
import numpy as np

from experiments import cli
from handjax.data import pipeline

_DATASET = flags.DEFINE_string("dataset", "synthetic_hands", "tfds builder name.")
_BUILDER_CONFIG = flags.DEFINE_string(
    "builder_config", None, "tfds builder config, e.g. synthetic_hands 'tiny' or 'quickstart' "
    "(default: the builder's default, which renders 22k examples on first use).")
_SPLIT = flags.DEFINE_string("split", "train", "Split to show.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "Manual download dir (RHD, STB, FreiHAND).")
_OUT = flags.DEFINE_string("out", "samples.png", "Output PNG.")
_NUM = flags.DEFINE_integer("num", 4, "Number of examples (rows).")
_SEED = flags.DEFINE_integer("seed", 0, "Augmentation seed.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 128, "Network input size after the crop.")
_RENDER = flags.DEFINE_bool(
    "render", False, "synthetic_hands only: render examples directly with "
    "handjax.data.synthetic.render_batch instead of preparing the tfds dataset.")
_RESOLUTION = flags.DEFINE_integer("resolution", 128, "Render resolution with --render.")


def _rendered_source(num: int, resolution: int) -> list[dict[str, np.ndarray]]:
  from handjax.data.synthetic import render_batch  # pylint: disable=g-import-not-at-top

  batch = render_batch(seed=0, start=0, batch_size=num, resolution=resolution)
  return [{k: v[i] for k, v in batch.items()} for i in range(num)]


def _panels(axes: Sequence[Any], image, uv, visible, depth, mask, points) -> None:
  from handjax.eval import plots  # pylint: disable=g-import-not-at-top

  plots.draw_hand_2d(axes[0], image)
  plots.draw_skeleton_2d(axes[0], uv, visible=visible)
  depth = np.squeeze(np.asarray(depth), -1) if np.ndim(depth) == 3 else np.asarray(depth)
  shown = np.where(depth > 0, depth, np.nan)
  axes[1].imshow(shown, cmap="viridis", interpolation="nearest")
  mask = np.squeeze(np.asarray(mask), -1) if np.ndim(mask) == 3 else np.asarray(mask)
  axes[2].imshow(mask, cmap="tab20", vmin=0, vmax=19, interpolation="nearest")
  points = np.asarray(points)
  points = points[points[:, 2] > 0]
  axes[3].scatter(points[:, 0], points[:, 1], c=points[:, 2], s=2, cmap="viridis")
  axes[3].set_aspect("equal")
  axes[3].invert_yaxis()  # camera y points down
  for ax in axes[1:3]:
    ax.set_axis_off()
  axes[3].tick_params(labelsize=5)


def main(argv: Sequence[str]) -> None:
  del argv
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  config = pipeline.default_data_config()
  config.dataset = _DATASET.value
  config.builder_config = _BUILDER_CONFIG.value
  config.data_dir = _DATA_DIR.value
  config.manual_dir = _MANUAL_DIR.value
  config.image_size = _IMAGE_SIZE.value
  config.augment.flip_prob = 0.5
  if _RENDER.value:
    if _DATASET.value != "synthetic_hands":
      raise app.UsageError("--render only works with --dataset=synthetic_hands")
    source = _rendered_source(_NUM.value, _RESOLUTION.value)
  else:
    source = pipeline.load_source(config, _SPLIT.value)
  process = pipeline.ProcessExample(config, augment=True)
  titles = ["image", "depth", "mask", "points (z)"]
  fig, axes = plt.subplots(_NUM.value, 8, figsize=(16, 2.1 * _NUM.value), squeeze=False)
  for row in range(_NUM.value):
    raw = {k: np.asarray(v) for k, v in source[row].items()}
    after = process.random_map(dict(raw), np.random.default_rng([_SEED.value, row]))
    _panels(axes[row, :4], raw["image"], raw["uv"], raw.get("visible"), raw["depth"], raw["mask"],
            raw["points"])
    _panels(axes[row, 4:], after["image"], after["uv"], after["visible"], after["depth"],
            after["mask"], after["points"])
    if row == 0:
      for col in range(8):
        prefix = "before: " if col < 4 else "after: "
        axes[row, col].set_title(prefix + titles[col % 4], fontsize=8)
  fig.tight_layout()
  fig.savefig(_OUT.value, dpi=100)
  print(f"wrote {_OUT.value}")


if __name__ == "__main__":
  cli.run(main)
