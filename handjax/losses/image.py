"""Dense image reconstruction losses: mask and depth-map L1 (Yang dissertation Eq. 7.1).

Images are NHWC; every loss reduces over the last three axes (h, w, c) and keeps any leading batch
axes. A validity mask selects the pixels that count; an example with no valid pixel gives 0 with
zero gradient, so examples without a depth or mask label can share a batch (their `valid` is 0).
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Reduction = Literal["mean", "sum"]
_IMAGE_AXES = (-3, -2, -1)


def _masked_l1(
    pred: jax.Array, target: jax.Array, valid: jax.Array | None, reduction: str, what: str
) -> jax.Array:
  if jnp.shape(pred) != jnp.shape(target) or jnp.ndim(pred) < 3:
    raise ValueError(
        f"{what}: pred and target must have the same shape (..., h, w, c), got "
        f"{jnp.shape(pred)} and {jnp.shape(target)}")
  if reduction not in ("mean", "sum"):
    raise ValueError(f"{what}: reduction must be 'mean' or 'sum', got {reduction!r}")
  dtype = jnp.result_type(pred)
  weights = jnp.ones_like(pred, dtype) if valid is None else jnp.broadcast_to(
      jnp.asarray(valid).astype(dtype), jnp.shape(pred))
  total = jnp.sum(weights * jnp.abs(pred - target), axis=_IMAGE_AXES)
  if reduction == "sum":
    return total
  return total / jnp.maximum(jnp.sum(weights, axis=_IMAGE_AXES), 1.0)


def mask_l1(
    pred: jax.Array,
    target: jax.Array,
    valid: jax.Array | None = None,
    reduction: Reduction = "mean",
) -> jax.Array:
  """Segmentation-mask L1, the lambda_m ||m - m_gt||_1 term of Yang dissertation Eq. 7.1.

  Also the hand-mask term lambda_w ||w - w_gt||_1 of Eq. 6.3. "sum" is the L1 norm as written;
  the default "mean" divides it by the number of valid pixels so the weight lambda_m does not depend
  on the resolution.

  Args:
    pred: (..., h, w, c) predicted mask (probabilities or soft labels).
    target: (..., h, w, c) target mask.
    valid: optional mask broadcastable to `pred` (e.g. (..., h, w, 1)); 0 = pixel ignored.
    reduction: "mean" over valid pixels (default) or "sum".

  Returns:
    (...) per-example losses.
  """
  return _masked_l1(pred, target, valid, reduction, "mask_l1")


def depth_l1(
    pred: jax.Array,
    target: jax.Array,
    valid: jax.Array | None = None,
    ignore_background: bool = True,
    reduction: Reduction = "mean",
) -> jax.Array:
  """Depth-map L1, the lambda_d ||d - d_gt||_1 term of Yang dissertation Eq. 7.1.

  A target depth of 0 marks background / unknown (no sensor return); with `ignore_background` those
  pixels are excluded, on top of `valid`. "sum" is the L1 norm as written; "mean" (default) averages
  over the pixels that count.

  Args:
    pred: (..., h, w, 1) predicted depth (metres, or the normalised depth a config states).
    target: (..., h, w, 1) target depth, 0 where unknown.
    valid: optional mask broadcastable to `pred`; 0 = pixel ignored.
    ignore_background: also ignore pixels whose target is exactly 0.
    reduction: "mean" over counted pixels (default) or "sum".

  Returns:
    (...) per-example losses.
  """
  if ignore_background:
    known = jnp.asarray(target) != 0
    valid = known if valid is None else jnp.logical_and(jnp.asarray(valid).astype(bool), known)
  return _masked_l1(pred, target, valid, reduction, "depth_l1")
