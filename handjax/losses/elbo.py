"""ELBO objectives as higher-order pure functions (cross-modal, aligned, disentangled VAEs).

Every objective receives posterior(s) as `Gaussian` pytrees, a `decode` closure over the caller's
decoder parameters, the targets, per-target reconstruction losses and weights, KL weights and an
rng, and returns `(loss, terms)`: `loss` is the negative ELBO (a scalar to minimise) and `terms` a
flat dict of named scalars (`"recon/<target>"`, `"kl"`, ..., and `"loss"`; objectives made of
several ELBOs prefix each one's terms, e.g. `"joint/recon/pose3d"`). No Flax: methods build the
closures.

Contract shared by all objectives:
  * `decode(z) -> Mapping[str, prediction]`. Under jit, predictions an ELBO does not use are dead
    code and cost nothing, so one decode closure may return every target.
  * `recon_fns[name](prediction, target) -> (B,)` per-example reconstruction losses, i.e. negative
    log-likelihoods -log p_theta(y|z) up to constants (e.g. the squared error of ICCV 2019 Eq. 10).
    They must be finite (with finite gradients) on zero targets: the targets of masked-out
    examples are replaced by zeros before the call (so NaN placeholders are safe too).
  * `weights[name]` is the lambda of that target (ICCV 2019 Eq. 2 and 11, dissertation Eq. 4.2);
    a target missing from `weights` has weight 1.
  * `target_masks[name]` (B,) bool marks the examples that have that target (e.g. `has_pose3d`);
    `example_mask` / `expert_masks` (B,) mark the examples that have an encoder's input. Missing
    data are masks, not code paths, so labelled, weakly labelled and unlabelled examples share one
    batch and one compiled step (poe-vae style).

Reduction (the same everywhere): a per-example term l_b with mask m_b is reduced to
sum_b m_b l_b / max(1, sum_b m_b), the mean over the examples that have it. This keeps every term an
estimate of the same per-example expectation whatever fraction of a batch carries the label, so the
lambdas and betas keep their meaning in mixed batches (dividing by B instead would silently shrink a
term as its label gets rarer); a fully masked term is exactly 0 with exactly 0 gradient. Terms
report unweighted reductions; the loss applies the weights.

Each ELBO uses one reparameterised sample per example (single-sample Monte Carlo, as in the papers).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from handjax.losses.gaussian import Gaussian
from handjax.losses.gaussian import kl as gaussian_kl
from handjax.losses.gaussian import kl_standard_normal
from handjax.losses.gaussian import product_of_experts
from handjax.losses.gaussian import sample

ReconFn = Callable[[Any, Any], jax.Array]
Decode = Callable[[Any], Mapping[str, Any]]
Terms = dict[str, jax.Array]
Scalar = float | jax.Array


def masked_mean(values: jax.Array, mask: jax.Array | None = None) -> jax.Array:
  """sum_b m_b v_b / max(1, sum_b m_b): the mean over the examples that have the term.

  Masked entries are removed with `where`, so they contribute exactly 0 and receive 0 gradient even
  if their values are not finite; with no example present the result is 0.

  Args:
    values: (B,) per-example values.
    mask: optional (B,) booleans (or 0/1); None means all present (a plain mean).

  Returns:
    Scalar.
  """
  if mask is None:
    return jnp.mean(values)
  if jnp.shape(mask) != jnp.shape(values):
    raise ValueError(f"mask must have the per-example shape {jnp.shape(values)}, got "
                     f"{jnp.shape(mask)}.")
  mask = jnp.asarray(mask).astype(bool)
  total = jnp.sum(jnp.where(mask, values, 0.0))
  return total / jnp.maximum(1.0, jnp.sum(mask).astype(total.dtype))


def _and_masks(a: jax.Array | None, b: jax.Array | None) -> jax.Array | None:
  if a is None:
    return b
  if b is None:
    return a
  return jnp.logical_and(jnp.asarray(a).astype(bool), jnp.asarray(b).astype(bool))


def _zero_absent(target: Any, mask: jax.Array | None) -> Any:
  """Zeros the targets of absent examples, so NaN placeholders cannot leak NaN into gradients.

  `where` after the loss stops values but not the 0 * NaN of a NaN target's local derivative.
  """
  if mask is None:
    return target
  mask = jnp.asarray(mask).astype(bool)

  def zero(leaf):
    leaf = jnp.asarray(leaf)
    if leaf.ndim == 0 or leaf.shape[0] != mask.shape[0]:
      return leaf
    return jnp.where(jnp.reshape(mask, mask.shape + (1,) * (leaf.ndim - 1)), leaf, 0)

  return jax.tree.map(zero, target)


def _check_names(
    names: Sequence[str],
    recon_fns: Mapping[str, ReconFn],
    targets: Mapping[str, Any],
    weights: Mapping[str, Scalar] | None,
) -> None:
  for name in names:
    if name not in recon_fns:
      raise KeyError(f"no reconstruction function for target {name!r}; recon_fns has "
                     f"{sorted(recon_fns)}.")
    if name not in targets:
      raise KeyError(f"target {name!r} is missing from targets (has {sorted(targets)}).")
  unknown = set(weights or {}) - set(recon_fns)
  if unknown:
    raise KeyError(f"weights name targets without a reconstruction function: {sorted(unknown)}; "
                   f"recon_fns has {sorted(recon_fns)}.")


def reconstruction_loss(
    predictions: Mapping[str, Any],
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    names: Sequence[str],
    weights: Mapping[str, Scalar] | None = None,
    target_masks: Mapping[str, jax.Array] | None = None,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, Terms]:
  """Weighted reconstruction loss sum_t lambda_t L_t, ICCV 2019 Eq. 11 / Eq. 2 (lambda weights).

  L_t = masked mean over examples of recon_fns[t](predictions[t], targets[t]), with mask
  target_masks[t] AND example_mask (module docstring: reduction).

  Args:
    predictions: decoder outputs by target name.
    targets: ground truth by target name.
    recon_fns: per-example loss functions by target name, each returning (B,).
    names: the targets to reconstruct.
    weights: lambda by target name; missing names have weight 1.
    target_masks: optional (B,) bool by target name.
    example_mask: optional (B,) bool for the examples whose encoder input exists.

  Returns:
    (weighted sum, {"recon/<name>": unweighted L_name}).
  """
  _check_names(names, recon_fns, targets, weights)
  weights = weights or {}
  target_masks = target_masks or {}
  total = jnp.zeros(())
  terms = {}
  for name in names:
    if name not in predictions:
      raise KeyError(f"decode(z) returned no prediction for target {name!r} (returned "
                     f"{sorted(predictions)}).")
    mask = _and_masks(target_masks.get(name), example_mask)
    per_example = recon_fns[name](predictions[name], _zero_absent(targets[name], mask))
    if jnp.ndim(per_example) != 1:
      raise ValueError(f"recon_fns[{name!r}] must return per-example losses of shape (B,), got "
                       f"shape {jnp.shape(per_example)}.")
    term = masked_mean(per_example, mask)
    terms[f"recon/{name}"] = term
    total = total + weights.get(name, 1.0) * term
  return total, terms


def _prefixed(prefix: str, terms: Terms) -> Terms:
  return {f"{prefix}/{k}": v for k, v in terms.items()}


def cross_modal_elbo(
    rng: jax.Array,
    posterior: Gaussian,
    decode: Decode,
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    weights: Mapping[str, Scalar] | None = None,
    beta: Scalar = 1.0,
    *,
    recon_targets: Sequence[str] | None = None,
    target_masks: Mapping[str, jax.Array] | None = None,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, Terms]:
  """Negative cross-modal ELBO, Yang et al. ICCV 2019 Eq. 1-2 / Spurr et al. CVPR 2018 Eq. 5.

  -ELBO = sum_t lambda_t E_{z~q(z|x)}[-log p(y_t|z)] + beta KL(q(z|x) || N(0, I)), estimated with
  one reparameterised sample z = sample(rng, posterior). ELBO <= log p(y_1, ..., y_T): Eq. 1 with
  one target, Eq. 2 (lambda-weighted) with several; with beta = 1 and lambdas 1 it is Spurr's bound
  (Eq. 5), with beta != 1 the beta-VAE relaxation the papers train with.

  Args:
    rng: a `jax.random.key` for the sample.
    posterior: q(z|x), arrays (B, D).
    decode: z (B, D) -> predictions by target name.
    targets: ground truth by target name.
    recon_fns: per-example losses -log p(y_t|z) (up to constants) by target name, each (B,).
    weights: lambda_t by target name (default 1).
    beta: KL weight (a float or a traced schedule value).
    recon_targets: targets to reconstruct; default every key of `recon_fns`, sorted.
    target_masks: optional (B,) bool by target name.
    example_mask: optional (B,) bool, False where the encoder input is absent: such examples are
      dropped from every term, KL included.

  Returns:
    (loss, terms) with terms "recon/<target>", "kl" (unweighted, masked means) and "loss".
  """
  names = sorted(recon_fns) if recon_targets is None else list(recon_targets)
  z = sample(rng, posterior)
  recon, terms = reconstruction_loss(decode(z), targets, recon_fns, names, weights, target_masks,
                                     example_mask)
  terms["kl"] = masked_mean(kl_standard_normal(posterior), example_mask)
  loss = recon + beta * terms["kl"]
  terms["loss"] = loss
  return loss, terms


def kl_alignment_objective(
    rng: jax.Array,
    joint: Gaussian,
    single: Gaussian,
    decode: Decode,
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    weights: Mapping[str, Scalar] | None = None,
    beta: Scalar = 1.0,
    beta_align: Scalar = 1.0,
    *,
    target_masks: Mapping[str, jax.Array] | None = None,
    joint_mask: jax.Array | None = None,
) -> tuple[jax.Array, Terms]:
  """Negative latent alignment objective with a KL term, Yang et al. ICCV 2019 Eq. 3 (Alg. 2).

  L = ELBO(q(z|x, w)) + ELBO(q(z|x)) - beta' KL(q(z_joint|x, w) || q(z_x|x)); returns -L. Both ELBOs
  are `cross_modal_elbo` with the shared decoders (`decode`) and all targets; the joint one and the
  alignment KL use rng split 0, the single-modality one split 1. Each ELBO is a lower bound on
  log p(y, w), the KL is >= 0, so -loss is a lower bound on 2 log p(y, w). The alignment KL
  back-propagates into both encoders, as in Alg. 2 line 8. The paper uses beta' = 1.

  Args:
    rng: a `jax.random.key`.
    joint: q(z|x, w) from the joint encoder, arrays (B, D).
    single: q(z|x) from the single-modality (e.g. RGB) encoder, arrays (B, D).
    decode: shared decoders, z -> predictions by target name.
    targets, recon_fns, weights, target_masks: as in `cross_modal_elbo`.
    beta: KL-to-prior weight of both ELBOs.
    beta_align: beta', weight of KL(joint || single).
    joint_mask: optional (B,) bool, False where the joint encoder's inputs (e.g. the point cloud)
      are absent; drops those examples from the joint ELBO and the alignment KL.

  Returns:
    (loss, terms): "joint/..." and "single/..." (each ELBO's terms), "kl_align" and "loss".
  """
  rng_joint, rng_single = jax.random.split(rng)
  loss_joint, terms_joint = cross_modal_elbo(rng_joint, joint, decode, targets, recon_fns, weights,
                                             beta, target_masks=target_masks,
                                             example_mask=joint_mask)
  loss_single, terms_single = cross_modal_elbo(rng_single, single, decode, targets, recon_fns,
                                               weights, beta, target_masks=target_masks)
  kl_align = masked_mean(gaussian_kl(joint, single), joint_mask)
  loss = loss_joint + loss_single + beta_align * kl_align
  terms = _prefixed("joint", terms_joint) | _prefixed("single", terms_single)
  terms["kl_align"] = kl_align
  terms["loss"] = loss
  return loss, terms


def poe_alignment_objective(
    rng: jax.Array,
    experts: Mapping[str, Gaussian],
    decode: Decode,
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    weights: Mapping[str, Scalar] | None = None,
    beta: Scalar = 1.0,
    *,
    expert_masks: Mapping[str, jax.Array] | None = None,
    decode_targets: Mapping[str, Sequence[str]] | None = None,
    joint_targets: Sequence[str] | None = None,
    target_masks: Mapping[str, jax.Array] | None = None,
    prior_expert: bool = True,
    beta_joint: Scalar = 0.0,
) -> tuple[jax.Array, Terms]:
  """Negative product-of-experts alignment objective, Yang et al. ICCV 2019 Eq. 4 (Alg. 3), any N.

  L = sum_m ELBO(q(z|x_m)) + E_{z~GProd}[log p(y|z)] - beta_joint KL(GProd || p), with
  GProd = `product_of_experts` of the present experts (Eq. 5-6). KL terms as in Eq. 4: every
  unimodal posterior q(z|x_m) gets beta KL(q(z|x_m) || N(0, I)); the product gets none by default
  (beta_joint = 0: Eq. 4 has reconstruction only for z_joint). Setting beta_joint = beta makes the
  joint term a full ELBO as in Wu & Goodman's MVAE; "joint/kl" is always reported. Returns -L. The
  unimodal ELBOs are lower bounds on log p(targets); with beta_joint = 0 the joint term is not a
  bound but the paper's cross-modal reconstruction regulariser.

  Generalised to N modality encoders with per-example presence masks: an absent modality drops out
  of the product (zero precision) and its unimodal ELBO (masked), so one batch can mix, e.g.,
  RGB-only and RGB + point-cloud examples. Examples with no modality present are dropped from the
  joint term. With one modality, L = ELBO(q(z|x)) + the joint reconstruction from PoE(q(z|x), prior)
  (from q(z|x) itself when prior_expert=False).

  Random keys: modalities are processed in sorted name order (the order jit gives a dict);
  keys = jax.random.split(rng, N + 1), unimodal ELBO i uses keys[i], the joint term keys[N].

  Args:
    rng: a `jax.random.key`.
    experts: q(z|x_m) by modality name, arrays (B, D).
    decode: shared decoders, z -> predictions by target name.
    targets, recon_fns, weights, target_masks: as in `cross_modal_elbo`.
    beta: weight of each unimodal KL to the prior.
    expert_masks: optional (B,) bool by modality name (e.g. `has_points`); missing = present.
    decode_targets: targets each unimodal ELBO reconstructs, by modality name (e.g. {"image":
      ["pose3d", "heatmaps"], "points": ["points"]}); missing modalities reconstruct every target.
    joint_targets: targets the joint term reconstructs; default every key of `recon_fns`.
    prior_expert: include N(0, I) in the product (`product_of_experts`).
    beta_joint: weight of KL(GProd || N(0, I)); 0 follows Eq. 4.

  Returns:
    (loss, terms): "<modality>/..." (each unimodal ELBO's terms), "joint/recon/<target>",
    "joint/kl", "joint/loss" and "loss".
  """
  names = sorted(experts)
  if not names:
    raise ValueError("experts must hold at least one modality posterior.")
  expert_masks = dict(expert_masks or {})
  decode_targets = dict(decode_targets or {})
  for mapping, label in ((expert_masks, "expert_masks"), (decode_targets, "decode_targets")):
    unknown = set(mapping) - set(names)
    if unknown:
      raise KeyError(f"{label} names unknown modalities {sorted(unknown)}; experts are {names}.")
  keys = jax.random.split(rng, len(names) + 1)
  batch_shape = jnp.shape(experts[names[0]].mean)[:-1]
  present = [expert_masks.get(n, jnp.ones(batch_shape, dtype=bool)) for n in names]
  present = jnp.stack([jnp.asarray(p).astype(bool) for p in present], axis=-1)  # (B, N)

  loss = jnp.zeros(())
  terms: Terms = {}
  for i, name in enumerate(names):
    loss_m, terms_m = cross_modal_elbo(keys[i], experts[name], decode, targets, recon_fns, weights,
                                       beta, recon_targets=decode_targets.get(name),
                                       target_masks=target_masks,
                                       example_mask=expert_masks.get(name))
    loss = loss + loss_m
    terms |= _prefixed(name, terms_m)

  joint = product_of_experts([experts[n] for n in names], present, prior_expert)
  any_present = jnp.any(present, axis=-1)
  loss_joint, terms_joint = cross_modal_elbo(keys[-1], joint, decode, targets, recon_fns, weights,
                                             beta_joint, recon_targets=joint_targets,
                                             target_masks=target_masks, example_mask=any_present)
  loss = loss + loss_joint
  terms |= _prefixed("joint", terms_joint)
  terms["loss"] = loss
  return loss, terms


def split_latent(z: jax.Array, block_sizes: Sequence[tuple[str, int]]) -> dict[str, jax.Array]:
  """Splits z (..., D) into named factor blocks [z_y1, z_y2, ..., z_u] along the last axis.

  Args:
    z: (..., D) latent with D = sum of the block sizes.
    block_sizes: ordered (name, size) pairs, e.g. (("pose", 32), ("view", 32)).

  Returns:
    {name: (..., size)} blocks.
  """
  total = sum(size for _, size in block_sizes)
  if jnp.shape(z)[-1] != total:
    raise ValueError(f"latent has {jnp.shape(z)[-1]} dimensions but block_sizes {block_sizes} sum "
                     f"to {total}.")
  blocks, start = {}, 0
  for name, size in block_sizes:
    blocks[name] = z[..., start:start + size]
    start += size
  return blocks


def concat_latent(blocks: Mapping[str, jax.Array], names: Sequence[str]) -> jax.Array:
  """Concatenates named factor blocks in the order `names`: z = [z_y1, z_y2, ..., z_u]."""
  return jnp.concatenate([blocks[n] for n in names], axis=-1)


def disentangled_elbo(
    rng: jax.Array,
    factors: Mapping[str, Gaussian],
    decode: Decode,
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    weights: Mapping[str, Scalar] | None = None,
    beta: Scalar = 1.0,
    *,
    recon_targets: Sequence[str] | None = None,
    target_masks: Mapping[str, jax.Array] | None = None,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, Terms]:
  """Negative disentangling-step ELBO, Yang dissertation Eq. 4.2 (Yang & Yao CVPR 2019); Eq. 4.6.

  -ELBO_dis = sum_t lambda_t E[-log p(t | z or z_t)] + beta KL(q(z|y_1, ..., y_N) || N(0, I)), where
  z = [z_y1, ..., z_yN(, z_u)] is the concatenation of independent factor posteriors q(z_yi|y_i)
  (and q(z_u|x) for Eq. 4.6). Because the factors are independent diagonal Gaussians, the KL of the
  concatenation is the sum of the factor KLs. `decode` receives the sampled blocks as a dict and
  routes them: p(y_i|z_yi) reads its block, p(x|z) the concatenation (`concat_latent`). Lower bound
  on log p(x, y_1, ..., y_N) for beta = lambda = 1. Factor i is sampled with key
  jax.random.split(rng, n)[i], factors in sorted name order.

  Args:
    rng: a `jax.random.key`.
    factors: q(z_block|...) by block name, arrays (B, D_block).
    decode: {block name: (B, D_block) sample} -> predictions by target name.
    targets, recon_fns, weights, recon_targets, target_masks, example_mask: as in
      `cross_modal_elbo`.
    beta: KL weight.

  Returns:
    (loss, terms): "recon/<target>", "kl/<block>", "kl" (their sum) and "loss".
  """
  names = sorted(factors)
  if not names:
    raise ValueError("factors must hold at least one latent block posterior.")
  keys = jax.random.split(rng, len(names))
  blocks = {n: sample(k, factors[n]) for n, k in zip(names, keys)}
  recon_names = sorted(recon_fns) if recon_targets is None else list(recon_targets)
  recon, terms = reconstruction_loss(decode(blocks), targets, recon_fns, recon_names, weights,
                                     target_masks, example_mask)
  kl_total = jnp.zeros(())
  for n in names:
    terms[f"kl/{n}"] = masked_mean(kl_standard_normal(factors[n]), example_mask)
    kl_total = kl_total + terms[f"kl/{n}"]
  terms["kl"] = kl_total
  loss = recon + beta * kl_total
  terms["loss"] = loss
  return loss, terms


def embedding_elbo(
    rng: jax.Array,
    posterior: Gaussian,
    block_sizes: Sequence[tuple[str, int]],
    decode: Decode,
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    weights: Mapping[str, Scalar] | None = None,
    beta: Scalar = 1.0,
    *,
    recon_targets: Sequence[str] | None = None,
    target_masks: Mapping[str, jax.Array] | None = None,
    example_mask: jax.Array | None = None,
) -> tuple[jax.Array, Terms]:
  """Negative embedding-step ELBO, Yang dissertation Eq. 4.4 (also Eq. 4.8 for a second input).

  -ELBO_emb = sum_t lambda'_t E_{z~q(z|x)}[-log p(t | z or z_t)] + beta' KL(q(z|x) || N(0, I)):
  the image encoder q(z|x) predicts the whole latent, which is split into the named blocks of the
  disentangling step (`split_latent`) and decoded by the same `decode` as `disentangled_elbo`. It
  equals log p(x, y_1, y_2) - KL(q(z|x) || p(z|x, y_1, y_2)) (Eq. 4.3) for lambda' = beta' = 1. In
  Alg. 4.1 only the encoder is updated with it (decoders fixed): pass a decode closure over
  `jax.lax.stop_gradient` parameters, or take gradients with respect to the encoder only.

  Args:
    rng: a `jax.random.key` for the sample.
    posterior: q(z|x), arrays (B, D) with D = sum of the block sizes.
    block_sizes: ordered (name, size) pairs describing z = [z_y1, z_y2, ...].
    decode: {block name: (B, size) sample} -> predictions by target name.
    targets, recon_fns, weights, recon_targets, target_masks, example_mask: as in
      `cross_modal_elbo`.
    beta: beta', the KL weight.

  Returns:
    (loss, terms): "recon/<target>", "kl" and "loss".
  """
  # The cross-modal ELBO of q(z|x) with a decoder that first splits z into its named blocks.
  return cross_modal_elbo(
      rng, posterior, lambda z: decode(split_latent(z, block_sizes)), targets, recon_fns, weights,
      beta, recon_targets=recon_targets, target_masks=target_masks, example_mask=example_mask)


def disentanglement_objective(
    rng: jax.Array,
    cross_pose: Gaussian,
    cross_context: Gaussian,
    uni_pose: Gaussian,
    decode_cross: Decode,
    decode_uni: Decode,
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    weights: Mapping[str, Scalar] | None = None,
    beta_cross: Scalar = 1.0,
    beta_uni: Scalar = 1.0,
    *,
    generator_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    target_masks: Mapping[str, jax.Array] | None = None,
    uni_mask: jax.Array | None = None,
) -> tuple[jax.Array, Terms]:
  """Encoder/decoder loss of the disentanglement stage, Stergioulas et al. Eq. 2-4.

  L = L_VAE^cross + L_VAE^uni (+ the generator's adversarial term), where
    L_VAE^cross = L_rec(J, ID_RGB(z_pose^RGB))
                  + beta_cross [KL(q(z_cont^RGB|X)) + KL(q(z_pose^RGB|X))],
    L_VAE^uni   = L_rec(J, ID_pose(z_pose^true)) + beta_uni KL(q(z_pose^true|J)),
  all KLs to N(0, I); each VAE loss is a negative ELBO (Eq. 1). The paper prints "- beta L_KL" in
  Eq. 2-3; as losses to minimise the KL enters with "+" (Algorithm 1 adds L_KL to L_MSE).

  The discriminator term L_Dis (Eq. 1) is a separate player: update the discriminator with
  `handjax.losses.adversarial.discriminator_loss(Dis(z_pose^true), Dis(z_pose^RGB))` on latent
  samples (any `sample` of the two posteriors), and give the encoder its side through
  `generator_fn(z_cross, z_uni) -> scalar`, e.g. `lambda zc, zu: generator_loss(dis(params_d, zc))`:
  it is called with the very samples decoded here and added to the loss as "adversarial". Keys: rng
  split 0 samples z_pose^RGB, split 1 z_pose^true.

  Args:
    rng: a `jax.random.key`.
    cross_pose: q(z_pose^RGB|X), pose-specific part of the RGB encoder, arrays (B, D).
    cross_context: q(z_cont^RGB|X), RGB context part (only regularised by its KL), arrays (B, D').
    uni_pose: q(z_pose^true|J) from the pose encoder, arrays (B, D).
    decode_cross: ID_RGB, z -> predictions by target name.
    decode_uni: ID_pose, z -> predictions by target name.
    targets, recon_fns, weights, target_masks: as in `cross_modal_elbo` (the paper uses one
      target, the 3D joints, with an MSE).
    beta_cross: beta_VAE^cross.
    beta_uni: beta_VAE^uni.
    generator_fn: optional adversarial loss of the encoder given (z_pose^RGB, z_pose^true) samples.
    uni_mask: optional (B,) bool, False where the example has no 3D pose to encode.

  Returns:
    (loss, terms): "cross/recon/<target>", "cross/kl", "cross/kl_context", "cross/loss",
    "uni/..." (as `cross_modal_elbo`), "adversarial" (if `generator_fn`) and "loss".
  """
  rng_cross, rng_uni = jax.random.split(rng)
  loss_cross, terms_cross = cross_modal_elbo(rng_cross, cross_pose, decode_cross, targets,
                                             recon_fns, weights, beta_cross,
                                             target_masks=target_masks)
  kl_context = jnp.mean(kl_standard_normal(cross_context))
  loss_cross = loss_cross + beta_cross * kl_context
  terms_cross["kl_context"] = kl_context
  terms_cross["loss"] = loss_cross
  loss_uni, terms_uni = cross_modal_elbo(rng_uni, uni_pose, decode_uni, targets, recon_fns,
                                         weights, beta_uni, target_masks=target_masks,
                                         example_mask=uni_mask)
  loss = loss_cross + loss_uni
  terms = _prefixed("cross", terms_cross) | _prefixed("uni", terms_uni)
  if generator_fn is not None:
    # Same keys as inside cross_modal_elbo, so these are the decoded samples (jit dedupes them).
    adversarial = generator_fn(sample(rng_cross, cross_pose), sample(rng_uni, uni_pose))
    if jnp.ndim(adversarial) != 0:
      raise ValueError(f"generator_fn must return a scalar, got shape {jnp.shape(adversarial)}.")
    terms["adversarial"] = adversarial
    loss = loss + adversarial
  terms["loss"] = loss
  return loss, terms


def variational_alignment_objective(
    rng: jax.Array,
    cross_aligned: Gaussian,
    uni_aligned: Gaussian,
    decode: Decode,
    targets: Mapping[str, Any],
    recon_fns: Mapping[str, ReconFn],
    weights: Mapping[str, Scalar] | None = None,
    beta_cross: Scalar = 1.0,
    beta_uni: Scalar = 1.0,
    w: Scalar = 1.0,
    *,
    target_masks: Mapping[str, jax.Array] | None = None,
    uni_mask: jax.Array | None = None,
) -> tuple[jax.Array, Terms]:
  """Variational alignment loss, Stergioulas et al. Eq. 5-7: L_align = L^cross + w L^uni.

  L^cross = L_rec(J, ID_RGB(z_align^RGB)) + beta_cross KL(T_RGB(z_align^RGB|X) || N(0, I)) (Eq. 6),
  L^uni   = L_rec(J, ID_RGB(z_align^true)) + beta_uni KL(T_pose(z_align^true|J) || N(0, I)) (Eq. 7),
  both decoded by the one shared decoder ID_RGB (`decode`), which aligns the two mapped latent
  spaces; each is a negative ELBO (KL sign as explained in `disentanglement_objective`). Keys: rng
  split 0 samples z_align^RGB, split 1 z_align^true.

  Args:
    rng: a `jax.random.key`.
    cross_aligned: output of the variational mapper T_RGB, arrays (B, D).
    uni_aligned: output of the variational mapper T_pose, arrays (B, D).
    decode: shared decoder ID_RGB, z -> predictions by target name.
    targets, recon_fns, weights, target_masks: as in `cross_modal_elbo`.
    beta_cross: beta_align^cross.
    beta_uni: beta_align^uni.
    w: weight of the uni-modal term (Eq. 5).
    uni_mask: optional (B,) bool, False where the example has no 3D pose to encode.

  Returns:
    (loss, terms): "cross/..." and "uni/..." (as `cross_modal_elbo`) and "loss".
  """
  rng_cross, rng_uni = jax.random.split(rng)
  loss_cross, terms_cross = cross_modal_elbo(rng_cross, cross_aligned, decode, targets, recon_fns,
                                             weights, beta_cross, target_masks=target_masks)
  loss_uni, terms_uni = cross_modal_elbo(rng_uni, uni_aligned, decode, targets, recon_fns, weights,
                                         beta_uni, target_masks=target_masks, example_mask=uni_mask)
  loss = loss_cross + w * loss_uni
  terms = _prefixed("cross", terms_cross) | _prefixed("uni", terms_uni)
  terms["loss"] = loss
  return loss, terms
