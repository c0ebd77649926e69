"""Tests for handjax.losses.pointcloud: Chamfer (Eq. 8) and EMD (Eq. 9) of Yang et al. ICCV 2019."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses import pointcloud


def _random_clouds(seed: int, batch: int, n: int, m: int | None = None, side: float = 0.1):
  """Uniform clouds in a cube of `side` metres (a hand is ~0.1-0.2 m)."""
  gen = np.random.default_rng(seed)
  m = n if m is None else m
  x = gen.uniform(0.0, side, (batch, n, 3)).astype(np.float32)
  y = gen.uniform(0.0, side, (batch, m, 3)).astype(np.float32)
  return x, y


def _chamfer_loop(x: np.ndarray, y: np.ndarray, power: int) -> float:
  """Brute-force Eq. 8 with explicit loops (power 1) or its squared variant (power 2)."""

  def one_way(a, b):
    total = 0.0
    for p in a:
      total += min(float(np.linalg.norm(p - q))**power for q in b)
    return total / len(a)

  return one_way(x, y) + one_way(y, x)


def _emd_permutations(x: np.ndarray, y: np.ndarray) -> float:
  """Eq. 9 by enumerating every bijection (tiny clouds only)."""
  n = len(x)
  return min(np.mean([np.linalg.norm(x[i] - y[p[i]]) for i in range(n)])
             for p in itertools.permutations(range(n)))


# ----------------------------------------------------------------------------------------- Chamfer


@pytest.mark.parametrize("fn, power", [(pointcloud.chamfer_distance, 1),
                                       (pointcloud.chamfer_distance_squared, 2)])
def test_chamfer_matches_brute_force_loop(fn, power):
  x, y = _random_clouds(0, batch=2, n=17, m=23)
  got = np.asarray(fn(x, y))
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  want = np.array([_chamfer_loop(x64[b], y64[b], power) for b in range(2)])
  assert got.shape == (2,)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_chamfer_hand_computed():
  # x = {0, (3,4,0)}, y = {(0,0,1)}: x->y distances 1 and sqrt(9+16+1); y->x nearest is 1.
  x = jnp.array([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0]])
  y = jnp.array([[0.0, 0.0, 1.0]])
  np.testing.assert_allclose(pointcloud.chamfer_distance(x, y), (1.0 + np.sqrt(26.0)) / 2 + 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(pointcloud.chamfer_distance_squared(x, y), (1.0 + 26.0) / 2 + 1.0,
                             rtol=1e-6)


@pytest.mark.parametrize("fn", [pointcloud.chamfer_distance, pointcloud.chamfer_distance_squared])
def test_chamfer_degenerate_clouds_give_zero_and_finite_gradients(fn):
  x, _ = _random_clouds(1, batch=1, n=8)
  x = x[0]
  duplicated = np.concatenate([x[:5], x[:3]], axis=0)
  zeros = np.zeros_like(x)
  a = np.stack([x, duplicated, zeros, zeros])
  b = np.stack([x, x[:5][np.arange(8) % 5], zeros, x])
  values, grads = jax.jit(jax.value_and_grad(lambda a, b: jnp.sum(fn(a, b)), argnums=(0, 1)))(a, b)
  assert np.isfinite(values)
  assert all(np.all(np.isfinite(g)) for g in grads)
  per_pair = np.asarray(jax.jit(fn)(a, b))
  np.testing.assert_array_equal(per_pair[:3], 0.0)  # identical, duplicated, all points equal
  assert per_pair[3] > 0.0


def test_chamfer_gradient_matches_finite_differences():
  x, y = _random_clouds(2, batch=1, n=6, m=7)
  x, y = x[0].astype(np.float64), y[0].astype(np.float64)
  with jax.enable_x64(True):
    grad = np.asarray(jax.grad(pointcloud.chamfer_distance)(jnp.asarray(x), jnp.asarray(y)))
  h = 1e-7
  fd = np.zeros_like(x)
  for idx in np.ndindex(*x.shape):
    step = np.zeros_like(x)
    step[idx] = h
    fd[idx] = (_chamfer_loop(x + step, y, 1) - _chamfer_loop(x - step, y, 1)) / (2 * h)
  np.testing.assert_allclose(grad, fd, atol=1e-6)


# ------------------------------------------------------------------------------------- exact EMD


def test_exact_emd_matches_permutation_enumeration():
  x, y = _random_clouds(3, batch=3, n=6)
  got = pointcloud.exact_emd(x, y)
  want = [_emd_permutations(x[b].astype(np.float64), y[b].astype(np.float64)) for b in range(3)]
  assert got.shape == (3,)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_exact_emd_of_translated_cloud_is_the_translation_length():
  # Jensen: mean_i ||x_i - y_phi(i)|| >= ||mean_i (x_i - y_phi(i))|| = ||t|| for every bijection.
  x, _ = _random_clouds(4, batch=1, n=50)
  t = np.array([0.01, -0.02, 0.005])
  np.testing.assert_allclose(pointcloud.exact_emd(x, x + t), np.linalg.norm(t), rtol=1e-5)


def test_exact_emd_rejects_tracers_and_unequal_sizes():
  x, y = _random_clouds(5, batch=1, n=4, m=5)
  with pytest.raises(ValueError, match="N == M"):
    pointcloud.exact_emd(x, y)
  with pytest.raises(TypeError, match="host"):
    jax.jit(pointcloud.exact_emd)(x, x)


# ------------------------------------------------------------------------------------ Sinkhorn EMD


def test_emd_within_two_percent_of_exact_on_256_point_clouds():
  """The issue's accuracy target: 32 pairs of 256 points in a 10 cm cube, mean error <= 2%."""
  x, y = _random_clouds(6, batch=32, n=256)
  approx = np.asarray(jax.jit(pointcloud.earth_movers_distance)(x, y))
  exact = pointcloud.exact_emd(x, y)
  rel = np.abs(approx - exact) / exact
  assert rel.mean() <= 0.02, rel
  assert rel.max() <= 0.05, rel


