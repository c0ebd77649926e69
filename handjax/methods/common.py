"""Helpers shared by the latent-space methods: module bookkeeping, batch -> targets, optimiser.

Parameters of a method are one Flax variable dict with one sub-tree per network, e.g.
``{"params": {"encoder_rgb": ..., "decoder_pose3d": ...}}``, and the BatchNorm statistics of the
networks that have them live in ``{"batch_stats": {name: ...}}``. Each network is applied on its own
sub-tree (:func:`apply_module`), so a loss that uses only some networks leaves the others'
parameters *and* statistics untouched (Spurr et al. CVPR 2018, Alg. 1 updates one pair at a time),
and :func:`handjax.train.method.subtree_mask` selects a network by the path ``params/<name>``.

Target normalisation (the invariances of Spurr et al. CVPR 2018 Sec. 4.5 and the evaluation
protocol of Yang et al. ICCV 2019 Sec. 5.1): the 3D pose is made root-relative (translation
invariance, root ``root_joint``) and divided by the ground-truth reference scale (the middle-finger
MCP->PIP bone, ``batch["scale"]``), or by a fixed ``pose_unit`` in metres when scale invariance is
off. ``predict`` undoes it with the same ground-truth scale, which the RHD/STB protocol provides at
test time (specs/datasets.md, "Evaluation protocols").
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from handjax.losses.gaussian import Gaussian
from handjax.models.mlp import MLP
from handjax.models.resnet import GaussianHead
from handjax.train import method as method_lib

PyTree = Any
Batch = Mapping[str, jax.Array]


# ----------------------------------------------------------------------------------------------
# Networks as named sub-trees.


def _takes_train(module: nn.Module) -> bool:
  return "train" in inspect.signature(type(module).__call__).parameters


def init_modules(rng: jax.Array, modules: Mapping[str, nn.Module],
                 inputs: Mapping[str, Sequence[Any]],
                 kwargs: Mapping[str, Mapping[str, Any]] | None = None) -> tuple[PyTree, PyTree]:
  """Initialises each network on its own example inputs (networks in sorted name order).

  Args:
    rng: a `jax.random.key`; network i of the sorted names uses split(rng, n)[i].
    modules: networks by name.
    inputs: positional example inputs of each network by name.
    kwargs: optional keyword inputs by name (e.g. ``{"extra": one_hot}``).

  Returns:
    (params, model_state): ``{"params": {name: ...}}`` and ``{"batch_stats": {name: ...}}`` (only
    the networks that have BatchNorm appear in the latter; ``{}`` if none has).
  """
  params, stats = {}, {}
  keys = jax.random.split(rng, len(modules))
  for key, name in zip(keys, sorted(modules)):
    module = modules[name]
    call_kwargs = dict((kwargs or {}).get(name, {}))
    if _takes_train(module):
      call_kwargs["train"] = False
    variables = module.init(key, *inputs[name], **call_kwargs)
    params[name] = variables["params"]
    if "batch_stats" in variables:
      stats[name] = variables["batch_stats"]
  return {"params": params}, ({"batch_stats": stats} if stats else {})


def apply_module(module: nn.Module, name: str, params: PyTree, model_state: PyTree, *args: Any,
                 train: bool, **kwargs: Any) -> tuple[Any, PyTree | None]:
  """Applies network ``name`` on its own parameter sub-tree.

  Returns:
    (output, batch statistics after the call): the updated statistics in train mode, the stored
    ones otherwise, None for a network without BatchNorm.
  """
  variables = {"params": params["params"][name]}
  stats = model_state.get("batch_stats", {}).get(name)
  if stats is not None:
    variables["batch_stats"] = stats
  if _takes_train(module):
    kwargs["train"] = train
  if train and stats is not None:
    out, updates = module.apply(variables, *args, mutable=["batch_stats"], **kwargs)
    return out, updates["batch_stats"]
  return module.apply(variables, *args, **kwargs), stats


def merge_stats(model_state: PyTree, updates: Mapping[str, PyTree | None]) -> PyTree:
  """``model_state`` with the batch statistics of the networks in ``updates`` replaced."""
  updates = {k: v for k, v in updates.items() if v is not None}
  if not updates:
    return model_state
  return {**model_state, "batch_stats": {**model_state.get("batch_stats", {}), **updates}}


class MLPEncoder(nn.Module):
  """q(z|x) for vector-like inputs: flatten -> [x, extra] -> MLP (ReLU after every layer) -> head.

  Spurr et al. CVPR 2018 supp. Table 3 (2D and 3D keypoint encoders: Linear(512)-ReLU layers) with
  the last layer replaced by the linear Gaussian head (mean, log-variance), as the ResNet encoder's
  classifier is.

  Attributes:
    latent_dim: D.
    hidden: widths of the hidden layers.
  """

  latent_dim: int
  hidden: Sequence[int] = (512,) * 5

  @nn.compact
  def __call__(self, x: jax.Array, extra: jax.Array | None = None) -> Gaussian:
    """x: (B, ...) -> Gaussian with (B, latent_dim) arrays; extra: optional (B, E)."""
    h = jnp.reshape(x, (x.shape[0], -1))
    if extra is not None:
      h = jnp.concatenate([h, extra.astype(h.dtype)], axis=-1)
    if self.hidden:
      h = MLP(tuple(self.hidden), activate_final=True, name="mlp")(h)
    return GaussianHead(self.latent_dim, name="head")(h)


class MLPDecoder(nn.Module):
  """p(x|z) for vector-like outputs: MLP with a linear last layer, reshaped to ``out_shape``.

  Spurr et al. CVPR 2018 supp. Table 3 (`hidden=(512,) * 5`); Yang et al. ICCV 2019 Sec. 4.2 pose
  decoder (four fully connected layers of 128 units: `hidden=(128,) * 3`).

  Attributes:
    out_shape: per-example output shape, e.g. (21, 3).
    hidden: widths of the hidden ReLU layers.
  """

  out_shape: tuple[int, ...]
  hidden: Sequence[int] = (512,) * 5

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """z: (B, D) -> (B, *out_shape)."""
    size = int(np.prod(self.out_shape))
    out = MLP(tuple(self.hidden) + (size,), name="mlp")(z)
    return jnp.reshape(out, z.shape[:-1] + tuple(self.out_shape))


# ----------------------------------------------------------------------------------------------
# Batch -> targets and back.


def has(batch: Batch, key: str) -> jax.Array:
  """(B,) bool: ``batch["has_<key>"]``; all True when the flag is absent (the key must be there)."""
  flag = batch.get(f"has_{key}")
  if flag is not None:
    return jnp.asarray(flag).astype(bool)
  if key not in batch:
    raise KeyError(f"the batch has neither {key!r} nor 'has_{key}' (keys: {sorted(batch)}).")
  return jnp.ones(jnp.shape(batch[key])[:1], bool)


def safe_scale(batch: Batch, fallback: float | None = None) -> jax.Array:
  """(B,) ground-truth reference scale in metres; 1 where it is zero (unlabelled rows).

  Without ``batch["scale"]`` (e.g. a photo given to ``predict``), every example gets ``fallback``
  metres, or a KeyError is raised when ``fallback`` is None (training always needs the label).
  """
  if "scale" not in batch:
    if fallback is None:
      raise KeyError("scale invariance needs the ground-truth reference scale batch['scale'] (B,) "
                     f"in metres (the middle-finger MCP->PIP bone); the batch has {sorted(batch)}.")
    first = next(iter(batch.values()))
    return jnp.full(jnp.shape(first)[:1], fallback, jnp.float32)
  scale = jnp.asarray(batch["scale"], jnp.float32)
  return jnp.where(scale > 0, scale, 1.0)


def pose_target(batch: Batch, *, root_joint: int, translation: bool, scale: bool,
                pose_unit: float) -> jax.Array:
  """The 3D pose a decoder reconstructs, (B, 21, 3) float32, dimensionless.

  y = (P - t P_root) / s with t = 1 under translation invariance (root-relative; Spurr et al. CVPR
  2018 Sec. 4.5 "T") and s = the ground-truth reference scale under scale invariance ("S"; the
  RHD/STB protocol), else s = ``pose_unit`` metres (a fixed unit keeping the squared error O(1)).
  """
  pose = jnp.asarray(batch["pose3d"], jnp.float32)
  if translation:
    pose = pose - pose[:, root_joint:root_joint + 1]
  divisor = safe_scale(batch)[:, None, None] if scale else pose_unit
  return pose / divisor


def pose_from_prediction(pred: jax.Array, batch: Batch, *, root_joint: int, scale: bool,
                         pose_unit: float, fallback_scale: float | None = None) -> jax.Array:
  """Inverse of :func:`pose_target` for the evaluator: root-relative pose3d in metres (B, 21, 3).

  Multiplies by the ground-truth scale when the model is scale invariant (the protocol gives it
  at test time; ``fallback_scale`` metres when the batch has none, e.g. a photo) and subtracts
  the *predicted* root joint, which is a no-op for a translation invariant model (its root is ~0)
  and makes an absolute prediction root-relative.
  """
  pose = pred * (safe_scale(batch, fallback_scale)[:, None, None] if scale else pose_unit)
  return pose - pose[:, root_joint:root_joint + 1]


def normalized_uv(uv: jax.Array, image_size: int) -> jax.Array:
  """Crop pixel coordinates -> [-1, 1] at the crop border: (uv - c) / c with c = image_size / 2."""
  half = 0.5 * image_size
  return (jnp.asarray(uv, jnp.float32) - half) / half


def normalized_depth(depth: jax.Array, unit: float) -> jax.Array:
  """Depth map (B, H, W, 1) in metres -> (d - mean valid depth) / unit where d > 0, 0 elsewhere.

  The mean over the valid pixels of each example centres the hand without any pose label, so
  unlabelled depth maps are normalised like labelled ones.
  """
  depth = jnp.asarray(depth, jnp.float32)
  valid = depth > 0
  count = jnp.maximum(jnp.sum(valid, axis=(1, 2, 3), keepdims=True), 1)
  centre = jnp.sum(jnp.where(valid, depth, 0.0), axis=(1, 2, 3), keepdims=True) / count
  return jnp.where(valid, (depth - centre) / unit, 0.0)


def normalized_points(points: jax.Array, unit: float) -> jax.Array:
  """Point cloud (B, N, 3) in metres -> (p - centroid) / unit.

  Centring on the cloud's own centroid needs no pose label, so the weakly supervised setting
  (Yang et al. ICCV 2019 Sec. 5.3: point clouds without poses) normalises every cloud the same way.
  """
  points = jnp.asarray(points, jnp.float32)
  return (points - jnp.mean(points, axis=-2, keepdims=True)) / unit


def hand_side_one_hot(batch: Batch) -> jax.Array:
  """(B, 2) one-hot of ``batch["hand_side"]`` (0 left, 1 right): Spurr et al.'s handedness flag "H".

  A batch without ``hand_side`` (a photo, which `experiments/predict.py` mirrors to a right hand
  when it shows a left one) is taken as right hands.
  """
  if "hand_side" not in batch:
    first = next(iter(batch.values()))
    return jnp.broadcast_to(jnp.asarray([0.0, 1.0], jnp.float32), (jnp.shape(first)[0], 2))
  return jax.nn.one_hot(jnp.asarray(batch["hand_side"], jnp.int32), 2, dtype=jnp.float32)


def sum_of_squares(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Per-example sum of squared errors over every non-batch axis: -log N(target; pred, I) + const.

  The "MSE" of Spurr et al. CVPR 2018 Alg. 1 (||x_l - x_l_hat||^2) for images, depth maps and
  keypoints; summed (not averaged) so it is the Gaussian negative log-likelihood the ELBO needs.
  """
  if jnp.shape(pred) != jnp.shape(target):
    raise ValueError(f"sum_of_squares: pred and target shapes differ: {jnp.shape(pred)} vs "
                     f"{jnp.shape(target)}.")
  axes = tuple(range(1, jnp.ndim(pred)))
  return jnp.sum(jnp.square(pred - target), axis=axes)


