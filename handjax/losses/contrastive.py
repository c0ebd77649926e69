"""Contrastive loss: NT-Xent as written in Yang dissertation Eq. 7.3 (dual-modality pre-training).

Pure jnp; jit-, vmap- and grad-safe, including zero feature vectors and batches without negatives.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp

Reduction = Literal["sum", "mean", "none"]
_NORM_EPS = 1e-8


def _normalized(x: jax.Array) -> jax.Array:
  """x / max(||x||, eps) along the last axis."""
  # rsqrt(max(.)) rather than x / ||x||: the square root's derivative is infinite at 0.
  norm_sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x * jax.lax.rsqrt(jnp.maximum(norm_sq, _NORM_EPS**2))


def cosine_similarity_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
  """sim(a_i, b_k) = <a_i, b_k> / (||a_i|| ||b_k||) for all pairs; (B, D), (C, D) -> (B, C).

  Norms are floored at 1e-8, so a zero vector has similarity 0 to everything and finite gradients.
  """
  return _normalized(a) @ _normalized(b).T


# Jitted: one fused computation instead of ~20 dispatched ops when called eagerly (e.g. in tests).
@functools.partial(jax.jit, static_argnames=("reduction",))
def nt_xent(
    z: jax.Array,
    z_pos: jax.Array,
    temperature: float = 0.5,
    valid: jax.Array | None = None,
    reduction: Reduction = "sum",
) -> jax.Array:
  """NT-Xent loss exactly as Yang dissertation Eq. 7.3.

  eta(z, z+) = - sum_{i=1}^B log [ exp(sim(z_i, z_i+)/tau) /
               sum_{k=1}^B 1[k != i] (exp(sim(z_i, z_k)/tau) + exp(sim(z_i, z_k+)/tau)) ],

  sim = cosine similarity, tau = 0.5. The anchors are the B rows of `z` only (not 2B as in SimCLR,
  Chen et al. 2020); Eq. 7.4 obtains symmetry by calling eta with swapped roles. The denominator
  runs over the other samples' views z_k and positives z_k+ (2B - 2 terms) and, unlike SimCLR,
  excludes the anchor's own positive z_i+. The loss is therefore not bounded below by 0.

  An anchor without negatives (B = 1, or all other samples invalid) has an empty denominator and an
  undefined term; it contributes 0 (with zero gradient), the limit of SimCLR's form, which would
  give log(1) = 0 there.

  Args:
    z: (B, D) features of the anchors (normalisation happens inside).
    z_pos: (B, D) features of their positives.
    temperature: tau.
    valid: optional (B,) mask; invalid samples are neither anchors nor negatives.
    reduction: "sum" over anchors (Eq. 7.3, default), "mean" over valid anchors, or "none" for the
      (B,) per-anchor terms.

  Returns:
    A scalar, or (B,) for reduction="none".
  """
  if jnp.ndim(z) != 2 or jnp.shape(z) != jnp.shape(z_pos):
    raise ValueError(
        f"nt_xent: z and z_pos must both be (B, D), got {jnp.shape(z)} and {jnp.shape(z_pos)}")
  if reduction not in ("sum", "mean", "none"):
    raise ValueError(f"nt_xent: reduction must be 'sum', 'mean' or 'none', got {reduction!r}")
  batch = jnp.shape(z)[0]
  valid = jnp.ones((batch,), bool) if valid is None else jnp.asarray(valid).astype(bool)
  if jnp.shape(valid) != (batch,):
    raise ValueError(f"nt_xent: valid must have shape ({batch},), got {jnp.shape(valid)}")

  positive = jnp.sum(_normalized(z) * _normalized(z_pos), axis=-1) / temperature  # (B,)
  logits = jnp.concatenate(
      [cosine_similarity_matrix(z, z), cosine_similarity_matrix(z, z_pos)], axis=1) / temperature
  negative = jnp.logical_and(~jnp.eye(batch, dtype=bool), valid[None, :])  # (B, B): k != i, k valid
  negative = jnp.concatenate([negative, negative], axis=1)  # (B, 2B)
  has_negative = jnp.any(negative, axis=1)
  # Rows without negatives use a dummy all-True mask (so logsumexp never sees only -inf) and are
  # then zeroed: finite values and gradients without a special code path.
  negative = jnp.logical_or(negative, ~has_negative[:, None])
  log_denominator = jax.nn.logsumexp(jnp.where(negative, logits, -jnp.inf), axis=1)
  active = jnp.logical_and(valid, has_negative)
  per_anchor = jnp.where(active, log_denominator - positive, 0.0)
  if reduction == "none":
    return per_anchor
  if reduction == "mean":
    return jnp.sum(per_anchor) / jnp.maximum(jnp.sum(valid), 1)
  return jnp.sum(per_anchor)
