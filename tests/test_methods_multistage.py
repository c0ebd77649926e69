"""Tests of the multi-stage aligned model (Stergioulas et al., seed 004): stage phases and masks,
losses of each stage by hand (Eq. 1-7, 17), and the kinematic refinement on a hand-built example."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handjax.hand import skeleton
from handjax.methods import common
from handjax.methods import multistage as ms
from handjax.train import method as method_lib

B, S = 4, 32


def make_batch(seed: int = 0) -> dict[str, np.ndarray]:
  r = np.random.default_rng(seed)
  batch = {"image": r.uniform(-0.5, 0.5, (B, S, S, 3)).astype(np.float32),
           "pose3d": (r.normal(0.0, 0.03, (B, 21, 3)) + [0.05, -0.02, 0.5]).astype(np.float32),
           "scale": r.uniform(0.02, 0.04, B).astype(np.float32),
           "hand_side": r.integers(0, 2, B).astype(np.int32)}
  batch["has_pose3d"] = np.ones(B, bool)
  batch["has_scale"] = np.ones(B, bool)
  return batch


def tiny_config(**overrides):
  c = ms.default_config()
  c.data.image_size = S
  c.rgb_latent_dim, c.pose_latent_dim = 8, 4
  c.model.resnet_width = 1 / 16
  c.model.resnet_stage_sizes = (1, 1, 1, 1)
  c.model.decoder_hidden = (16, 16, 16)
  c.model.pose_encoder_hidden = (16, 16)
  c.model.mapper_hidden = (16,)
  c.model.discriminator_hidden = (16,)
  c.stages.disentangle, c.stages.align_frozen, c.stages.align_finetune, c.stages.refine = 2, 2, 2, 4
  c.num_steps = 10
  for key, value in overrides.items():
    if isinstance(value, dict):
      for k, v in value.items():
        c[key][k] = v
    else:
      c[key] = value
  return c


def fast_init(method, batch, seed: int = 0):
  """Random variables with the shapes of ``method.init``, traced but never compiled (compiling
  the ResNet initialiser costs ~10 s of CPU): kernels ~ N(0, 1/fan_in), biases 0, BatchNorm
  scale 1, running mean 0, variance 1."""
  shapes = jax.eval_shape(method.init, jax.random.key(0), batch)
  r = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(r.normal(0.0, 1.0 / np.sqrt(fan_in), leaf.shape), leaf.dtype)
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def build(config):
  method = method_lib.get_method(config)
  params, state = fast_init(method, make_batch())
  return method, params, state


def phase(method, name):
  return next(p for p in method.phases if p.name == name)


def one_step(ph, params, state, batch, step):
  """The trainer's update without its copy-through of frozen leaves (the mask alone must hold)."""
  (loss, (terms, new_state)), grads = jax.jit(jax.value_and_grad(ph.loss, has_aux=True))(
      params, state, batch, jax.random.key(1), jnp.int32(step))
  opt = ph.masked_optimizer(params)
  updates, _ = opt.update(grads, opt.init(params), params)
  return optax.apply_updates(params, updates), new_state, loss, terms


def trainable(ph, params) -> set[str]:
  mask = ph.trainable(params)["params"]
  return {name for name in mask if any(jax.tree.leaves(mask[name]))}


def changed(before, after) -> set[str]:
  return {name for name in before
          if not jax.tree.all(jax.tree.map(np.array_equal, before[name], after[name]))}


# ---- numpy references -------------------------------------------------------------------------


def np_kl(mean, logvar) -> np.ndarray:
  mean, logvar = np.asarray(mean, np.float64), np.asarray(logvar, np.float64)
  return 0.5 * np.sum(mean**2 + np.exp(logvar) - 1.0 - logvar, axis=-1)


def np_sample(key, q) -> np.ndarray:
  return np.asarray(q.mean) + np.exp(0.5 * np.asarray(q.logvar)) * np.asarray(
      jax.random.normal(key, q.mean.shape))


def sse(pred, target) -> np.ndarray:
  return np.sum((np.asarray(pred, np.float64) - np.asarray(target, np.float64)) ** 2, axis=(1, 2))


