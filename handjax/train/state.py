"""Train state pytree, its sharded initialisation and the compiled per-phase train step."""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import optax

from handjax.train import method as method_lib
from handjax.train import sharding as sharding_lib

PyTree = Any


@flax.struct.dataclass
class TrainState:
  """Everything that changes during training, as one pytree (checkpointed as a whole).

  Attributes:
    step: int32 scalar, number of completed loop steps.
    params: the trained parameters (a Flax variable dict, ``{'params': ...}``).
    model_state: non-trained collections, e.g. ``{'batch_stats': ...}``; ``{}`` if none.
    opt_state: ``{phase name: optimiser state}``.
    rng: raw uint32 key data of the base training key (stored raw so any checkpoint format
      handles it); the key of step ``s`` is ``fold_in(base, s)``, so a resumed run draws the
      same numbers as an uninterrupted one.
  """

  step: jax.Array
  params: PyTree
  model_state: PyTree
  opt_state: dict[str, PyTree]
  rng: jax.Array


def step_key(state: TrainState, phase_index: int) -> jax.Array:
  """RNG of ``phase_index`` at the state's step: ``fold_in(fold_in(base, step), phase_index)``."""
  base = jax.random.wrap_key_data(state.rng)
  return jax.random.fold_in(jax.random.fold_in(base, state.step), phase_index)


def _init_fn(method: method_lib.Method, seed: int) -> Callable[[dict], TrainState]:
  def init(batch):
    init_rng, train_rng = jax.random.split(jax.random.key(seed))
    params, model_state = method.init(init_rng, batch)
    opt_state = {p.name: p.masked_optimizer(params).init(params) for p in method.phases}
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, model_state=model_state,
                      opt_state=opt_state, rng=jax.random.key_data(train_rng))

  return init


def train_state_shapes(method: method_lib.Method, seed: int, batch: dict[str, jax.Array],
                       mesh: Mesh) -> tuple[PyTree, PyTree]:
  """Abstract train state (``ShapeDtypeStruct`` leaves carrying their sharding) and the shardings.

  Shapes first: ``jax.eval_shape`` of the initialiser, no FLOPs, no memory. The abstract state is
  the target both of the sharded initialiser and of a checkpoint restore.
  """
  shapes = jax.eval_shape(_init_fn(method, seed), batch)
  shardings = jax.tree.map(lambda _: sharding_lib.replicated(mesh), shapes)
  return abstract_state(shapes, shardings), shardings


def create_train_state(method: method_lib.Method, seed: int, batch: dict[str, jax.Array],
                       mesh: Mesh) -> tuple[TrainState, PyTree]:
  """Initialises the train state directly into its (replicated) sharding.

  ``jax.eval_shape`` gives the abstract state, from which the shardings are derived; the jitted
  initialiser then writes each leaf straight into its sharding (``out_shardings``), so no full
  copy ever lives on one device first.

  Args:
    method: the method to initialise.
    seed: the run's seed; ``key(seed)`` is split into the init key and the base training key.
    batch: a (global, sharded) example batch used to infer parameter shapes.
    mesh: the data mesh.

  Returns:
    ``(state, state_shardings)``.
  """
  _, shardings = train_state_shapes(method, seed, batch, mesh)
  return jax.jit(_init_fn(method, seed), out_shardings=shardings)(batch), shardings


def abstract_state(state_shapes: PyTree, shardings: PyTree) -> PyTree:
  """``ShapeDtypeStruct`` tree with shardings, the restore target for orbax."""
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      state_shapes, shardings)


def _select(mask: PyTree, new: PyTree, old: PyTree) -> PyTree:
  """``new`` on leaves where the (static, Python bool) mask is True, else ``old`` unchanged."""
  return jax.tree.map(lambda m, n, o: n if m else o, mask, new, old)


def make_phase_step(method: method_lib.Method, phase_index: int, state_shardings: PyTree,
                    mesh: Mesh) -> Callable[[TrainState, dict, bool], tuple[TrainState, dict]]:
  """Compiled train step of one phase: ``step(state, batch, advance) -> (state, metrics)``.

  The phase's loss is differentiated w.r.t. all parameters; its masked optimiser (the phase
  optimiser on the trainable leaves, zero elsewhere) computes updates, and the frozen leaves are
  copied through unchanged so they stay bit-identical. ``advance`` (static) increments the step
  counter; the loop passes True to the last phase that runs at a step. The state is donated.

  Metrics: the loss terms the method reports, ``loss`` and ``grad_norm`` (global L2 norm of the
  gradient over the trainable leaves), prefixed by ``<phase>/`` when the method has several phases.
  """
  phase = method.phases[phase_index]
  prefix = f"{phase.name}/" if len(method.phases) > 1 else ""

  def step_fn(state: TrainState, batch: dict, advance: bool):
    rng = step_key(state, phase_index)
    grad_fn = jax.value_and_grad(phase.loss, has_aux=True)
    (loss, (metrics, model_state)), grads = grad_fn(state.params, state.model_state, batch, rng,
                                                    state.step)
    mask = phase.trainable(state.params)
    updates, opt_state = phase.masked_optimizer(state.params).update(
        grads, state.opt_state[phase.name], state.params)
    params = _select(mask, optax.apply_updates(state.params, updates), state.params)
    trainable_grads = [g for m, g in zip(jax.tree.leaves(mask), jax.tree.leaves(grads)) if m]
    out = {prefix + k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}
    out[prefix + "loss"] = jnp.asarray(loss, jnp.float32)
    out[prefix + "grad_norm"] = optax.tree.norm(trainable_grads).astype(jnp.float32)
    new_state = state.replace(
        step=state.step + 1 if advance else state.step, params=params, model_state=model_state,
        opt_state={**state.opt_state, phase.name: opt_state})
    return new_state, out

  return jax.jit(step_fn, static_argnums=2, donate_argnums=0,
                 out_shardings=(state_shardings, sharding_lib.replicated(mesh)))
