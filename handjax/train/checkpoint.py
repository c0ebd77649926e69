"""orbax checkpoints of the train state, the grain iterator state and the config.

One ``ocp.CheckpointManager`` per workdir (``<workdir>/checkpoints``) holding, per step, a composite
of three items:

- ``state``: the :class:`~handjax.train.state.TrainState` (``StandardSave``/``StandardRestore``,
  restored directly into the replicated sharding);
- ``data``: the grain iterator state, one JSON file per process (``grain.checkpoint`` handler), so
  every process resumes its own shard at the same position;
- ``config``: the run's config as JSON (``JsonSave``), read back by ``experiments.evaluate``;
- ``labels`` (only for methods with ``label_rounds``): the current round's label store
  (:meth:`handjax.train.label_store.LabelStore.to_tree`, numpy arrays), so a resumed run finishes
  the round with the labels the uninterrupted run used.

orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest valid one; the training ``Checkpointer``
(``cleanup_tmp=True``) removes such temporary directories when the next run starts.

Faults are reported as :class:`CheckpointError` s that name the directory and the cause in one line:

- :class:`DamagedCheckpointError`: a step that does not restore (a truncated or missing file). A
  restore that fails only because the *target* differs (the config changed the model) is not damage:
  the step is probed without a target, and if that works the original error is raised unchanged.
  :func:`restore_newest` walks back to the newest step that restores, warning about each damaged
  one; the trainer also moves the damaged ones aside (``<workdir>/damaged_checkpoints/<step>``)
  without deleting them, so they can be inspected and the next save of that step does not collide.
- :class:`SaveError`: an (asynchronous) save that failed, with its step, its directory, the cause
  and the last good checkpoint. :meth:`Checkpointer.check` finds a failed background save as soon
  as it has finished (single process; see the method).
"""

from __future__ import annotations

import json
import logging as std_logging
import os
import shutil
import sys
import warnings
from typing import Any, Callable, TypeVar

from absl import logging
import grain
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"
DAMAGED_DIR = "damaged_checkpoints"
ITEMS = ("state", "data", "config", "labels")
T = TypeVar("T")


class CheckpointError(RuntimeError):
  """A checkpoint that cannot be read or written; the message is one line naming the directory."""


class DamagedCheckpointError(CheckpointError):
  """A checkpoint directory whose files do not restore (truncated, missing or corrupt)."""

  def __init__(self, directory: str, cause: BaseException | str, message: str | None = None):
    self.directory = directory
    super().__init__(message or f"checkpoint {directory} is damaged: it does not restore "
                     f"({short_cause(cause)})")


class SaveError(CheckpointError):
  """A save that failed; names the step, the directory, the cause and the last good checkpoint."""

  def __init__(self, step: int, directory: str, cause: BaseException, last_good: str | None):
    self.step = step
    self.directory = directory
    self.last_good = last_good
    kept = (f"the last good checkpoint is {last_good}" if last_good
            else "there is no earlier checkpoint")
    super().__init__(f"saving the checkpoint of step {step} to {directory} failed "
                     f"({short_cause(cause)}); training stopped, {kept}")


def short_cause(cause: BaseException | str, limit: int = 400) -> str:
  """A one-line, bounded description of an exception (tensorstore errors run to kilobytes).

  Args:
    cause: the exception (or a ready message).
    limit: maximum characters kept.

  Returns:
    ``"Type: first line"``, cut before tensorstore's JSON spec; of a chain of tensorstore contexts
    only the first (the status) and the last two (the file and the reason) are kept.
  """
  if isinstance(cause, str):
    text = cause
  else:
    message = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    text = f"{type(cause).__name__}: {message}" if message else type(cause).__name__
  text = text.split(" [tensorstore_spec")[0]
  parts = text.split(": ")
  if len(parts) > 4:  # "Type: CODE: Error opening ...: ...: <file>: <reason>": keep both ends.
    text = ": ".join(parts[:2] + ["..."] + parts[-2:])
  return text if len(text) <= limit else text[:limit - 3] + "..."


class _QuietAsyncio:
  """Silences the ``asyncio`` logger while a restore may fail: orbax leaves the failed read
  tasks of a damaged checkpoint unretrieved, and asyncio would log each with its traceback."""

  def __enter__(self) -> None:
    _ignore_closed_loop_callbacks()
    _drop_orphaned_read_errors()
    self._logger = std_logging.getLogger("asyncio")
    self._level = self._logger.level
    self._logger.setLevel(std_logging.CRITICAL)

  def __exit__(self, *exc: Any) -> None:
    self._logger.setLevel(self._level)