def softplus(x):
  x = np.asarray(x, np.float64)
  return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def np_kcs(pose):
  bones = np.stack([pose[:, c] - pose[:, p] for p, c in skeleton.BONES], axis=1)  # (B, 20, 3)
  return np.einsum("bkd,bmd->bkm", bones, bones)


def np_joint_line(pose):
  """Distance of every joint to every line through two non-root joints, by the cross product."""
  lines = list(itertools.combinations(range(1, 21), 2))
  out = np.zeros((pose.shape[0], 21, len(lines)))
  valid = np.ones((21, len(lines)), bool)
  for l, (j, k) in enumerate(lines):
    d = pose[:, k] - pose[:, j]
    for i in range(21):
      if i in (j, k):
        valid[i, l] = False
        continue
      out[:, i, l] = np.linalg.norm(np.cross(pose[:, i] - pose[:, j], d), axis=-1) / np.linalg.norm(
          d, axis=-1)
  return out, valid


# ---- schedule and masks -----------------------------------------------------------------------


def test_phases_cover_the_three_stages_in_order():
  method = method_lib.get_method(tiny_config())
  assert [(p.name, p.start, p.stop) for p in method.phases] == [
      ("discriminator", 0, 2), ("generator", 0, 2), ("align_frozen", 2, 4),
      ("align_finetune", 4, 6), ("refine", 6, 10)]
  baseline = tiny_config(disentangle=False, model={"decoder": "mlp"},
                         stages={"align_frozen": 0, "align_finetune": 0, "refine": 0})
  baseline.num_steps = 2
  method = method_lib.get_method(baseline)
  assert [p.name for p in method.phases] == ["generator"]
  assert sorted(build(baseline)[1]["params"]) == ["decoder_rgb", "encoder_rgb"]
  with pytest.raises(ValueError, match="num_steps"):
    method_lib.get_method(tiny_config(num_steps=11))


def test_discriminator_and_generator_steps_update_disjoint_parameters():
  method, params, state = build(tiny_config())
  batch = make_batch(1)
  new, new_state, loss, _ = one_step(phase(method, "discriminator"), params, state, batch, 0)
  assert np.isfinite(float(loss))
  assert changed(params["params"], new["params"]) == {"discriminator"}
  assert changed(state["batch_stats"], new_state["batch_stats"]) == set()
  # The generator's mask (a step with it is as cheap to trust as the discriminator's above).
  assert trainable(phase(method, "generator"), params) == {"encoder_rgb", "encoder_pose",
                                                           "decoder_rgb", "decoder_pose"}


def test_stage_2_with_frozen_encoders_leaves_them_bit_identical():
  method, params, state = build(tiny_config())
  new, new_state, loss, _ = one_step(phase(method, "align_frozen"), params, state, make_batch(2), 2)
  assert np.isfinite(float(loss))
  assert changed(params["params"], new["params"]) == {"mapper_rgb", "mapper_pose", "decoder_rgb"}
  assert changed(state["batch_stats"], new_state["batch_stats"]) == {"mapper_rgb", "mapper_pose",
                                                                     "decoder_rgb"}
  assert trainable(phase(method, "align_finetune"), params) == {
      "encoder_rgb", "encoder_pose", "mapper_rgb", "mapper_pose", "decoder_rgb"}


# ---- losses by hand ---------------------------------------------------------------------------


def _encoders(config, params, state, batch, train):
  nets = ms.build_networks(config)
  q_pose, q_ctx, _ = ms.encode_rgb(nets, params, state, batch, config, train=train)
  q_true, _ = ms.encode_pose(nets, params, state, batch, config, train=train)
  return nets, q_pose, q_ctx, q_true


def _decode(nets, name, params, state, z, train=True):
  z = jnp.asarray(z, jnp.float32)
  return np.asarray(common.apply_module(nets[name], name, params, state, z, train=train)[0])


def _map(nets, params, state, q, train):
  return common.apply_module(nets["mapper_rgb"], "mapper_rgb", params, state, q, train=train)[0]


def _target(batch):
  pose = batch["pose3d"] - batch["pose3d"][:, :1]
  return pose / batch["scale"][:, None, None]