# One compiled function per shape, shared by the tests below (compilation dominates their runtime).
_emd = jax.jit(pointcloud.earth_movers_distance)
_emd_grad = jax.jit(jax.grad(lambda x, y: jnp.sum(pointcloud.earth_movers_distance(x, y))))


def test_emd_gradient_matches_finite_differences_of_exact_emd():
  # Given the optimal bijection phi, exact EMD is smooth in the points (the assignment is locally
  # constant), so central differences with a tiny step estimate its gradient coordinatewise.
  x, y = _random_clouds(7, batch=4, n=64)
  grad = np.asarray(_emd_grad(x, y))[0]
  x, y = x[0].astype(np.float64), y[0].astype(np.float64)
  h = 1e-7
  fd = np.zeros_like(x)
  for idx in np.ndindex(*x.shape):
    step = np.zeros_like(x)
    step[idx] = h
    fd[idx] = (pointcloud.exact_emd(x + step, y) - pointcloud.exact_emd(x - step, y)) / (2 * h)
  cosine = np.sum(grad * fd) / (np.linalg.norm(grad) * np.linalg.norm(fd))
  assert cosine > 0.9, cosine
  # The entropic plan is a slightly blurred assignment: it shrinks the gradient a little.
  assert 0.8 < np.linalg.norm(grad) / np.linalg.norm(fd) < 1.2


def test_emd_of_translated_cloud_is_close_to_translation_length():
  x, _ = _random_clouds(9, batch=4, n=64)
  t = np.random.default_rng(9).uniform(-0.02, 0.02, (4, 1, 3)).astype(np.float32)
  np.testing.assert_allclose(_emd(x, x + t), np.linalg.norm(t[:, 0], axis=-1), rtol=0.02)


def test_emd_is_scale_equivariant():
  # Relative epsilon: clouds in metres and in millimetres give the same plan, the value scales.
  x, y = _random_clouds(10, batch=4, n=64)
  metres = np.asarray(_emd(x, y))
  np.testing.assert_allclose(_emd(1000.0 * x, 1000.0 * y), 1000.0 * metres, rtol=1e-4)