def _ignore_closed_loop_callbacks() -> None:
  """Drops the ``RuntimeError('Event loop is closed')`` reports of a failed restore.

  orbax restores in a fresh asyncio loop and closes it when a read fails; tensorstore's other,
  still running reads then call back into the closed loop, and each report would print a
  traceback to stderr (19 for two damaged toy checkpoints), some after the restore has raised.
  Every other unraisable exception goes to the previous hook. Installed once, by the first restore.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_handjax_closed_loop_filter", False):
    return

  def hook(unraisable: Any) -> None:
    if not (isinstance(unraisable.exc_value, RuntimeError)
            and str(unraisable.exc_value) == "Event loop is closed"):
      previous(unraisable)

  hook._handjax_closed_loop_filter = True  # pylint: disable=protected-access
  sys.unraisablehook = hook


class _DropOrphanedReadErrors(std_logging.Filter):
  """Drops asyncio's "Task/Future exception was never retrieved" reports of failed reads.

  The level set by :class:`_QuietAsyncio` does not reach them: asyncio logs an unretrieved task
  error when the task is garbage collected, which can be after the restore has raised (often at
  interpreter exit, after the one-line error). Only errors of tensorstore reads (their message
  carries ``tensorstore_spec``) or of orbax coroutines are dropped; every other report stays.
  """

  def filter(self, record: std_logging.LogRecord) -> bool:
    if str(record.msg).split("\n", 1)[0] not in ("Task exception was never retrieved",
                                               "Future exception was never retrieved"):
      return True
    error = record.exc_info[1] if record.exc_info else None
    return not ("tensorstore_spec" in str(error)
                or f"{os.sep}orbax{os.sep}" in record.getMessage())


def _drop_orphaned_read_errors() -> None:
  """Installs :class:`_DropOrphanedReadErrors` on the asyncio logger (once), and ignores the
  "never awaited" warning of orbax's metadata reads that a failed restore leaves behind."""
  asyncio_logger = std_logging.getLogger("asyncio")
  if not any(isinstance(f, _DropOrphanedReadErrors) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_DropOrphanedReadErrors())
    warnings.filterwarnings("ignore", category=RuntimeWarning,
                            message=r"coroutine 'Store\._get_array_metadatas' was never awaited")


