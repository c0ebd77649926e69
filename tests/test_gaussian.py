"""Gaussian algebra against closed forms in float64 numpy, scipy densities and Monte Carlo."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from handjax.losses import gaussian as G
from handjax.losses.gaussian import Gaussian


def _random_gaussian(seed, shape, logvar_range=(-2.0, 1.0)):
  r = np.random.default_rng(seed)
  mean = r.normal(size=shape).astype(np.float32)
  logvar = r.uniform(*logvar_range, size=shape).astype(np.float32)
  return Gaussian(jnp.asarray(mean), jnp.asarray(logvar))


def _np(q):
  return np.asarray(q.mean, np.float64), np.asarray(q.logvar, np.float64)


def _poe_reference(experts, mask, prior_expert):
  """Eq. 5-6 literally, one example and one dimension at a time, in float64."""
  means = np.stack([_np(e)[0] for e in experts], -2)  # (B, E, D)
  variances = np.exp(np.stack([_np(e)[1] for e in experts], -2))
  b, e, d = means.shape
  out_mean, out_logvar = np.zeros((b, d)), np.zeros((b, d))
  for i in range(b):
    for k in range(d):
      precisions = [1.0 / variances[i, j, k] for j in range(e) if mask[i, j]]
      weighted = [means[i, j, k] / variances[i, j, k] for j in range(e) if mask[i, j]]
      if prior_expert:
        precisions.append(1.0)
        weighted.append(0.0)
      if not precisions:  # documented fallback: the prior
        continue
      out_mean[i, k] = sum(weighted) / sum(precisions)
      out_logvar[i, k] = -np.log(sum(precisions))
  return out_mean, out_logvar


def test_sample_moments_and_reparameterisation(rng):
  q = Gaussian(jnp.array([1.5, -2.0]), jnp.log(jnp.array([0.25, 4.0])))
  n = 100_000
  z = jax.vmap(lambda k: G.sample(k, q))(jax.random.split(rng, n))
  np.testing.assert_allclose(z.mean(0), [1.5, -2.0], atol=5 * np.sqrt(4.0 / n))
  np.testing.assert_allclose(z.var(0), [0.25, 4.0], rtol=0.02)
  # dz/dmean = 1, dz/dlogvar = z_std * sigma / 2 with the same eps.
  eps = jax.random.normal(rng, (2,))
  g = jax.grad(lambda q: jnp.sum(G.sample(rng, q)))(q)
  np.testing.assert_allclose(g.mean, [1.0, 1.0])
  np.testing.assert_allclose(g.logvar, 0.5 * np.exp(0.5 * np.log([0.25, 4.0])) * eps, rtol=1e-6)


def test_log_prob_matches_scipy():
  q = _random_gaussian(1, (3, 4))
  z = np.random.default_rng(2).normal(size=(3, 4))
  m, lv = _np(q)
  expected = [stats.multivariate_normal(m[i], np.diag(np.exp(lv[i]))).logpdf(z[i])
              for i in range(3)]
  np.testing.assert_allclose(G.log_prob(jnp.asarray(z, jnp.float32), q), expected, rtol=1e-5)


def test_kl_standard_normal_matches_monte_carlo(rng):
  q = Gaussian(jnp.array([0.7, -1.2, 0.1]), jnp.array([-1.0, 0.5, 0.0]))
  n = 100_000
  m, lv = _np(q)
  z = m + np.exp(0.5 * lv) * np.asarray(jax.random.normal(rng, (n, 3)), np.float64)
  log_ratio = (stats.norm.logpdf(z, m, np.exp(0.5 * lv)) - stats.norm.logpdf(z)).sum(-1)
  stderr = log_ratio.std() / np.sqrt(n)
  assert abs(float(G.kl_standard_normal(q)) - log_ratio.mean()) < 5 * stderr


def test_kl_matches_closed_form_and_monte_carlo(rng):
  q = _random_gaussian(3, (5, 4))
  p = _random_gaussian(4, (5, 4))
  (mq, lq), (mp, lp) = _np(q), _np(p)
  # Textbook 1D formula log(s_p/s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2, summed over dims.
  sq, sp = np.exp(0.5 * lq), np.exp(0.5 * lp)
  expected = (np.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)
  np.testing.assert_allclose(G.kl(q, p), expected, rtol=1e-5)
  # Known cases: KL(q || q) = 0, KL(q || N(0, I)) = kl_standard_normal(q).
  np.testing.assert_allclose(G.kl(q, q), 0.0, atol=1e-6)
  np.testing.assert_allclose(G.kl(q, G.standard_normal_like(q)), G.kl_standard_normal(q), rtol=1e-6)
  # Monte Carlo with 1e5 samples for the first example.
  n = 100_000
  z = mq[0] + sq[0] * np.asarray(jax.random.normal(rng, (n, 4)), np.float64)
  log_ratio = (stats.norm.logpdf(z, mq[0], sq[0]) - stats.norm.logpdf(z, mp[0], sp[0])).sum(-1)
  assert abs(float(G.kl(q, p)[0]) - log_ratio.mean()) < 5 * log_ratio.std() / np.sqrt(n)


def test_poe_one_expert_and_prior():
  q = _random_gaussian(5, (3, 4))
  out = G.product_of_experts([q])
  m, lv = _np(q)
  # N(m, s^2) x N(0, 1): precision 1/s^2 + 1, mean m / (1 + s^2).
  np.testing.assert_allclose(out.mean, m / (1.0 + np.exp(lv)), rtol=1e-5)
  np.testing.assert_allclose(out.logvar, -np.log1p(np.exp(-lv)), rtol=1e-5, atol=1e-6)
  # Without the prior expert a single expert is returned unchanged.
  alone = G.product_of_experts([q], prior_expert=False)
  np.testing.assert_allclose(alone.mean, q.mean, rtol=1e-6)
  np.testing.assert_allclose(alone.logvar, q.logvar, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [2, 5])
def test_poe_of_identical_experts(n):
  q = _random_gaussian(6, (2, 3))
  out = G.product_of_experts([q] * n, prior_expert=False)
  np.testing.assert_allclose(out.mean, q.mean, rtol=1e-5)
  np.testing.assert_allclose(out.logvar, q.logvar - np.log(n), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("prior_expert", [True, False])
def test_poe_with_per_example_masks_matches_reference(prior_expert):
  experts = [_random_gaussian(10 + i, (8, 3)) for i in range(3)]
  # Every subset of the three experts once, the empty one included.
  mask = np.array(list(itertools.product([False, True], repeat=3)))
  out = G.product_of_experts(experts, jnp.asarray(mask), prior_expert)
  ref_mean, ref_logvar = _poe_reference(experts, mask, prior_expert)
  np.testing.assert_allclose(out.mean, ref_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.logvar, ref_logvar, rtol=1e-5, atol=1e-6)
  # The example with no expert is the prior N(0, I).
  np.testing.assert_array_equal(out.mean[0], 0.0)
  np.testing.assert_array_equal(out.logvar[0], 0.0)


def test_poe_masked_expert_gets_zero_gradient():
  experts = [_random_gaussian(20 + i, (2, 3)) for i in range(2)]
  mask = jnp.array([[True, False], [False, False]])

  def f(experts):
    out = G.product_of_experts(experts, mask, prior_expert=False)
    return jnp.sum(out.mean**2 + out.logvar)

  grads = jax.grad(f)(experts)
  np.testing.assert_array_equal(grads[1].mean, 0.0)
  np.testing.assert_array_equal(grads[1].logvar, 0.0)
  np.testing.assert_array_equal(grads[0].mean[1], 0.0)  # example 1 is the prior
  assert np.all(np.abs(grads[0].mean[0]) > 0)


def test_extreme_logvars_are_finite_with_finite_gradients():
  grid = jnp.linspace(-30.0, 30.0, 7)
  lv1, lv2 = jnp.meshgrid(grid, grid)
  lv1, lv2 = lv1.reshape(-1, 1), lv2.reshape(-1, 1)
  a = Gaussian(jnp.full_like(lv1, 0.5), lv1)
  b = Gaussian(jnp.full_like(lv2, -2.0), lv2)
  mask = jnp.stack([jnp.arange(49) % 3 != 0, jnp.arange(49) % 4 != 0], -1)

  def everything(a, b):
    out = G.product_of_experts([a, b], mask)
    mix = G.mixture_of_products_of_experts([a, b], mask)
    return (jnp.sum(out.mean) + jnp.sum(out.logvar) + jnp.sum(G.kl_standard_normal(out))
            + jnp.sum(G.kl(a, b)) + jnp.sum(G.kl_mixture_upper_bound(mix))
            + jnp.sum(G.mixture_log_prob(jnp.zeros_like(a.mean), mix)))

  value, grads = jax.jit(jax.value_and_grad(everything, argnums=(0, 1)))(a, b)
  assert np.isfinite(value)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf))
  out = G.product_of_experts([a, b], mask)
  ref_mean, ref_logvar = _poe_reference([a, b], np.asarray(mask), True)
  np.testing.assert_allclose(out.mean, ref_mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.logvar, ref_logvar, rtol=1e-5, atol=1e-5)


def test_poe_bad_mask_shape_is_a_clear_error():
  q = _random_gaussian(0, (4, 2))
  with pytest.raises(ValueError, match="n_experts"):
    G.product_of_experts([q, q], jnp.ones((4, 3), bool))
  with pytest.raises(ValueError, match="non-empty"):
    G.product_of_experts([])


def test_mixture_sampling_frequencies_follow_weights(rng):
  # Three far-apart narrow experts; in each example one is masked out.
  means = [jnp.full((3, 1), c) for c in (-10.0, 0.0, 10.0)]
  experts = [Gaussian(m, jnp.full((3, 1), -6.0)) for m in means]
  mask = jnp.array([[True, True, False], [True, True, True], [False, False, True]])
  mixture = G.mixture_of_experts(experts, mask)
  n = 20_000
  z, index = jax.vmap(lambda k: G.sample_mixture(k, mixture))(jax.random.split(rng, n))
  expected = np.array([[0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]])
  for i in range(3):
    freq = np.bincount(np.asarray(index[:, i]), minlength=3) / n
    np.testing.assert_allclose(freq, expected[i], atol=4 * np.sqrt(0.25 / n))
  # Each sample lies on its chosen component (std 0.05).
  chosen = np.array([-10.0, 0.0, 10.0])[np.asarray(index)]
  np.testing.assert_allclose(z[..., 0], chosen, atol=0.5)


def test_mixture_log_prob_and_kl_bound(rng):
  experts = [_random_gaussian(30 + i, (2, 3)) for i in range(3)]
  mask = jnp.array([[True, False, True], [True, True, True]])
  mixture = G.mixture_of_experts(experts, mask)
  z = np.random.default_rng(0).normal(size=(2, 3))
  for i in range(2):
    present = [j for j in range(3) if mask[i, j]]
    dens = [np.exp(G.log_prob(jnp.asarray(z[i], jnp.float32), Gaussian(e.mean[i], e.logvar[i])))
            for e in (experts[j] for j in present)]
    np.testing.assert_allclose(G.mixture_log_prob(jnp.asarray(z, jnp.float32), mixture)[i],
                               np.log(np.mean(dens)), rtol=1e-5)
  # Upper bound = weighted expert KLs, and >= a Monte Carlo estimate of the mixture KL.
  bound = G.kl_mixture_upper_bound(mixture)
  kls = [np.asarray(G.kl_standard_normal(e)) for e in experts]
  np.testing.assert_allclose(bound[0], (kls[0][0] + kls[2][0]) / 2, rtol=1e-5)
  np.testing.assert_allclose(bound[1], (kls[0][1] + kls[1][1] + kls[2][1]) / 3, rtol=1e-5)
  n = 50_000

  @jax.jit
  def mc_log_ratio(mixture):
    zs, _ = jax.vmap(lambda k: G.sample_mixture(k, mixture))(jax.random.split(rng, n))
    return jax.vmap(lambda z: G.mixture_log_prob(z, mixture)
                    - G.log_prob(z, G.standard_normal_like(experts[0])))(zs)

  log_ratio = mc_log_ratio(mixture)
  mc = np.asarray(log_ratio).mean(0)
  stderr = np.asarray(log_ratio).std(0) / np.sqrt(n)
  assert np.all(mc <= np.asarray(bound) + 5 * stderr)
  # Identical components: the bound is tight.
  same = G.mixture_of_experts([experts[0]] * 3)
  np.testing.assert_allclose(G.kl_mixture_upper_bound(same), kls[0], rtol=1e-5)


def test_mixture_with_no_expert_is_the_prior():
  experts = [_random_gaussian(40 + i, (2, 3)) for i in range(2)]
  mask = jnp.array([[False, False], [True, False]])
  for mixture in (G.mixture_of_experts(experts, mask),
                  G.mixture_of_products_of_experts(experts, mask)):
    np.testing.assert_array_equal(mixture.components.mean[0], 0.0)
    np.testing.assert_array_equal(mixture.components.logvar[0], 0.0)
    np.testing.assert_allclose(jnp.exp(mixture.log_weights).sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(G.kl_mixture_upper_bound(mixture)[0], 0.0, atol=1e-6)


def test_mopoe_components_and_weights():
  experts = [_random_gaussian(50 + i, (2, 3)) for i in range(3)]
  mask = np.array([[True, False, True], [True, True, True]])
  mixture = G.mixture_of_products_of_experts(experts, jnp.asarray(mask))
  subsets = G.all_subsets(3)
  assert len(subsets) == 7
  weights = np.exp(np.asarray(mixture.log_weights))
  for k, s in enumerate(subsets):
    sub_mask = np.ones((2, len(s)), bool)
    ref_mean, ref_logvar = _poe_reference([experts[i] for i in s], sub_mask, True)
    for i in range(2):
      if all(mask[i, j] for j in s):
        np.testing.assert_allclose(mixture.components.mean[i, k], ref_mean[i], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(mixture.components.logvar[i, k], ref_logvar[i], rtol=1e-5,
                                   atol=1e-6)
  valid0 = [set(s) <= {0, 2} for s in subsets]  # {0}, {2}, {0, 2}
  np.testing.assert_allclose(weights[0], np.where(valid0, 1 / 3, 0.0), atol=1e-7)
  np.testing.assert_allclose(weights[1], 1 / 7, rtol=1e-6)
  with pytest.raises(ValueError, match="subset"):
    G.mixture_of_products_of_experts(experts, subsets=[(0, 3)])


def test_jit_vmap_grad(rng):
  experts = [_random_gaussian(60 + i, (4, 3)) for i in range(2)]
  mask = jnp.array([[True, True], [True, False], [False, True], [False, False]])

  def loss(experts, mask, key):
    out = G.product_of_experts(experts, mask)
    return jnp.sum(G.kl_standard_normal(out)) + jnp.sum(G.sample(key, out))

  eager = loss(experts, mask, rng)
  jitted_loss = jax.jit(loss)
  np.testing.assert_allclose(jitted_loss(experts, mask, rng), eager, rtol=1e-6)
  # vmap over examples (each example sees a (3,) Gaussian and a (2,) mask) = the batched call.
  per_example = jax.vmap(
      lambda m, lv, mk: G.kl_standard_normal(
          G.product_of_experts([Gaussian(m[0], lv[0]), Gaussian(m[1], lv[1])], mk)))(
              jnp.stack([e.mean for e in experts], 1), jnp.stack([e.logvar for e in experts], 1),
              mask)
  np.testing.assert_allclose(per_example,
                             G.kl_standard_normal(G.product_of_experts(experts, mask)), rtol=1e-6)
  grads = jax.jit(jax.grad(loss))(experts, mask, rng)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf))
  # Gradient vs central finite differences on one coordinate.
  h = 1e-3
  bump = lambda d: [Gaussian(experts[0].mean.at[0, 0].add(d), experts[0].logvar), experts[1]]
  fd = (jitted_loss(bump(h), mask, rng) - jitted_loss(bump(-h), mask, rng)) / (2 * h)
  np.testing.assert_allclose(grads[0].mean[0, 0], fd, rtol=1e-2)