def test_emd_near_zero_for_identical_clouds():
  x, y = _random_clouds(11, batch=4, n=64)
  same = np.asarray(_emd(x, x))
  different = pointcloud.exact_emd(x, y)
  assert np.all(same >= 0.0)
  # The entropic plan blurs over near neighbours; its cost stays a small fraction of a typical EMD.
  assert np.all(same < 0.05 * different), (same, different)


def test_emd_and_divergence_finite_at_coincident_points():
  x, y = _random_clouds(12, batch=1, n=16)
  x, y = x[0], y[0]
  zeros = np.zeros_like(x)
  duplicates = np.concatenate([x[:8], x[:8]])
  cases = {  # name: (a, b)
      "identical": (x, x),
      "all_points_equal": (zeros, zeros),
      "duplicates": (duplicates, duplicates),
      "one_cloud_collapsed": (zeros, y),
  }
  a = np.stack([c[0] for c in cases.values()])
  b = np.stack([c[1] for c in cases.values()])
  for fn in (pointcloud.earth_movers_distance, pointcloud.sinkhorn_divergence):
    values, grads = jax.jit(jax.value_and_grad(lambda a, b: fn(a, b).sum(), argnums=(0, 1)))(a, b)
    assert np.isfinite(values), fn.__name__
    for name, ga, gb in zip(cases, *grads):
      assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb)), (fn.__name__, name)
  emd = np.asarray(pointcloud.earth_movers_distance(a, b))
  assert emd[1] == 0.0  # all points equal
  # One cloud collapsed to the origin: every bijection costs mean_i ||y_i||.
  np.testing.assert_allclose(emd[3], np.mean(np.linalg.norm(y, axis=-1)), rtol=1e-5)


def test_emd_jit_vmap_grad_and_batch_shapes_agree():
  x, y = _random_clouds(13, batch=4, n=64)
  x2, y2 = x.reshape(2, 2, 64, 3), y.reshape(2, 2, 64, 3)
  batched = np.asarray(jax.jit(pointcloud.earth_movers_distance)(x2, y2))
  assert batched.shape == (2, 2)
  np.testing.assert_allclose(batched.reshape(4), _emd(x, y), rtol=1e-5)
  single = jax.jit(pointcloud.earth_movers_distance)(x[3], y[3])
  np.testing.assert_allclose(batched[1, 1], single, rtol=1e-5)
  vmapped = jax.jit(jax.vmap(pointcloud.earth_movers_distance))(x, y)
  np.testing.assert_allclose(vmapped, batched.reshape(4), rtol=1e-5)
  grads = np.asarray(_emd_grad(x, y))
  single_grad = jax.jit(jax.grad(pointcloud.earth_movers_distance))(x[3], y[3])
  np.testing.assert_allclose(grads[3], single_grad, rtol=1e-4, atol=1e-7)


def test_emd_rejects_bad_inputs():
  x, y = _random_clouds(14, batch=1, n=8, m=9)
  with pytest.raises(ValueError, match="N == M"):
    pointcloud.earth_movers_distance(x, y)
  with pytest.raises(ValueError, match="point dimension"):
    pointcloud.earth_movers_distance(x, x[..., :2])
  with pytest.raises(ValueError, match=r"shape \(\.\.\., N, D\)"):
    pointcloud.chamfer_distance(x[0, 0], x[0, 0])
  with pytest.raises(ValueError, match="annealing"):
    pointcloud.earth_movers_distance(x, x, relative_epsilon=1e-4, epsilon_decay=0.99,
                                     num_iterations=50)
  with pytest.raises(ValueError, match="epsilon_decay"):
    pointcloud.earth_movers_distance(x, x, epsilon_decay=1.5)


# ----------------------------------------------------------------------------- Sinkhorn divergence


def test_sinkhorn_divergence_zero_for_identical_and_close_to_exact_emd():
  x, y = _random_clouds(15, batch=4, n=64)
  divergence_fn = jax.jit(pointcloud.sinkhorn_divergence)
  np.testing.assert_allclose(divergence_fn(x, x), 0.0, atol=1e-7)
  divergence = np.asarray(divergence_fn(x, y))
  exact = pointcloud.exact_emd(x, y)
  assert np.all(divergence > 0.0)
  np.testing.assert_allclose(divergence, exact, rtol=0.1)
