"""Diagonal Gaussian algebra: the `Gaussian` pytree, sampling, KL divergences and expert fusion."""

from __future__ import annotations

from typing import NamedTuple

import jax


class Gaussian(NamedTuple):
  """A diagonal Gaussian N(mean, exp(logvar)); a pytree, so it passes through jit/vmap/grad.

  Attributes:
    mean: (..., D) array.
    logvar: (..., D) array of log-variances, same shape as `mean`.
  """

  mean: jax.Array
  logvar: jax.Array
