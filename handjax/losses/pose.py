"""Pose reconstruction losses: 3D pose L2 / EPE / MSE and the 2.5D pose distance.

Pure jnp, per-example outputs: poses are (..., J, D) and every loss returns (...). An optional
`visible` (..., J) mask drops joints (missing labels are masks, not code paths); a fully masked
example gives exactly 0 with zero gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from handjax.hand import kinematics


def _check_same_shape(pred: jax.Array, target: jax.Array, what: str) -> None:
  if jnp.shape(pred) != jnp.shape(target) or jnp.ndim(pred) < 2:
    raise ValueError(
        f"{what}: pred and target must have the same shape (..., joints, dims), got "
        f"{jnp.shape(pred)} and {jnp.shape(target)}")


def _joint_weights(visible: jax.Array | None, joints_shape: tuple[int, ...], dtype) -> jax.Array:
  if visible is None:
    return jnp.ones(joints_shape, dtype)
  if jnp.shape(visible) != joints_shape:
    raise ValueError(
        f"visible must have shape (..., joints) = {joints_shape}, got {jnp.shape(visible)}")
  return jnp.asarray(visible).astype(dtype)


def pose_l2(pred: jax.Array, target: jax.Array, visible: jax.Array | None = None) -> jax.Array:
  """Squared L2 pose loss, Yang et al. ICCV 2019, Eq. 10: L_pose = ||y_hat - y||^2.

  y is the flattened 21 x 3 pose, so the loss is sum_j sum_c (y_hat_jc - y_jc)^2 over joints and
  coordinates (dissertation Eq. 5.9 prints the norm without the square; the ICCV paper and the
  phrase "L2 loss" agree on the square, which is also what keeps the gradient finite at zero error).

  Args:
    pred: (..., J, D) predicted pose.
    target: (..., J, D) target pose.
    visible: optional (..., J) mask; 0 drops a joint.

  Returns:
    (...) per-example losses.
  """
  _check_same_shape(pred, target, "pose_l2")
  weights = _joint_weights(visible, jnp.shape(pred)[:-1], jnp.result_type(pred))
  return jnp.sum(weights * jnp.sum(jnp.square(pred - target), axis=-1), axis=-1)


def pose_epe(pred: jax.Array, target: jax.Array, visible: jax.Array | None = None) -> jax.Array:
  """Sum over joints of the Euclidean distance, sum_j ||y_hat_j - y_j||: the end-point error.

  The L1-like choice of integral regression (Sun et al. ECCV 2018, Sec. 3.2): large errors pull
  linearly, not quadratically. The norm is `kinematics.safe_norm`, so the gradient at a joint
  with zero error is 0, not NaN.

  Args:
    pred: (..., J, D) predicted pose.
    target: (..., J, D) target pose.
    visible: optional (..., J) mask; 0 drops a joint.

  Returns:
    (...) per-example losses.
  """
  _check_same_shape(pred, target, "pose_epe")
  weights = _joint_weights(visible, jnp.shape(pred)[:-1], jnp.result_type(pred))
  return jnp.sum(weights * kinematics.safe_norm(pred - target), axis=-1)


def pose_mse(pred: jax.Array, target: jax.Array, visible: jax.Array | None = None) -> jax.Array:
  """Mean squared error over joints and coordinates: L_MSE(J, ID(z)) of Stergioulas et al. Eq. 2.

  MSE = sum_j v_j ||y_hat_j - y_j||^2 / (D sum_j v_j): `pose_l2` divided by the number of visible
  coordinates; 0 when no joint is visible.

  Args:
    pred: (..., J, D) predicted pose.
    target: (..., J, D) target pose.
    visible: optional (..., J) mask.

  Returns:
    (...) per-example losses.
  """
  _check_same_shape(pred, target, "pose_mse")
  weights = _joint_weights(visible, jnp.shape(pred)[:-1], jnp.result_type(pred))
  count = jnp.sum(weights, axis=-1) * jnp.shape(pred)[-1]
  return pose_l2(pred, target, visible) / jnp.maximum(count, 1.0)


def pose_25d_distance(
    pred_uv: jax.Array,
    pred_depth: jax.Array,
    target_uv: jax.Array,
    target_depth: jax.Array,
    lambda_d: float = 50.0,
    visible: jax.Array | None = None,
) -> jax.Array:
  """2.5D pose distance, Yang dissertation Eq. 6.2 (SemiHand, ICCV 2021), reused by Eq. 7.1.

  l(p1, p2) = ||uv_1 - uv_2||_2^2 + lambda_d ||d_1 - d_2||_2^2, with p = (uv, d): image coordinates
  of the J keypoints and their metric depths relative to the root keypoint. Both norms are over all
  keypoints (squared Frobenius norms); lambda_d = 50 is the dissertation's value, tuned for its own
  (unstated) uv normalisation, so re-tune it when uv is in pixels.

  Args:
    pred_uv: (..., J, 2) predicted image coordinates.
    pred_depth: (..., J) predicted root-relative depths.
    target_uv: (..., J, 2) target image coordinates.
    target_depth: (..., J) target root-relative depths.
    lambda_d: weight of the depth term.
    visible: optional (..., J) mask.

  Returns:
    (...) per-example distances.
  """
  _check_same_shape(pred_uv, target_uv, "pose_25d_distance (uv)")
  joints_shape = jnp.shape(pred_uv)[:-1]
  if jnp.shape(pred_depth) != joints_shape or jnp.shape(target_depth) != joints_shape:
    raise ValueError(
        f"pose_25d_distance: depths must have shape (..., joints) = {joints_shape}, got "
        f"{jnp.shape(pred_depth)} and {jnp.shape(target_depth)}")
  weights = _joint_weights(visible, joints_shape, jnp.result_type(pred_uv))
  uv_term = jnp.sum(weights * jnp.sum(jnp.square(pred_uv - target_uv), axis=-1), axis=-1)
  depth_term = jnp.sum(weights * jnp.square(pred_depth - target_depth), axis=-1)
  return uv_term + lambda_d * depth_term
