"""What every handjax binary shares: ``run(main)``, which keeps library logs quiet.

By default a binary prints only its own lines (the config, progress, results, warnings, errors).
orbax, grain, tfds and jax log INFO records through absl or python logging at every checkpoint
save and restore and every dataset step (``predict`` printed 45 orbax lines around its one line
of output); below WARNING these are dropped unless ``--log_library`` is given, or absl's
``--verbosity`` is 1 or more (debug), which shows everything as absl does.

How: handjax modules log through python loggers under ``handjax`` (``logging.getLogger(__name__)``);
libraries through absl's ``absl`` logger or loggers of their own. All propagate to the root logger,
where absl's handler writes to stderr. :func:`quiet_library_logs` raises the root logger (which
the others inherit their level from) to WARNING and gives the ``handjax`` logger the level of
``--verbosity`` (INFO by default), so ``--verbosity=-1`` silences handjax's INFO lines too.
absl's ``--logger_levels=name:LEVEL,...`` still sets single loggers.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

from absl import app
from absl import flags
from absl import logging as absl_logging

_LOG_LIBRARY = flags.DEFINE_bool(
    "log_library", False,
    "Also show the INFO logs of libraries (orbax, grain, tfds, jax). By default only their "
    "warnings and errors are shown, next to handjax's own lines; --verbosity=1 shows everything.")

# Loggers of handjax itself (the library and the experiment binaries), kept at --verbosity.
OWN_LOGGERS = ("handjax", "experiments", "__main__")


def quiet_library_logs(show_library: bool = False) -> None:
  """Library records below WARNING are dropped; handjax's keep absl's ``--verbosity`` level.

  Call after absl parsed the flags (``run`` does); absl has then set the root level to
  ``--verbosity`` (INFO unless given).

  Args:
    show_library: keep every logger at ``--verbosity`` (``--log_library``).
  """
  level = absl_logging.get_absl_logger().getEffectiveLevel()  # --verbosity as a python level
  for name in OWN_LOGGERS:
    logging.getLogger(name).setLevel(level)
  if not show_library and level > logging.DEBUG:
    logging.getLogger().setLevel(max(level, logging.WARNING))


def run(main: Callable[[Sequence[str]], None],
        flags_parser: Callable[[Sequence[str]], list[str]] | None = None) -> None:
  """``absl.app.run(main)`` with library logs quietened (``--log_library`` restores them)."""

  def quiet_main(argv: Sequence[str]) -> None:
    quiet_library_logs(_LOG_LIBRARY.value)
    main(argv)

  if flags_parser is None:
    app.run(quiet_main)
  else:
    app.run(quiet_main, flags_parser=flags_parser)
