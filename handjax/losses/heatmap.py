"""Heat-map targets and their read-out.

Pixel convention (the whole project): a heat map of shape (h, w) has pixel centres at integer
coordinates; `uv[..., 0]` is the column (u, x) and `uv[..., 1]` the row (v, y).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _pixel_grid(height: int, width: int, dtype=jnp.float32) -> tuple[jax.Array, jax.Array]:
  rows = jnp.arange(height, dtype=dtype)
  cols = jnp.arange(width, dtype=dtype)
  return rows, cols


def gaussian_heatmaps(uv: jax.Array, size: tuple[int, int], sigma: float) -> jax.Array:
  """Gaussian heat-map targets, Yang dissertation Eq. 2.1 (Tompson et al. 2014).

  h_p = exp(-||p - J||^2 / (2 sigma^2)) for every pixel p, peak value 1 at the keypoint.

  Args:
    uv: (..., K, 2) keypoints in heat-map pixel coordinates (u = column, v = row).
    size: (height, width) of the heat maps.
    sigma: standard deviation in pixels.

  Returns:
    (..., height, width, K) heat maps (channels last, as images are NHWC).
  """
  height, width = size
  rows, cols = _pixel_grid(height, width, uv.dtype)
  du = cols[:, None] - uv[..., None, :, 0]  # (..., w, K)
  dv = rows[:, None] - uv[..., None, :, 1]  # (..., h, K)
  sq = dv[..., :, None, :] ** 2 + du[..., None, :, :] ** 2  # (..., h, w, K)
  return jnp.exp(-sq / (2.0 * sigma**2))


def soft_argmax(heatmaps: jax.Array, temperature: float = 1.0) -> jax.Array:
  """Differentiable keypoint read-out, Yang dissertation Eq. 2.3 (integral regression).

  J = sum_p softmax(h / temperature)_p * p over all pixels p of each channel.

  Args:
    heatmaps: (..., h, w, K) logits (channels last).
    temperature: softmax temperature; Eq. 2.3 is temperature 1. Smaller is sharper.

  Returns:
    (..., K, 2) expected (u, v) in heat-map pixel coordinates.
  """
  height, width = heatmaps.shape[-3], heatmaps.shape[-2]
  rows, cols = _pixel_grid(height, width, heatmaps.dtype)
  flat = jnp.reshape(heatmaps, heatmaps.shape[:-3] + (height * width, heatmaps.shape[-1]))
  probs = jax.nn.softmax(flat / temperature, axis=-2)
  probs = jnp.reshape(probs, heatmaps.shape)
  u = jnp.einsum("...hwk,w->...k", probs, cols)
  v = jnp.einsum("...hwk,h->...k", probs, rows)
  return jnp.stack([u, v], axis=-1)


def heatmap_l2(
    pred: jax.Array,
    target: jax.Array,
    visible: jax.Array | None = None,
    squared: bool = True,
) -> jax.Array:
  """Heat-map reconstruction loss, Yang et al. ICCV 2019, Eq. 7: L_heat = sum_j ||H_hat_j - H_j||.

  The paper calls it "the L2 loss function of pixel-wise difference"; the default (`squared=True`)
  is that sum of squared pixel differences, sum_j sum_p (H_hat_jp - H_jp)^2 (dissertation Eq. 2.1).
  `squared=False` is Eq. 7 as printed, the sum over keypoints of the Frobenius norm of each map's
  difference, with a gradient that stays finite (zero) where a map is reproduced exactly.

  Args:
    pred: (..., h, w, K) predicted heat maps (channels last).
    target: (..., h, w, K) target heat maps, e.g. from `gaussian_heatmaps`.
    visible: optional (..., K) mask; 0 drops a keypoint's map.
    squared: sum of squares (default) or sum of per-keypoint norms (Eq. 7 as printed).

  Returns:
    (...) per-example losses.
  """
  if jnp.shape(pred) != jnp.shape(target) or jnp.ndim(pred) < 3:
    raise ValueError(
        f"heatmap_l2: pred and target must have the same shape (..., h, w, K), got "
        f"{jnp.shape(pred)} and {jnp.shape(target)}")
  per_keypoint = jnp.sum(jnp.square(pred - target), axis=(-3, -2))  # (..., K)
  if not squared:
    # Double `where`: sqrt'(0) is infinite, so the norm's input is kept away from 0 where it is 0.
    nonzero = per_keypoint > 0
    per_keypoint = jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, per_keypoint, 1.0)), 0.0)
  if visible is not None:
    if jnp.shape(visible) != jnp.shape(per_keypoint):
      raise ValueError(
          f"heatmap_l2: visible must have shape (..., K) = {jnp.shape(per_keypoint)}, "
          f"got {jnp.shape(visible)}")
    per_keypoint = per_keypoint * jnp.asarray(visible).astype(per_keypoint.dtype)
  return jnp.sum(per_keypoint, axis=-1)


def heatmap_cross_entropy(logits: jax.Array, uv: jax.Array, sigma: float) -> jax.Array:
  """Cross-entropy of each keypoint's softmax against a normalised Gaussian at its label.

    L = sum_k sum_p -t_kp log softmax(h_k)_p,   t_kp = g_kp / sum_p' g_kp',

  g the Gaussian heat map of `gaussian_heatmaps`. It supervises the same softmax that
  `soft_argmax` reads out, densely, so the read-out learns where a coordinate loss alone gives
  every pixel the same weak gradient (Nibali et al. 2018 regularise integral regression the same
  way, with a divergence to a Gaussian). log_softmax keeps it finite for any finite logits.

  Args:
    logits: (..., h, w, K) heat-map logits.
    uv: (..., K, 2) labels in heat-map pixel coordinates (u = column).
    sigma: the Gaussian's standard deviation in heat-map pixels.

  Returns:
    (...) per-example losses (summed over keypoints).
  """
  height, width = logits.shape[-3], logits.shape[-2]
  if jnp.shape(uv) != jnp.shape(logits)[:-3] + (logits.shape[-1], 2):
    raise ValueError(f"heatmap_cross_entropy: uv must have shape (..., K, 2) matching logits "
                     f"{jnp.shape(logits)}, got {jnp.shape(uv)}.")
  target = gaussian_heatmaps(jnp.asarray(uv, logits.dtype), (height, width), sigma)
  flat = (height * width, logits.shape[-1])
  target = jnp.reshape(target, target.shape[:-3] + flat)
  target = target / jnp.maximum(jnp.sum(target, axis=-2, keepdims=True), 1e-12)
  log_probs = jax.nn.log_softmax(jnp.reshape(logits, logits.shape[:-3] + flat), axis=-2)
  return -jnp.sum(target * log_probs, axis=(-2, -1))
