"""Mask and depth L1 (dissertation Eq. 7.1) against numpy loops, with validity masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses import image


def _loop_l1(pred, target, weights):
  total, count = np.zeros(pred.shape[0]), np.zeros(pred.shape[0])
  for b, r, c, ch in np.ndindex(pred.shape):
    total[b] += weights[b, r, c, ch] * abs(pred[b, r, c, ch] - target[b, r, c, ch])
    count[b] += weights[b, r, c, ch]
  return total, count


def test_mask_l1_matches_loop():
  rng = np.random.default_rng(0)
  pred, target = rng.random((2, 4, 5, 1)), (rng.random((2, 4, 5, 1)) > 0.5).astype(np.float64)
  valid = (rng.random((2, 4, 5, 1)) > 0.3).astype(np.float64)
  total, count = _loop_l1(pred, target, np.ones_like(pred))
  np.testing.assert_allclose(image.mask_l1(pred, target, reduction="sum"), total, rtol=1e-5)
  np.testing.assert_allclose(image.mask_l1(pred, target), total / count, rtol=1e-5)
  total, count = _loop_l1(pred, target, valid)
  np.testing.assert_allclose(image.mask_l1(pred, target, valid), total / count, rtol=1e-5)


def test_depth_l1_ignores_background_hand_computed():
  target = np.array([0.0, 0.5, 0.6, 0.0]).reshape(1, 2, 2, 1)
  pred = np.array([0.3, 0.4, 0.9, 1.0]).reshape(1, 2, 2, 1)
  # Known pixels: |0.4 - 0.5| + |0.9 - 0.6| = 0.4 over 2 pixels.
  np.testing.assert_allclose(image.depth_l1(pred, target), [0.2], rtol=1e-6)
  np.testing.assert_allclose(image.depth_l1(pred, target, reduction="sum"), [0.4], rtol=1e-6)
  np.testing.assert_allclose(
      image.depth_l1(pred, target, ignore_background=False), [1.7 / 4], rtol=1e-6)
  # An extra validity mask combines with the background rule: only the 0.6 pixel remains.
  valid = np.array([1.0, 0.0, 1.0, 1.0]).reshape(1, 2, 2, 1)
  np.testing.assert_allclose(image.depth_l1(pred, target, valid), [0.3], rtol=1e-5)


def test_per_pixel_valid_broadcasts_over_channels():
  rng = np.random.default_rng(1)
  pred, target = rng.random((2, 3, 3, 2)), rng.random((2, 3, 3, 2))
  valid = (rng.random((2, 3, 3, 1)) > 0.5).astype(np.float64)
  total, count = _loop_l1(pred, target, np.broadcast_to(valid, pred.shape))
  np.testing.assert_allclose(
      image.mask_l1(pred, target, valid), total / np.maximum(count, 1), rtol=1e-5)


def test_no_valid_pixel_gives_zero_with_zero_gradient():
  pred, target = jnp.ones((2, 3, 3, 1)), jnp.zeros((2, 3, 3, 1))  # all background
  value, grad = jax.value_and_grad(lambda p: jnp.sum(image.depth_l1(p, target)))(pred)
  assert float(value) == 0.0
  np.testing.assert_array_equal(grad, 0.0)
  grad = jax.jit(jax.grad(lambda p: jnp.sum(image.mask_l1(p, p))))(pred)  # zero error
  assert np.all(np.isfinite(grad))


def test_vmap_matches_batch_and_bad_inputs():
  rng = np.random.default_rng(2)
  pred, target = jnp.asarray(rng.random((3, 4, 4, 1))), jnp.asarray(rng.random((3, 4, 4, 1)))
  np.testing.assert_allclose(
      jax.vmap(image.depth_l1)(pred, target), image.depth_l1(pred, target), rtol=1e-6)
  with pytest.raises(ValueError, match="same shape"):
    image.mask_l1(pred, target[:, :3])
  with pytest.raises(ValueError, match="reduction"):
    image.depth_l1(pred, target, reduction="median")
