"""SemiHand's consistency terms (Yang dissertation Sec. 6.3.3, Eq. 6.9-6.14; ICCV 2021).

L_cons = L_vc + L_cc (Eq. 6.9), weighted by lambda_c = `LAMBDA_C` = 0.1 in the overall objective
(Eq. 6.1, Sec. 6.4.1):

* view consistency L_vc (Eq. 6.10): predictions on an augmented image T(x) must agree with the
  augmentation applied to the predictions on x. T is taken as a 2D affine map of the image plane,
  uv' = A [u, v, 1]^T with A (..., 2, 3) (rotations, translations, scaling: the perturbations of
  Sec. 6.3.4), so it is generic. It moves uv and warps the mask; the root-relative depth d is
  unchanged by an in-plane rotation or translation and is left as is.
* cross-modal consistency L_cc (Eq. 6.11-6.14) between the 2D pose and the predicted hand mask
  through the 55-circle hand model (`handjax.hand.circles`): a model-to-data term (the rendered
  circles against the mask, Eq. 6.12) and a data-to-model term (each pixel's distance to the circle
  model, Eq. 6.13-6.14), both with stop-gradient on the mask (Fig. 6.5) so that only the pose
  receives gradients.

All functions are pure jnp, take NHWC masks (..., h, w, 1) with uv in that mask's pixel coordinates
(u = column, v = row, pixel centres at integers), return per-example values (...), and are
jit/vmap/grad-safe.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from handjax.hand import circles as circles_lib
from handjax.hand.lifting import Pose25D
from handjax.losses.pose import pose_25d_distance

LAMBDA_C = 0.1  # weight of L_cons in Eq. 6.1 (Sec. 6.4.1).
LAMBDA_D = 50.0  # depth weight of the 2.5D distance, Eq. 6.2.
Reduction = Literal["mean", "sum"]


def _check_affine(transform: jax.Array) -> None:
  if transform.shape[-2:] != (2, 3):
    raise ValueError(
        f"transform must be a 2D affine map of shape (..., 2, 3) acting on [u, v, 1], got "
        f"{tuple(transform.shape)}")


def affine_uv(uv: jax.Array, transform: jax.Array) -> jax.Array:
  """T(uv) = A[:, :2] uv + A[:, 2] for a 2D affine map A (..., 2, 3), applied to (..., J, 2)."""
  _check_affine(transform)
  return jnp.einsum("...ij,...nj->...ni", transform[..., :2], uv) + transform[..., None, :, 2]


def affine_pose(pose: Pose25D, transform: jax.Array) -> Pose25D:
  """T(p) for a 2.5D pose: uv through the affine map, root-relative depth unchanged."""
  return Pose25D(affine_uv(pose.uv, transform), pose.depth)


def _invert_affine(transform: jax.Array) -> jax.Array:
  linear = jnp.linalg.inv(transform[..., :2])
  shift = -jnp.einsum("...ij,...j->...i", linear, transform[..., 2])
  return jnp.concatenate([linear, shift[..., None]], -1)


def warp_affine(image: jax.Array, transform: jax.Array) -> tuple[jax.Array, jax.Array]:
  """T(w): the image warped by the affine map, out(g) = image(A^-1 g), bilinear.

  Output pixel g takes the bilinearly interpolated value at its pre-image A^-1 g; pre-images
  outside the image (beyond the outer pixel centres) read 0 and are marked invalid.

  Args:
    image: (..., h, w, c) NHWC.
    transform: (..., 2, 3) affine map from input to output pixel coordinates (batch axes
      broadcast against the image's).

  Returns:
    (warped (..., h, w, c), valid (..., h, w, 1) float: 1 where the pre-image lies in the image).
  """
  _check_affine(transform)
  height, width = image.shape[-3], image.shape[-2]
  batch = jnp.broadcast_shapes(image.shape[:-3], transform.shape[:-2])
  image = jnp.broadcast_to(image, batch + image.shape[-3:])
  transform = jnp.broadcast_to(transform, batch + (2, 3))
  v, u = jnp.meshgrid(jnp.arange(height, dtype=image.dtype), jnp.arange(width, dtype=image.dtype),
                      indexing="ij")
  grid = jnp.stack([u, v], -1).reshape(-1, 2)  # (h w, 2)
  src = affine_uv(jnp.broadcast_to(grid, transform.shape[:-2] + grid.shape),
                  _invert_affine(transform))  # (..., h w, 2)
  su, sv = src[..., 0], src[..., 1]
  valid = (su >= 0) & (su <= width - 1) & (sv >= 0) & (sv <= height - 1)
  u0 = jnp.clip(jnp.floor(su), 0, width - 1)
  v0 = jnp.clip(jnp.floor(sv), 0, height - 1)
  fu, fv = jnp.clip(su - u0, 0.0, 1.0), jnp.clip(sv - v0, 0.0, 1.0)
  u0, v0 = u0.astype(jnp.int32), v0.astype(jnp.int32)
  u1, v1 = jnp.minimum(u0 + 1, width - 1), jnp.minimum(v0 + 1, height - 1)
  flat = image.reshape(image.shape[:-3] + (height * width, image.shape[-1]))

  def tap(vv, uu):
    return jnp.take_along_axis(flat, (vv * width + uu)[..., None], axis=-2)

  value = ((1 - fv)[..., None] * ((1 - fu)[..., None] * tap(v0, u0) + fu[..., None] * tap(v0, u1))
           + fv[..., None] * ((1 - fu)[..., None] * tap(v1, u0) + fu[..., None] * tap(v1, u1)))
  value = jnp.where(valid[..., None], value, 0.0)
  shape = image.shape[:-3] + (height, width)
  return value.reshape(shape + (image.shape[-1],)), valid.reshape(shape + (1,)).astype(image.dtype)


def _reduce(per_pixel: jax.Array, weights: jax.Array, reduction: str, what: str) -> jax.Array:
  if reduction not in ("mean", "sum"):
    raise ValueError(f"{what}: reduction must be 'mean' or 'sum', got {reduction!r}")
  total = jnp.sum(weights * per_pixel, axis=(-3, -2, -1))
  if reduction == "sum":
    return total
  return total / jnp.maximum(jnp.sum(weights, axis=(-3, -2, -1)), 1.0)


def view_consistency(
    pred_transformed: Pose25D,
    mask_transformed: jax.Array,
    pred: Pose25D,
    mask: jax.Array,
    transform: jax.Array,
    lambda_d: float = LAMBDA_D,
    stop_target: bool = False,
    reduction: Reduction = "mean",
    mask_transform: jax.Array | None = None,
    return_terms: bool = False,
) -> jax.Array | tuple[jax.Array, jax.Array]:
  """View consistency, Yang dissertation Eq. 6.10 (SemiHand):

      L_vc = l(f_p(T(x)), T(f_p(x))) + ||f_w(T(x)) - T(f_w(x))||_1,

  with l the 2.5D distance of Eq. 6.2 (`pose_25d_distance`, lambda_d = 50), T(p) = `affine_pose`
  and T(w) = `warp_affine`. The mask L1 counts only pixels whose pre-image lies inside the original
  image (elsewhere T(w) is undefined); "mean" (default) divides it by their number, "sum" is the
  norm as printed. The dissertation does not say whether the T(f(x)) branch is a fixed target;
  `stop_target=True` makes it one (FixMatch style), the default lets gradients reach both.

  The pose and the mask may live in different pixel units (SemiHand's loss uses 64-px uv whatever
  the mask's map size): `mask_transform` is T in the mask's own pixels, `transform` T in uv's.

  Args:
    pred_transformed: predictions on T(x), uv (..., J, 2) and depth (..., J).
    mask_transformed: (..., h, w, 1) mask predicted on T(x).
    pred: predictions on x.
    mask: (..., h, w, 1) mask predicted on x.
    transform: (..., 2, 3) affine map of the augmentation, x pixels -> T(x) pixels, in uv's unit.
    lambda_d: depth weight of Eq. 6.2.
    stop_target: stop gradients through the T(f(x)) branch.
    reduction: "mean" or "sum" over mask pixels.
    mask_transform: (..., 2, 3) the same map in mask pixels; None: `transform`.
    return_terms: return (pose term, mask term) instead of their sum.

  Returns:
    (...) per-example losses; exactly 0 for consistent predictions (or the two terms).
  """
  if mask.shape != mask_transformed.shape:
    raise ValueError(
        f"mask and mask_transformed must have the same shape (..., h, w, 1), got "
        f"{tuple(mask.shape)} and {tuple(mask_transformed.shape)}")
  target = affine_pose(pred, transform)
  target_mask, valid = warp_affine(mask, transform if mask_transform is None else mask_transform)
  if stop_target:
    target, target_mask = jax.lax.stop_gradient((target, target_mask))
  pose_term = pose_25d_distance(pred_transformed.uv, pred_transformed.depth, target.uv,
                                target.depth, lambda_d)
  mask_term = _reduce(jnp.abs(mask_transformed - target_mask), valid, reduction, "view_consistency")
  if return_terms:
    return pose_term, mask_term
  return pose_term + mask_term


def model_to_data(
    uv: jax.Array,
    mask: jax.Array,
    pixels_per_unit: float | jax.Array,
    softness: float = 0.5,
    reduction: Reduction = "mean",
) -> jax.Array:
  """Model-to-data term, Yang dissertation Eq. 6.12: L_m2d = ||R(G(uv)) - stop(w)||_1.

  G = `circles.circle_model`, R = `circles.render_circles` (soft union of the 55 disks). The mask
  is a constant (stop-gradient, Eq. 6.11 and Fig. 6.5). "sum" is the L1 norm as printed; "mean"
  (default) divides by the number of pixels so lambda_c does not depend on the resolution.

  Args:
    uv: (..., 21, 2) predicted 2D pose in mask pixels.
    mask: (..., h, w, 1) predicted hand mask in [0, 1].
    pixels_per_unit: (...,) or scalar image length of the reference bone (circle radii scale).
    softness: boundary width (pixels) of the rendered mask.
    reduction: "mean" or "sum".

  Returns:
    (...) per-example losses.
  """
  mask = jax.lax.stop_gradient(mask)
  rendered = circles_lib.render_circles(
      circles_lib.circle_model(uv, pixels_per_unit), mask.shape[-3:-1], softness)
  return _reduce(jnp.abs(rendered - mask), jnp.ones_like(mask), reduction, "model_to_data")


def data_to_model(
    uv: jax.Array,
    mask: jax.Array,
    pixels_per_unit: float | jax.Array,
    threshold: float = 0.5,
    reduction: Reduction = "mean",
) -> jax.Array:
  """Data-to-model term, Yang dissertation Eq. 6.13-6.14: L_d2m = sum_g d(w(g), G(uv)),

      d(w(g), m) = max(min_i (||g - c^i|| - r^i), 0)   if w(g) = 1  (hand pixel outside the model),
                   max(max_i (r^i - ||g - c^i||), 0)   otherwise    (background inside the model).

  A predicted (soft) mask counts as 1 where w(g) > `threshold`. The mask is a constant
  (stop-gradient): its gradient is exactly zero. "sum" is Eq. 6.13 as printed (pixels); "mean"
  (default) divides by the number of pixels.

  Args:
    uv: (..., 21, 2) predicted 2D pose in mask pixels.
    mask: (..., h, w, 1) predicted hand mask.
    pixels_per_unit: (...,) or scalar image length of the reference bone.
    threshold: mask value above which a pixel is hand.
    reduction: "mean" or "sum".

  Returns:
    (...) per-example losses (pixels).
  """
  hand = jax.lax.stop_gradient(mask)[..., 0] > threshold  # (..., h, w)
  dist = circles_lib.circle_distances(
      circles_lib.circle_model(uv, pixels_per_unit), mask.shape[-3:-1])  # (..., h, w, 55)
  outside = jnp.maximum(jnp.min(dist, axis=-1), 0.0)
  inside = jnp.maximum(jnp.max(-dist, axis=-1), 0.0)
  per_pixel = jnp.where(hand, outside, inside)[..., None]
  return _reduce(per_pixel, jnp.ones_like(per_pixel), reduction, "data_to_model")


def cross_modal_consistency(
    uv: jax.Array,
    mask: jax.Array,
    pixels_per_unit: float | jax.Array,
    softness: float = 0.5,
    threshold: float = 0.5,
    reduction: Reduction = "mean",
) -> jax.Array:
  """Cross-modal consistency, Yang dissertation Eq. 6.11:
  L_cc(uv, w) = L_m2d(uv, stop(w)) + L_d2m(uv, stop(w)) (`model_to_data` + `data_to_model`).

  Args:
    uv: (..., 21, 2) predicted 2D pose in mask pixels.
    mask: (..., h, w, 1) predicted hand mask.
    pixels_per_unit: (...,) or scalar image length of the reference bone.
    softness: boundary width of the rendered circles (Eq. 6.12).
    threshold: hand / background threshold on the mask (Eq. 6.14).
    reduction: "mean" or "sum" over pixels for both terms.

  Returns:
    (...) per-example losses.
  """
  return (model_to_data(uv, mask, pixels_per_unit, softness, reduction)
          + data_to_model(uv, mask, pixels_per_unit, threshold, reduction))


__all__ = [
    "LAMBDA_C",
    "affine_pose",
    "affine_uv",
    "cross_modal_consistency",
    "data_to_model",
    "model_to_data",
    "view_consistency",
    "warp_affine",
]
