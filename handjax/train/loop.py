"""The generic train loop: config -> method -> sharded phase steps -> eval, checkpoints, metrics.

``train_and_evaluate(config, workdir)`` is what ``experiments/train.py`` calls and what tests call.
Config fields it reads (see ``experiments/configs/toy.py``): ``method``, ``seed``, ``batch_size``
(global), ``num_steps``, ``optimizer`` (used by methods through ``make_optimizer``),
``log_every``, ``checkpoint_every``, ``eval_every`` (0 = only at the end, -1 = never),
``eval_train_split`` (optional, e.g. ``"train[:400]"``: also evaluated, unaugmented, at every eval,
as ``train_eval/*`` scalars: the training half of a learning curve), ``keep_checkpoints``,
``data`` (``data.source`` picks the dataset factory).

Determinism: the step RNG is ``fold_in(base, step)``, the data iterator position is checkpointed
with the state, so a run killed at any point and restarted from its workdir reaches the same
parameters as an uninterrupted run. A method with ``label_rounds`` (self-training) also has the
current round's label store checkpointed (:mod:`handjax.train.label_store`); a round that starts at
the resumed step is labelled from the restored parameters, as the uninterrupted run did.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Callable, Sequence

import jax
import ml_collections
import numpy as np

from handjax.eval import plots
from handjax.train import checkpoint as checkpoint_lib
from handjax.train import config_checks
from handjax.train import datasets
from handjax.train import evaluation
from handjax.train import guards
from handjax.train import interrupts
from handjax.train import label_store as label_store_lib
from handjax.train import method as method_lib
from handjax.train import metrics_writer
from handjax.train import sharding as sharding_lib
from handjax.train import state as state_lib
from handjax.train import warm_start

# Moved to handjax.train.datasets (inference needs it without importing the loop); kept here for
# the callers of loop.resolve_dataset_factory.
DatasetFactory = datasets.DatasetFactory
resolve_dataset_factory = datasets.resolve_dataset_factory
log = logging.getLogger(__name__)  # "handjax.*": shown by the binaries, unlike library INFO logs.


def _warn_config_changes(stored: ml_collections.ConfigDict,
                         current: ml_collections.ConfigDict) -> None:
  """Logs the fields whose value differs from the checkpointed config (a resume with new settings
  no longer reproduces the uninterrupted run)."""
  flat_old = _flatten(stored.to_dict())
  flat_new = _flatten(json.loads(current.to_json_best_effort()))
  keys = flat_old.keys() | flat_new.keys()
  changed = sorted(k for k in keys if flat_old.get(k) != flat_new.get(k))
  if changed:
    log.warning("Resuming with a config that differs from the checkpoint's in: %s",
                ", ".join(f"{k} ({flat_old.get(k)!r} -> {flat_new.get(k)!r})" for k in changed))


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
  if isinstance(tree, dict):
    return {k: v for key, sub in tree.items() for k, v in _flatten(sub, f"{prefix}{key}.").items()}
  return {prefix[:-1]: tree}


def _is_boundary(step: int, every: int, num_steps: int) -> bool:
  return step == num_steps or (every > 0 and step % every == 0)


def _mean_metrics(history: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
  keys = sorted({k for m in history for k in m})
  return {k: float(np.mean([m[k] for m in history if k in m])) for k in keys}


def run_evaluation(method: method_lib.Method, state: state_lib.TrainState,
                   config: ml_collections.ConfigDict, factory: DatasetFactory,
                   mesh: jax.sharding.Mesh, split: str = "test") -> dict[str, Any]:
  """Predicts the whole ``split`` and summarises it (see :mod:`handjax.train.evaluation`)."""
  batches = factory(config, split, process_index=jax.process_index(),
                    process_count=jax.process_count(), seed=config.seed)
  out = evaluation.predict_split(method, state.params, state.model_state, batches, mesh,
                                 sharding_lib.local_batch_size(config.batch_size, mesh),
                                 root_joint=evaluation.root_joint(config))
  summary = evaluation.summarize(out["pred_pose3d"], out["pose3d"], out.get("visible"),
                                 evaluation.eval_protocol(config))
  summary["num_examples"] = int(len(out["pose3d"]))
  return summary


# fold_in constant of the labelling passes' keys (phase steps fold in their phase index, 0, 1, ...).
LABEL_STREAM = 0x6C61626C


def make_labeller(rounds: method_lib.LabelRounds) -> Callable[..., dict[str, jax.Array]]:
  """The jitted labelling step of ``rounds``: one compiled function serves every round of a run
  (the round's start is a traced argument)."""

  @jax.jit
  def labeller(params, model_state, batch, raw_rng, start):
    base = jax.random.wrap_key_data(raw_rng)
    rng = jax.random.fold_in(jax.random.fold_in(base, start), LABEL_STREAM)
    out = dict(rounds.label(params, model_state, batch, rng))
    out.update(index=batch[label_store_lib.INDEX_KEY], selected=batch["_selected"])
    return out

  return labeller


def label_round(method: method_lib.Method, k: int, state: state_lib.TrainState,
                config: ml_collections.ConfigDict, factory: DatasetFactory,
                mesh: jax.sharding.Mesh,
                previous: label_store_lib.LabelStore | None,
                labeller: Callable[..., dict[str, jax.Array]] | None = None
                ) -> label_store_lib.LabelStore:
  """The label store of round ``k`` of ``method.label_rounds``, from ``state``'s parameters.

  One pass over the factory's ``"label"`` role (the training examples once, in order,
  unaugmented); each batch carries the previous round's stored values (``previous``; none in
  round 0). The round's key is ``fold_in(fold_in(base, starts[k]), LABEL_STREAM)``, so a resumed run
  that relabels at the same step draws the same numbers. ``labeller``: `make_labeller`'s function
  to reuse across rounds (built here if None).
  """
  rounds = method.label_rounds
  labeller = labeller or make_labeller(rounds)
  start = int(rounds.starts[k])
  passes = factory(config, datasets.LABEL_ROLE, process_index=jax.process_index(),
                   process_count=jax.process_count(), seed=config.seed)

  def batches():
    for b in passes:
      rows = np.asarray(rounds.rows(b), bool)
      b = (label_store_lib.empty_batch_labels(b, rounds.spec) if previous is None
           else previous.attach(b, rows, rounds.spec))
      b["_selected"] = rows
      yield b

  log.info("Round %d of %d starts at step %d: labelling the training examples.", k + 1,
           len(rounds.starts), start)
  out = evaluation.map_split(lambda p, m, b: labeller(p, m, b, state.rng, np.int32(start)),
                             state.params,
                             state.model_state, batches(), mesh,
                             sharding_lib.local_batch_size(config.batch_size, mesh))
  num = getattr(passes, "num_examples", len(out[label_store_lib.INDEX_KEY]))
  store = label_store_lib.from_pass(out, rounds.spec, k, start, num)
  log.info("Round %d: %d stored labels of %d examples.", k + 1, len(store.index), num)
  return store


def _with_labels(rounds: method_lib.LabelRounds, store: label_store_lib.LabelStore | None,
                 local: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """A training batch with the round's stored values of its rows (zeros before round 0)."""
  if store is None:
    return label_store_lib.empty_batch_labels(local, rounds.spec)
  return store.attach(local, np.asarray(rounds.rows(local), bool), rounds.spec)


def _write_eval(summary: dict[str, Any], step: int, workdir: str,
                writer: metrics_writer.MetricWriter) -> None:
  """Eval scalars to the writer, a log line, and (process 0) the PCK curve PNG."""
  writer.write_scalars(step, evaluation.scalar_summary(summary))
  log.info("eval @ step %d: mean EPE %.2f mm (mean-pose baseline %.2f mm), AUC(20-50 mm) %.3f "
           "over %d examples", step, summary["mean_epe_mm"],
           summary.get("mean_pose_epe_mm", float("nan")), summary["auc_20_50"],
           summary["num_examples"])
  if jax.process_index() != 0:
    return
  plots.plot_pck({"model": summary["pck_0_50"]},
                 os.path.join(workdir, "figures", f"pck_step{step:08d}.png"),
                 title=f"3D PCK at step {step} (mean EPE {summary['mean_epe_mm']:.1f} mm)")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       dataset_factory: DatasetFactory | None = None,
                       devices: Sequence[jax.Device] | None = None,
                       stop_at_step: int | None = None) -> state_lib.TrainState:
  """Trains ``config.method`` on ``config.data``, resuming from ``workdir`` if it has checkpoints.

  Args:
    config: the experiment config.
    workdir: where checkpoints, ``metrics.jsonl``, TensorBoard events and figures go.
    dataset_factory: ``factory(config, split, *, process_index, process_count, seed)`` returning
      an iterable of local batches (for ``'train'``: an endless grain iterator dataset whose iterator
      has ``get_state``/``set_state``); default from ``config.data.source``.
    devices: the devices of the data mesh (default all devices of all processes).
    stop_at_step: stop (with a checkpoint) once this step is reached, as a preempted job would;
      a later call resumes.

  Returns:
    The final train state (replicated global arrays).

  Raises:
    config_checks.ConfigError: a config value is out of range (checked before any work starts).
    guards.NonFiniteError: a step produced a non-finite loss, loss term or gradient.
  """
  mesh_devices = jax.devices() if devices is None else list(devices)
  config_checks.validate(config, len({d.process_index for d in mesh_devices}), len(mesh_devices))
  workdir = guards.prepare_workdir(workdir)
  is_chief = jax.process_index() == 0
  mesh = sharding_lib.make_mesh(devices)
  method = method_lib.get_method(config)
  factory = dataset_factory or resolve_dataset_factory(config)
  local_bs = sharding_lib.local_batch_size(config.batch_size, mesh)
  num_steps = int(config.num_steps)

  train_ds = factory(config, "train", process_index=jax.process_index(),
                     process_count=jax.process_count(), seed=config.seed)
  train_iter = iter(train_ds)
  start_position = train_iter.get_state()
  sample = next(train_iter)  # Shapes for init and the start-up check; then rewind.
  train_iter.set_state(start_position)
  guards.check_batch_spec(sample, method.input_spec, local_bs)
  sample = sharding_lib.global_batch(sample, mesh)

  ckpt = checkpoint_lib.Checkpointer(workdir, keep=config.get("keep_checkpoints", 3),
                                     cleanup_tmp=True)
  abstract, shardings = state_lib.train_state_shapes(method, config.seed, sample, mesh)
  # The newest checkpoint that restores; damaged newer ones are moved aside with a warning.
  found = checkpoint_lib.restore_newest(
      ckpt, lambda s: (ckpt.restore_config(s), ckpt.restore(s, abstract, train_iter)),
      move_aside=True)
  if found is not None:
    latest, (stored_config, state) = found
    log.info("Resuming from checkpoint at step %d in %s.", latest, ckpt.directory)
    _warn_config_changes(stored_config, config)
  else:
    state, _ = state_lib.create_train_state(method, config.seed, sample, mesh)
    if config.get("init_from"):  # A stage run alone from the previous stage's checkpoint.
      state = warm_start.init_from(state, config.init_from, mesh)
  step = int(jax.device_get(state.step))
  rounds = method.label_rounds
  labeller = make_labeller(rounds) if rounds is not None else None
  store = None  # The current round's labels (Method.label_rounds), saved with each checkpoint.
  if rounds is not None and found is not None:
    tree = ckpt.restore_labels(latest)
    if tree is not None:
      store = label_store_lib.LabelStore.from_tree(tree)
      passes = factory(config, datasets.LABEL_ROLE, process_index=jax.process_index(),
                       process_count=jax.process_count(), seed=config.seed)
      if hasattr(passes, "num_examples"):
        store.check_num_examples(passes.num_examples, f"checkpoint {ckpt.step_directory(latest)}")

  step_fns = [state_lib.make_phase_step(method, i, shardings, mesh)
              for i in range(len(method.phases))]
  advance = jax.jit(lambda s: s.replace(step=s.step + 1), donate_argnums=0, out_shardings=shardings)
  writer = metrics_writer.MetricWriter(workdir, enabled=is_chief)
  progress = metrics_writer.Progress(num_steps, config.batch_size, step)
  log_every = int(config.get("log_every", 50))
  ckpt_every = int(config.get("checkpoint_every", 1000))
  eval_every = int(config.get("eval_every", 0))
  pending_steps: list[int] = []
  pending: list[dict[str, jax.Array]] = []

  def flush() -> None:
    """Fetches the metrics of the pending steps; raises on the first non-finite one."""
    if not pending:
      return
    host = sharding_lib.to_host(pending)
    guards.check_finite(pending_steps, host)
    mean = _mean_metrics(host)
    writer.write_scalars(pending_steps[-1] + 1, mean)
    if is_chief:
      loss = mean.get("loss", sum(v for k, v in mean.items() if k.endswith("/loss")))
      progress.report(pending_steps[-1] + 1, loss)
    pending.clear()
    pending_steps.clear()

  signals = interrupts.StopSignals(sync_every=log_every).install()
  try:
    while step < num_steps and (stop_at_step is None or step < stop_at_step):
      k = rounds.round_at(step) if rounds is not None else None
      if k is not None and (store is None or store.round_start != rounds.starts[k]):
        if step != rounds.starts[k]:  # A checkpoint without the labels of its round.
          log.warning("The checkpoint holds no labels of round %d (started at step %d); "
                      "labelling with the parameters of step %d instead.", k + 1,
                      rounds.starts[k], step)
        store = label_round(method, k, state, config, factory, mesh, store, labeller)
      local = next(train_iter)
      if rounds is not None:
        local = _with_labels(rounds, store, local)
      batch = sharding_lib.global_batch(local, mesh)
      active = [i for i, p in enumerate(method.phases) if p.runs_at(step)]
      metrics: dict[str, jax.Array] = {}
      # No host<->device copy may hide inside the step (the batch was put explicitly above).
      with jax.transfer_guard("disallow"):
        for j, i in enumerate(active):
          state, m = step_fns[i](state, batch, j == len(active) - 1)
          metrics.update(m)
        if not active:
          state = advance(state)
      pending_steps.append(step)
      pending.append(metrics)
      step += 1
      # SIGTERM/SIGINT: save this step, then stop (at the last step the run just ends).
      stopping = signals.should_stop(step) and step < num_steps
      save = _is_boundary(step, ckpt_every, num_steps) or step == stop_at_step or stopping
      run_eval = eval_every >= 0 and _is_boundary(step, eval_every, num_steps)
      if save or run_eval or _is_boundary(step, log_every, num_steps):
        flush()  # Before any save: a non-finite state never overwrites a good checkpoint.
      if save:
        ckpt.save(step, state, train_iter, config,
                  labels=None if store is None else store.to_tree())
      if stopping:
        ckpt.wait()
        raise interrupts.Interrupted(signals.received, step, ckpt.step_directory(step))
      ckpt.check()  # A failed background save stops the run now, naming the last good one.
      if run_eval:
        summary = run_evaluation(method, state, config, factory, mesh)
        _write_eval(summary, step, workdir, writer)
        if config.get("eval_train_split", ""):  # learning curves: the same on training examples
          train_summary = run_evaluation(method, state, config, factory, mesh,
                                         split=config.eval_train_split)
          writer.write_scalars(step, {f"train_{k}": v for k, v in
                                      evaluation.scalar_summary(train_summary).items()})
    flush()
  finally:
    signals.uninstall()
    ckpt.close()
    writer.close()
  return state
