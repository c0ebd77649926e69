r"""Evaluates the latest checkpoint of a workdir on a whole split.

    python -m experiments.evaluate --workdir=/tmp/toy [--split=test] [--checkpoint_step=N]

Uses the newest checkpoint that restores (a damaged newer one is skipped with a warning naming
it) or the one of --checkpoint_step, and prints the step it used.

Prints mean/median EPE and AUC over 20-50 mm in both conventions (31 thresholds 20..50 mm, and the
reference script's linspace(0, 50, 20)[8:] = 21.05..50 mm), and writes to <workdir>/eval_<split>/:
summary.json, pck.png and skeletons.png (predicted, dashed, vs ground truth, solid, in 3D).
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app
from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a training run.")
_SPLIT = flags.DEFINE_string("split", "test", "Split to evaluate.")
_NUM_SKELETONS = flags.DEFINE_integer("num_skeletons", 8, "Examples in the skeleton grid.")
_CHECKPOINT_STEP = flags.DEFINE_integer(
    "checkpoint_step", None, "Evaluate this step's checkpoint (default: the newest that restores; "
    "a damaged newer one is skipped with a warning).")
flags.mark_flags_as_required(["workdir"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from handjax.train import checkpoint, inference  # pylint: disable=g-import-not-at-top

  try:
    inference.evaluate_workdir(_WORKDIR.value, _SPLIT.value, _NUM_SKELETONS.value,
                               step=_CHECKPOINT_STEP.value)
  except (checkpoint.CheckpointError, FileNotFoundError, ValueError, KeyError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  cli.run(main)
