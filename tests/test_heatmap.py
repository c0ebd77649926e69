"""handjax.losses.heatmap: targets vs a numpy loop, soft-argmax accuracy, the Eq. 7 loss."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses import heatmap


def test_gaussian_heatmaps_match_numpy_loop():
  uv = np.array([[[3.2, 5.7], [0.0, 0.0], [7.5, 1.25]]], np.float32)  # (1, K=3, 2)
  height, width, sigma = 6, 9, 1.3
  got = np.asarray(heatmap.gaussian_heatmaps(jnp.asarray(uv), (height, width), sigma))
  assert got.shape == (1, height, width, 3)
  for k in range(3):
    for row in range(height):
      for col in range(width):
        sq = (col - uv[0, k, 0]) ** 2 + (row - uv[0, k, 1]) ** 2
        expected = np.exp(-sq / (2 * sigma**2))
        assert got[0, row, col, k] == pytest.approx(expected, rel=1e-5, abs=1e-7)
  # Peak value 1 exactly at an integer keypoint.
  assert got[0, 0, 0, 1] == pytest.approx(1.0)


def _quadratic_logits(uv, size, sigma):
  """log of an unnormalised Gaussian: softmax of it is a discrete Gaussian centred at uv."""
  return jnp.log(heatmap.gaussian_heatmaps(uv, size, sigma))


def test_soft_argmax_recovers_subpixel_peak():
  uv = jnp.array([[[12.3, 7.6], [20.8, 18.1], [5.5, 24.9]]])
  logits = _quadratic_logits(uv, (32, 28), 1.5)
  np.testing.assert_allclose(heatmap.soft_argmax(logits), uv, atol=0.1)
  # Temperature: logits scaled by T read out with temperature T give the same answer.
  np.testing.assert_allclose(heatmap.soft_argmax(0.25 * logits, temperature=0.25), uv, atol=0.1)
  # A sharp peak (sigma 0.5) at an integer pixel is recovered too.
  sharp = _quadratic_logits(jnp.array([[[9.0, 4.0]]]), (16, 16), 0.5)
  np.testing.assert_allclose(heatmap.soft_argmax(sharp), [[[9.0, 4.0]]], atol=0.1)


def test_heatmap_l2_matches_loop_both_forms():
  rng = np.random.default_rng(0)
  pred, target = rng.normal(size=(2, 4, 5, 3)), rng.normal(size=(2, 4, 5, 3))
  visible = np.array([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
  squared, norms = np.zeros(2), np.zeros(2)
  for b in range(2):
    for k in range(3):
      sq = sum((pred[b, r, c, k] - target[b, r, c, k]) ** 2 for r in range(4) for c in range(5))
      squared[b] += visible[b, k] * sq
      norms[b] += visible[b, k] * np.sqrt(sq)
  np.testing.assert_allclose(heatmap.heatmap_l2(pred, target, visible), squared, rtol=1e-5)
  np.testing.assert_allclose(
      heatmap.heatmap_l2(pred, target, visible, squared=False), norms, rtol=1e-5)
  np.testing.assert_allclose(heatmap.heatmap_l2(pred, target),
                             np.sum((pred - target) ** 2, axis=(1, 2, 3)), rtol=1e-5)


def test_heatmap_l2_gradients_finite_at_exact_match():
  target = heatmap.gaussian_heatmaps(jnp.array([[[2.0, 3.0], [1.0, 1.0]]]), (6, 6), 1.0)
  for squared in (True, False):
    fn = lambda p: jnp.sum(heatmap.heatmap_l2(p, target, squared=squared))
    grad = jax.jit(jax.grad(fn))(target)
    np.testing.assert_array_equal(grad, 0.0)
  # Away from the match, the unsquared form's gradient is (p - t) / ||p - t|| per map.
  pred = target + 0.1
  grad = jax.grad(lambda p: jnp.sum(heatmap.heatmap_l2(p, target, squared=False)))(pred)
  np.testing.assert_allclose(grad, np.full(pred.shape, 0.1 / np.sqrt(36 * 0.01)), rtol=1e-4)


def test_heatmap_l2_bad_shapes_raise():
  with pytest.raises(ValueError, match="same shape"):
    heatmap.heatmap_l2(jnp.zeros((1, 4, 4, 21)), jnp.zeros((1, 4, 5, 21)))
  with pytest.raises(ValueError, match="visible"):
    heatmap.heatmap_l2(jnp.zeros((1, 4, 4, 21)), jnp.zeros((1, 4, 4, 21)), jnp.ones((1, 20)))


def test_heatmap_cross_entropy_matches_loop_and_is_minimal_at_the_target():
  r = np.random.default_rng(0)
  logits = r.normal(0, 2, (2, 5, 6, 3)).astype(np.float32)
  uv = r.uniform(0, 5, (2, 3, 2)).astype(np.float32)
  sigma = 1.3
  want = np.zeros(2)
  for b in range(2):
    for k in range(3):
      g = np.array([[np.exp(-((x - uv[b, k, 0]) ** 2 + (y - uv[b, k, 1]) ** 2) / (2 * sigma**2))
                     for x in range(6)] for y in range(5)])
      t = g / g.sum()
      z = logits[b, :, :, k].astype(np.float64)
      log_p = z - np.log(np.exp(z).sum())
      want[b] += -(t * log_p).sum()
  got = heatmap.heatmap_cross_entropy(jnp.asarray(logits), jnp.asarray(uv), sigma)
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
  # Cross-entropy >= entropy of the target, with equality at logits = log(target) (+ any constant).
  t = np.asarray(heatmap.gaussian_heatmaps(jnp.asarray(uv), (5, 6), sigma), np.float64)
  t = t / t.sum(axis=(1, 2), keepdims=True)
  entropy = -(t * np.log(t)).sum(axis=(1, 2, 3))
  at_target = heatmap.heatmap_cross_entropy(jnp.asarray(np.log(t) + 7.0, jnp.float32),
                                            jnp.asarray(uv), sigma)
  np.testing.assert_allclose(np.asarray(at_target), entropy, rtol=1e-4)
  assert np.all(want > entropy)


def test_heatmap_cross_entropy_finite_at_extreme_logits_and_far_labels():
  logits = jnp.zeros((1, 4, 4, 2)).at[0, 0, 0, 0].set(1e4).at[0, 3, 3, 1].set(-1e4)
  uv = jnp.asarray([[[3.0, 3.0], [1e3, -1e3]]])  # the second label is far off the map
  value, grad = jax.value_and_grad(
      lambda z: jnp.sum(heatmap.heatmap_cross_entropy(z, uv, 0.5)))(logits)
  assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
  with pytest.raises(ValueError, match="uv must have shape"):
    heatmap.heatmap_cross_entropy(logits, uv[:, :1], 0.5)