def test_discriminator_loss_is_eq_1_by_hand():
  config = tiny_config()
  method, params, state = build(config)
  batch = make_batch(3)
  rng = jax.random.key(5)
  loss, (_, new_state) = phase(method, "discriminator").loss(params, state, batch, rng,
                                                             jnp.int32(0))
  # The encoders run as in the generator step (batch statistics, issue 20 finding 3), so Dis sees
  # the latent distribution the generator produces; the step keeps the running statistics.
  nets, q_pose, _, q_true = _encoders(config, params, state, batch, train=True)
  assert jax.tree.all(jax.tree.map(np.array_equal, new_state, state))
  k0, k1 = jax.random.split(rng)
  dis = lambda z: np.asarray(nets["discriminator"].apply(
      {"params": params["params"]["discriminator"]}, jnp.asarray(z, jnp.float32)))
  # BCE(x, 0) = softplus(x), BCE(x, 1) = softplus(-x).
  expected = np.mean(0.5 * softplus(dis(np_sample(k0, q_pose)))
                     + 0.5 * softplus(-dis(np_sample(k1, q_true))))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


@pytest.mark.parametrize("subspace", ["pose", "concat"])
def test_generator_loss_is_eq_2_to_4_by_hand(subspace):
  config = tiny_config(decode_subspace=subspace, beta_vae_cross=0.3, beta_vae_uni=0.2,
                       adversarial_weight=0.5)
  method, params, state = build(config)
  batch = make_batch(4)
  rng = jax.random.key(6)
  loss, _ = phase(method, "generator").loss(params, state, batch, rng, jnp.int32(0))
  nets, q_pose, q_ctx, q_true = _encoders(config, params, state, batch, train=True)
  k0, k1 = jax.random.split(rng)
  q_dec = ms.decoded_rgb_posterior(q_pose, q_ctx, config)
  z_rgb, z_true = np_sample(k0, q_dec), np_sample(k1, q_true)
  target = _target(batch)
  logits = np.asarray(nets["discriminator"].apply({"params": params["params"]["discriminator"]},
                                                  jnp.asarray(z_rgb[:, :4], jnp.float32)))
  expected = (np.mean(sse(_decode(nets, "decoder_rgb", params, state, z_rgb), target))
              + 0.3 * np.mean(np_kl(q_pose.mean, q_pose.logvar) + np_kl(q_ctx.mean, q_ctx.logvar))
              + np.mean(sse(_decode(nets, "decoder_pose", params, state, z_true), target))
              + 0.2 * np.mean(np_kl(q_true.mean, q_true.logvar))
              + 0.5 * np.mean(softplus(-logits)))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_alignment_loss_is_eq_5_to_7_by_hand():
  config = tiny_config(beta_align_cross=0.1, beta_align_uni=0.4, align_w=0.25)
  method, params, state = build(config)
  batch = make_batch(5)
  rng = jax.random.key(7)
  loss, _ = phase(method, "align_frozen").loss(params, state, batch, rng, jnp.int32(2))
  nets, q_pose, _, q_true = _encoders(config, params, state, batch, train=False)
  t_rgb = _map(nets, params, state, q_pose, True)
  t_pose = common.apply_module(nets["mapper_pose"], "mapper_pose", params, state, q_true,
                               train=True)[0]
  k0, k1 = jax.random.split(rng)
  target = _target(batch)
  cross = (np.mean(sse(_decode(nets, "decoder_rgb", params, state, np_sample(k0, t_rgb)), target))
           + 0.1 * np.mean(np_kl(t_rgb.mean, t_rgb.logvar)))
  uni = (np.mean(sse(_decode(nets, "decoder_rgb", params, state, np_sample(k1, t_pose)), target))
         + 0.4 * np.mean(np_kl(t_pose.mean, t_pose.logvar)))
  np.testing.assert_allclose(float(loss), cross + 0.25 * uni, rtol=1e-4)


