"""Random numbers for the generator, drawn as one block per stream.

Why: every `jax.random` call inlines a threefry kernel; the ~100 small draws of a scene made the
renderer take minutes to compile on CPU. A `Draws` makes one threefry call for a block of uniforms
and hands out consecutive slices (in trace order, so still a pure function of the key); normals are
the inverse normal CDF of those uniforms.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


class Draws:
  """Consecutive slices of `size` uniforms in (0, 1) drawn from `key` with one threefry call."""

  def __init__(self, key: jax.Array, size: int):
    self._block = jax.random.uniform(key, (size,), minval=1e-7, maxval=1.0 - 1e-7)
    self._next = 0

  def uniform(self, shape: tuple[int, ...] = (), minval=0.0, maxval=1.0) -> jax.Array:
    n = math.prod(shape)
    if self._next + n > self._block.shape[0]:
      raise ValueError(f"Draws block of {self._block.shape[0]} exhausted; enlarge it")
    u = self._block[self._next:self._next + n].reshape(shape)
    self._next += n
    return minval + u * (jnp.asarray(maxval) - jnp.asarray(minval))

  def normal(self, shape: tuple[int, ...] = ()) -> jax.Array:
    return jax.scipy.special.ndtri(self.uniform(shape))

  def bernoulli(self, p: float) -> jax.Array:
    return self.uniform() < p

  def randint(self, low: int, high: int) -> jax.Array:
    """Integer uniform on [low, high)."""
    return jnp.clip(jnp.floor(self.uniform(minval=low, maxval=high)), low, high - 1).astype(jnp.int32)
