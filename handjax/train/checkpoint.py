"""orbax checkpoints of the train state, the grain iterator state and the config.

One ``ocp.CheckpointManager`` per workdir (``<workdir>/checkpoints``) holding, per step, a composite
of three items:

- ``state``: the :class:`~handjax.train.state.TrainState` (``StandardSave``/``StandardRestore``,
  restored directly into the replicated sharding);
- ``data``: the grain iterator state, one JSON file per process (``grain.checkpoint`` handler), so
  every process resumes its own shard at the same position;
- ``config``: the run's config as JSON (``JsonSave``), read back by ``experiments.evaluate``.

orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint as the latest valid one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import grain
import ml_collections
import orbax.checkpoint as ocp

CHECKPOINT_DIR = "checkpoints"


class Checkpointer:
  """Periodic/final checkpoints in ``<workdir>/checkpoints``, keeping the last ``keep``."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options,
                                         item_names=("state", "data", "config"))

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def save(self, step: int, state: Any, data_iterator: Any | None,
           config: ml_collections.ConfigDict) -> None:
    """Saves (asynchronously) the state, the iterator position and the config at ``step``."""
    items = {"state": ocp.args.StandardSave(state),
             "config": ocp.args.JsonSave(json.loads(config.to_json_best_effort()))}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(data_iterator)
    self.manager.save(step, args=ocp.args.Composite(**items), force=True)

  def restore(self, step: int, abstract_state: Any, data_iterator: Any | None) -> Any:
    """Restores the state into ``abstract_state``'s shardings and rewinds ``data_iterator``."""
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    return self.manager.restore(step, args=ocp.args.Composite(**items)).state

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are committed."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()


def load_config(workdir: str, step: int | None = None) -> ml_collections.ConfigDict:
  """The config stored with the latest (or given) checkpoint of ``workdir``."""
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_DIR)
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"No checkpoints in {directory!r}: train first with "
                            f"`python -m experiments.train --workdir={workdir} ...`.")
  manager = ocp.CheckpointManager(directory, item_names=("state", "data", "config"))
  step = manager.latest_step() if step is None else step
  if step is None:
    raise FileNotFoundError(f"{directory!r} holds no complete checkpoint.")
  restored = manager.restore(step, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
  manager.close()
  return ml_collections.ConfigDict(restored.config)
