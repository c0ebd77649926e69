"""Beta schedules against optax's own schedules and explicit numpy formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handjax.losses import schedules as S

STEPS = np.arange(0, 1300, 7)


def test_log_linear_beta_matches_formula_and_optax():
  schedule = S.log_linear_beta(1e-5, 1e-3, transition_steps=1000, transition_begin=100)
  values = np.asarray(jax.vmap(schedule)(jnp.asarray(STEPS)))
  frac = np.clip((STEPS - 100) / 1000, 0, 1)
  np.testing.assert_allclose(values, 1e-5 * (1e-3 / 1e-5) ** frac, rtol=1e-5)
  # ICCV 2019 annealing: endpoints, and the geometric midpoint sqrt(b0 b1) = 1e-4 halfway.
  np.testing.assert_allclose([schedule(0), schedule(600), schedule(10_000)], [1e-5, 1e-4, 1e-3],
                             rtol=1e-5)
  reference = optax.exponential_decay(1e-5, transition_steps=1000, decay_rate=100.0,
                                      transition_begin=100, end_value=1e-3)
  np.testing.assert_allclose(values, [reference(s) for s in STEPS], rtol=1e-4)
  assert np.all(np.diff(values) >= 0)


def test_linear_warmup_beta_matches_optax():
  schedule = S.linear_warmup_beta(1e-3, warmup_steps=500, init_value=1e-5, transition_begin=50)
  reference = optax.linear_schedule(1e-5, 1e-3, transition_steps=500, transition_begin=50)
  np.testing.assert_allclose(jax.vmap(schedule)(jnp.asarray(STEPS)),
                             [reference(s) for s in STEPS], rtol=1e-5, atol=1e-9)
  np.testing.assert_allclose(S.linear_warmup_beta(1.0, 100)(25), 0.25, rtol=1e-6)


def test_zero_transition_steps_is_a_step_function():
  for schedule in (S.log_linear_beta(1e-5, 1e-3, 0, transition_begin=10),
                   S.linear_warmup_beta(1e-3, 0, init_value=1e-5, transition_begin=10)):
    np.testing.assert_allclose([schedule(9), schedule(10), schedule(11)], [1e-5, 1e-3, 1e-3],
                               rtol=1e-5)


def test_cyclical_beta_matches_loop():
  schedule = S.cyclical_beta(1.0, cycle_steps=100, ramp_fraction=0.4, init_value=0.1)
  expected = []
  for t in STEPS:
    r = t % 100
    expected.append(0.1 + min(1.0, r / 40.0) * 0.9)
  np.testing.assert_allclose(jax.vmap(schedule)(jnp.asarray(STEPS)), expected, rtol=1e-5)


def test_schedules_jit_and_drive_optax():
  schedule = S.log_linear_beta(1e-5, 1e-3, 1000)
  np.testing.assert_allclose(jax.jit(schedule)(jnp.int32(500)), 1e-4, rtol=1e-5)
  # optax.Schedule-compatible: usable wherever optax takes a schedule, e.g. as a learning rate.
  opt = optax.sgd(S.linear_warmup_beta(1.0, 10))
  params = jnp.ones(2)
  state = opt.init(params)
  updates, state = opt.update(jnp.ones(2), state, params)
  np.testing.assert_allclose(updates, 0.0)  # step 0 of the warm-up
  updates, _ = opt.update(jnp.ones(2), state, params)
  np.testing.assert_allclose(updates, -0.1, rtol=1e-6)


def test_bad_arguments_are_clear_errors():
  with pytest.raises(ValueError, match="positive"):
    S.log_linear_beta(0.0, 1e-3, 100)
  with pytest.raises(ValueError, match="cycle_steps"):
    S.cyclical_beta(1.0, 0)