def test_alignment_keeps_the_decoder_statistics_of_the_rgb_path():
  """ID_RGB decodes T_RGB's and T_pose's samples in one step; inference decodes T_RGB only, so its
  running BatchNorm statistics must be the ones of the T_RGB call, not the T_pose one."""
  config = tiny_config()
  method, params, state = build(config)
  batch = make_batch(5)
  rng = jax.random.key(7)
  _, (_, new_state) = phase(method, "align_frozen").loss(params, state, batch, rng, jnp.int32(2))
  nets, q_pose, _, q_true = _encoders(config, params, state, batch, train=False)
  k0, k1 = jax.random.split(rng)
  samples = {"rgb": np_sample(k0, _map(nets, params, state, q_pose, True)),
             "pose": np_sample(k1, common.apply_module(nets["mapper_pose"], "mapper_pose", params,
                                                       state, q_true, train=True)[0])}
  stats = {k: common.apply_module(nets["decoder_rgb"], "decoder_rgb", params, state,
                                  jnp.asarray(z, jnp.float32), train=True)[1]
           for k, z in samples.items()}
  got = new_state["batch_stats"]["decoder_rgb"]
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(stats["rgb"])):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The two paths give different statistics, so the check above can tell them apart.
  assert any(not np.allclose(a, b, rtol=1e-3) for a, b in
             zip(jax.tree.leaves(stats["rgb"]), jax.tree.leaves(stats["pose"])))


def test_refinement_loss_is_eq_17_on_a_hand_built_example():
  """Eq. 17 with poses in metres (unit_scale) and the l1 distances as sums over their entries."""
  r = np.random.default_rng(8)
  target = r.normal(0.0, 1.0, (2, 21, 3))
  pred = 1.5 * target + 0.2 * r.normal(size=(2, 21, 3))
  unit = np.array([0.03, 0.05])
  pm, tm = pred * unit[:, None, None], target * unit[:, None, None]
  kcs_ref = np.sum(np.abs(np_kcs(pm) - np_kcs(tm)), axis=(1, 2))
  s_pred, valid = np_joint_line(pm)
  s_target, _ = np_joint_line(tm)
  geo_ref = np.array([np.sum(np.abs(s_pred[b] - s_target[b])[valid]) for b in range(2)])
  mse_ref = sse(pm, tm)
  for q in (1.0, 0.0):
    loss, terms = ms.refinement_loss(jnp.asarray(pred, jnp.float32),
                                     jnp.asarray(target, jnp.float32), jnp.float32(q), 1e-2, 1e-6,
                                     unit_scale=jnp.asarray(unit, jnp.float32))
    expected = np.mean(mse_ref) + q * 1e-2 * np.mean(kcs_ref) + (1 - q) * 1e-6 * np.mean(geo_ref)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(terms["kcs"]), np.mean(kcs_ref), rtol=1e-5)
    np.testing.assert_allclose(float(terms["geo"]), np.mean(geo_ref), rtol=1e-4)
  # "mean" divides the l1 terms by their entry counts (the reduction before issue 20).
  _, terms = ms.refinement_loss(jnp.asarray(pred, jnp.float32), jnp.asarray(target, jnp.float32),
                                jnp.float32(1.0), 1e-2, 1e-6, reduction="mean")
  kcs_mean = np.mean(np.abs(np_kcs(pred) - np_kcs(target)), axis=(1, 2))
  np.testing.assert_allclose(float(terms["kcs"]), np.mean(kcs_mean), rtol=1e-5)


def test_refinement_terms_share_the_gradient_in_metres():
  """Issue 20 finding 2: with r_kcs = 1e-2, r_geo = 1e-6 on scale-normalised poses and mean
  reductions, KCS carried ~0.5% of MSE's gradient and GEO ~3e-7 (D1-D3 = D0 with more steps).
  In metres with sums (the default), near the target (0.05 bone lengths of noise) KCS carries
  about twice MSE's gradient and GEO a few percent (measured: 2.15 and 0.023,
  experiments/kinematic_gradients.py)."""
  from handjax.hand import correction  # pylint: disable=g-import-not-at-top
  from handjax.hand import lifting  # pylint: disable=g-import-not-at-top
  template = jnp.asarray(correction.TEMPLATE_POSE, jnp.float32)
  s = float(lifting.reference_bone_length(template))
  target = (template - template[:1])[None] / s
  pred = target + jnp.asarray(np.random.default_rng(0).normal(0, 0.05, (1, 21, 3)), jnp.float32)
  config = tiny_config()
  unit = ms.refinement_unit_scale({"scale": jnp.full((1,), s), "image": jnp.zeros((1, 2, 2, 3))},
                                  config)
  np.testing.assert_allclose(unit, [s])  # metres by default

  def grad_norm(term, weight):
    terms = lambda p: ms.refinement_loss(p, target, jnp.float32(1.0), 0.0, 0.0, unit_scale=unit,
                                         reduction=config.refine.reduction)[1]
    return float(jnp.linalg.norm(jax.grad(lambda p: weight * terms(p)[term])(pred)))

  mse = grad_norm("mse", 1.0)
  assert 1.0 < grad_norm("kcs", config.refine.r_kcs) / mse < 4.0
  assert 0.01 < grad_norm("geo", config.refine.r_geo) / mse < 0.05


