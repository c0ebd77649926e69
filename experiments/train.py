r"""Trains a method: the generic handjax loop on a config file.

    python -m experiments.train --config=experiments/configs/toy.py --workdir=/tmp/toy \
        [--config.num_steps=500 ...] [--distributed]

Prints the config, a progress line every `log_every` steps and the evaluations; library INFO
logs (orbax, grain, tfds) are shown with --log_library (experiments/cli.py). An out-of-range config
value (batch size, steps, learning rate, fractions, image size, builder config) is one line on
stderr and exit status 1 before any data is prepared (handjax/train/config_checks.py).

Resumes automatically from the latest checkpoint in --workdir that restores (a damaged newer one is
moved to <workdir>/damaged_checkpoints with a warning). On SIGTERM (preemption) or SIGINT it
finishes the current step, checkpoints it, prints one line and exits with status 75 (EX_TEMPFAIL);
rerunning the same command resumes. A failed save stops the run with one line naming the step, the
directory, the cause and the last good checkpoint (status 1). On a cluster (SLURM, Cloud TPU, or
JAX_COORDINATOR_ADDRESS set) or with --distributed, ``jax.distributed.initialize()`` runs first and
every process must be started with the same flags.
"""

from __future__ import annotations

import logging
import sys
from typing import Sequence

from absl import app
from absl import flags
from ml_collections import config_flags

from experiments import cli

log = logging.getLogger(__name__)  # shown by default, unlike library INFO logs (experiments/cli.py)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to an ml_collections config file (experiments/configs/*.py).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and figures.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() (multi-process runs). Detected "
    "automatically under SLURM, Open MPI, Cloud TPU or JAX_COORDINATOR_ADDRESS.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv: Sequence[str]) -> list[str]:
  """absl flag parsing where a bad ``--config.*`` override is a one-line flags error, not a traceback.

  ml_collections raises AttributeError/KeyError (with a "did you mean" hint) for an unknown field of
  a locked config, and TypeError/ValueError for a value of the wrong type.
  """
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    message = str(e)
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    detail = str(e.args[0] if e.args else e).strip("'\"").replace("\\'", "'").replace("\\n", " ")
    message = f"invalid --config override: {detail}"
  sys.exit(f"FATAL Flags parsing error: {message}\n"
           "Pass --helpshort or --helpfull to see help on flags.")


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  # Imported here so --help stays fast and distributed init precedes any backend use.
  import jax  # pylint: disable=g-import-not-at-top
  from handjax import train  # pylint: disable=g-import-not-at-top
  from handjax.train import checkpoint, config_checks, guards  # pylint: disable=g-import-not-at-top
  from handjax.train import interrupts, sharding  # pylint: disable=g-import-not-at-top
  from handjax.train import label_store  # pylint: disable=g-import-not-at-top

  sharding.maybe_initialize_distributed(_DISTRIBUTED.value)
  config = _CONFIG.value
  try:  # Before the config is printed, so that an invalid value is the one line on stderr.
    config_checks.validate(config, jax.process_count(), jax.device_count())
  except config_checks.ConfigError as e:
    sys.exit(f"error: {e}")
  log.info("Config:\n%s", str(config).rstrip())
  try:
    train.train_and_evaluate(config, _WORKDIR.value)
  except interrupts.Interrupted as e:  # SIGTERM/SIGINT: the step is saved; one line, own status.
    print(e, file=sys.stderr, flush=True)
    sys.exit(interrupts.EXIT_STATUS)
  except (checkpoint.CheckpointError, guards.NonFiniteError, guards.DataSpecError, PermissionError,
          NotADirectoryError, label_store.LabelStoreError) as e:
    # Expected failures (data/config mismatch, bad workdir, divergence, a damaged checkpoint, a
    # failed save) get one clear line, not a traceback; anything else is a bug and keeps its
    # traceback. sys.exit prints it to stderr once.
    sys.exit(f"error: {type(e).__name__}: {e}")


if __name__ == "__main__":
  cli.run(main, flags_parser=parse_flags)
