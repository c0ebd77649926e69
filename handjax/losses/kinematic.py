"""Kinematic losses on 3D hand poses: KCS, geometric (joint-line distance) and bone-length losses.

Pure jax.numpy (no Flax). Every loss takes predicted and target poses of shape (..., 21, 3) in the
handjax joint order and returns one value per example, shape (...,) (so (B,) for a batch); the
reduction over the batch is left to the caller. Values and gradients are finite at degenerate
poses (all joints at one point, collinear chains): see `handjax.hand.kinematics`.

Reductions (the papers write "l1 distance" without saying sum or mean): each loss is the **mean**
absolute difference over the entries of its representation, so the three are on the scale of one
entry (m^2 for KCS, m for the other two) and independent of how many entries there are; a sum is
that mean times 400 (KCS), 3610 (geometric) or 20 (bone lengths).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from handjax.hand import kinematics


def _check_pair(pred: jax.Array, target: jax.Array) -> None:
  if pred.shape != target.shape:
    raise ValueError(
        f"pred and target must have the same shape (..., 21, 3), got {tuple(pred.shape)} and "
        f"{tuple(target.shape)}"
    )


def kcs_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """L1 distance between Kinematic Chain Space matrices (Stergioulas et al., seed 004, Eq. 13).

      L_KCS = mean_{k,m} |KCS_pred[k, m] - KCS_target[k, m]|,   KCS = B^T B (Eq. 12),

  over the 20 x 20 = 400 entries (`kinematics.kcs`). The diagonal compares squared bone lengths,
  the off-diagonal entries the products l_k l_m cos(angle) of every pair of bones. KCS depends on
  bone vectors only and (R B)^T (R B) = B^T B, so the loss is invariant to translating or rotating
  either pose.

  Args:
    pred: (..., 21, 3) predicted poses.
    target: (..., 21, 3) target poses.

  Returns:
    (...,) per-example loss (units of pose squared, e.g. m^2).
  """
  _check_pair(pred, target)
  return jnp.mean(jnp.abs(kinematics.kcs(pred) - kinematics.kcs(target)), axis=(-2, -1))


_VALID_ENTRIES = ~kinematics.ON_LINE  # (21, 190): joint i is not one of line l's joints.
_NUM_VALID = int(np.sum(_VALID_ENTRIES))  # 21 * 190 - 2 * 190 = 3610


def geometric_loss(
    pred: jax.Array, target: jax.Array, method: Literal["heron", "cross"] = "heron"
) -> jax.Array:
  """L1 distance between joint-line distance matrices (Stergioulas et al., seed 004, Eq. 16).

      L_GEO = mean_{(i, l): i not on l} |S_pred(i, l) - S_target(i, l)|,

  with S(i, l) the distance of joint i to line l (Eq. 14-15, `kinematics.joint_line_distances`,
  lines `kinematics.LINES`). The mean runs over the 3610 entries where joint i is not one of the
  line's joints (the other 380 are identically 0 and carry no information). Invariant to rotating
  and translating either pose.

  Args:
    pred: (..., 21, 3) predicted poses.
    target: (..., 21, 3) target poses.
    method: "heron" (the paper's Eq. 14, default) or "cross" (same quantity by the cross product;
      better conditioned for near-collinear joints in float32).

  Returns:
    (...,) per-example loss (units of pose, e.g. m).
  """
  _check_pair(pred, target)
  if method == "heron":
    fn = kinematics.joint_line_distances
  elif method == "cross":
    fn = kinematics.joint_line_distances_cross
  else:
    raise ValueError(f"method must be 'heron' or 'cross', got {method!r}")
  diff = jnp.abs(fn(pred) - fn(target))
  return jnp.sum(jnp.where(_VALID_ENTRIES, diff, 0.0), axis=(-2, -1)) / _NUM_VALID


def bone_length_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
  """Mean absolute difference of the 20 bone lengths: mean_k | ||b_k^pred|| - ||b_k^target|| |.

  Bone lengths are the diagonal of KCS up to a square root (Stergioulas et al., seed 004, Eq. 12);
  this loss constrains them alone, in metres, with a finite gradient at zero-length bones.

  Args:
    pred: (..., 21, 3) predicted poses.
    target: (..., 21, 3) target poses.

  Returns:
    (...,) per-example loss (units of pose, e.g. m).
  """
  _check_pair(pred, target)
  return jnp.mean(
      jnp.abs(kinematics.bone_lengths(pred) - kinematics.bone_lengths(target)), axis=-1
  )
