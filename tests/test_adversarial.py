"""Adversarial BCE losses (Stergioulas et al. Eq. 1) against the closed form, at extreme logits."""

import jax
import jax.numpy as jnp
import numpy as np

from handjax.losses import adversarial


def _closed_form_bce(x, y):
  """-y log s(x) - (1 - y) log(1 - s(x)) in float64 with s the logistic sigmoid."""
  s = 1.0 / (1.0 + np.exp(-x))
  return -(y * np.log(s) + (1.0 - y) * np.log(1.0 - s))


def test_matches_closed_form_at_moderate_logits():
  x = np.linspace(-8.0, 8.0, 17)
  for y in (0.0, 1.0, 0.3):
    got = adversarial.bce_with_logits(jnp.asarray(x), y)
    np.testing.assert_allclose(got, _closed_form_bce(x, y), rtol=1e-5, atol=1e-7)
  real, fake = x, x[::-1]
  np.testing.assert_allclose(
      adversarial.discriminator_loss(real, fake),
      0.5 * _closed_form_bce(real, 1.0) + 0.5 * _closed_form_bce(fake, 0.0), rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(
      adversarial.generator_loss(fake), _closed_form_bce(fake, 1.0), rtol=1e-5, atol=1e-7)


def test_extreme_logits_are_exact_and_finite():
  # softplus(-x) = log(1 + e^-x): ~e^-100 at x = 100, ~100 at x = -100 (naive BCE: inf / nan).
  assert float(adversarial.generator_loss(jnp.float32(-100.0))) == 100.0
  assert 0.0 <= float(adversarial.generator_loss(jnp.float32(100.0))) < 1e-30
  # A perfect discriminator has ~0 loss; a perfectly fooled one 0.5 * (100 + 100).
  assert float(adversarial.discriminator_loss(jnp.float32(100.0), jnp.float32(-100.0))) < 1e-30
  np.testing.assert_allclose(
      adversarial.discriminator_loss(jnp.float32(-100.0), jnp.float32(100.0)), 100.0)
  logits = jnp.array([-1e4, -100.0, 0.0, 100.0, 1e4])
  for fn in (lambda x: adversarial.discriminator_loss(x, -x), adversarial.generator_loss):
    value, grad = jax.vmap(jax.value_and_grad(fn))(logits)
    assert np.all(np.isfinite(value)) and np.all(np.isfinite(grad))


def test_gradients_match_closed_form():
  # d/dx BCE(x, 1) = sigmoid(x) - 1; d/dx BCE(x, 0) = sigmoid(x).
  x = jnp.array([-100.0, -3.0, 0.0, 2.0, 100.0])
  sig = 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))
  g_gen = jax.vmap(jax.grad(adversarial.generator_loss))(x)
  np.testing.assert_allclose(g_gen, sig - 1.0, atol=1e-6)
  g_real, g_fake = jax.vmap(jax.grad(adversarial.discriminator_loss, argnums=(0, 1)))(x, x)
  np.testing.assert_allclose(g_real, 0.5 * (sig - 1.0), atol=1e-6)
  np.testing.assert_allclose(g_fake, 0.5 * sig, atol=1e-6)


def test_per_example_shape_and_jit():
  real, fake = jnp.array([0.5, -1.0, 2.0]), jnp.array([1.0, 0.0, -3.0])
  out = jax.jit(adversarial.discriminator_loss)(real, fake)
  assert out.shape == (3,)
  np.testing.assert_allclose(out[1], 0.5 * np.log1p(np.exp(1.0)) + 0.5 * np.log(2.0), rtol=1e-6)
