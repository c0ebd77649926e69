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
absl's ``--logger_levels=name:LEVEL,...`` still sets the loggers it names (``absl:INFO``: the INFO
records of orbax, grain and tfds, which all log through absl's logger).
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


def verbosity_level() -> int:
  """absl's ``--verbosity`` as a python logging level (0 -> INFO, 1 -> DEBUG, -1 -> WARNING)."""
  value = flags.FLAGS["verbosity"].value
  if value <= absl_logging.converter.ABSL_DEBUG:
    return absl_logging.converter.absl_to_standard(value)
  return logging.DEBUG - (value - 1)  # vlog levels, as absl maps them


def quiet_library_logs(level: int, show_library: bool = False) -> None:
  """Library records below WARNING are dropped; handjax's keep ``level``.

  Args:
    level: the python level of ``--verbosity`` (INFO unless given).
    show_library: keep every logger at ``level`` (``--log_library``).
  """
  for name in OWN_LOGGERS:
    logging.getLogger(name).setLevel(level)
  quiet = not show_library and level > logging.DEBUG
  logging.getLogger().setLevel(max(level, logging.WARNING) if quiet else level)
  # absl's logger (orbax, grain, tfds) inherits the root's level, even where a library called
  # absl.logging.set_verbosity when imported.
  absl_logging.get_absl_logger().setLevel(logging.NOTSET)
  # absl's --logger_levels=name:LEVEL,... still decides for the loggers it names.
  if "logger_levels" in flags.FLAGS:
    for name, named_level in flags.FLAGS["logger_levels"].value.items():
      logging.getLogger(name).setLevel(named_level)


def run(main: Callable[[Sequence[str]], None],
        flags_parser: Callable[[Sequence[str]], list[str]] | None = None) -> None:
  """``absl.app.run(main)`` with library logs quietened (``--log_library`` restores them)."""

  def quiet_main(argv: Sequence[str]) -> None:
    quiet_library_logs(verbosity_level(), _LOG_LIBRARY.value)
    main(argv)

  if flags_parser is None:
    app.run(quiet_main)
  else:
    app.run(quiet_main, flags_parser=flags_parser)
