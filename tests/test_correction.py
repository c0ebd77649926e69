"""Tests for handjax.hand.correction (SemiHand Sec. 6.3.2 registration, Sec. 7.3.5.1 angle clamp).

`python tests/test_correction.py --fit` recomputes the constants stored in correction.py
(`TEMPLATE_POSE`, `ANGLE_LIMITS_DEG`) from the procedural renderer and prints them.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import correction
from handjax.hand import kinematics
from handjax.hand import skeleton
from handjax.hand import viewpoint

LEFT, RIGHT = skeleton.LEFT, skeleton.RIGHT
# Jitted once per input shape: eager dispatch of the unrolled chain is slower than one compile.
_register = jax.jit(correction.register_pose)
_correct = jax.jit(correction.correct_pose)
_joint_angles = jax.jit(kinematics.joint_angles)


# --- Renderer poses (the fixtures and the fit share them) -------------------------------------


def _renderer_joints(key: jax.Array, count: int) -> np.ndarray:
  """(count, 21, 3) RIGHT-hand joints of random renderer subjects, angles uniform in the limits."""
  from handjax.data.synthetic import hand_model
  from handjax.data.synthetic import poses
  from handjax.data.synthetic.draws import Draws

  def one(k):
    rand = Draws(k, 128)
    shape = hand_model.sample_shape(rand)
    angles, _ = poses.sample_angles(rand, 0.0)
    joints, _ = hand_model.forward_kinematics(shape, angles)
    return joints

  return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, count)))


def _mean_renderer_template() -> np.ndarray:
  from handjax.data.synthetic import hand_model

  length = float(np.mean(hand_model.HAND_LENGTH_RANGE))
  shape = hand_model.HandShape(
      jnp.float32(length), jnp.asarray(length * hand_model.PHALANX_FRACTIONS),
      jnp.asarray(length * hand_model.MCP_OFFSETS),
      jnp.asarray(length * hand_model.THUMB_CMC_OFFSET), jnp.float32(1.0))
  joints, _ = hand_model.forward_kinematics(shape, jnp.zeros((5, 4)))
  return -np.asarray(joints, np.float64)  # (x, y, z) -> (-x, -y, -z): left hand, fingers up.


def fit_constants(count: int = 20000) -> tuple[np.ndarray, np.ndarray]:
  """Recomputes (TEMPLATE_POSE, ANGLE_LIMITS_DEG) as documented in correction.py."""
  template = np.round(_mean_renderer_template(), 4) + 0.0
  joints = _renderer_joints(jax.random.key(0), count)
  angles = kinematics.joint_angles(jnp.asarray(joints), RIGHT)
  flex, abd = np.rad2deg(np.asarray(angles.flexion)), np.rad2deg(np.asarray(angles.abduction))
  lo = lambda x: np.floor((x.min(0) - 5.0) / 5.0) * 5.0  # noqa: E731
  hi = lambda x: np.ceil((x.max(0) + 5.0) / 5.0) * 5.0  # noqa: E731
  limits = np.stack([lo(flex), hi(flex), lo(abd), hi(abd)], -1)
  return template, limits


# --- Helpers ----------------------------------------------------------------------------------


def _random_pose(key: jax.Array, batch: int, noise: float = 0.02) -> jax.Array:
  """The template, randomly rotated, placed in front of the camera, with joint noise (metres)."""
  k1, k2 = jax.random.split(key)
  q = jax.random.normal(k1, (batch, 3, 3))
  rot, _ = jnp.linalg.qr(q)
  rot = rot * jnp.sign(jnp.linalg.det(rot))[:, None, None]
  pose = viewpoint.rotate_points(jnp.broadcast_to(jnp.asarray(correction.TEMPLATE_POSE),
                                                  (batch, 21, 3)), rot)
  return pose + jnp.array([0.0, 0.0, 0.5]) + noise * jax.random.normal(k2, pose.shape)


def _angles_inside(pose, side, limits=correction.ANGLE_LIMITS_DEG, tol_deg=1e-3):
  angles = _joint_angles(pose, side)
  flex = np.rad2deg(np.asarray(angles.flexion))
  abd = np.rad2deg(np.asarray(angles.abduction))
  ok = ((flex >= limits[:, 0] - tol_deg) & (flex <= limits[:, 1] + tol_deg)
        & (abd >= limits[:, 2] - tol_deg) & (abd <= limits[:, 3] + tol_deg))
  return ok, flex, abd


# --- Registration (Sec. 6.3.2) ----------------------------------------------------------------


def test_register_bone_lengths_equal_template(rng):
  pose = _random_pose(rng, 16, noise=0.03)
  lengths = jnp.linspace(0.02, 0.06, 20)
  out = _register(pose, lengths)
  np.testing.assert_allclose(kinematics.bone_lengths(out), np.broadcast_to(lengths, (16, 20)),
                             rtol=1e-5)
  np.testing.assert_allclose(out[:, 0], pose[:, 0], atol=0)  # root aligned by translation
  default = _register(pose)
  np.testing.assert_allclose(kinematics.bone_lengths(default),
                             np.broadcast_to(correction.template_bone_lengths(), (16, 20)),
                             rtol=1e-5)


def test_register_matches_sequential_reference(rng):
  pose = np.asarray(_random_pose(rng, 4, noise=0.02), np.float64)
  lengths = np.asarray(correction.template_bone_lengths(), np.float64)
  out = np.asarray(_register(jnp.asarray(pose, jnp.float32)))
  for b in range(4):
    ref = np.zeros((21, 3))
    ref[0] = pose[b, 0]
    for k, (parent, child) in enumerate(skeleton.BONES):  # parents precede children
      aim = pose[b, child] - ref[parent]
      ref[child] = ref[parent] + lengths[k] * aim / np.linalg.norm(aim)
    np.testing.assert_allclose(out[b], ref, atol=2e-6)


def test_register_feasible_pose_unchanged(rng):
  pose = _random_pose(rng, 4, noise=0.0)
  np.testing.assert_allclose(_register(pose), pose, atol=2e-6)
  # Same with the pose's own lengths for an arbitrary (noisy) pose.
  noisy = _random_pose(jax.random.fold_in(rng, 1), 4, noise=0.02)
  np.testing.assert_allclose(
      _register(noisy, kinematics.bone_lengths(noisy)), noisy, atol=2e-6)


def test_register_degenerate_bone_fallback():
  pose = jnp.asarray(correction.TEMPLATE_POSE)
  # Collapse the index PIP onto the MCP (zero-length observed bone 6) ...
  collapsed = pose.at[6].set(pose[5])
  out = _register(collapsed)
  lengths = correction.template_bone_lengths()
  # ... the registered PIP continues straight along the registered metacarpal (wrist -> MCP).
  meta = out[5] - out[0]
  expected = out[5] + lengths[5] * meta / jnp.linalg.norm(meta)
  np.testing.assert_allclose(out[6], expected, atol=1e-6)
  # A child a rounding error (10 nm) off its parent is collapsed too, jitted or not: the aim is
  # measured against the bone's length, not against safe_normalize's absolute threshold.
  nearly = pose.at[6].set(pose[5] + jnp.asarray([0.0, 1e-8, 0.0]))
  for register in (correction.register_pose, _register):
    out = register(nearly)
    meta = out[5] - out[0]
    expected = out[5] + lengths[5] * meta / jnp.linalg.norm(meta)
    np.testing.assert_allclose(out[6], expected, atol=1e-6)
  # A collapsed metacarpal takes the template's direction; everything at one point stays finite.
  allzero = jnp.zeros((21, 3))
  out0 = _register(allzero)
  np.testing.assert_allclose(out0[5], correction.TEMPLATE_POSE[5], atol=1e-6)
  # Finite gradients at both degenerate poses, for both corrections (one compiled function).
  def total(p):
    return jnp.sum(correction.register_pose(p) ** 2) + jnp.sum(correction.correct_pose(p) ** 2)

  grads = jax.jit(jax.vmap(jax.grad(total)))(jnp.stack([allzero, collapsed]))
  assert np.all(np.isfinite(grads))


# --- Angle clamp (Sec. 7.3.5.1) ---------------------------------------------------------------


@pytest.mark.parametrize("side", [LEFT, RIGHT])
def test_correct_angles_within_limits(rng, side):
  pose = _random_pose(rng, 16, noise=0.04)  # large noise: many angles out of range
  if side == RIGHT:
    pose = skeleton.mirror_pose(pose)
  ok_before, _, _ = _angles_inside(pose, side)
  assert not ok_before.all()
  out = _correct(pose, None, side)
  ok, flex, abd = _angles_inside(out, side)
  assert ok.all(), (flex[~ok], abd[~ok])
  np.testing.assert_allclose(kinematics.bone_lengths(out),
                             np.broadcast_to(correction.template_bone_lengths(), (16, 20)),
                             rtol=1e-5)


def test_correct_clamps_hyperextension_to_bound():
  # Bend the index PIP backwards by 60 deg (limit -5 deg): the corrected flexion is the bound.
  pose = np.asarray(correction.TEMPLATE_POSE, np.float64)
  pip = pose[6]
  back = np.deg2rad(-60.0)  # about x, away from the palm normal (0, 0, -1): dorsal
  rot = np.array([[1, 0, 0], [0, np.cos(back), -np.sin(back)], [0, np.sin(back), np.cos(back)]])
  bent = pose.copy()
  bent[7:9] = pip + (pose[7:9] - pip) @ rot.T
  flex_in = np.rad2deg(np.asarray(kinematics.joint_angles(jnp.asarray(bent, jnp.float32)).flexion))
  assert flex_in[4] < -50.0  # index PIP hyperextended (sign convention check)
  out = _correct(jnp.asarray(bent, jnp.float32))
  flex = np.rad2deg(np.asarray(kinematics.joint_angles(out).flexion))
  np.testing.assert_allclose(flex[4], correction.ANGLE_LIMITS_DEG[4, 0], atol=1e-3)


def test_correct_renderer_poses_unchanged(rng):
  joints = _renderer_joints(rng, 16)
  lengths = kinematics.bone_lengths(jnp.asarray(joints))
  out = _correct(jnp.asarray(joints), lengths, RIGHT)
  np.testing.assert_allclose(out, joints, atol=1e-5)


def test_correct_per_example_sides_and_grad(rng):
  pose = _random_pose(rng, 16, noise=0.04)  # same shape as above: `_correct` is reused
  sides = jnp.arange(16) % 2
  mixed = _correct(pose, None, sides)
  left, right = _correct(pose, None, LEFT), _correct(pose, None, RIGHT)
  np.testing.assert_allclose(mixed, np.where((sides == RIGHT)[:, None, None], right, left),
                             atol=1e-6)
  grad = jax.grad(lambda p: jnp.sum(correction.correct_pose(p, hand_side=sides[:2])))(pose[:2])
  assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="21, 3"):
    correction.register_pose(jnp.zeros((20, 3)))
  with pytest.raises(ValueError, match="bone_lengths"):
    correction.register_pose(jnp.zeros((21, 3)), jnp.ones(19))
  with pytest.raises(ValueError, match="angle_limits_deg"):
    correction.correct_pose(jnp.zeros((21, 3)), angle_limits_deg=np.zeros((15, 2)))


# --- Stored constants -------------------------------------------------------------------------


def test_template_matches_renderer():
  np.testing.assert_allclose(correction.TEMPLATE_POSE, _mean_renderer_template(), atol=6e-5)
  ok, _, _ = _angles_inside(jnp.asarray(correction.TEMPLATE_POSE), LEFT)
  assert ok.all()


@pytest.mark.slow
def test_stored_limits_match_fit():
  _, limits = fit_constants()
  np.testing.assert_allclose(correction.ANGLE_LIMITS_DEG, limits)


if __name__ == "__main__":
  if "--fit" in sys.argv:
    template, limits = fit_constants()
    np.set_printoptions(suppress=True)
    print("TEMPLATE_POSE =")
    for row in template:
      print("    (%.4f, %.4f, %.4f)," % tuple(row))
    print("ANGLE_LIMITS_DEG =")
    for row, joint in zip(limits, kinematics.ANGLE_JOINTS):
      print("    (%.1f, %.1f, %.1f, %.1f),  # %s" % (*row, skeleton.JOINT_NAMES[joint]))
