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