# ----------------------------------------------------------------------------------------------
# Optimiser and schedules.


def make_optimizer(opt_config: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
  """``handjax.train.method.make_optimizer``, plus step drops of the learning rate.

  With ``opt_config.lr_drop_steps = (s_1, ..., s_k)`` (non-empty) the rate is
  ``learning_rate * lr_drop_factor^i`` after the i-th of those steps (Yang et al. ICCV 2019 Sec. 5:
  Adam 1e-4 "lowered by a factor of 10 two times"; the paper drops after convergence, a config
  fixes the steps). Without it, the generic optimiser (warm-up, cosine) is used.
  """
  drops = tuple(opt_config.get("lr_drop_steps", ()) or ())
  if not drops:
    return method_lib.make_optimizer(opt_config, num_steps)
  if opt_config.get("name", "adam") != "adam":
    raise ValueError("lr_drop_steps is implemented for optimizer.name = 'adam' only, got "
                     f"{opt_config.get('name')!r}.")
  factor = float(opt_config.get("lr_drop_factor", 0.1))
  schedule = optax.piecewise_constant_schedule(float(opt_config.learning_rate),
                                               {int(s): factor for s in drops})
  opt = optax.adam(schedule)
  clip = opt_config.get("grad_clip", 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt


# ----------------------------------------------------------------------------------------------
# Mean-pose baseline.


def mean_pose_baseline(train_batches: Any, test_batches: Any, *, root_joint: int = 0,
                       max_train_batches: int | None = None) -> dict[str, Any]:
  """EPE of predicting the training-set mean root-relative pose for every test example.

  The reference every pose estimator must beat: mu = mean over labelled training examples of
  P - P_root (metres), then e_ij = ||mu_j - (P_ij - P_i,root)|| over the labelled, visible joints of
  the test split (the evaluator's protocol). Host-side numpy.

  Args:
    train_batches: iterable of batches with ``pose3d`` (and optionally ``has_pose3d``); pass an
      unaugmented pass over the training split.
    test_batches: iterable of test batches (``pose3d``, optional ``visible``, ``has_pose3d``).
    root_joint: root of the root-relative poses.
    max_train_batches: stop after this many training batches (None: the whole iterable).

  Returns:
    {"mean_pose": (21, 3), "mean_epe_mm": float, "num_train": int, "num_test": int}.
  """
  from handjax.eval import metrics  # pylint: disable=g-import-not-at-top

  def rel(batch):
    pose = np.asarray(batch["pose3d"], np.float64)
    labelled = np.asarray(batch.get("has_pose3d", np.ones(len(pose), bool))).astype(bool)
    return pose - pose[:, root_joint:root_joint + 1], labelled

  total, count = 0.0, 0
  for i, batch in enumerate(train_batches):
    if max_train_batches is not None and i >= max_train_batches:
      break
    pose, labelled = rel(batch)
    total = total + pose[labelled].sum(axis=0)
    count += int(labelled.sum())
  if count == 0:
    raise ValueError("mean_pose_baseline: the training batches hold no labelled pose.")
  mean = total / count
  errors, visible = [], []
  for batch in test_batches:
    pose, labelled = rel(batch)
    errors.append(metrics.joint_errors(np.broadcast_to(mean, pose.shape), pose))
    vis = np.asarray(batch.get("visible", np.ones(pose.shape[:2], bool))).astype(bool)
    visible.append(vis & labelled[:, None])
  errors, visible = np.concatenate(errors), np.concatenate(visible)
  return {"mean_pose": mean, "mean_epe_mm": 1000.0 * metrics.mean_epe(errors, visible),
          "num_train": count, "num_test": int(visible.any(axis=1).sum())}
