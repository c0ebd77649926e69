r"""Gradual convergence of the predictions on target-domain images during adaptation (Fig. 6.9).

    python -m experiments.convergence --workdir=/tmp/semihand [--split=test] \
        [--num_examples=256] [--show=4] [--out=/tmp/convergence.png]

Yang dissertation Fig. 6.9 follows the predictions on unlabelled images from the pre-trained model
to the final one: arrows show how far each keypoint moves between fine-tuning iterations, and the
movement shrinks to zero as the pseudo-labels converge. This script does the same for a SemiHand or
dual-modality workdir, using every checkpoint it kept (train with, e.g.,
``--config.checkpoint_every=100 --config.keep_checkpoints=20``; one checkpoint is an error).

For each kept step, the method's own ``predict`` gives the 2D keypoints ("uv", image pixels) of the
first ``--num_examples`` images of the target domain's ``--split`` (the domain the run adapts to:
`synthetic_hands` in the shifted style, whose labels exist but are used here only to score). Per
step it reports, over visible joints:

* ``error_px``: mean 2D distance to the ground truth;
* ``pck_005``: fraction within 0.05 x the image side (`experiments.tables.pck_2d_at`);
* ``movement_px``: mean 2D distance to the previous kept step's prediction (the arrows' length;
  0 for the first step).

Output: ``<out>`` (default ``<workdir>/convergence.png``): ``--show`` images with every joint's
trajectory across steps (light to dark, ground truth as crosses) above the three curves; and
``<out>.json`` with the numbers.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence

from absl import app
from absl import flags
import numpy as np

from experiments import cli

METHODS = ("semihand", "dual_modality")


class ConvergenceError(ValueError):
  """A workdir or flag this script cannot use, with what was expected."""


def trajectory_stats(uv_steps: np.ndarray, uv_gt: np.ndarray, visible: np.ndarray | None,
                     image_size: int) -> dict[str, list[float]]:
  """Per-step error to the ground truth, PCK@0.05 and movement since the previous step.

  Args:
    uv_steps: (S, N, K, 2) predictions at S steps.
    uv_gt: (N, K, 2) ground truth.
    visible: (N, K) joints to count (all if None).
    image_size: side of the image in pixels (the PCK threshold is 0.05 of it).
  """
  from experiments import tables  # pylint: disable=g-import-not-at-top
  uv_steps, uv_gt = np.asarray(uv_steps, np.float64), np.asarray(uv_gt, np.float64)
  weight = np.ones(uv_gt.shape[:2]) if visible is None else np.asarray(visible, np.float64)
  total = max(float(weight.sum()), 1.0)

  def mean_distance(a, b):
    return float((np.linalg.norm(a - b, axis=-1) * weight).sum() / total)

  error = [mean_distance(uv, uv_gt) for uv in uv_steps]
  movement = [0.0] + [mean_distance(uv_steps[i], uv_steps[i - 1])
                      for i in range(1, len(uv_steps))]
  pck = [tables.pck_2d_at(uv, uv_gt, visible, image_size) for uv in uv_steps]
  return {"error_px": error, "pck_005": pck, "movement_px": movement}


def predictions_per_step(workdir: str, split: str, num_examples: int
                         ) -> tuple[list[int], np.ndarray, dict[str, np.ndarray]]:
  """(kept steps, (S, N, K, 2) uv per step, the examples' batch) of ``workdir``."""
  import jax  # pylint: disable=g-import-not-at-top
  from experiments import synthesize  # pylint: disable=g-import-not-at-top
  from experiments import tables  # pylint: disable=g-import-not-at-top
  from handjax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from handjax.train import inference  # pylint: disable=g-import-not-at-top

  ckpt = checkpoint_lib.Checkpointer(workdir)
  steps = ckpt.all_steps()
  ckpt.close()
  if len(steps) < 2:
    raise ConvergenceError(
        f"{workdir!r} keeps {len(steps)} checkpoint(s) ({steps}); the convergence needs two or "
        "more: train with --config.checkpoint_every=<k> --config.keep_checkpoints=<n>.")
  config = tables.eval_data_config(checkpoint_lib.load_config(workdir))
  if config.method not in METHODS:
    raise ConvergenceError(f"{workdir!r} trained method {config.method!r}; this script follows "
                           f"the pseudo-labels of {METHODS}.")
  examples = synthesize.collect_examples(config, split, num_examples)
  if "uv" not in examples:
    raise ConvergenceError(f"split {split!r} of {workdir!r} has no 'uv' labels to score against.")
  size = int(config.batch_size)
  batches = [synthesize.take(examples, np.arange(i, min(i + size, len(examples["uv"]))))
             for i in range(0, len(examples["uv"]), size)]
  uv, predict = [], None
  for step in steps:
    restored = inference.restore_latest(workdir, jax.devices()[:1], step=step)
    # One compiled predict for every step: the checkpoints differ only in their values.
    predict = predict or tables.jitted_predict(restored.method, ("uv",))
    uv.append(tables.predict_outputs(restored, batches, ("uv",), predict)["uv"])
  return steps, np.stack(uv), examples


def write_figure(path: str, steps: Sequence[int], uv_steps: np.ndarray, examples, stats,
                 show: int) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  show = min(show, uv_steps.shape[1])
  fig = plt.figure(figsize=(3 * max(show, 3), 6.2), dpi=100)
  grid = fig.add_gridspec(2, max(show, 3))
  colours = plt.get_cmap("viridis")(np.linspace(0.15, 0.95, len(steps)))
  for i in range(show):
    ax = fig.add_subplot(grid[0, i])
    ax.imshow(np.clip(examples["image"][i], 0.0, 1.0))
    for j in range(uv_steps.shape[2]):
      ax.plot(uv_steps[:, i, j, 0], uv_steps[:, i, j, 1], color="white", lw=0.6, alpha=0.6)
      ax.scatter(uv_steps[:, i, j, 0], uv_steps[:, i, j, 1], c=colours, s=6, zorder=3)
    ax.scatter(examples["uv"][i, :, 0], examples["uv"][i, :, 1], marker="x", c="red", s=10,
               zorder=4)
    ax.set_axis_off()
    ax.set_title(f"example {i}", fontsize=8)
  for col, (key, label) in enumerate((("error_px", "2D error to ground truth (px)"),
                                      ("movement_px", "movement since previous step (px)"),
                                      ("pck_005", "PCK@0.05"))):
    ax = fig.add_subplot(grid[1, col])
    ax.plot(steps, stats[key], marker="o", ms=3)
    ax.set_xlabel("training step")
    ax.set_title(label, fontsize=9)
    ax.grid(alpha=0.3)
  fig.suptitle("Predictions on target-domain images across training (light: early, dark: late; "
               "red x: ground truth)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def run(workdir: str, out: str | None = None, *, split: str = "test", num_examples: int = 256,
        show: int = 4) -> dict[str, object]:
  """Writes the figure and ``<out>.json``; returns the JSON's content."""
  steps, uv_steps, examples = predictions_per_step(workdir, split, num_examples)
  image_size = int(examples["image"].shape[1])
  stats = trajectory_stats(uv_steps, examples["uv"], examples.get("visible"), image_size)
  out = out or os.path.join(workdir, "convergence.png")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  write_figure(out, steps, uv_steps, examples, stats, show)
  result = {"workdir": workdir, "split": split, "num_examples": int(uv_steps.shape[1]),
            "steps": [int(s) for s in steps], **stats}
  with open(out + ".json", "w") as f:
    json.dump(result, f, indent=1)
  return result


def _define_flags() -> None:
  # Defined only when run as a binary (as `experiments.synthesize`), so importing this module adds
  # no global flags that could clash with another binary's --workdir.
  flags.DEFINE_string("workdir", None, "Run directory with two or more checkpoints.")
  flags.DEFINE_string("out", None, "Figure path (default <workdir>/convergence.png).")
  flags.DEFINE_string("split", "test", "Target-domain split to follow.")
  flags.DEFINE_integer("num_examples", 256, "Images scored per step.")
  flags.DEFINE_integer("show", 4, "Images drawn with their trajectories.")
  flags.mark_flags_as_required(["workdir"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    result = run(f.workdir, f.out, split=f.split, num_examples=f.num_examples, show=f.show)
  except (ConvergenceError, FileNotFoundError) as e:
    sys.exit(f"error: {e}")
  for i, step in enumerate(result["steps"]):
    print(f"step {step:6d}  error {result['error_px'][i]:6.2f} px  PCK@0.05 "
          f"{result['pck_005'][i]:.3f}  movement {result['movement_px'][i]:6.2f} px")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
