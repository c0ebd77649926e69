r"""Scene statistics of a hand dataset's examples: how big the hand is and which way it points.

    python -m experiments.scene_stats --builder_configs=quickstart,uniform_quickstart --num=1000

For each builder config (any tfds builder of handjax.data with `uv`, `visible`, `pose3d`): the
reference-crop side before clipping, 2 x the largest distance of a visible keypoint from the middle
MCP in pixels (specs/datasets.md), as percentiles and the fraction below the RHD clip of 50 px; and
the in-plane angle of the wrist -> middle MCP direction from "up" (camera -y), as the fraction
within 45 and 90 degrees. BUILD_NOTES.md ("synthetic_hands") quotes these for builder 1.3.0.
"""

from __future__ import annotations

from typing import Any, Sequence

from absl import app

from experiments import cli
from absl import flags
import numpy as np

from handjax.hand import skeleton



def define_flags() -> None:
  """The binary's flags, defined only when it runs, so that importing this module for its
  functions (tests) adds no global --data_dir next to `experiments.tables`' own."""
  flags.DEFINE_list("builder_configs", ["quickstart"], "Builder configs to summarise.")
  flags.DEFINE_string("dataset", "synthetic_hands", "tfds builder name.")
  flags.DEFINE_string("split", "train", "Split.")
  flags.DEFINE_integer("num", 1000, "Examples per config (the first ones of the split).")
  flags.DEFINE_string("data_dir", None, "tfds data_dir.")

PERCENTILES = (5, 25, 50, 75, 95)
MIDDLE_MCP = skeleton.MIDDLE_MCP


def crop_side_px(uv: np.ndarray, visible: np.ndarray) -> np.ndarray:
  """(N,) 2 x max over visible joints of |uv - uv[middle MCP]|_inf: the unclipped crop side."""
  offsets = np.abs(uv - uv[:, MIDDLE_MCP:MIDDLE_MCP + 1]).max(axis=-1)
  return 2.0 * np.where(visible, offsets, 0.0).max(axis=-1)


def roll_deg(pose3d: np.ndarray) -> np.ndarray:
  """(N,) angle of the wrist -> middle MCP direction in the image plane from camera -y, degrees."""
  d = pose3d[:, MIDDLE_MCP] - pose3d[:, skeleton.WRIST]
  return np.degrees(np.arctan2(d[:, 0], -d[:, 1]))


def summarize(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
  uv = np.stack([e["uv"] for e in examples])
  visible = np.stack([e["visible"] for e in examples]).astype(bool)
  pose3d = np.stack([e["pose3d"] for e in examples])
  side, roll = crop_side_px(uv, visible), np.abs(roll_deg(pose3d))
  return {"crop_side_percentiles_px": dict(zip(PERCENTILES, np.percentile(side, PERCENTILES))),
          "below_50px": float(np.mean(side < 50)), "roll_within_45": float(np.mean(roll < 45)),
          "roll_within_90": float(np.mean(roll < 90))}


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  import ml_collections  # pylint: disable=g-import-not-at-top
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  for name in f.builder_configs:
    config = ml_collections.ConfigDict(pipeline.default_data_config().to_dict())
    config.dataset, config.builder_config, config.data_dir = f.dataset, name, f.data_dir
    source = pipeline.load_source(config, f.split)
    s = summarize([source[i] for i in range(min(f.num, len(source)))])
    pct = " / ".join(f"{v:.1f}" for v in s["crop_side_percentiles_px"].values())
    print(f"{name}: crop side (2 x extent) p{'/'.join(map(str, PERCENTILES))} = {pct} px, "
          f"{100 * s['below_50px']:.1f}% below 50 px; wrist->middle MCP within 45 deg of up: "
          f"{100 * s['roll_within_45']:.0f}%, within 90 deg: {100 * s['roll_within_90']:.0f}%")


if __name__ == "__main__":
  define_flags()
  cli.run(main)
