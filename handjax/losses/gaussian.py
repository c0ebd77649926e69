"""Diagonal Gaussian algebra: the `Gaussian` pytree, sampling, KL divergences and expert fusion.

Everything here is plain jnp, takes and returns `Gaussian(mean, logvar)` pytrees, and is safe under
jit, vmap and grad, including at extreme log-variances (tested for logvar in [-30, 30]).

Shapes: a `Gaussian` has arrays of shape (..., D): any batch shape, latent dimension last.
Per-example quantities (KL, log-densities) are summed over the latent dimension and keep the batch
shape.

Fusion of several posteriors ("experts") over the same latent:
  * `product_of_experts` - precision-weighted product (Yang et al. ICCV 2019, Eq. 5-6; Wu & Goodman
    NeurIPS 2018). Used by the paper objectives in `handjax.losses.elbo`.
  * `mixture_of_experts` (MMVAE, Shi et al. NeurIPS 2019) and `mixture_of_products_of_experts`
    (MoPoE, Sutter et al. ICLR 2021) - beyond the papers, for comparison. They return a `Mixture`,
    which `sample_mixture`, `mixture_log_prob` and `kl_mixture_upper_bound` consume.
Missing experts are masks, not code paths (poe-vae style): an absent expert gets zero precision
(PoE) or zero mixture weight, so examples with different modalities share one batch and one compiled
step.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

_LOG_2PI = math.log(2.0 * math.pi)


class Gaussian(NamedTuple):
  """A diagonal Gaussian N(mean, exp(logvar)); a pytree, so it passes through jit/vmap/grad.

  Attributes:
    mean: (..., D) array.
    logvar: (..., D) array of log-variances, same shape as `mean`.
  """

  mean: jax.Array
  logvar: jax.Array


def standard_normal_like(q: Gaussian) -> Gaussian:
  """The prior p(z) = N(0, I) with the shape and dtype of `q`."""
  return Gaussian(jnp.zeros_like(q.mean), jnp.zeros_like(q.logvar))


def sample(rng: jax.Array, q: Gaussian) -> jax.Array:
  """One reparameterised sample z = mean + exp(logvar / 2) * eps, eps ~ N(0, I).

  The reparameterisation trick (Kingma & Welling 2014), as used by every ELBO in Spurr et al.
  CVPR 2018 and Yang et al. ICCV 2019: gradients flow to `mean` and `logvar` through z.

  Args:
    rng: a `jax.random.key`.
    q: Gaussian with arrays of shape (..., D).

  Returns:
    (..., D) sample, dtype of `q.mean`.
  """
  eps = jax.random.normal(rng, jnp.shape(q.mean), dtype=jnp.result_type(q.mean))
  return q.mean + jnp.exp(0.5 * q.logvar) * eps


def log_prob(z: jax.Array, q: Gaussian) -> jax.Array:
  """Log-density log N(z; mean, diag(exp(logvar))), summed over the latent dimension.

  log q(z) = -1/2 sum_d [log(2 pi) + logvar_d + (z_d - mean_d)^2 exp(-logvar_d)].

  Args:
    z: (..., D) points; broadcasts against `q`.
    q: Gaussian with arrays of shape (..., D).

  Returns:
    (...) log-densities.
  """
  sq = jnp.square(z - q.mean) * jnp.exp(-q.logvar)
  return -0.5 * jnp.sum(_LOG_2PI + q.logvar + sq, axis=-1)


def kl_standard_normal(q: Gaussian) -> jax.Array:
  """KL(q || N(0, I)) in closed form, per example (summed over the latent dimension).

  KL = 1/2 sum_d [exp(logvar_d) + mean_d^2 - 1 - logvar_d]: the D_KL(q_phi(z|x) || p(z)) term of
  Spurr et al. CVPR 2018 Eq. 5 and Yang et al. ICCV 2019 Eq. 1 (Stergioulas et al. write it per
  dimension in their Algorithm 1).

  Args:
    q: Gaussian with arrays of shape (..., D).

  Returns:
    (...) non-negative KL divergences in nats.
  """
  return 0.5 * jnp.sum(jnp.exp(q.logvar) + jnp.square(q.mean) - 1.0 - q.logvar, axis=-1)


def kl(q: Gaussian, p: Gaussian) -> jax.Array:
  """KL(q || p) between diagonal Gaussians in closed form, per example.

  KL = 1/2 sum_d [logvar_p - logvar_q + (exp(logvar_q) + (mean_q - mean_p)^2) / exp(logvar_p) - 1],
  the alignment term D_KL(q(z_joint|x, w) || q(z_x|x)) of Yang et al. ICCV 2019, Eq. 3. The variance
  ratio is evaluated as exp(logvar_q - logvar_p), which stays finite when both variances are
  extreme.

  Args:
    q: Gaussian with arrays of shape (..., D).
    p: Gaussian broadcastable against `q`.

  Returns:
    (...) non-negative KL divergences in nats.
  """
  dlogvar = q.logvar - p.logvar
  sq = jnp.square(q.mean - p.mean) * jnp.exp(-p.logvar)
  return 0.5 * jnp.sum(jnp.exp(dlogvar) + sq - 1.0 - dlogvar, axis=-1)


def _check_expert_mask(mask: jax.Array, batch_shape: tuple[int, ...], n_experts: int) -> jax.Array:
  expected = batch_shape + (n_experts,)
  if jnp.shape(mask) != expected:
    raise ValueError(
        f"mask must have shape batch_shape + (n_experts,) = {expected} (one flag per example and "
        f"expert), got {jnp.shape(mask)}.")
  return jnp.asarray(mask).astype(bool)


def _stack_experts(experts: Sequence[Gaussian]) -> Gaussian:
  """Stacks experts along a new axis -2: arrays (..., E, D), keeping the batch axes leading."""
  if not experts:
    raise ValueError("experts must be a non-empty sequence of Gaussians.")
  shapes = {jnp.shape(e.mean) for e in experts} | {jnp.shape(e.logvar) for e in experts}
  if len(shapes) != 1:
    raise ValueError(
        f"all experts must share one (..., D) shape for mean and logvar, got {shapes}.")
  return Gaussian(jnp.stack([e.mean for e in experts], axis=-2),
                  jnp.stack([e.logvar for e in experts], axis=-2))


def product_of_experts(
    experts: Sequence[Gaussian],
    mask: jax.Array | None = None,
    prior_expert: bool = True,
) -> Gaussian:
  """Precision-weighted product of diagonal Gaussian experts, Yang et al. ICCV 2019, Eq. 5-6.

  With precisions T_i = 1 / Sigma_i, the (renormalised) product prod_i N(mu_i, Sigma_i) is
  N(mu, Sigma) with Sigma = 1 / sum_i T_i and mu = sum_i mu_i T_i / sum_i T_i (element-wise), the
  GProd of Eq. 4. With `prior_expert` the prior N(0, I) joins as one more expert (T = 1, mu = 0):
  q(z|x, w) ~ p(z) q(z|x) q(z|w), Wu & Goodman NeurIPS 2018, as ICCV 2019 Sec. 3.2 states.

  Computed in log-precision space: logvar = -logsumexp_i(-logvar_i) and the mean weights are
  softmax_i(-logvar_i), so log-variances anywhere in [-30, 30] give finite values and gradients.

  Missing experts (poe-vae style): `mask[..., i] = False` gives expert i zero precision for that
  example, so one batch can mix examples with different modalities. An example with no expert
  present gets the prior N(0, I) - also when `prior_expert=False`, where the empty product would be
  improper; masked experts receive exactly zero gradient.

  Args:
    experts: E Gaussians with arrays of shape (..., D).
    mask: optional (..., E) booleans, True where the example has that expert. None = all present.
    prior_expert: include the prior N(0, I) as an extra expert (Wu & Goodman; ICCV 2019 Sec. 3.2).

  Returns:
    The product Gaussian, arrays of shape (..., D).
  """
  stacked = _stack_experts(experts)
  log_precision = -stacked.logvar  # (..., E, D)
  means = stacked.mean
  batch_shape = jnp.shape(means)[:-2]
  if mask is None:
    present = jnp.ones(batch_shape + (len(experts),), dtype=bool)
  else:
    present = _check_expert_mask(mask, batch_shape, len(experts))
  if prior_expert:
    zeros = jnp.zeros_like(means[..., :1, :])
    log_precision = jnp.concatenate([log_precision, zeros], axis=-2)
    means = jnp.concatenate([means, zeros], axis=-2)
    present = jnp.concatenate([present, jnp.ones(batch_shape + (1,), dtype=bool)], axis=-1)
  any_present = jnp.any(present, axis=-1)[..., None, None]  # (..., 1, 1)
  # Double `where`: an example without experts runs the product with every expert switched on (a
  # finite dummy) and then selects the prior, so neither values nor gradients see -inf - -inf.
  present = jnp.logical_or(present[..., None], jnp.logical_not(any_present))  # (..., E', 1)
  masked = jnp.where(present, log_precision, -jnp.inf)
  total = jax.nn.logsumexp(masked, axis=-2, keepdims=True)  # log sum_i T_i, (..., 1, D)
  weights = jnp.exp(masked - total)  # T_i / sum_j T_j; exactly 0 for absent experts
  mean = jnp.sum(weights * jnp.where(present, means, 0.0), axis=-2)
  logvar = -total[..., 0, :]
  any_present = any_present[..., 0]
  return Gaussian(jnp.where(any_present, mean, 0.0), jnp.where(any_present, logvar, 0.0))


class Mixture(NamedTuple):
  """A finite mixture of diagonal Gaussians, sum_k w_k N(mean_k, exp(logvar_k)); a pytree.

  Attributes:
    components: Gaussian with arrays of shape (..., K, D): component axis after the batch axes.
    log_weights: (..., K) normalised log mixture weights; -inf marks a component with weight 0.
  """

  components: Gaussian
  log_weights: jax.Array


def _uniform_over(valid: jax.Array) -> jax.Array:
  """Log-weights uniform over the True entries of `valid` (..., K); uniform over all if none."""
  count = jnp.sum(valid, axis=-1, keepdims=True)
  any_valid = count > 0
  valid = jnp.logical_or(valid, jnp.logical_not(any_valid))
  count = jnp.sum(valid, axis=-1, keepdims=True)
  return jnp.where(valid, -jnp.log(count.astype(jnp.float32)), -jnp.inf)


def mixture_of_experts(experts: Sequence[Gaussian], mask: jax.Array | None = None) -> Mixture:
  """Uniform mixture of the present experts, q(z|X) = 1/M sum_m q(z|x_m) (MMVAE, Shi et al. 2019).

  Beyond the handjax papers, for comparison with their product of experts. Absent experts (`mask`
  False) get weight 0; an example with no expert present gets the prior N(0, I) (every component is
  replaced by it). Bounds: KL(q_mix || p) <= sum_m w_m KL(q_m || p) by convexity of the KL in its
  first argument (`kl_mixture_upper_bound`), so E_{q_mix}[log p(y|z)] - sum_m w_m KL(q_m || p) is a
  lower bound on the mixture ELBO and hence on log p(y). MMVAE itself optimises the stratified
  estimate sum_m w_m E_{z~q_m}[log p(y|z) + log p(z) - log q_mix(z)] (use `sample` on `components`
  and `mixture_log_prob`), which is the mixture ELBO exactly in expectation.

  Args:
    experts: M Gaussians with arrays of shape (..., D).
    mask: optional (..., M) booleans, True where the example has that expert.

  Returns:
    A `Mixture` with M components.
  """
  stacked = _stack_experts(experts)
  batch_shape = jnp.shape(stacked.mean)[:-2]
  if mask is None:
    present = jnp.ones(batch_shape + (len(experts),), dtype=bool)
  else:
    present = _check_expert_mask(mask, batch_shape, len(experts))
  any_present = jnp.any(present, axis=-1)[..., None, None]
  components = Gaussian(jnp.where(any_present, stacked.mean, 0.0),
                        jnp.where(any_present, stacked.logvar, 0.0))
  return Mixture(components, _uniform_over(present).astype(stacked.mean.dtype))


def all_subsets(n_experts: int) -> tuple[tuple[int, ...], ...]:
  """The 2^n - 1 non-empty subsets of range(n_experts), by size then lexicographically."""
  return tuple(s for size in range(1, n_experts + 1)
               for s in itertools.combinations(range(n_experts), size))


def mixture_of_products_of_experts(
    experts: Sequence[Gaussian],
    mask: jax.Array | None = None,
    subsets: Sequence[Sequence[int]] | None = None,
    prior_expert: bool = True,
) -> Mixture:
  """Mixture over modality subsets of their products of experts (MoPoE, Sutter et al. ICLR 2021).

  q(z|X) = 1/|S| sum_{s in S} PoE({q(z|x_m)}_{m in s}), each PoE as in `product_of_experts` (ICCV
  2019 Eq. 5-6). Beyond the handjax papers, for comparison. A subset gets weight 0 in an example
  unless all its members are present there, so the mixture runs over the subsets of the example's
  present modalities (no duplicates); an example with none present gets the prior N(0, I). Bound (as
  in Sutter et al.): KL(q_mix || p) <= sum_s w_s KL(PoE_s || p) (`kl_mixture_upper_bound`), so
  E_{q_mix}[log p(y|z)] - sum_s w_s KL(PoE_s || p) <= ELBO(q_mix) <= log p(y).

  Args:
    experts: M Gaussians with arrays of shape (..., D).
    mask: optional (..., M) booleans, True where the example has that expert.
    subsets: subsets of expert indices, one mixture component each; default `all_subsets(M)`
      (2^M - 1 components: mind the count for large M).
    prior_expert: include N(0, I) in every product (see `product_of_experts`).

  Returns:
    A `Mixture` with one component per subset, in the order of `subsets`.
  """
  n = len(experts)
  stacked = _stack_experts(experts)  # validates shapes
  batch_shape = jnp.shape(stacked.mean)[:-2]
  if mask is None:
    present = jnp.ones(batch_shape + (n,), dtype=bool)
  else:
    present = _check_expert_mask(mask, batch_shape, n)
  subsets = all_subsets(n) if subsets is None else tuple(tuple(s) for s in subsets)
  for s in subsets:
    if not s or any(not 0 <= i < n for i in s) or len(set(s)) != len(s):
      raise ValueError(
          f"each subset must be a non-empty set of distinct indices in [0, {n}), got {s}.")
  products = [
      product_of_experts([experts[i] for i in s], present[..., list(s)], prior_expert)
      for s in subsets
  ]
  valid = jnp.stack([jnp.all(present[..., list(s)], axis=-1) for s in subsets], axis=-1)
  return Mixture(_stack_experts(products), _uniform_over(valid).astype(stacked.mean.dtype))


def sample_mixture(rng: jax.Array, mixture: Mixture) -> tuple[jax.Array, jax.Array]:
  """Ancestral sample: component k ~ Categorical(w), then z ~ q_k by reparameterisation.

  Gradients reach the chosen component's mean and log-variance but not the weights (the choice is
  discrete); for an unbiased gradient of the mixture ELBO use the stratified form instead (one
  `sample` of every component, weighted by w_k, as MMVAE does).

  Args:
    rng: a `jax.random.key`.
    mixture: components with arrays (..., K, D), log-weights (..., K).

  Returns:
    z: (..., D) samples; index: (...) int32 chosen components.
  """
  rng_k, rng_z = jax.random.split(rng)
  index = jax.random.categorical(rng_k, mixture.log_weights, axis=-1)
  pick = lambda a: jnp.take_along_axis(a, index[..., None, None], axis=-2)[..., 0, :]
  chosen = Gaussian(pick(mixture.components.mean), pick(mixture.components.logvar))
  return sample(rng_z, chosen), index


def mixture_log_prob(z: jax.Array, mixture: Mixture) -> jax.Array:
  """log q_mix(z) = logsumexp_k [log w_k + log N(z; mean_k, exp(logvar_k))], per example.

  Args:
    z: (..., D) points.
    mixture: components with arrays (..., K, D), log-weights (..., K).

  Returns:
    (...) log-densities.
  """
  per_component = log_prob(z[..., None, :], mixture.components)  # (..., K)
  return jax.nn.logsumexp(mixture.log_weights + per_component, axis=-1)


def kl_mixture_upper_bound(mixture: Mixture) -> jax.Array:
  """Upper bound sum_k w_k KL(q_k || N(0, I)) >= KL(sum_k w_k q_k || N(0, I)), per example.

  Convexity of the KL divergence in its first argument (Cover & Thomas Thm. 2.7.2); the KL term that
  MoPoE (Sutter et al. ICLR 2021) optimises and a valid penalty for MMVAE-style mixtures.
  Zero-weight components contribute exactly 0.

  Args:
    mixture: components with arrays (..., K, D), log-weights (..., K).

  Returns:
    (...) non-negative upper bounds in nats.
  """
  weights = jnp.exp(mixture.log_weights)
  return jnp.sum(weights * kl_standard_normal(mixture.components), axis=-1)
