"""Tests for handjax.losses.kinematic against numpy references written independently here."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import skeleton
from handjax.losses import kinematic

B = 3


def _poses(seed):
  rng = np.random.default_rng(seed)
  return (rng.normal(size=(B, 21, 3)) * 0.04).astype(np.float32)


# --- numpy references -------------------------------------------------------------------------


def _np_bones(pose):
  return np.stack([pose[..., c, :] - pose[..., p, :] for p, c in skeleton.BONES], -2)


def _np_kcs_loss(pred, target):
  out = []
  for p, t in zip(pred.astype(np.float64), target.astype(np.float64)):
    bp, bt = _np_bones(p), _np_bones(t)  # (20, 3)
    out.append(np.mean(np.abs(bp @ bp.T - bt @ bt.T)))
  return np.array(out)


def _np_line_distances(pose):
  """(21, 190) point-to-line distances by the cross product, lines = pairs of joints 1..20."""
  pose = pose.astype(np.float64)
  out = []
  for j in range(1, 21):
    for k in range(j + 1, 21):
      direction = pose[k] - pose[j]
      out.append(
          np.linalg.norm(np.cross(pose - pose[j], direction), axis=-1) / np.linalg.norm(direction)
      )
  return np.stack(out, -1)


def _np_geometric_loss(pred, target):
  out = []
  for p, t in zip(pred, target):
    diff = np.abs(_np_line_distances(p) - _np_line_distances(t))
    on_line = np.zeros_like(diff, bool)
    col = 0
    for j in range(1, 21):
      for k in range(j + 1, 21):
        on_line[[j, k], col] = True
        col += 1
    out.append(diff[~on_line].mean())
  return np.array(out)


def _np_bone_length_loss(pred, target):
  lp = np.linalg.norm(_np_bones(pred.astype(np.float64)), axis=-1)
  lt = np.linalg.norm(_np_bones(target.astype(np.float64)), axis=-1)
  return np.mean(np.abs(lp - lt), axis=-1)


LOSSES = {
    "kcs": (kinematic.kcs_loss, _np_kcs_loss, 1e-7),
    "geometric": (kinematic.geometric_loss, _np_geometric_loss, 2e-6),
    "geometric_cross": (
        lambda p, t: kinematic.geometric_loss(p, t, method="cross"),
        _np_geometric_loss,
        2e-7,
    ),
    "bone_length": (kinematic.bone_length_loss, _np_bone_length_loss, 1e-7),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_matches_numpy_reference(name):
  fn, ref, atol = LOSSES[name]
  pred, target = _poses(0), _poses(1)
  out = np.asarray(jax.jit(fn)(pred, target))
  assert out.shape == (B,)
  np.testing.assert_allclose(out, ref(pred, target), rtol=1e-4, atol=atol)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_zero_on_identical_positive_otherwise(name):
  fn = jax.jit(LOSSES[name][0])
  pose = _poses(2)
  np.testing.assert_array_equal(fn(pose, pose), 0.0)
  # Lengthening one bone (the middle PIP -> DIP segment and everything after it) is seen by all.
  other = pose.copy()
  other[:, 11:13] += 0.5 * (pose[:, 11:12] - pose[:, 10:11])
  assert np.all(np.asarray(fn(other, pose)) > 0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_invariant_to_rigid_motion(name):
  fn = jax.jit(LOSSES[name][0])
  pred, target = _poses(3), _poses(4)
  q, _ = np.linalg.qr(np.random.default_rng(5).normal(size=(3, 3)))
  moved = (pred @ q.T + np.float32([0.1, 0.2, 0.5])).astype(np.float32)
  np.testing.assert_allclose(fn(moved, target), fn(pred, target), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_vmap_matches_batched_call(name):
  fn = LOSSES[name][0]
  pred, target = _poses(8), _poses(9)
  np.testing.assert_allclose(jax.vmap(fn)(pred, target), fn(pred, target), rtol=1e-6, atol=1e-9)


def _degenerate():
  point = np.zeros((21, 3), np.float32) + np.float32([0.0, 0.1, 0.5])
  t = np.linspace(0.0, 0.2, 21, dtype=np.float32)
  line = np.stack([t, -t, 0.5 + t], -1)
  chain = _poses(6)[0]
  for finger in skeleton.FINGER_NAMES:  # every finger a straight (collinear) chain
    joints = skeleton.FINGERS[finger]
    direction = chain[joints[0]] - chain[0]
    for i, j in enumerate(joints):
      chain[j] = chain[0] + (1.0 + 0.5 * i) * direction
  return np.stack([point, line, chain])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_finite_gradients_at_degenerate_poses(name):
  fn = LOSSES[name][0]
  degenerate = jnp.asarray(_degenerate())
  generic = jnp.asarray(_poses(7))
  for pred, target in ((degenerate, generic), (generic, degenerate), (degenerate, degenerate)):
    value, grad = jax.jit(jax.value_and_grad(lambda p, t: jnp.sum(fn(p, t))))(pred, target)
    assert np.isfinite(value)
    assert np.all(np.isfinite(grad))


def test_errors():
  with pytest.raises(ValueError, match="same shape"):
    kinematic.kcs_loss(jnp.zeros((2, 21, 3)), jnp.zeros((3, 21, 3)))
  with pytest.raises(ValueError, match="heron"):
    kinematic.geometric_loss(jnp.zeros((21, 3)), jnp.zeros((21, 3)), method="sss")
