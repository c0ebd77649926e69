"""Tests for handjax.hand.kinematics against numpy loops, closed forms and finite differences."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import kinematics as kin
from handjax.hand import skeleton


def _random_poses(seed=0, batch=(3,), scale=0.05):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=batch + (21, 3)) * scale + np.array([0.0, 0.0, 0.5])).astype(np.float32)


def _collinear_pose():
  # Every joint on one line, at distinct positions.
  t = np.linspace(0.0, 0.2, 21, dtype=np.float32)
  return np.stack([t, 2 * t, 0.5 + 0 * t], -1).astype(np.float32)


def _coincident_some():
  # Each finger collapsed onto its base, and the thumb onto the wrist.
  pose = _random_poses(1, batch=())
  for finger in skeleton.FINGER_NAMES:
    joints = skeleton.FINGERS[finger]
    pose[list(joints)] = pose[joints[0]]
  pose[list(skeleton.FINGERS["thumb"])] = pose[0]
  return pose


_jld = jax.jit(kin.joint_line_distances)
_jldc = jax.jit(kin.joint_line_distances_cross)

DEGENERATE = {
    "all_at_one_point": np.zeros((21, 3), np.float32) + np.float32([0.1, 0.0, 0.5]),
    "all_zero": np.zeros((21, 3), np.float32),
    "collinear": _collinear_pose(),
    "coincident_fingers": _coincident_some(),
}


# --- bones and KCS ----------------------------------------------------------------------------


def test_bone_vectors_and_lengths_numpy_loop():
  pose = _random_poses()
  bones = np.asarray(kin.bone_vectors(pose))
  for k, (parent, child) in enumerate(skeleton.BONES):
    np.testing.assert_allclose(bones[:, k], pose[:, child] - pose[:, parent], rtol=1e-6)
  np.testing.assert_allclose(
      np.asarray(kin.bone_lengths(pose)), np.linalg.norm(bones, axis=-1), rtol=1e-6
  )


def test_kcs_equals_numpy_dot_product_loop():
  pose = _random_poses().astype(np.float64)
  out = np.asarray(kin.kcs(pose.astype(np.float32)))
  assert out.shape == (3, 20, 20)
  ref = np.zeros((3, 20, 20))
  for b in range(3):
    for k, (pk, ck) in enumerate(skeleton.BONES):
      for m, (pm, cm) in enumerate(skeleton.BONES):
        ref[b, k, m] = np.dot(pose[b, ck] - pose[b, pk], pose[b, cm] - pose[b, pm])
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-8)


def test_kcs_diagonal_is_squared_bone_lengths_and_rotation_invariant():
  pose = _random_poses()
  diag = np.diagonal(np.asarray(kin.kcs(pose)), axis1=-2, axis2=-1)
  np.testing.assert_allclose(diag, np.asarray(kin.bone_lengths(pose)) ** 2, rtol=1e-5)
  q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
  rotated = (pose @ q.T).astype(np.float32)
  np.testing.assert_allclose(kin.kcs(rotated), kin.kcs(pose), rtol=1e-4, atol=1e-7)


def test_input_shape_is_checked():
  with pytest.raises(ValueError, match=r"\(\.\.\., 21, 3\)"):
    kin.kcs(jnp.zeros((20, 3)))


# --- joint-line distances ---------------------------------------------------------------------


def test_line_table():
  assert kin.NUM_LINES == 190
  assert kin.LINES == tuple(itertools.combinations(range(1, 21), 2))
  assert all(0 not in line for line in kin.LINES)
  assert kin.ON_LINE.shape == (21, 190) and kin.ON_LINE.sum() == 380


def _brute_force_distances(pose):
  """Point-to-line distance ||(p_i - p_j) x (p_k - p_j)|| / ||p_k - p_j||, numpy loops."""
  pose = np.asarray(pose, np.float64)
  out = np.zeros(pose.shape[:-2] + (21, 190))
  for idx in np.ndindex(*pose.shape[:-2]):
    p = pose[idx]
    for l, (j, k) in enumerate(kin.LINES):
      direction = p[k] - p[j]
      # Every joint i at once; the formula is the textbook one, per point.
      out[idx + (slice(None), l)] = np.linalg.norm(
          np.cross(p - p[j], direction), axis=-1
      ) / np.linalg.norm(direction)
  return out


def test_joint_line_distances_match_brute_force_float64():
  pose = _random_poses(2, batch=(2,)).astype(np.float64)
  ref = _brute_force_distances(pose)
  with jax.enable_x64(True):
    heron = np.asarray(jax.jit(kin.joint_line_distances)(jnp.asarray(pose)))
    cross = np.asarray(jax.jit(kin.joint_line_distances_cross)(jnp.asarray(pose)))
  # Heron in float64: cancellation only for near-flat triangles, ~sqrt(1e-16) * size at worst.
  np.testing.assert_allclose(heron, ref, rtol=1e-6, atol=1e-8)
  np.testing.assert_allclose(cross, ref, rtol=1e-9, atol=1e-12)


def test_joint_line_distances_match_brute_force_float32():
  pose = _random_poses(3, batch=(2,))
  ref = _brute_force_distances(pose)
  # Camera-frame poses (z ~ 0.5 m) in float32: Heron's error is bounded by ~3e-4 x size.
  np.testing.assert_allclose(_jld(pose), ref, atol=2e-5)
  np.testing.assert_allclose(_jldc(pose), ref, atol=1e-6)


def test_joint_line_distance_hand_computed():
  pose = np.zeros((21, 3), np.float32)
  pose[1] = [0.0, 0.0, 0.0]
  pose[2] = [4.0, 0.0, 0.0]
  pose[0] = [1.0, 3.0, 0.0]  # 3 away from the x axis.
  pose[3] = [7.0, 0.0, 4.0]  # 4 away.
  line = kin.LINES.index((1, 2))
  dist = np.asarray(_jld(pose))[:, line]
  np.testing.assert_allclose(dist[[0, 3]], [3.0, 4.0], rtol=1e-6)
  assert dist[1] == 0.0 and dist[2] == 0.0


def test_joint_line_distances_gradient_matches_finite_differences():
  pose = _random_poses(4, batch=()).astype(np.float64)
  w = np.random.default_rng(5).normal(size=(21, 190))
  with jax.enable_x64(True):
    f = jax.jit(lambda p: jnp.sum(kin.joint_line_distances(p) * w))
    grad = np.asarray(jax.jit(jax.grad(f))(jnp.asarray(pose)))
    direction = np.random.default_rng(6).normal(size=pose.shape)
    h = 1e-6
    fd = (f(pose + h * direction) - f(pose - h * direction)) / (2 * h)
  np.testing.assert_allclose(np.sum(grad * direction), fd, rtol=1e-5)


DEGENERATE_BATCH = np.stack([DEGENERATE[name] for name in sorted(DEGENERATE)])


@pytest.mark.parametrize(
    "fn", [kin.joint_line_distances, kin.joint_line_distances_cross, kin.bone_lengths, kin.kcs]
)
def test_finite_values_and_gradients_at_degenerate_poses(fn):
  pose = jnp.asarray(DEGENERATE_BATCH)  # every degenerate pose, one per batch row
  values = jax.jit(fn)(pose)
  assert np.all(np.isfinite(values))
  w = jax.random.normal(jax.random.key(0), values.shape)
  grad = jax.jit(jax.grad(lambda p: jnp.sum(fn(p) * w)))(pose)
  assert np.all(np.isfinite(grad))


def test_degenerate_values():
  np.testing.assert_array_equal(_jld(DEGENERATE["all_at_one_point"]), 0.0)
  np.testing.assert_allclose(_jld(DEGENERATE["collinear"]), 0.0, atol=2e-3)
  np.testing.assert_allclose(
      _jldc(DEGENERATE["collinear"]), 0.0, atol=1e-6
  )
  # A collapsed line (j == k) gives the distance to that point.
  pose = DEGENERATE["coincident_fingers"]
  line = kin.LINES.index((5, 6))  # index MCP == index PIP
  np.testing.assert_allclose(
      _jld(pose)[:, line], np.linalg.norm(pose - pose[5], axis=-1), rtol=1e-5
  )


# --- joint angles -----------------------------------------------------------------------------


def _flat_left_hand():
  """A left hand seen palm-on: wrist at the origin, fingers straight up (-y), thumb at -x, palm
  facing the camera (-z). Each finger's base lies straight above the wrist direction it follows,
  so metacarpal and phalanges are collinear (all angles 0 except the fanned MCPs)."""
  pose = np.zeros((21, 3))
  for finger, x in zip(skeleton.FINGER_NAMES, (-0.04, -0.02, 0.0, 0.018, 0.034)):
    base = np.array([x, -0.09, 0.0])
    direction = base / np.linalg.norm(base)
    for t, joint in enumerate(skeleton.FINGERS[finger]):
      pose[joint] = base + 0.03 * t * direction
  return pose


def _bend_middle(pose, mcp_dir, pip_dir=None):
  pose = pose.copy()
  mcp, pip, dip, tip = skeleton.FINGERS["middle"]
  pip_dir = mcp_dir if pip_dir is None else pip_dir
  pose[pip] = pose[mcp] + 0.04 * np.asarray(mcp_dir)
  pose[dip] = pose[pip] + 0.03 * np.asarray(pip_dir)
  pose[tip] = pose[dip] + 0.02 * np.asarray(pip_dir)
  return pose


MIDDLE = slice(6, 9)
_jit_angles = jax.jit(kin.joint_angles)  # positions of middle MCP, PIP, DIP in ANGLE_JOINTS


def test_angle_joints():
  assert kin.ANGLE_JOINTS == (1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19)


def test_straight_hand_has_zero_angles():
  angles = jax.jit(kin.joint_angles)(jnp.asarray(_flat_left_hand(), jnp.float32))
  np.testing.assert_allclose(angles.flexion, 0.0, atol=1e-6)
  np.testing.assert_allclose(angles.abduction, 0.0, atol=1e-6)


@pytest.mark.parametrize(
    "mcp_dir,pip_dir,flexion,abduction",
    [
        # MCP bent 90 degrees towards the palm (towards the camera, -z), finger otherwise straight.
        ((0, 0, -1), None, (90, 0, 0), (0, 0, 0)),
        # ... and the PIP bent another 90 degrees (pointing back down, +y).
        ((0, 0, -1), (0, 1, 0), (90, 90, 0), (0, 0, 0)),
        # 30 degrees of hyperextension at the MCP (away from the palm, +z).
        ((0, -np.cos(np.pi / 6), np.sin(np.pi / 6)), None, (-30, 0, 0), (0, 0, 0)),
        # 20 degrees of abduction towards the thumb (-x for a left hand seen palm-on).
        ((-np.sin(np.pi / 9), -np.cos(np.pi / 9), 0), None, (0, 0, 0), (20, 0, 0)),
        # 20 degrees towards the little finger.
        ((np.sin(np.pi / 9), -np.cos(np.pi / 9), 0), None, (0, 0, 0), (-20, 0, 0)),
    ],
)
def test_angles_on_hand_built_poses(mcp_dir, pip_dir, flexion, abduction):
  pose = _bend_middle(_flat_left_hand(), mcp_dir, pip_dir)
  for side, p in ((skeleton.LEFT, pose), (skeleton.RIGHT, skeleton.mirror_pose(pose))):
    angles = _jit_angles(jnp.asarray(p, jnp.float32), side)
    np.testing.assert_allclose(np.degrees(angles.flexion[MIDDLE]), flexion, atol=1e-3)
    np.testing.assert_allclose(np.degrees(angles.abduction[MIDDLE]), abduction, atol=1e-3)
    others = np.r_[0:6, 9:15]
    np.testing.assert_allclose(angles.flexion[others], 0.0, atol=1e-5)


def test_angles_invariant_to_rotation_and_batched_hand_side():
  pose = _bend_middle(_flat_left_hand(), (0, -0.6, -0.8), (0, 0.6, -0.8))
  pose = pose + np.random.default_rng(0).normal(size=pose.shape) * 0.003
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))
  q = q * np.sign(np.linalg.det(q))
  batch = np.stack([pose, pose @ q.T, skeleton.mirror_pose(pose @ q.T)]).astype(np.float32)
  angles = jax.jit(kin.joint_angles)(batch, jnp.array([0, 0, 1]))
  for field in angles:
    np.testing.assert_allclose(field[1], field[0], atol=1e-5)
    np.testing.assert_allclose(field[2], field[0], atol=1e-5)


def test_angles_finite_gradients_at_degenerate_poses():
  pose = jnp.asarray(DEGENERATE_BATCH)
  angles = jax.jit(kin.joint_angles)(pose)
  assert all(np.all(np.isfinite(a)) for a in angles)
  grad = jax.jit(jax.grad(lambda p: sum(jnp.sum(a) for a in kin.joint_angles(p))))(pose)
  assert np.all(np.isfinite(grad))


def test_angles_finite_gradient_at_zero_length_bone():
  pose = _flat_left_hand().astype(np.float32)
  pose[10] = pose[9]  # middle PIP on top of the MCP
  grad = jax.jit(jax.grad(lambda p: sum(jnp.sum(a) for a in kin.joint_angles(p))))(pose)
  assert np.all(np.isfinite(grad))