def test_refinement_q_alternates_between_kcs_and_geo():
  config = tiny_config(refine={"alternate_every": 2})
  qs = [float(ms.kcs_weight_q(jnp.int32(s), config)) for s in range(6, 10)]
  assert qs == [1.0, 1.0, 0.0, 0.0]  # refinement starts at step 6
  assert float(ms.kcs_weight_q(jnp.int32(9), tiny_config(refine={"mode": "kcs"}))) == 1.0
  assert float(ms.kcs_weight_q(jnp.int32(6), tiny_config(refine={"mode": "geo"}))) == 0.0


def test_refine_phase_loss_and_gradient_follow_the_rgb_path():
  config = tiny_config(refine={"mode": "geo", "r_geo": 0.5})
  method, params, state = build(config)
  batch = make_batch(9)
  unit = batch["scale"][:, None, None]  # Eq. 17 in metres
  ph = phase(method, "refine")
  assert trainable(ph, params) == {"encoder_rgb", "mapper_rgb", "decoder_rgb"}
  loss, (terms, _) = ph.loss(params, state, batch, jax.random.key(1), jnp.int32(7))
  nets, q_pose, _, _ = _encoders(config, params, state, batch, train=True)
  t_rgb = _map(nets, params, state, q_pose, True)
  pred = _decode(nets, "decoder_rgb", params, state, np_sample(jax.random.key(1), t_rgb))
  pred, target = pred * unit, _target(batch) * unit
  s_pred, valid = np_joint_line(pred.astype(np.float64))
  s_target, _ = np_joint_line(target.astype(np.float64))
  geo = np.mean([np.sum(np.abs(s_pred[b] - s_target[b])[valid]) for b in range(B)])
  np.testing.assert_allclose(float(loss), np.mean(sse(pred, target)) + 0.5 * geo, rtol=1e-4)
  assert float(terms["q"]) == 0.0


def test_predict_is_root_relative_metres():
  config = tiny_config()
  method, params, state = build(config)
  batch = make_batch(10)
  out = method.predict(params, state, batch)
  nets, q_pose, _, _ = _encoders(config, params, state, batch, train=False)
  t_rgb = _map(nets, params, state, q_pose, False)
  dec = _decode(nets, "decoder_rgb", params, state, t_rgb.mean, train=False)
  dec = dec * batch["scale"][:, None, None]
  np.testing.assert_allclose(np.asarray(out["pose3d"]), dec - dec[:, :1], atol=1e-6)


def test_stage_bounds_and_running_later_stages_alone():
  config = tiny_config()
  st = config.stages
  lengths = [st.disentangle, st.align_frozen, st.align_finetune, st.refine]
  assert ms.stage_bounds(config) == tuple(int(x) for x in np.cumsum(lengths))
  # Stages 2-4 alone need the stage-1 checkpoint (config.init_from); without it, an error.
  config.stages.disentangle = 0
  config.num_steps = sum(lengths[1:])
  with pytest.raises(ValueError, match="disentangle > 0 .*init_from"):
    ms.stage_bounds(config)
  config.init_from = "/some/stage1/workdir"
  assert ms.stage_bounds(config) == tuple(int(x) for x in np.cumsum([0] + lengths[1:]))
  names = [p.name for p in method_lib.get_method(config).phases if p.runs_at(0)]
  assert names and not any("disentangle" in n for n in names)
  config.num_steps += 1
  with pytest.raises(ValueError, match="must equal the sum"):
    ms.stage_bounds(config)
