"""Warm start: a new run initialised from another run's latest checkpoint (`config.init_from`).

Multi-stage schedules (Stergioulas et al., seed 004: disentanglement -> variational alignment ->
refinement) run as one command with phases, but each stage can also run alone from the checkpoint
of the stage before: set `config.init_from` to that run's workdir and zero the earlier stages. The
new run takes every parameter (and BatchNorm statistic) whose path and shape exist in the source
checkpoint; parameters the source lacks (e.g. stage 2's mappers) keep their fresh initialisation;
the step counter and the optimiser states start fresh. A path present in both with different
shapes is an error (a different network, not a warm start).
"""

from __future__ import annotations

import logging
from typing import Any

import jax

from handjax.train import inference
from handjax.train import state as state_lib

PyTree = Any
log = logging.getLogger(__name__)


def _by_path(tree: PyTree) -> dict[str, Any]:
  return {jax.tree_util.keystr(path): leaf
          for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


def merge_matching(target: PyTree, source: PyTree, what: str = "params"
                   ) -> tuple[PyTree, list[str], list[str]]:
  """`target` with every leaf replaced by `source`'s leaf of the same path.

  Returns (merged tree, loaded paths, paths kept from `target`).

  Raises:
    ValueError: a path exists in both with different shapes or dtypes.
  """
  available = _by_path(source)
  loaded, kept = [], []

  def pick(path, leaf):
    key = jax.tree_util.keystr(path)
    other = available.get(key)
    if other is None:
      kept.append(key)
      return leaf
    if other.shape != leaf.shape or other.dtype != leaf.dtype:
      raise ValueError(f"init_from: {what}{key} is {other.shape} {other.dtype} in the source "
                       f"checkpoint but {leaf.shape} {leaf.dtype} in this model")
    loaded.append(key)
    return jax.device_put(other, leaf.sharding) if hasattr(leaf, "sharding") else other

  merged = jax.tree_util.tree_map_with_path(pick, target)
  return merged, loaded, kept


def init_from(state: state_lib.TrainState, source_workdir: str, mesh: jax.sharding.Mesh
              ) -> state_lib.TrainState:
  """`state` (a fresh train state) with the parameters and model state of `source_workdir`.

  Raises:
    FileNotFoundError: `source_workdir` has no checkpoint.
    ValueError: no parameter matched, or a matching path has another shape.
  """
  source = inference.restore_latest(source_workdir, devices=list(mesh.devices.flat)).state
  params, loaded, kept = merge_matching(state.params, source.params, "params")
  if not loaded:
    raise ValueError(f"init_from: no parameter of {source_workdir} matches this model (its "
                     f"parameters: {sorted(_by_path(source.params))[:5]}...)")
  model_state, _, _ = merge_matching(state.model_state, source.model_state, "model_state")
  log.info("init_from %s: loaded %d parameter arrays, kept %d freshly initialised: %s",
           source_workdir, len(loaded), len(kept), kept)
  return state.replace(params=params, model_state=model_state)