class _DropOrbaxTracebacks(std_logging.Filter):
  """Keeps orbax's error lines but drops their tracebacks (three per failed save, ~190 lines):
  the failure reaches the caller as one :class:`SaveError` line with the same cause."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    if record.exc_info and f"{os.sep}orbax{os.sep}" in (record.pathname or ""):
      record.exc_info = None
      record.exc_text = None
    return True


def _install_orbax_traceback_filter() -> None:
  absl_logger = logging.get_absl_logger()
  if not any(isinstance(f, _DropOrbaxTracebacks) for f in absl_logger.filters):
    absl_logger.addFilter(_DropOrbaxTracebacks())


def _wait_for_orphaned_writes(manager: ocp.CheckpointManager, timeout_s: float = 120.0) -> None:
  """Waits for the other item writes of a failed save (their errors are not wanted).

  orbax's background save waits for its items' commit futures one by one and gives up at the first
  failure, so the other items (e.g. the state's tensorstore writes) keep writing into the failed
  step's temporary directory. A next run in the same process would then race them while it removes
  that directory. The futures are private orbax attributes: when they are not found, nothing waits.
  """
  async_manager = getattr(getattr(manager, "_checkpointer", None), "_async_manager", None)
  for commit in getattr(async_manager, "_commit_futures", None) or ():
    try:
      commit.result(timeout=timeout_s)
    except Exception:  # pylint: disable=broad-except
      pass


def checkpoint_directory(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)


class Checkpointer:
  """Periodic/final checkpoints in ``<workdir>/checkpoints``, keeping the last ``keep``.

  Args:
    workdir: the run's workdir.
    keep: how many checkpoints to keep.
    cleanup_tmp: remove temporary directories of unfinished saves (a killed or failed save) now.
      Only the trainer sets it: a reader must not delete a save another process is writing.
    read_only: never create, save, delete or clean up anything (evaluation, prediction).
  """

  def __init__(self, workdir: str, keep: int = 3, *, cleanup_tmp: bool = False,
               read_only: bool = False):
    self.workdir = os.path.abspath(workdir)
    self.directory = checkpoint_directory(workdir)
    # A reader only restores, which never writes or deletes; orbax's own read_only mode would
    # log three warnings per open, so it is not used.
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, create=not read_only,
        cleanup_tmp_directories=cleanup_tmp and not read_only)
    self.read_only = read_only
    _install_orbax_traceback_filter()
    self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
    self._pending: int | None = None  # The step of the save that may still be running.
    self._failed: SaveError | None = None

  def step_directory(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, data_iterator: Any | None,
           config: ml_collections.ConfigDict, labels: Any | None = None) -> None:
    """Saves (asynchronously) the state, the iterator position and the config at ``step``.

    ``labels``: an optional pytree of numpy arrays (the round's label store) saved with them.

    Raises:
      SaveError: this save could not start, or the previous asynchronous save failed.
    """
    if self.read_only:
      raise ValueError(f"{self.directory} was opened read-only; it cannot save.")
    items = {"state": ocp.args.StandardSave(state),
             "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort()))}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    if labels is not None:
      items["labels"] = ocp.args.StandardSave(labels)
    self.check(block=True)  # orbax would wait for the previous save anyway; name its failure.
    try:
      self.manager.save(step, args=ocp.args.Composite(**items), force=True)
    except Exception as e:  # pylint: disable=broad-except
      self._fail(step, e)
    self._pending = step

  def check(self, block: bool = False) -> None:
    """Raises :class:`SaveError` if the pending asynchronous save has failed.

    Without ``block`` it only looks once that save has finished (a lock-protected flag), so the
    loop can call it every step. In a multi-process run the save's end is not seen at the same step
    by every process, so only blocking checks (at the next save and at the end, where all processes
    wait together) report there; a non-blocking check is then a no-op.

    Args:
      block: wait for the pending save to finish first.
    """
    if self._failed is not None:
      raise self._failed
    if self._pending is None:
      return
    if not block and (jax.process_count() > 1 or self.manager.is_saving_in_progress()):
      return
    step, self._pending = self._pending, None
    try:
      self.manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except
      self._fail(step, e)

  def _fail(self, step: int, cause: BaseException) -> None:
    _wait_for_orphaned_writes(self.manager)
    try:
      self.manager.reload()  # Drops the failed step from the cached list; finished ones remain.
    except Exception:  # pylint: disable=broad-except
      pass  # An unreadable directory: the cached list (minus the failed step) is the best guess.
    good = [s for s in self.all_steps() if s != step]
    self._failed = SaveError(step, self.step_directory(step), cause,
                             self.step_directory(good[-1]) if good else None)
    raise self._failed from cause

  def restore(self, step: int, abstract_state: Any, data_iterator: Any | None) -> Any:
    """Restores the state into ``abstract_state``'s shardings and rewinds ``data_iterator``.

    Raises:
      DamagedCheckpointError: the step's files do not restore even without a target.
      Exception: orbax's own error when only the target differs (e.g. another model size).
    """
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    with _QuietAsyncio():
      try:
        return self.manager.restore(step, args=ocp.args.Composite(**items)).state
      except Exception as e:  # pylint: disable=broad-except
        damage = self._damage(step, data_iterator)
        if damage is None:
          raise
        raise DamagedCheckpointError(self.step_directory(step), damage) from e

  def _damage(self, step: int, data_iterator: Any | None) -> BaseException | None:
    """Why ``step`` does not restore without a target (its stored structure), or None if it does."""
    items = {"state": ocp.args.StandardRestore(), "config": ocp.args.JsonRestore()}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      self.manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      return e
    return None

  def restore_labels(self, step: int) -> Any | None:
    """The ``labels`` pytree saved at ``step`` (numpy arrays), or None if that step has none.

    Raises:
      DamagedCheckpointError: the step has a labels item that does not read.
    """
    if not os.path.isdir(os.path.join(self.step_directory(step), "labels")):
      return None
    restored = self._restore_or_damaged(step, labels=ocp.args.StandardRestore())
    return jax.tree.map(np.asarray, restored.labels)

  def _restore_or_damaged(self, step: int, **items: Any) -> Any:
    """Restores ``items`` of ``step``; any failure is :class:`DamagedCheckpointError`."""
    with _QuietAsyncio():
      try:
        return self.manager.restore(step, args=ocp.args.Composite(**items))
      except Exception as e:  # pylint: disable=broad-except
        raise DamagedCheckpointError(self.step_directory(step), e) from e

  def restore_config(self, step: int) -> ml_collections.ConfigDict:
    """The config stored at ``step``; :class:`DamagedCheckpointError` if it does not read."""
    restored = self._restore_or_damaged(step, config=ocp.args.JsonRestore())
    if not isinstance(restored.config, dict):
      raise DamagedCheckpointError(self.step_directory(step), "its config is not a JSON object")
    return ml_collections.ConfigDict(restored.config)

  def require_step(self, step: int) -> None:
    """Raises FileNotFoundError naming the available steps if ``step`` has no checkpoint."""
    if step not in self.all_steps():
      raise FileNotFoundError(f"{self.directory} has no complete checkpoint of step {step} "
                              f"(it has steps {self.all_steps()}).")

  def move_aside(self, step: int) -> str:
    """Moves the checkpoint of ``step`` to ``<workdir>/damaged_checkpoints/<step>[.n]``.

    Process 0 moves it; every process then waits for it, so none reads the old path again.

    Returns:
      The new path.
    """
    target = os.path.join(self.workdir, DAMAGED_DIR, str(step))
    n = 0
    while os.path.exists(target if n == 0 else f"{target}.{n}"):
      n += 1
    target = target if n == 0 else f"{target}.{n}"
    if jax.process_index() == 0:
      os.makedirs(os.path.dirname(target), exist_ok=True)
      shutil.move(self.step_directory(step), target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"handjax_move_aside_{step}")
    self.manager.reload()
    return target

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed; :class:`SaveError` if one failed."""
    self.check(block=True)

  def close(self) -> None:
    """Waits for the pending save (raising :class:`SaveError` if it failed) and closes the manager.

    A failure that was already raised is not raised again.
    """
    try:
      if self._failed is None:
        self.check(block=True)
    finally:
      try:
        self.manager.close()
      except Exception:  # pylint: disable=broad-except
        if self._failed is None:
          raise


def restore_newest(ckpt: Checkpointer, restore_step: Callable[[int], T], *,
                   move_aside: bool = False) -> tuple[int, T] | None:
  """Restores the newest step of ``ckpt`` that is not damaged.

  Each damaged step gets a warning naming its directory (and, with ``move_aside``, where it went)
  and the step tried next.

  Args:
    ckpt: the checkpointer.
    restore_step: ``step -> restored`` that raises :class:`DamagedCheckpointError` for a damaged
      step (any other error propagates).
    move_aside: move each damaged step to ``<workdir>/damaged_checkpoints`` (the trainer does; a
      reader such as evaluation only skips it).

  Returns:
    ``(step, restore_step(step))``, or None if ``ckpt`` has no checkpoint at all.

  Raises:
    DamagedCheckpointError: there are checkpoints but none restores.
  """
  steps = ckpt.all_steps()
  for i, step in reversed(list(enumerate(steps))):
    try:
      return step, restore_step(step)
    except DamagedCheckpointError as e:
      where = f"; moved it to {ckpt.move_aside(step)}" if move_aside else ""
      then = f"falling back to step {steps[i - 1]}" if i > 0 else "no older checkpoint is left"
      logging.warning("%s%s; %s.", e, where, then)
  if not steps:
    return None
  moved = (f" (moved to {os.path.join(ckpt.workdir, DAMAGED_DIR)}; a rerun starts from step 0)"
           if move_aside else "")
  raise DamagedCheckpointError(ckpt.directory, "", message=(
      f"no checkpoint in {ckpt.directory} restores: step(s) {', '.join(map(str, steps))} "
      f"are damaged{moved}"))


def load_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict:
  """The config stored with the latest (or given) checkpoint of ``workdir``."""
  ckpt = open_for_reading(workdir)
  try:
    if step is None:
      found = restore_newest(ckpt, ckpt.restore_config)
      if found is None:
        raise FileNotFoundError(f"{ckpt.directory!r} holds no complete checkpoint.")
      return found[1]
    ckpt.require_step(step)
    return ckpt.restore_config(step)
  finally:
    ckpt.close()


def open_for_reading(workdir: str) -> Checkpointer:
  """A read-only :class:`Checkpointer`; FileNotFoundError if ``workdir`` was never trained."""
  directory = checkpoint_directory(workdir)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoints in {directory!r}: train first with "
                            f"`python -m experiments.train --workdir={workdir} ...`.")
  return Checkpointer(workdir, read_only=True)
