"""ELBO objectives on tiny linear decoders (decode = z @ W) against explicit float64 numpy maths.

The reference recomputes each reparameterised sample from the same key and the key derivation the
docstrings document (z = mean + exp(logvar / 2) * jax.random.normal(key, shape)).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses import elbo as E
from handjax.losses.gaussian import Gaussian

B, D = 4, 3
_R = np.random.default_rng(0)
W = {"pose": _R.normal(size=(D, 2)).astype(np.float32),
     "cloud": _R.normal(size=(D, 5)).astype(np.float32)}
TARGETS = {"pose": _R.normal(size=(B, 2)).astype(np.float32),
           "cloud": _R.normal(size=(B, 5)).astype(np.float32)}
RECON = {"pose": lambda p, t: jnp.sum((p - t) ** 2, -1),
         "cloud": lambda p, t: jnp.sum(jnp.abs(p - t), -1)}
RECON_NP = {"pose": lambda p, t: ((p - t) ** 2).sum(-1),
            "cloud": lambda p, t: np.abs(p - t).sum(-1)}


def decode(z, w=W):
  return {name: z @ w[name] for name in w}


def _gaussian(seed, d=D):
  r = np.random.default_rng(seed)
  return Gaussian(jnp.asarray(r.normal(size=(B, d)), jnp.float32),
                  jnp.asarray(r.uniform(-1.5, 0.5, size=(B, d)), jnp.float32))


def _z_np(key, q):
  eps = np.asarray(jax.random.normal(key, q.mean.shape), np.float64)
  return np.asarray(q.mean, np.float64) + np.exp(0.5 * np.asarray(q.logvar, np.float64)) * eps


def _kl_np(m, lv):
  return 0.5 * (np.exp(lv) + m**2 - 1.0 - lv).sum(-1)


def _kl_q_np(q):
  return _kl_np(np.asarray(q.mean, np.float64), np.asarray(q.logvar, np.float64))


def _mmean(v, m=None):
  if m is None:
    return v.mean()
  m = np.asarray(m, np.float64)
  return (v * m).sum() / max(1.0, m.sum())


def _recon_np(z, names, weights, target_masks=None, example_mask=None):
  """Returns (weighted sum, {name: unweighted masked mean}) in float64."""
  total, terms = 0.0, {}
  for name in names:
    per = RECON_NP[name](z @ W[name].astype(np.float64), TARGETS[name].astype(np.float64))
    mask = (target_masks or {}).get(name)
    if example_mask is not None:
      mask = example_mask if mask is None else np.logical_and(mask, example_mask)
    terms[name] = _mmean(per, mask)
    total += weights.get(name, 1.0) * terms[name]
  return total, terms


def _elbo_np(key, q, names, weights, beta, target_masks=None, example_mask=None):
  recon, _ = _recon_np(_z_np(key, q), names, weights, target_masks, example_mask)
  return recon + beta * _mmean(_kl_q_np(q), example_mask)


def test_masked_mean():
  v = jnp.array([1.0, 2.0, 3.0, jnp.nan])
  np.testing.assert_allclose(E.masked_mean(v, jnp.array([True, False, True, False])), 2.0)
  assert float(E.masked_mean(v, jnp.zeros(4, bool))) == 0.0
  np.testing.assert_allclose(E.masked_mean(v[:3]), 2.0)
  with pytest.raises(ValueError, match="per-example shape"):
    E.masked_mean(v, jnp.ones(3, bool))


@pytest.mark.parametrize("names", [("pose",), ("cloud", "pose")])
def test_cross_modal_elbo_matches_hand_computation(rng, names):
  q = _gaussian(1)
  recon_fns = {n: RECON[n] for n in names}
  weights = {"cloud": 0.3} if "cloud" in names else None
  loss, terms = E.cross_modal_elbo(rng, q, decode, TARGETS, recon_fns, weights, beta=0.01)
  z = _z_np(rng, q)
  recon, recon_terms = _recon_np(z, names, weights or {})
  kl = _kl_q_np(q).mean()
  np.testing.assert_allclose(loss, recon + 0.01 * kl, rtol=1e-5)
  np.testing.assert_allclose(terms["kl"], kl, rtol=1e-5)
  for n in names:
    np.testing.assert_allclose(terms[f"recon/{n}"], recon_terms[n], rtol=1e-5)
  assert set(terms) == {"kl", "loss"} | {f"recon/{n}" for n in names}
  assert terms["loss"] is loss


def test_target_masks_reduce_over_present_examples(rng):
  q = _gaussian(2)
  masks = {"pose": jnp.array([True, False, True, False])}
  loss, terms = E.cross_modal_elbo(rng, q, decode, TARGETS, RECON, {"cloud": 2.0}, 0.5,
                                   target_masks=masks)
  expected = _elbo_np(rng, q, ["cloud", "pose"], {"cloud": 2.0}, 0.5, {"pose": masks["pose"]})
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_fully_masked_target_contributes_zero_with_zero_gradient(rng):
  q = _gaussian(3)
  masks = {"pose": jnp.zeros(B, bool)}
  # NaN targets for the absent labels: `where` masking must keep them out of values and gradients.
  targets = dict(TARGETS, pose=jnp.full((B, 2), jnp.nan))

  def f(w, q):
    return E.cross_modal_elbo(rng, q, lambda z: decode(z, w), targets, RECON, None, 0.1,
                              target_masks=masks)

  (loss, terms), grads = jax.value_and_grad(f, argnums=(0, 1), has_aux=True)(W, q)
  assert float(terms["recon/pose"]) == 0.0
  np.testing.assert_allclose(loss, _elbo_np(rng, q, ["cloud"], {}, 0.1), rtol=1e-5)
  np.testing.assert_array_equal(grads[0]["pose"], 0.0)
  assert np.all(np.abs(grads[0]["cloud"]) > 0)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf))


def test_kl_alignment_objective_matches_hand_computation(rng):
  joint, single = _gaussian(4), _gaussian(5)
  joint_mask = jnp.array([True, True, False, True])
  loss, terms = E.kl_alignment_objective(rng, joint, single, decode, TARGETS, RECON, {"cloud": 0.5},
                                         beta=0.1, beta_align=2.0, joint_mask=joint_mask)
  k_joint, k_single = jax.random.split(rng)
  (mj, lj), (ms, ls) = [(np.asarray(g.mean, np.float64), np.asarray(g.logvar, np.float64))
                        for g in (joint, single)]
  kl_align = 0.5 * (ls - lj + (np.exp(lj) + (mj - ms) ** 2) / np.exp(ls) - 1.0).sum(-1)
  expected = (_elbo_np(k_joint, joint, ["cloud", "pose"], {"cloud": 0.5}, 0.1,
                       example_mask=np.asarray(joint_mask))
              + _elbo_np(k_single, single, ["cloud", "pose"], {"cloud": 0.5}, 0.1)
              + 2.0 * _mmean(kl_align, joint_mask))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_allclose(terms["kl_align"], _mmean(kl_align, joint_mask), rtol=1e-5)
  assert {"joint/kl", "single/kl", "joint/recon/pose", "single/loss", "loss"} <= set(terms)


def _poe_np(experts, mask, prior_expert=True):
  """Eq. 5-6 with precisions, float64; mask (B, E)."""
  prec = [np.exp(-np.asarray(q.logvar, np.float64)) * mask[:, i:i + 1]
          for i, q in enumerate(experts)]
  num = sum(p * np.asarray(q.mean, np.float64) for p, q in zip(prec, experts))
  den = sum(prec) + (1.0 if prior_expert else 0.0)
  return num / den, -np.log(den)


def test_poe_alignment_objective_matches_hand_computation(rng):
  experts = {"rgb": _gaussian(6), "cloud": _gaussian(7)}
  has = {"cloud": jnp.array([True, False, True, False])}
  decode_targets = {"rgb": ["pose"], "cloud": ["cloud"]}
  target_masks = {"pose": jnp.array([True, True, False, False])}
  loss, terms = E.poe_alignment_objective(
      rng, experts, decode, TARGETS, RECON, {"cloud": 0.2}, 0.05, expert_masks=has,
      decode_targets=decode_targets, target_masks=target_masks)
  keys = jax.random.split(rng, 3)  # sorted names: cloud, rgb; then the joint term
  tm = {"pose": np.asarray(target_masks["pose"])}
  cloud_mask = np.asarray(has["cloud"])
  elbo_cloud = _elbo_np(keys[0], experts["cloud"], ["cloud"], {"cloud": 0.2}, 0.05, tm, cloud_mask)
  elbo_rgb = _elbo_np(keys[1], experts["rgb"], ["pose"], {"cloud": 0.2}, 0.05, tm)
  mask = np.stack([cloud_mask, np.ones(B, bool)], -1)
  m, lv = _poe_np([experts["cloud"], experts["rgb"]], mask)
  eps = np.asarray(jax.random.normal(keys[2], (B, D)), np.float64)
  joint_recon, joint_terms = _recon_np(m + np.exp(0.5 * lv) * eps, ["cloud", "pose"],
                                       {"cloud": 0.2}, tm)
  np.testing.assert_allclose(loss, elbo_cloud + elbo_rgb + joint_recon, rtol=1e-5)
  np.testing.assert_allclose(terms["joint/kl"], _kl_np(m, lv).mean(), rtol=1e-5)
  np.testing.assert_allclose(terms["joint/recon/pose"], joint_terms["pose"], rtol=1e-5)
  assert "rgb/recon/cloud" not in terms and "cloud/recon/pose" not in terms
  # beta_joint adds beta_joint * KL(PoE || prior).
  loss_kl, _ = E.poe_alignment_objective(
      rng, experts, decode, TARGETS, RECON, {"cloud": 0.2}, 0.05, expert_masks=has,
      decode_targets=decode_targets, target_masks=target_masks, beta_joint=0.3)
  np.testing.assert_allclose(loss_kl - loss, 0.3 * _kl_np(m, lv).mean(), rtol=1e-4)


def test_poe_alignment_with_one_modality_reduces_to_cross_modal_elbo(rng):
  q = _gaussian(8)
  k0, k1 = jax.random.split(rng, 2)
  loss, terms = E.poe_alignment_objective(rng, {"rgb": q}, decode, TARGETS, RECON, None, 0.1,
                                          prior_expert=False)
  unimodal, _ = E.cross_modal_elbo(k0, q, decode, TARGETS, RECON, None, 0.1)
  joint_recon, _ = E.cross_modal_elbo(k1, q, decode, TARGETS, RECON, None, 0.0)
  np.testing.assert_allclose(loss, unimodal + joint_recon, rtol=1e-6)
  np.testing.assert_allclose(terms["rgb/loss"], unimodal, rtol=1e-6)
  # With the prior expert, the joint term decodes PoE(q, N(0, I)).
  loss_p, _ = E.poe_alignment_objective(rng, {"rgb": q}, decode, TARGETS, RECON, None, 0.1)
  m, lv = _poe_np([q], np.ones((B, 1)))
  z = m + np.exp(0.5 * lv) * np.asarray(jax.random.normal(k1, (B, D)), np.float64)
  np.testing.assert_allclose(loss_p, float(unimodal) + _recon_np(z, ["cloud", "pose"], {})[0],
                             rtol=1e-5)


def test_poe_alignment_absent_modality_has_zero_gradient(rng):
  experts = {"rgb": _gaussian(9), "cloud": _gaussian(10)}
  has = {"cloud": jnp.zeros(B, bool)}
  f = lambda e: E.poe_alignment_objective(rng, e, decode, TARGETS, RECON, None, 0.1,
                                          expert_masks=has)[0]
  grads = jax.grad(f)(experts)
  np.testing.assert_array_equal(grads["cloud"].mean, 0.0)
  np.testing.assert_array_equal(grads["cloud"].logvar, 0.0)
  _, terms = E.poe_alignment_objective(rng, experts, decode, TARGETS, RECON, None, 0.1,
                                       expert_masks=has)
  assert float(terms["cloud/loss"]) == 0.0
  with pytest.raises(KeyError, match="unknown modalities"):
    E.poe_alignment_objective(rng, experts, decode, TARGETS, RECON,
                              expert_masks={"depth": has["cloud"]})


def _block_decode(blocks):
  # p(pose | z_pose) reads its block, p(cloud | z) the concatenation [z_pose, z_view].
  z = E.concat_latent(blocks, ["pose", "view"])
  return {"pose": blocks["pose"] @ W["pose"][:2], "cloud": z @ W["cloud"]}


def _block_recon_np(z_pose, z_view, weights):
  pred = {"pose": z_pose @ W["pose"][:2].astype(np.float64),
          "cloud": np.concatenate([z_pose, z_view], -1) @ W["cloud"].astype(np.float64)}
  return sum(weights.get(n, 1.0) * RECON_NP[n](pred[n], TARGETS[n].astype(np.float64)).mean()
             for n in pred)


def test_disentangled_elbo_matches_hand_computation(rng):
  q_pose, q_view = _gaussian(11, d=2), _gaussian(12, d=1)
  loss, terms = E.disentangled_elbo(rng, {"pose": q_pose, "view": q_view}, _block_decode, TARGETS,
                                    RECON, {"cloud": 0.1}, beta=0.2)
  k_pose, k_view = jax.random.split(rng, 2)  # sorted block names
  recon = _block_recon_np(_z_np(k_pose, q_pose), _z_np(k_view, q_view), {"cloud": 0.1})
  kl = _kl_q_np(q_pose).mean() + _kl_q_np(q_view).mean()
  np.testing.assert_allclose(loss, recon + 0.2 * kl, rtol=1e-5)
  np.testing.assert_allclose(terms["kl/view"], _kl_q_np(q_view).mean(), rtol=1e-5)
  np.testing.assert_allclose(terms["kl"], kl, rtol=1e-5)


def test_embedding_elbo_matches_hand_computation(rng):
  q = _gaussian(13)
  loss, terms = E.embedding_elbo(rng, q, (("pose", 2), ("view", 1)), _block_decode, TARGETS, RECON,
                                 {"pose": 3.0}, beta=0.5)
  z = _z_np(rng, q)
  expected = _block_recon_np(z[:, :2], z[:, 2:], {"pose": 3.0}) + 0.5 * _kl_q_np(q).mean()
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  with pytest.raises(ValueError, match="sum to"):
    E.embedding_elbo(rng, q, (("pose", 2),), _block_decode, TARGETS, RECON)


def test_disentanglement_objective_matches_hand_computation(rng):
  pose_fns = {"pose": RECON["pose"]}
  cross, context, uni = _gaussian(14), _gaussian(15, d=2), _gaussian(16)
  w_uni = {"pose": 2.0 * W["pose"]}
  uni_mask = jnp.array([True, True, True, False])
  gen = lambda zc, zu: jnp.mean(zc**2) - jnp.mean(zu)
  loss, terms = E.disentanglement_objective(
      rng, cross, context, uni, decode, lambda z: decode(z, w_uni), TARGETS, pose_fns, None,
      beta_cross=0.1, beta_uni=0.2, generator_fn=gen, uni_mask=uni_mask)
  k_cross, k_uni = jax.random.split(rng)
  zc, zu = _z_np(k_cross, cross), _z_np(k_uni, uni)
  t = TARGETS["pose"].astype(np.float64)
  l_cross = (((zc @ W["pose"] - t) ** 2).sum(-1).mean()
             + 0.1 * (_kl_q_np(cross).mean() + _kl_q_np(context).mean()))
  m = np.asarray(uni_mask)
  l_uni = _mmean(((zu @ (2 * W["pose"]) - t) ** 2).sum(-1), m) + 0.2 * _mmean(_kl_q_np(uni), m)
  adv = (zc**2).mean() - zu.mean()
  np.testing.assert_allclose(loss, l_cross + l_uni + adv, rtol=1e-5)
  np.testing.assert_allclose(terms["adversarial"], adv, rtol=1e-5)
  np.testing.assert_allclose(terms["cross/loss"], l_cross, rtol=1e-5)
  np.testing.assert_allclose(terms["cross/kl_context"], _kl_q_np(context).mean(), rtol=1e-5)
  with pytest.raises(ValueError, match="scalar"):
    E.disentanglement_objective(rng, cross, context, uni, decode, decode, TARGETS, pose_fns,
                                generator_fn=lambda zc, zu: zc)


def test_variational_alignment_objective_matches_hand_computation(rng):
  cross, uni = _gaussian(17), _gaussian(18)
  loss, terms = E.variational_alignment_objective(rng, cross, uni, decode, TARGETS, RECON,
                                                  {"cloud": 0.5}, 0.1, 0.3, w=0.7)
  k_cross, k_uni = jax.random.split(rng)
  expected = (_elbo_np(k_cross, cross, ["cloud", "pose"], {"cloud": 0.5}, 0.1)
              + 0.7 * _elbo_np(k_uni, uni, ["cloud", "pose"], {"cloud": 0.5}, 0.3))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  assert {"cross/kl", "uni/kl", "uni/recon/pose", "loss"} <= set(terms)


def test_bad_inputs_are_clear_errors(rng):
  q = _gaussian(19)
  with pytest.raises(KeyError, match="no reconstruction function"):
    E.cross_modal_elbo(rng, q, decode, TARGETS, RECON, recon_targets=["depth"])
  with pytest.raises(KeyError, match="weights"):
    E.cross_modal_elbo(rng, q, decode, TARGETS, RECON, {"poes": 1.0})
  with pytest.raises(KeyError, match="decode"):
    E.cross_modal_elbo(rng, q, lambda z: {"pose": z}, TARGETS, RECON)
  with pytest.raises(ValueError, match=r"shape \(B,\)"):
    E.cross_modal_elbo(rng, q, decode, TARGETS, {"pose": lambda p, t: (p - t) ** 2})


def test_jit_vmap_grad(rng):
  experts = {"rgb": _gaussian(20), "cloud": _gaussian(21)}
  has = {"cloud": jnp.array([True, False, True, True])}

  def objective(experts, w, has, key, beta):
    return E.poe_alignment_objective(key, experts, lambda z: decode(z, w), TARGETS, RECON,
                                     {"cloud": 0.5}, beta, expert_masks=has)

  eager = objective(experts, W, has, rng, 0.1)
  jitted_objective = jax.jit(objective)
  jitted = jitted_objective(experts, W, has, rng, jnp.float32(0.1))  # traced beta (schedules)
  for k in eager[1]:
    np.testing.assert_allclose(jitted[1][k], eager[1][k], rtol=1e-5, atol=1e-6)
  # vmap over keys = a Python loop over keys.
  keys = jax.random.split(rng, 3)
  batched = jax.vmap(lambda k: objective(experts, W, has, k, 0.1)[0])(keys)
  np.testing.assert_allclose(batched, [jitted_objective(experts, W, has, k, 0.1)[0] for k in keys],
                             rtol=1e-5)
  # Gradients: finite everywhere, and one coordinate against central finite differences.
  f = jax.jit(lambda e: objective(e, W, has, rng, 0.1)[0])
  grads = jax.jit(jax.grad(f))(experts)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf))
  h = 1e-2
  bump = lambda d: dict(experts, rgb=Gaussian(experts["rgb"].mean.at[0, 1].add(d),
                                              experts["rgb"].logvar))
  fd = (f(bump(h)) - f(bump(-h))) / (2 * h)
  np.testing.assert_allclose(grads["rgb"].mean[0, 1], fd, rtol=2e-2)


def test_extreme_logvars_give_finite_objective_and_gradients(rng):
  lv = jnp.tile(jnp.linspace(-30.0, 30.0, B)[:, None], (1, D))
  experts = {"rgb": Gaussian(jnp.ones((B, D)), lv), "cloud": Gaussian(-jnp.ones((B, D)), -lv)}
  # Huge samples make huge squared errors; use a bounded loss so finiteness is about the algebra.
  bounded = {n: (lambda p, t: jnp.sum(jnp.tanh((p - t) ** 2), -1)) for n in RECON}
  f = lambda e: E.poe_alignment_objective(rng, e, decode, TARGETS, bounded, None, 1e-3,
                                          beta_joint=1e-3)[0]
  value, grads = jax.value_and_grad(f)(experts)
  assert np.isfinite(value)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(leaf))


def test_mixed_batches_share_one_compiled_step(rng):
  experts = {"rgb": _gaussian(22), "cloud": _gaussian(23)}

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(experts, has_cloud, has_pose):
    return E.poe_alignment_objective(rng, experts, decode, TARGETS, RECON, None, 0.1,
                                     expert_masks={"cloud": has_cloud},
                                     target_masks={"pose": has_pose})[0]

  # Labelled, weakly labelled (cloud, no pose), unlabelled and mixed batches: one trace.
  for has_cloud, has_pose in [([1, 1, 1, 1], [1, 1, 1, 1]), ([1, 1, 1, 1], [0, 0, 0, 0]),
                              ([0, 0, 0, 0], [0, 0, 0, 0]), ([1, 0, 1, 0], [1, 1, 0, 0])]:
    value = step(experts, jnp.array(has_cloud, bool), jnp.array(has_pose, bool))
    assert np.isfinite(value)
