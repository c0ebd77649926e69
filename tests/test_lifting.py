"""Tests for handjax.hand.lifting: 2.5D <-> 3D and Iqbal et al.'s root-depth quadratic."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import correction
from handjax.hand import kinematics
from handjax.hand import lifting
from handjax.hand import skeleton
from handjax.hand import viewpoint

K = jnp.array([[600.0, 0.0, 320.0], [0.0, 580.0, 240.0], [0.0, 0.0, 1.0]])


def _random_poses(key: jax.Array, batch: int) -> jax.Array:
  """Template hands, random rotation, scale 0.8-1.2, root depth 0.3-1.0 m, x/y offsets."""
  k1, k2, k3, k4 = jax.random.split(key, 4)
  rot, _ = jnp.linalg.qr(jax.random.normal(k1, (batch, 3, 3)))
  scale = jax.random.uniform(k2, (batch, 1, 1), minval=0.8, maxval=1.2)
  pose = scale * viewpoint.rotate_points(
      jnp.broadcast_to(jnp.asarray(correction.TEMPLATE_POSE), (batch, 21, 3)), rot)
  depth = jax.random.uniform(k3, (batch,), minval=0.3, maxval=1.0)
  xy = jax.random.uniform(k4, (batch, 2), minval=-0.15, maxval=0.15)
  root = jnp.concatenate([xy, depth[:, None]], -1)
  return pose + root[:, None, :] + jax.random.normal(k4, pose.shape) * 0.005


def _prior():
  template = jnp.asarray(correction.TEMPLATE_POSE)
  return kinematics.bone_lengths(template) / lifting.reference_bone_length(template)


def test_round_trip_exact(rng):
  pose = _random_poses(rng, 64)
  uv, depth = lifting.pose_to_25d(pose, K)
  scale = lifting.reference_bone_length(pose)
  lifted = lifting.lift_25d(uv, depth / scale[:, None], K, scale, prior_lengths=_prior())
  np.testing.assert_allclose(lifted, pose, atol=2e-5)  # 20 micrometres in float32
  np.testing.assert_allclose(lifting.reference_bone_length(lifted), scale, rtol=1e-4)


def test_pose_to_25d_definition(rng):
  pose = _random_poses(rng, 2)
  uv, depth = lifting.pose_to_25d(pose, K)
  p = np.asarray(pose, np.float64)
  k = np.asarray(K, np.float64)
  ref_uv = (p @ k.T)[..., :2] / p[..., 2:3]
  np.testing.assert_allclose(uv, ref_uv, rtol=1e-5)
  np.testing.assert_allclose(depth, p[..., 2] - p[..., :1, 2], atol=1e-7)
  np.testing.assert_allclose(
      lifting.backproject_25d(uv, depth, pose[:, 0, 2], K), pose, atol=1e-5)


def test_quadratic_chooses_correct_root(rng):
  pose = _random_poses(rng, 64)
  uv, depth = lifting.pose_to_25d(pose, K)
  scale = lifting.reference_bone_length(pose)
  normalized = depth / scale[:, None]
  true = np.asarray(pose[:, 0, 2] / scale)
  z_plus, z_minus = map(np.asarray, lifting.root_depth_roots(uv, normalized, K))
  # Both roots solve the equation: each makes the reference bone exactly one unit long ...
  for z in (z_plus, z_minus):
    lifted = lifting.backproject_25d(uv, normalized, z, K)
    np.testing.assert_allclose(lifting.reference_bone_length(lifted), 1.0, rtol=2e-3)
  # ... and exactly one of them is the true root depth.
  hit_plus = np.isclose(z_plus, true, rtol=1e-4)
  hit_minus = np.isclose(z_minus, true, rtol=1e-4)
  assert np.all(hit_plus ^ hit_minus)
  # Iqbal et al.'s larger root is right for most, but not all, random orientations (here 63/64:
  # index 4, a reference bone almost along the ray, has roots 20.6 (true) and 49.0).
  assert 60 <= hit_plus.sum() < 64
  # The bone-proportion prior picks the true root in every case.
  chosen = lifting.root_depth_from_scale(uv, normalized, K, prior_lengths=_prior())
  np.testing.assert_allclose(chosen, true, rtol=1e-4)
  np.testing.assert_allclose(
      lifting.root_depth_from_scale(uv, normalized, K), z_plus, rtol=0)
  # Metric root depth directly with the metric bone length.
  np.testing.assert_allclose(
      lifting.root_depth_from_scale(uv, depth, K, scale, prior_lengths=_prior()), pose[:, 0, 2],
      rtol=1e-4)


def test_all_bones_root_is_robust_to_reference_bone_noise(rng):
  template = jnp.asarray(correction.TEMPLATE_POSE)
  clean = template + jnp.array([0.02, -0.01, 0.5])
  noisy = clean + 0.004 * jax.random.normal(rng, (8, 21, 3))
  uv, depth = lifting.pose_to_25d(noisy, K)
  lengths = kinematics.bone_lengths(template)
  ref = lifting.reference_bone_length(template)
  single = lifting.root_depth_from_scale(uv, depth, K, ref, prior_lengths=lengths / ref)
  every = lifting.root_depth_all_bones(uv, depth, K, lengths)
  true = noisy[:, 0, 2]
  # Here 12.6 mm vs 35.6 mm mean error.
  assert np.mean(np.abs(every - true)) < 0.5 * np.mean(np.abs(single - true))
  # Exact data: both recover the depth.
  uv0, depth0 = lifting.pose_to_25d(clean, K)
  np.testing.assert_allclose(lifting.root_depth_all_bones(uv0, depth0, K, lengths), 0.5,
                             rtol=1e-5)


def test_quadratic_hand_fixture():
  # K = I, root at depth 2, reference bone 9 -> 10 from (0.2, 0, 2) to (0.8, 0, 2.8) (length 1).
  # Rays a_9 = (0.1, 0, 1), a_10 = (2/7, 0, 1); d_9 = 0, d_10 = 0.8. By hand:
  # A = (0.1 - 2/7)^2 = 0.0344898, B = 2 (0.1 - 2/7)(-0.8 * 2/7) = 0.0848980,
  # C' = (0.8 * 2/7)^2 + 0.8^2 - 1 = -0.3077551; roots 2 (the true depth, the larger one) and -58/13.
  pose = np.zeros((21, 3))
  pose[:, 2] = 2.0
  pose[9] = [0.2, 0.0, 2.0]
  pose[10] = [0.8, 0.0, 2.8]
  uv, depth = lifting.pose_to_25d(jnp.asarray(pose, jnp.float32), jnp.eye(3))
  qa, qb, qc = 0.0344898, 0.0848980, -0.3077551
  np.testing.assert_allclose(sorted(np.roots([qa, qb, qc])), [-58.0 / 13.0, 2.0], rtol=1e-5)
  z_plus, z_minus = lifting.root_depth_roots(uv, depth, jnp.eye(3))
  np.testing.assert_allclose([z_plus, z_minus], [2.0, -58.0 / 13.0], rtol=1e-5)


def test_degenerate_inputs_finite():
  # Both reference joints on one ray (A = 0) and inconsistent depths (negative discriminant).
  uv = jnp.zeros((21, 2))
  depth = jnp.zeros(21)

  def total(uv, depth):
    return jnp.sum(lifting.lift_25d(uv, depth, jnp.eye(3), 0.03))

  value, grads = jax.value_and_grad(total, argnums=(0, 1))(uv, depth)
  assert np.isfinite(value) and all(np.all(np.isfinite(g)) for g in grads)
  far = jnp.zeros((21, 2)).at[10].set(jnp.array([0.001, 0.0]))  # tiny bone in the image
  z, _ = lifting.root_depth_roots(far, depth.at[10].set(5.0), jnp.eye(3))  # needs depth 5 > 1
  assert np.isfinite(z)
  g = jax.grad(lambda d: lifting.root_depth_from_scale(far, d, jnp.eye(3)))(depth.at[10].set(5.0))
  assert np.all(np.isfinite(g))


def test_jit_vmap_and_errors(rng):
  pose = _random_poses(rng, 4)
  uv, depth = lifting.pose_to_25d(pose, K)
  ks = jnp.broadcast_to(K, (4, 3, 3))
  a = jax.jit(lifting.lift_25d)(uv, depth, ks, jnp.ones(4))
  b = jax.vmap(lifting.lift_25d)(uv, depth, ks, jnp.ones(4))
  np.testing.assert_allclose(a, b, rtol=1e-6)
  with pytest.raises(ValueError, match=r"depth \(\.\.\., J\)"):
    lifting.root_depth_roots(uv, depth[..., :20], K)
  with pytest.raises(ValueError, match="K must have shape"):
    lifting.pose_to_25d(pose, jnp.eye(2))
  assert skeleton.REFERENCE_SCALE_BONE == (9, 10)
