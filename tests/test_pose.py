"""Tests for handjax.hand.pose: root-relative and scale-normalised poses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import pose as pose_lib
from handjax.hand import skeleton


def _poses(seed=0):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(3, 21, 3)) * 0.05 + np.array([0.1, -0.05, 0.6])).astype(np.float32)


def test_root_relative():
  pose = _poses()
  out = np.asarray(pose_lib.root_relative(pose))
  np.testing.assert_allclose(out, pose - pose[:, :1], rtol=1e-6)
  assert np.all(out[:, 0] == 0.0)
  np.testing.assert_allclose(pose_lib.root_relative(pose, root=9), pose - pose[:, 9:10], rtol=1e-6)


def test_bone_scale_is_named_bone_length():
  pose = _poses()
  np.testing.assert_allclose(
      pose_lib.bone_scale(pose), np.linalg.norm(pose[:, 10] - pose[:, 9], axis=-1), rtol=1e-6
  )
  assert skeleton.REFERENCE_SCALE_BONE == (9, 10)
  np.testing.assert_allclose(
      pose_lib.bone_scale(pose, (5, 6)), np.linalg.norm(pose[:, 6] - pose[:, 5], axis=-1), rtol=1e-6
  )


def test_hand_computed_scale():
  pose = np.zeros((21, 3), np.float32)
  pose[9] = [0.0, -0.09, 0.5]
  pose[10] = [0.0, -0.12, 0.54]  # a 3-4-5 triangle: 0.05 m
  normalized, root, scale = pose_lib.normalize_pose(jnp.asarray(pose))
  np.testing.assert_allclose(scale, 0.05, rtol=1e-6)
  np.testing.assert_allclose(normalized[10] - normalized[9], [0.0, -0.6, 0.8], rtol=1e-5)
  np.testing.assert_array_equal(root, [0.0, 0.0, 0.0])


def test_normalize_round_trip_and_unit_scale():
  pose = _poses(1)
  normalized, root, scale = jax.jit(pose_lib.normalize_pose)(pose)
  np.testing.assert_allclose(np.asarray(root), pose[:, 0])
  np.testing.assert_allclose(pose_lib.bone_scale(normalized), 1.0, rtol=1e-5)
  np.testing.assert_allclose(normalized[:, 0], 0.0)
  np.testing.assert_allclose(pose_lib.denormalize_pose(normalized, root, scale), pose, atol=1e-6)


def test_zero_scale_is_safe():
  pose = np.zeros((2, 21, 3), np.float32)
  pose[1] = _poses(2)[0]
  pose[1, 10] = pose[1, 9]  # collapsed reference bone
  normalized, root, scale = pose_lib.normalize_pose(jnp.asarray(pose))
  np.testing.assert_allclose(scale, pose_lib.SCALE_EPS)
  assert np.all(np.isfinite(normalized))
  np.testing.assert_allclose(pose_lib.denormalize_pose(normalized, root, scale), pose, atol=1e-6)

  def f(p):
    n, r, s = pose_lib.normalize_pose(p)
    return jnp.sum(n) + jnp.sum(s) + jnp.sum(pose_lib.bone_scale(p))

  assert np.all(np.isfinite(jax.grad(f)(jnp.asarray(pose))))


def test_bad_shape():
  with pytest.raises(ValueError, match=r"\(\.\.\., J, 3\)"):
    pose_lib.root_relative(jnp.zeros((21, 2)))
