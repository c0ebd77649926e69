"""Generic evaluation: a method's ``predict`` over a whole split, then the standard 3D metrics.

Every process predicts its own shard of the split; the last partial batch is padded to the fixed
batch shape (one compiled predict) and the padding is dropped afterwards. Predictions are gathered so
every process holds the whole split, and only process 0 writes tables and figures. Metrics come from
``handjax.eval.metrics`` (mean/median EPE, PCK curve, AUC over 20-50 mm in both conventions of
specs/datasets.md).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Mapping
import weakref

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
import numpy as np

from handjax.eval import metrics
from handjax.train import method as method_lib
from handjax.train import sharding as sharding_lib

VALID_KEY = "_valid"


def root_joint(config: Any) -> int:
  """The root joint of the evaluation protocol: ``config.data.root_joint``, else 0 (the wrist)."""
  data = config.get("data", None) if hasattr(config, "get") else None
  return int(data.get("root_joint", 0)) if data is not None and hasattr(data, "get") else 0


def _pad(local: Mapping[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
  """Pads a local batch to ``size`` rows by repeating row 0, adding a boolean ``_valid`` mask."""
  n = len(next(iter(local.values())))
  if n > size:
    raise ValueError(f"Eval batch of {n} examples exceeds the per-process batch size {size}.")
  out = {k: np.concatenate([np.asarray(v), np.repeat(np.asarray(v)[:1], size - n, axis=0)])
         for k, v in local.items()}
  out[VALID_KEY] = np.arange(size) < n
  return out


def _padded_batches(batches: Iterable[Mapping[str, np.ndarray]],
                    local_batch_size: int) -> Iterator[dict[str, np.ndarray]]:
  """The local batches padded to ``local_batch_size``, as many on every process.

  One process streams them. Several processes first count their batches (a process that runs out
  of examples feeds all-padding batches, which keeps the collectives aligned), so they hold their
  shard in memory.
  """
  if jax.process_count() == 1:
    count = 0
    for b in batches:
      count += 1
      yield _pad(dict(b), local_batch_size)
    if count == 0:
      raise ValueError("The evaluation split yielded no batch.")
    return
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  local_batches = [dict(b) for b in batches]
  num_batches = int(np.max(multihost_utils.process_allgather(np.asarray(len(local_batches)))))
  if num_batches == 0:
    raise ValueError("The evaluation split yielded no batch.")
  template = local_batches[0] if local_batches else None
  for i in range(num_batches):
    if i < len(local_batches):
      yield _pad(local_batches[i], local_batch_size)
    else:
      local = _pad({k: v[:1] for k, v in template.items()}, local_batch_size)
      local[VALID_KEY][:] = False
      yield local


def map_split(fn: Any, params: Any, model_state: Any,
              batches: Iterable[Mapping[str, np.ndarray]], mesh: Mesh,
              local_batch_size: int) -> dict[str, np.ndarray]:
  """Runs the jitted ``fn(params, model_state, batch) -> {name: (B, ...)}`` over a whole split.

  Each process maps its own batches; the last partial batch is padded to ``local_batch_size`` rows
  (one compiled ``fn``) and the padding dropped. ``fn`` sees the padded batch with a boolean
  ``_valid`` key and must return per-row arrays.

  Returns:
    ``{name: array}`` with a leading axis over all examples of all processes (process-major).

  Raises:
    ValueError: the split yielded no batch on any process.
  """
  collected: dict[str, list[np.ndarray]] = {}
  for local in _padded_batches(batches, local_batch_size):
    batch = sharding_lib.global_batch(local, mesh)
    out = sharding_lib.to_host({**fn(params, model_state, batch), VALID_KEY: batch[VALID_KEY]})
    valid = out.pop(VALID_KEY).astype(bool)
    for k, v in out.items():
      collected.setdefault(k, []).append(v[valid])
  return {k: np.concatenate(v) for k, v in collected.items()}


def predict_split(method: method_lib.Method, params: Any, model_state: Any,
                  batches: Iterable[Mapping[str, np.ndarray]], mesh: Mesh,
                  local_batch_size: int, root_joint: int = 0) -> dict[str, np.ndarray]:
  """Runs ``method.predict`` over every batch; returns host arrays of the whole split.

  Both the prediction and the ground truth are made relative to joint ``root_joint`` (the RHD/STB
  protocol of specs/datasets.md gives the root at test time): the data's ``pose3d`` is in the camera
  frame, while methods predict root-relative poses.

  Returns:
    ``{'pred_pose3d', 'pose3d', 'visible'}`` with a leading axis over all examples of all
    processes (process-major order); ``visible`` is the data's ``visible`` (all True if absent)
    and-ed with ``has_pose3d`` when present.
  """
  return map_split(root_relative_predictor(method, root_joint), params, model_state, batches,
                   mesh, local_batch_size)


# One jitted predictor per (live Method, root joint): a training run evaluates every eval_every
# steps, and a fresh jax.jit closure per call would retrace and recompile predict each time.
_PREDICTORS: dict[tuple[int, int], Callable[..., dict[str, jax.Array]]] = {}


def root_relative_predictor(method: method_lib.Method,
                            root_joint: int = 0) -> Callable[..., dict[str, jax.Array]]:
  """The jitted ``(params, model_state, batch) -> {'pred_pose3d', 'pose3d', 'visible'}`` of
  `predict_split`, compiled once per method object and root joint (the entry goes with the method:
  it holds the method weakly)."""
  key = (id(method), int(root_joint))
  if key not in _PREDICTORS:
    method_ref = weakref.ref(method)

    @jax.jit
    def predict(params, model_state, batch):
      pred = method_ref().predict(params, model_state, batch)["pose3d"]
      gt = batch["pose3d"]
      out = {"pred_pose3d": pred - pred[:, root_joint:root_joint + 1],
             "pose3d": gt - gt[:, root_joint:root_joint + 1]}
      # A joint counts if it is visible and the example has a 3D label (DESIGN.md: has_<key>).
      visible = batch.get("visible", jnp.ones(batch["pose3d"].shape[:2], bool)).astype(bool)
      if "has_pose3d" in batch:
        visible = visible & batch["has_pose3d"].astype(bool)[:, None]
      out["visible"] = visible
      return out

    _PREDICTORS[key] = predict
    weakref.finalize(method, _PREDICTORS.pop, key, None)
  return _PREDICTORS[key]


ROOT_RELATIVE = "root_relative_gt_scale"
PROCRUSTES = "procrustes"


def eval_protocol(config: Any) -> str:
  """The evaluation protocol of the run's dataset (specs/datasets.md).

  ``config.data.eval_protocol`` if set; otherwise the dataset builder's ``EVAL_PROTOCOL`` (RHD and
  STB: root-relative with the ground-truth scale; FreiHAND: Procrustes-aligned), and root-relative
  for datasets that declare none (``synthetic_hands``).
  """
  import importlib  # pylint: disable=g-import-not-at-top

  data = config.get("data", None) if hasattr(config, "get") else None
  if data is None or not hasattr(data, "get"):
    return ROOT_RELATIVE
  if data.get("eval_protocol", None):
    protocol = str(data.eval_protocol)
  else:
    protocol = ROOT_RELATIVE
    try:
      module = importlib.import_module(f"handjax.data.builders.{data.get('dataset', '')}")
      protocol = getattr(module, "EVAL_PROTOCOL", ROOT_RELATIVE)
    except ModuleNotFoundError:
      pass
  if protocol not in (ROOT_RELATIVE, PROCRUSTES):
    raise ValueError(f"config.data.eval_protocol={protocol!r}; expected {ROOT_RELATIVE!r} or "
                     f"{PROCRUSTES!r}.")
  return protocol


def summarize(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None = None,
              protocol: str = ROOT_RELATIVE) -> dict[str, Any]:
  """Mean/median EPE (mm), per-joint EPE (mm), AUC over 20-50 mm in both conventions, PCK curve.

  ``protocol``: ``"root_relative_gt_scale"`` compares the root-relative poses as they are (methods
  apply the ground-truth scale in ``predict``); ``"procrustes"`` (FreiHAND) first similarity-aligns
  each prediction to its ground truth (``handjax.eval.metrics.procrustes_align``).

  Joint error ``e_ij = ||pred_ij - gt_ij||`` (root-relative metres, as the method predicts;
  Yang dissertation Eq. 2.7); PCK(t) = fraction of visible errors <= t and AUC = trapezoidal area
  over the thresholds / (t_max - t_min) (specs/datasets.md). ``auc_20_50`` uses 31 thresholds
  20..50 mm; ``auc_20_50_reference`` the reference script's linspace(0, 50, 20)[8:] = 21.05..50 mm.
  The pooled ("plain") protocol of ``handjax.eval.metrics`` is used throughout.
  """
  if protocol == PROCRUSTES:
    pred = metrics.procrustes_align(pred, gt)
  elif protocol != ROOT_RELATIVE:
    raise ValueError(f"Unknown evaluation protocol {protocol!r}.")
  errors = metrics.joint_errors(pred, gt)
  vis = np.ones(errors.shape, bool) if visible is None else np.asarray(visible).astype(bool)
  summary: dict[str, Any] = {
      "protocol": protocol,
      "mean_epe_mm": 1000.0 * metrics.mean_epe(errors, vis),
      "median_epe_mm": 1000.0 * metrics.median_epe(errors, vis),
      "per_joint_epe_mm": [1000.0 * metrics.mean_epe(errors[:, j], vis[:, j])
                           for j in range(errors.shape[1])],
  }
  for name in ("auc_20_50", "auc_20_50_reference"):
    thresholds = metrics.THRESHOLD_SETS[name]
    summary[name] = metrics.auc(thresholds, metrics.pck_curve(errors, thresholds, vis))
  # Reference point every estimator must beat: predicting one constant pose, the split's mean
  # (labelled examples) for every example. The mean is taken on the evaluated split itself, which
  # favours the baseline slightly over a training-set mean.
  labelled = vis.any(axis=1)
  if labelled.any():
    mean_pose = np.asarray(gt, np.float64)[labelled].mean(axis=0)
    mean_errors = metrics.joint_errors(np.broadcast_to(mean_pose, np.shape(gt)), gt)
    summary["mean_pose_epe_mm"] = 1000.0 * metrics.mean_epe(mean_errors, vis)
  full = metrics.THRESHOLDS_FREIHAND  # 0..50 mm, 100 thresholds: the curve that is plotted.
  summary["pck_0_50"] = (full, metrics.pck_curve(errors, full, vis))
  return summary


def scalar_summary(summary: Mapping[str, Any]) -> dict[str, float]:
  """The scalar entries of a summary, prefixed for the metric writer."""
  return {f"eval/{k}": v for k, v in summary.items() if isinstance(v, float)}
