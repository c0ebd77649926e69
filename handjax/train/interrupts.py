"""Stopping a run cleanly on SIGTERM/SIGINT: finish the step, checkpoint it, exit with a status.

SIGTERM is what a preemptible VM, SLURM or a TPU maintenance event sends before the kill; SIGINT is
Ctrl-C. :class:`StopSignals` turns either into a flag that the loop reads after each step
(:meth:`StopSignals.should_stop`); the loop then saves that step, waits for the save and raises
:class:`Interrupted`, which ``experiments/train.py`` prints as one line and turns into exit status
:data:`EXIT_STATUS`. A second SIGINT raises ``KeyboardInterrupt`` at once (a user who insists);
further SIGTERMs are ignored while the run is stopping (its save must not be cut short).

Several processes must stop at the *same* step, or the next collective hangs:

- With ``jax.distributed`` initialised, JAX's preemption sync manager owns SIGTERM (its C++
  notifier). Every process calls ``multihost_utils.reached_preemption_sync_point(step)`` each step;
  once any process got the notice, all agree on the step ``max(step over processes) + 1`` and stop
  there. SIGINT is forwarded to that notifier as a SIGTERM to this process.
- If that service is off (``jax_enable_preemption_service=False``), the processes agree through a
  tiny all-gather of their flags every ``sync_every`` steps (a host sync, hence not every step).
- A single process needs no agreement: it stops after the step during which the signal arrived.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType
from typing import Any

import jax
from jax.experimental import multihost_utils
import numpy as np

# sysexits.h EX_TEMPFAIL ("temporary failure; the user is invited to retry"): distinct from 0
# (the run is not finished), 1 (an error) and 143/130 (killed by SIGTERM/SIGINT without saving).
EXIT_STATUS = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Interrupted(Exception):
  """The run stopped on a signal after saving a checkpoint; rerunning the command resumes it."""

  def __init__(self, signal_name: str, step: int, checkpoint_dir: str):
    self.signal_name = signal_name
    self.step = step
    self.checkpoint_dir = checkpoint_dir
    super().__init__(f"{signal_name} received: stopped at step {step} and saved its checkpoint to "
                     f"{checkpoint_dir}; rerun the same command to resume.")


class StopSignals:
  """Context manager: SIGTERM/SIGINT set a stop flag instead of killing the process.

  Handlers are installed only in the main thread (Python allows no other); elsewhere the
  process keeps its default signal behaviour. The previous handlers are restored on exit.

  Args:
    sync_every: in a multi-process run without JAX's preemption service, the processes compare
      their flags every ``sync_every`` steps.
  """

  def __init__(self, sync_every: int = 1):
    self.sync_every = max(1, int(sync_every))
    self.received: str | None = None
    self._previous: dict[int, Any] = {}
    self._multi = False
    self._jax_sync = False

  def __enter__(self) -> StopSignals:
    return self.install()

  def __exit__(self, *exc: Any) -> None:
    self.uninstall()

  def install(self) -> StopSignals:
    """Installs the handlers (main thread only); returns self."""
    self._multi = jax.process_count() > 1
    self._jax_sync = self._multi and _jax_preemption_service()
    if threading.current_thread() is not threading.main_thread():
      return self
    # With JAX's preemption service its notifier keeps SIGTERM; we only forward SIGINT to it.
    for sig in (signal.SIGINT,) if self._jax_sync else SIGNALS:
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def uninstall(self) -> None:
    """Restores the handlers that were installed before :meth:`install`."""
    for sig, handler in self._previous.items():
      # None: the previous handler was not Python's (e.g. a C++ one); the default is the best left.
      signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    self._previous.clear()

  def _handle(self, signum: int, frame: FrameType | None) -> None:
    del frame
    if self.received is not None:
      if signum == signal.SIGINT:
        raise KeyboardInterrupt
      return
    self.received = signal.Signals(signum).name
    if self._jax_sync:  # Let JAX's notifier start the all-processes agreement.
      os.kill(os.getpid(), signal.SIGTERM)

  def should_stop(self, step: int) -> bool:
    """Whether the loop stops (and checkpoints) after ``step``; the same answer on every process.

    Args:
      step: the number of steps done so far (the step the checkpoint would get); every process
        must call this after every step with the same sequence of steps.
    """
    if not self._multi:
      return self.received is not None
    if self._jax_sync:
      stop = multihost_utils.reached_preemption_sync_point(step)
    elif step % self.sync_every == 0:
      flags = multihost_utils.process_allgather(np.int32(self.received is not None))
      stop = bool(np.max(flags))
    else:
      stop = False
    if stop and self.received is None:
      self.received = "SIGTERM (preemption notice)"
    return stop


def _jax_preemption_service() -> bool:
  """Whether ``jax.distributed`` runs JAX's preemption sync manager (it owns SIGTERM then)."""
  try:
    multihost_utils.reached_preemption_sync_point(0)
  except RuntimeError:
    return False
  return True
