"""NT-Xent (dissertation Eq. 7.3) against a naive Python double loop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses import contrastive


def _cos(a, b):
  return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def _naive_terms(z, z_pos, tau, valid=None):
  """Eq. 7.3 term by term; an anchor without negatives contributes 0 (the documented convention)."""
  batch = len(z)
  valid = [True] * batch if valid is None else list(valid)
  terms = []
  for i in range(batch):
    if not valid[i]:
      terms.append(0.0)
      continue
    numerator = math.exp(_cos(z[i], z_pos[i]) / tau)
    denominator = 0.0
    for k in range(batch):
      if k != i and valid[k]:
        denominator += math.exp(_cos(z[i], z[k]) / tau) + math.exp(_cos(z[i], z_pos[k]) / tau)
    terms.append(-math.log(numerator / denominator) if denominator > 0 else 0.0)
  return np.array(terms)


@pytest.mark.parametrize("tau", [0.5, 0.1, 2.0])
def test_matches_naive_loop(tau):
  rng = np.random.default_rng(0)
  z, z_pos = rng.normal(size=(5, 8)), rng.normal(size=(5, 8))
  z_pos[0] = 3.0 * z[0]  # a scaled copy: cosine similarity 1
  expected = _naive_terms(z, z_pos, tau)
  np.testing.assert_allclose(
      contrastive.nt_xent(z, z_pos, tau, reduction="none"), expected, rtol=1e-5)
  np.testing.assert_allclose(contrastive.nt_xent(z, z_pos, tau), expected.sum(), rtol=1e-5)
  np.testing.assert_allclose(
      contrastive.nt_xent(z, z_pos, tau, reduction="mean"), expected.mean(), rtol=1e-5)


def test_default_temperature_is_half():
  rng = np.random.default_rng(1)
  z, z_pos = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
  np.testing.assert_allclose(
      contrastive.nt_xent(z, z_pos), _naive_terms(z, z_pos, 0.5).sum(), rtol=1e-5)


def test_two_samples_hand_computed():
  # Orthonormal features: sim(z_0, z_0+) = 1, all cross similarities 0 except sim(z_0, z_1+) = -1.
  z = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
  z_pos = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0]])
  tau = 0.5
  # Anchor 0: -log(e^2 / (e^0 + e^-2)); anchor 1: sim(z_1, z_1+) = 0, denominator e^0 + e^0.
  expected = [-2.0 + math.log(1.0 + math.exp(-2.0)), math.log(2.0)]
  np.testing.assert_allclose(
      contrastive.nt_xent(z, z_pos, tau, reduction="none"), expected, rtol=1e-6)


def test_batch_of_one_has_no_negatives_and_gives_zero():
  z, z_pos = jnp.array([[1.0, 2.0]]), jnp.array([[0.5, -1.0]])
  np.testing.assert_allclose(contrastive.nt_xent(z, z_pos), 0.0)
  np.testing.assert_allclose(_naive_terms(np.asarray(z), np.asarray(z_pos), 0.5), [0.0])
  grad = jax.grad(lambda a: contrastive.nt_xent(a, z_pos))(z)
  np.testing.assert_array_equal(grad, 0.0)


def test_valid_mask_equals_loss_on_the_subset():
  rng = np.random.default_rng(2)
  z, z_pos = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
  valid = np.array([1, 0, 1, 1, 0, 1], bool)
  masked = contrastive.nt_xent(z, z_pos, 0.3, valid=valid, reduction="none")
  np.testing.assert_allclose(masked, _naive_terms(z, z_pos, 0.3, valid), rtol=1e-5)
  subset = contrastive.nt_xent(z[valid], z_pos[valid], 0.3)
  np.testing.assert_allclose(jnp.sum(masked), subset, rtol=1e-5)
  np.testing.assert_allclose(contrastive.nt_xent(z, z_pos, 0.3, valid=valid, reduction="mean"),
                             subset / valid.sum(), rtol=1e-5)


def test_zero_features_give_finite_values_and_gradients():
  z = jnp.zeros((3, 4)).at[1].set(1.0)
  z_pos = jnp.zeros((3, 4))
  value, grads = jax.value_and_grad(contrastive.nt_xent, argnums=(0, 1))(z, z_pos)
  assert np.isfinite(value)
  assert all(np.all(np.isfinite(g)) for g in grads)
  # Gradient vs central finite differences at a generic point.
  rng = np.random.default_rng(3)
  a, b = jnp.asarray(rng.normal(size=(3, 4))), jnp.asarray(rng.normal(size=(3, 4)))
  grad = jax.grad(contrastive.nt_xent)(a, b)
  eps = 1e-3
  direction = jnp.asarray(rng.normal(size=(3, 4)))
  plus = contrastive.nt_xent(a + eps * direction, b)
  minus = contrastive.nt_xent(a - eps * direction, b)
  fd = (plus - minus) / (2 * eps)
  np.testing.assert_allclose(jnp.sum(grad * direction), fd, rtol=2e-2)


def test_jit_and_bad_inputs():
  rng = np.random.default_rng(4)
  z, z_pos = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(4, 3)))
  np.testing.assert_allclose(
      jax.jit(contrastive.nt_xent)(z, z_pos), contrastive.nt_xent(z, z_pos), rtol=1e-6)
  with pytest.raises(ValueError, match=r"\(B, D\)"):
    contrastive.nt_xent(z, z_pos[:3])
  with pytest.raises(ValueError, match="reduction"):
    contrastive.nt_xent(z, z_pos, reduction="avg")
  with pytest.raises(ValueError, match="valid"):
    contrastive.nt_xent(z, z_pos, valid=jnp.ones(3, bool))
