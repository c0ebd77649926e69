"""Tests for handjax.losses.consistency (SemiHand Eq. 6.10-6.14)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import circles
from handjax.hand.lifting import Pose25D
from handjax.losses import consistency

SIZE = (12, 14)


def _rotation_affine(deg: float, centre: tuple[float, float], shift: tuple[float, float]):
  t = math.radians(deg)
  lin = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
  c = np.asarray(centre)
  return jnp.asarray(np.concatenate([lin, (c - lin @ c + np.asarray(shift))[:, None]], 1),
                     jnp.float32)


def _hand(key, batch=2):
  k1, k2 = jax.random.split(key)
  uv = 6.0 + 2.0 * jax.random.normal(k1, (batch, 21, 2))
  depth = 0.02 * jax.random.normal(k2, (batch, 21))
  return Pose25D(uv, depth)


# --- Affine maps and warping ------------------------------------------------------------------


def test_affine_uv_hand_computed():
  A = jnp.array([[0.0, -1.0, 10.0], [1.0, 0.0, 2.0]])  # 90 deg rotation + shift
  uv = jnp.array([[[1.0, 2.0], [3.0, -1.0]]])
  np.testing.assert_allclose(consistency.affine_uv(uv, A), [[[8.0, 3.0], [11.0, 5.0]]])
  with pytest.raises(ValueError, match=r"\(\.\.\., 2, 3\)"):
    consistency.affine_uv(uv, jnp.eye(3))


def test_warp_integer_translation_is_a_shift(rng):
  image = jax.random.uniform(rng, (1,) + SIZE + (1,))
  A = jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, -1.0]])  # u + 2, v - 1
  warped, valid = consistency.warp_affine(image, A)
  img = np.asarray(image[0, ..., 0])
  expected = np.zeros(SIZE)
  expected[: SIZE[0] - 1, 2:] = img[1:, : SIZE[1] - 2]
  np.testing.assert_allclose(warped[0, ..., 0], expected, atol=1e-6)
  np.testing.assert_array_equal(valid[0, ..., 0], expected != 0)


def test_warp_bilinear_half_pixel():
  image = jnp.arange(SIZE[0] * SIZE[1], dtype=jnp.float32).reshape((1,) + SIZE + (1,))
  warped, valid = consistency.warp_affine(image, jnp.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.0]]))
  # out(u, v) = in(u - 0.5, v): the mean of columns u - 1 and u; column 0 reads outside.
  img = np.asarray(image[0, ..., 0])
  np.testing.assert_allclose(warped[0, :, 1:, 0], 0.5 * (img[:, :-1] + img[:, 1:]), rtol=1e-6)
  assert np.all(np.asarray(valid[0, :, 0, 0]) == 0)


# --- View consistency (Eq. 6.10) --------------------------------------------------------------


def test_view_consistency_zero_when_consistent(rng):
  pred = _hand(rng)
  mask = jnp.zeros((2,) + SIZE + (1,)).at[:, 3:9, 4:10].set(1.0)
  A = jnp.array([[1.0, 0.0, 2.0], [0.0, 1.0, 1.0]])  # integer shift: the warp is exact
  moved_mask, _ = consistency.warp_affine(mask, A)
  moved = consistency.affine_pose(pred, A)
  loss = consistency.view_consistency(moved, moved_mask, pred, mask, A)
  np.testing.assert_allclose(loss, 0.0, atol=1e-6)
  # Rotation too: uv maps exactly (the mask term compares the warp with itself).
  R = _rotation_affine(90.0, (6.5, 5.5), (0.0, 0.0))
  warped, _ = consistency.warp_affine(mask, R)
  loss = consistency.view_consistency(consistency.affine_pose(pred, R), warped, pred, mask, R)
  np.testing.assert_allclose(loss, 0.0, atol=1e-5)


def test_view_consistency_hand_computed():
  uv = jnp.zeros((1, 21, 2)).at[0, 3].set(jnp.array([1.0, 2.0]))
  depth = jnp.zeros((1, 21)).at[0, 5].set(0.1)
  pred = Pose25D(uv, depth)
  A = jnp.array([[1.0, 0.0, 3.0], [0.0, 1.0, 0.0]])  # u + 3
  # Prediction on T(x): uv equal to T(uv) except joint 3 off by (1, -2); depth 5 at 0.3.
  other = Pose25D(consistency.affine_uv(uv, A).at[0, 3].add(jnp.array([1.0, -2.0])),
                  depth.at[0, 5].set(0.3))
  mask = jnp.zeros((1,) + SIZE + (1,))
  other_mask = mask.at[0, 2, 5, 0].set(0.8)  # one pixel wrong by 0.8
  loss = consistency.view_consistency(other, other_mask, pred, mask, A, reduction="sum")
  expected = (1.0 + 4.0) + 50.0 * 0.2**2 + 0.8  # |d uv|^2 + lambda_d |d depth|^2 + L1
  np.testing.assert_allclose(loss, [expected], rtol=1e-5)
  # "mean": the L1 divided by the valid pixels (columns 0-2 have pre-images outside).
  valid = SIZE[0] * (SIZE[1] - 3)
  loss = consistency.view_consistency(other, other_mask, pred, mask, A)
  np.testing.assert_allclose(loss, [expected - 0.8 + 0.8 / valid], rtol=1e-5)


def test_view_consistency_stop_target(rng):
  pred = _hand(rng)
  mask = jnp.full((2,) + SIZE + (1,), 0.5)
  A = jnp.array([[1.0, 0.0, 0.3], [0.0, 1.0, 0.0]])
  other = Pose25D(pred.uv + 1.0, pred.depth)

  def loss(uv, stop):
    return jnp.sum(consistency.view_consistency(other, mask, Pose25D(uv, pred.depth), mask, A,
                                                stop_target=stop))

  assert np.all(np.asarray(jax.grad(loss)(pred.uv, True)) == 0)
  assert np.any(np.asarray(jax.grad(loss)(pred.uv, False)) != 0)


# --- Cross-modal consistency (Eq. 6.11-6.14) --------------------------------------------------


def _d2m_brute_force(uv, mask, scale, threshold=0.5):
  model = circles.circle_model(jnp.asarray(uv), scale)
  c = np.asarray(model.centres, np.float64)
  r = np.asarray(model.radii, np.float64)
  total = 0.0
  h, w = mask.shape[:2]
  for v in range(h):
    for u in range(w):
      dists = [math.hypot(u - c[i, 0], v - c[i, 1]) - r[i] for i in range(circles.NUM_CIRCLES)]
      if mask[v, u, 0] > threshold:
        total += max(min(dists), 0.0)
      else:
        total += max(max(-x for x in dists), 0.0)
  return total


def test_data_to_model_equals_brute_force(rng):
  k1, k2 = jax.random.split(rng)
  uv = 6.0 + 2.5 * jax.random.normal(k1, (21, 2))
  mask = (jax.random.uniform(k2, SIZE + (1,)) > 0.6).astype(jnp.float32)
  value = consistency.data_to_model(uv, mask, 3.0, reduction="sum")
  np.testing.assert_allclose(value, _d2m_brute_force(uv, np.asarray(mask), 3.0), rtol=1e-4)
  mean = consistency.data_to_model(uv, mask, 3.0)
  np.testing.assert_allclose(mean, value / (SIZE[0] * SIZE[1]), rtol=1e-6)


def test_model_to_data_is_l1_of_rendered_circles(rng):
  uv = 6.0 + 2.5 * jax.random.normal(rng, (21, 2))
  mask = jnp.zeros(SIZE + (1,)).at[2:8, 3:9].set(1.0)
  rendered = circles.render_circles(circles.circle_model(uv, 3.0), SIZE, 0.5)
  expected = np.abs(np.asarray(rendered) - np.asarray(mask)).sum()
  np.testing.assert_allclose(consistency.model_to_data(uv, mask, 3.0, reduction="sum"), expected,
                             rtol=1e-5)
  both = consistency.cross_modal_consistency(uv, mask, 3.0, reduction="sum")
  np.testing.assert_allclose(
      both, expected + consistency.data_to_model(uv, mask, 3.0, reduction="sum"), rtol=1e-5)


def test_mask_gets_exactly_zero_gradient(rng):
  uv = 6.0 + 2.5 * jax.random.normal(rng, (2, 21, 2))
  mask = jax.random.uniform(rng, (2,) + SIZE + (1,))
  for term in (consistency.data_to_model, consistency.model_to_data,
               consistency.cross_modal_consistency):
    g_mask = jax.grad(lambda m: jnp.sum(term(uv, m, 3.0)))(mask)
    assert np.all(np.asarray(g_mask) == 0.0)
    g_uv = jax.grad(lambda p: jnp.sum(term(p, mask, 3.0)))(uv)
    assert np.all(np.isfinite(g_uv)) and np.any(np.asarray(g_uv) != 0)


def test_degenerate_pose_finite_gradients():
  uv = jnp.zeros((21, 2))  # all centres on pixel (0, 0)
  mask = jnp.zeros(SIZE + (1,)).at[0, 0].set(1.0)
  for term in (consistency.data_to_model, consistency.model_to_data):
    g = jax.grad(lambda p: term(p, mask, 2.0))(uv)
    assert np.all(np.isfinite(g))


def test_view_consistency_jit_vmap(rng):
  pred = _hand(rng, 3)
  mask = jax.random.uniform(rng, (3,) + SIZE + (1,))
  A = jnp.broadcast_to(_rotation_affine(10.0, (6.5, 5.5), (0.5, -0.5)), (3, 2, 3))
  other = Pose25D(pred.uv + 0.5, pred.depth)
  a = jax.jit(consistency.view_consistency)(other, mask, pred, mask, A)
  b = jax.vmap(consistency.view_consistency)(other, mask, pred, mask, A)
  np.testing.assert_allclose(a, b, rtol=1e-5)
  assert a.shape == (3,)


def test_view_consistency_warps_the_mask_with_its_own_transform():
  """uv in 64-px units with the mask at 32 px: consistent predictions cost 0 only when the mask is
  warped with T in mask pixels (SemiHand at stem_stride 2; issue 20, finding 1)."""
  rng = np.random.default_rng(4)
  t_map = jnp.asarray([[[0.9, -0.2, 3.0], [0.2, 0.9, -2.0]]], jnp.float32)  # mask (32-px) pixels
  t_unit = t_map.at[..., 2].multiply(2.0)  # the same map on uv in 64-px units
  mask = jnp.asarray(rng.uniform(size=(1, 32, 32, 1)), jnp.float32)
  mask_t, _ = consistency.warp_affine(mask, t_map)
  pose = Pose25D(jnp.asarray(rng.uniform(10, 50, (1, 21, 2)), jnp.float32),
                 jnp.asarray(rng.normal(size=(1, 21)), jnp.float32))
  pose_t = consistency.affine_pose(pose, t_unit)
  loss = consistency.view_consistency(pose_t, mask_t, pose, mask, t_unit, mask_transform=t_map)
  np.testing.assert_allclose(loss, 0.0, atol=1e-5)
  # Warping the mask with the uv transform instead leaves a mask term.
  assert float(consistency.view_consistency(pose_t, mask_t, pose, mask, t_unit)[0]) > 0.05
