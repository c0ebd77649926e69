"""KL-weight (beta) schedules as optax-style schedule functions `step -> value`.

Each factory returns a pure function of the (possibly traced) step, compatible with `optax.Schedule`
and usable inside a jitted train step; this module imports only jax, so `handjax.losses` keeps
working without optax installed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

Schedule = Callable[[jax.Array | int], jax.Array]


def _progress(step: jax.Array | int, transition_begin: int, transition_steps: int) -> jax.Array:
  """Fraction of the transition done, clipped to [0, 1]; a step function if transition_steps=0."""
  step = jnp.asarray(step, dtype=jnp.float32)
  if transition_steps <= 0:
    return (step >= transition_begin).astype(jnp.float32)
  return jnp.clip((step - transition_begin) / transition_steps, 0.0, 1.0)


def log_linear_beta(
    init_value: float,
    end_value: float,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
  """Beta annealed geometrically (linearly in log space), Yang et al. ICCV 2019 Sec. 4.3.

  beta(t) = exp(log b0 + f(t) (log b1 - log b0)) = b0 (b1 / b0)^f(t),
  f(t) = clip((t - transition_begin) / transition_steps, 0, 1): constant b0 before the transition,
  b1 after it. ICCV 2019 anneals beta from 1e-5 to 1e-3 (the paper does not state the curve; a
  geometric ramp spends equal time per decade, which a linear ramp over two decades would not).

  Args:
    init_value: b0 > 0 (e.g. 1e-5).
    end_value: b1 > 0 (e.g. 1e-3).
    transition_steps: length of the ramp in steps; 0 jumps to b1 at `transition_begin`.
    transition_begin: step at which the ramp starts.

  Returns:
    A schedule step -> float32 beta.
  """
  if not (init_value > 0 and end_value > 0):
    raise ValueError(f"log_linear_beta needs positive init_value and end_value (it interpolates "
                     f"their logarithms), got {init_value} and {end_value}.")
  log_init, log_end = math.log(init_value), math.log(end_value)

  def schedule(step: jax.Array | int) -> jax.Array:
    frac = _progress(step, transition_begin, transition_steps)
    return jnp.exp(log_init + frac * (log_end - log_init))

  return schedule


def linear_warmup_beta(
    end_value: float,
    warmup_steps: int,
    init_value: float = 0.0,
    transition_begin: int = 0,
) -> Schedule:
  """Linear KL warm-up (Bowman et al. 2016; Sonderby et al. 2016), beyond the handjax papers.

  beta(t) = b0 + f(t) (b1 - b0), f(t) = clip((t - transition_begin) / warmup_steps, 0, 1).

  Args:
    end_value: b1, the beta reached after the warm-up.
    warmup_steps: length of the ramp in steps; 0 jumps to b1 at `transition_begin`.
    init_value: b0 (default 0: no KL pressure at the start).
    transition_begin: step at which the ramp starts.

  Returns:
    A schedule step -> float32 beta.
  """

  def schedule(step: jax.Array | int) -> jax.Array:
    frac = _progress(step, transition_begin, warmup_steps)
    return jnp.asarray(init_value, jnp.float32) + frac * (end_value - init_value)

  return schedule


def cyclical_beta(
    end_value: float,
    cycle_steps: int,
    ramp_fraction: float = 0.5,
    init_value: float = 0.0,
) -> Schedule:
  """Cyclical annealing (Fu et al. NAACL 2019), beyond the handjax papers.

  Within each cycle of `cycle_steps`, beta rises linearly from b0 to b1 over the first
  `ramp_fraction` of the cycle and stays at b1 for the rest:
  beta(t) = b0 + min(1, r / (R C)) (b1 - b0) with r = t mod C.

  Args:
    end_value: b1.
    cycle_steps: C > 0, the cycle length in steps.
    ramp_fraction: R in (0, 1], the fraction of each cycle spent ramping.
    init_value: b0.

  Returns:
    A schedule step -> float32 beta.
  """
  if cycle_steps <= 0 or not 0.0 < ramp_fraction <= 1.0:
    raise ValueError(f"cyclical_beta needs cycle_steps > 0 and ramp_fraction in (0, 1], got "
                     f"{cycle_steps} and {ramp_fraction}.")
  ramp = ramp_fraction * cycle_steps

  def schedule(step: jax.Array | int) -> jax.Array:
    phase = jnp.mod(jnp.asarray(step, jnp.float32), cycle_steps)
    frac = jnp.minimum(1.0, phase / ramp)
    return jnp.asarray(init_value, jnp.float32) + frac * (end_value - init_value)

  return schedule
