"""handjax.losses.pose against numpy loops, with masks, transforms and degenerate inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses import pose


def _loop_l2(pred, target, visible):
  out = np.zeros(pred.shape[0])
  for b in range(pred.shape[0]):
    for j in range(pred.shape[1]):
      for c in range(pred.shape[2]):
        out[b] += visible[b, j] * (pred[b, j, c] - target[b, j, c]) ** 2
  return out


def test_pose_l2_and_mse_match_loops():
  rng = np.random.default_rng(0)
  pred, target = rng.normal(size=(3, 21, 3)), rng.normal(size=(3, 21, 3))
  visible = (rng.random((3, 21)) > 0.4).astype(np.float64)
  ones = np.ones((3, 21))
  np.testing.assert_allclose(pose.pose_l2(jnp.asarray(pred), jnp.asarray(target)),
                             _loop_l2(pred, target, ones), rtol=1e-5)
  np.testing.assert_allclose(
      pose.pose_l2(pred, target, visible), _loop_l2(pred, target, visible), rtol=1e-5)
  np.testing.assert_allclose(
      pose.pose_mse(pred, target), _loop_l2(pred, target, ones) / 63.0, rtol=1e-5)
  np.testing.assert_allclose(pose.pose_mse(pred, target, visible),
                             _loop_l2(pred, target, visible) / (3.0 * visible.sum(1)), rtol=1e-5)


def test_pose_epe_matches_a_loop_with_a_mask_and_is_finite_at_zero_error():
  rng = np.random.default_rng(3)
  pred, target = rng.normal(size=(3, 21, 3)), rng.normal(size=(3, 21, 3))
  visible = (rng.random((3, 21)) > 0.4).astype(np.float64)
  want = np.zeros(3)
  for b in range(3):
    for j in range(21):
      want[b] += visible[b, j] * np.sqrt(sum((pred[b, j, k] - target[b, j, k]) ** 2
                                             for k in range(3)))
  np.testing.assert_allclose(pose.pose_epe(pred, target, visible), want, rtol=1e-5)
  grad = jax.grad(lambda p: jnp.sum(pose.pose_epe(p, jnp.asarray(target))))(jnp.asarray(target))
  assert np.all(np.asarray(grad) == 0.0)
  with pytest.raises(ValueError, match="pose_epe"):
    pose.pose_epe(jnp.zeros((2, 21, 3)), jnp.zeros((2, 21, 2)))


def test_hand_computed_fixture():
  pred = jnp.array([[[1.0, 2.0, 2.0], [0.0, 0.0, 0.0]]])
  target = jnp.zeros((1, 2, 3))
  np.testing.assert_allclose(pose.pose_l2(pred, target), [9.0])
  np.testing.assert_allclose(pose.pose_mse(pred, target), [1.5])
  np.testing.assert_allclose(pose.pose_mse(pred, target, jnp.array([[1.0, 0.0]])), [3.0])


def test_pose_25d_distance_matches_loop():
  rng = np.random.default_rng(1)
  uv1, uv2 = rng.normal(size=(2, 21, 2)), rng.normal(size=(2, 21, 2))
  d1, d2 = rng.normal(size=(2, 21)), rng.normal(size=(2, 21))
  visible = (rng.random((2, 21)) > 0.3).astype(np.float64)
  expected = np.zeros(2)
  for b in range(2):
    for j in range(21):
      uv_sq = sum((uv1[b, j, c] - uv2[b, j, c]) ** 2 for c in range(2))
      expected[b] += visible[b, j] * (uv_sq + 7.0 * (d1[b, j] - d2[b, j]) ** 2)
  got = pose.pose_25d_distance(uv1, d1, uv2, d2, lambda_d=7.0, visible=visible)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  # Default lambda_d = 50 (dissertation Eq. 6.2), hand-computed on one joint.
  one = pose.pose_25d_distance(jnp.array([[[3.0, 4.0]]]), jnp.array([[0.1]]),
                               jnp.zeros((1, 1, 2)), jnp.zeros((1, 1)))
  np.testing.assert_allclose(one, [25.0 + 50.0 * 0.01], rtol=1e-6)


def test_finite_gradients_at_zero_error_and_fully_masked():
  x = jnp.ones((2, 21, 3))
  for fn in (pose.pose_l2, pose.pose_mse):
    grad = jax.grad(lambda p: jnp.sum(fn(p, x)))(x)
    np.testing.assert_array_equal(grad, 0.0)
    masked = jax.grad(lambda p: jnp.sum(fn(p, 2 * x, jnp.zeros((2, 21)))))(x)
    np.testing.assert_array_equal(masked, 0.0)
  assert np.all(np.asarray(pose.pose_mse(x, 2 * x, jnp.zeros((2, 21)))) == 0.0)
  g = jax.grad(lambda u: jnp.sum(pose.pose_25d_distance(u, x[..., 0], u, x[..., 0])))(x[..., :2])
  np.testing.assert_array_equal(g, 0.0)


def test_jit_vmap_and_gradient_vs_closed_form():
  rng = np.random.default_rng(2)
  pred, target = jnp.asarray(rng.normal(size=(4, 21, 3))), jnp.asarray(rng.normal(size=(4, 21, 3)))
  jitted = jax.jit(pose.pose_l2)(pred, target)
  vmapped = jax.vmap(pose.pose_l2)(pred, target)
  np.testing.assert_allclose(jitted, vmapped, rtol=1e-6)
  grad = jax.grad(lambda p: jnp.sum(pose.pose_l2(p, target)))(pred)
  np.testing.assert_allclose(grad, 2.0 * (pred - target), rtol=1e-5)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="same shape"):
    pose.pose_l2(jnp.zeros((2, 21, 3)), jnp.zeros((2, 20, 3)))
  with pytest.raises(ValueError, match="visible"):
    pose.pose_mse(jnp.zeros((2, 21, 3)), jnp.zeros((2, 21, 3)), jnp.ones((2, 20)))
  with pytest.raises(ValueError, match="depths"):
    pose.pose_25d_distance(jnp.zeros((2, 21, 2)), jnp.zeros((2, 21, 1)), jnp.zeros((2, 21, 2)),
                           jnp.zeros((2, 21)))
