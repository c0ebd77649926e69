"""Tests of the disentangled VAE (Yang dissertation ch. 4): losses by hand, Alg. 4.1/4.2 phases,
block independence of the factor decoders, masks for semi-/weak supervision, synthesis helpers."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handjax.methods import common
from handjax.methods import dvae
from handjax.train import method as method_lib

B, S, D1, D2 = 4, 32, 4, 3


def rotation(r: np.random.Generator) -> np.ndarray:
  q, _ = np.linalg.qr(r.normal(size=(3, 3)))
  return q * np.sign(np.linalg.det(q))


def make_batch(seed: int = 0) -> dict[str, np.ndarray]:
  r = np.random.default_rng(seed)
  batch = {
      "image": r.uniform(-0.5, 0.5, (B, S, S, 3)),
      "content_image": r.uniform(-0.5, 0.5, (B, S, S, 3)),
      "pose3d": r.normal(0.0, 0.03, (B, 21, 3)) + np.array([0.05, -0.02, 0.5]),
      "canonical_pose": r.normal(0.0, 0.5, (B, 21, 3)),
      "viewpoint": np.stack([rotation(r) for _ in range(B)]),
      "scale": r.uniform(0.02, 0.04, B),
  }
  batch = {k: v.astype(np.float32) for k, v in batch.items()}
  for key in ("pose3d", "canonical_pose", "viewpoint", "scale"):
    batch[f"has_{key}"] = np.ones(B, bool)
  return batch


def tiny_config(application: str = "pose", **overrides):
  c = dvae.default_config(application)
  c.data.image_size = S
  c.factor_dims = (D1, D2)
  c.model.resnet_width = 1 / 16
  c.model.resnet_stage_sizes = (1, 1, 1, 1)
  c.model.mlp_hidden = (16, 16)
  c.model.deconv_channels = (8, 8, 8)
  c.model.deconv_base_channels = 8
  c.num_steps, c.disentangle_steps = 10, 6
  for key, value in overrides.items():
    c[key] = value
  return c


def fast_init(method, batch, seed: int = 0):
  """Random variables with the shapes of ``method.init`` (traced, never compiled: compiling the
  ResNet initialiser costs ~10 s of CPU). Kernels ~ N(0, 1/fan_in), biases 0, BatchNorm scale 1,
  running mean 0 and variance 1; the tests compare losses with hand computations at any weights."""
  shapes = jax.eval_shape(method.init, jax.random.key(0), batch)
  r = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(getattr(path[-1], "key", path[-1]))
    if name in ("kernel", "embedding"):
      fan_in = int(np.prod(leaf.shape[:-1]))
      return jnp.asarray(r.normal(0.0, 1.0 / np.sqrt(fan_in), leaf.shape), leaf.dtype)
    if name in ("scale", "var"):
      return jnp.ones(leaf.shape, leaf.dtype)
    return jnp.zeros(leaf.shape, leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, shapes)


def build(config, batch=None):
  method = method_lib.get_method(config)
  params, state = fast_init(method, make_batch() if batch is None else batch)
  return method, params, state


def np_kl(q) -> np.ndarray:
  """KL(N(mu, diag exp(lv)) || N(0, I)) per example, closed form in float64."""
  mu, lv = np.asarray(q.mean, np.float64), np.asarray(q.logvar, np.float64)
  return 0.5 * np.sum(mu**2 + np.exp(lv) - 1.0 - lv, axis=-1)


def np_sample(key, q) -> np.ndarray:
  eps = np.asarray(jax.random.normal(key, q.mean.shape))
  return np.asarray(q.mean) + np.exp(0.5 * np.asarray(q.logvar)) * eps


def sse(pred, target) -> np.ndarray:
  d = np.asarray(pred, np.float64) - np.asarray(target, np.float64)
  return np.sum(d.reshape(d.shape[0], -1) ** 2, axis=-1)


def masked(values, mask) -> float:
  mask = np.asarray(mask, bool)
  return float(np.sum(values[mask]) / max(1, mask.sum()))


def test_phases_follow_algorithms_4_1_and_4_2():
  method = method_lib.get_method(tiny_config())
  assert [(p.name, p.start, p.stop) for p in method.phases] == [("disentangle", 0, 6),
                                                               ("embed", 6, None)]
  method = method_lib.get_method(tiny_config("synthesis_u", inner_steps=3))
  runs = {p.name: [s for s in range(10) if p.runs_at(s)] for p in method.phases}
  # One disentangling update, then inner_steps factor-pair updates (Alg. 4.2 l. 2-13), then T3.
  assert runs == {"disentangle": [0, 3], "factor_pair": [0, 1, 2, 3, 4, 5],
                  "embed": [6, 7, 8, 9]}


def test_disentangle_loss_is_eq_4_2_by_hand():
  config = tiny_config(beta=0.7)
  method, params, state = build(config)
  batch = make_batch(1)
  batch["has_viewpoint"] = np.array([True, False, True, True])  # drops example 1 (no factor input)
  rng = jax.random.key(3)
  loss, (terms, _) = method.phases[0].loss(params, state, batch, rng, jnp.int32(0))
  nets = dvae.build_networks(config)
  factors, _ = dvae.encode_factors(config, params, state, batch, train=True, nets=nets)
  keys = jax.random.split(rng, 2)  # sorted names: canonical_pose, viewpoint
  z = {"canonical_pose": np_sample(keys[0], factors["canonical_pose"]),
       "viewpoint": np_sample(keys[1], factors["viewpoint"])}
  preds = dvae.decode_blocks(config, params, state, {k: jnp.asarray(v) for k, v in z.items()},
                             train=True, nets=nets)
  mask = batch["has_viewpoint"]
  target = common.pose_target(batch, root_joint=0, translation=True, scale=True, pose_unit=0.035)
  expected = (1.0 * masked(sse(preds["pose3d"], target), mask)
              + 0.01 * masked(sse(preds["canonical_pose"], batch["canonical_pose"]), mask)
              + 0.01 * masked(sse(preds["viewpoint"], batch["viewpoint"]), mask)
              + 0.7 * (masked(np_kl(factors["canonical_pose"]), mask)
                       + masked(np_kl(factors["viewpoint"]), mask)))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)
  np.testing.assert_allclose(float(terms["loss"]), expected, rtol=1e-4)


def test_embedding_loss_with_weak_labels_is_eq_4_8_by_hand():
  # Weakly supervised (Fig. 4.9): examples 2, 3 have only a viewpoint label.
  config = tiny_config(embed_beta=0.01)
  method, params, state = build(config)
  batch = make_batch(2)
  weak = np.array([True, True, False, False])
  for key in ("pose3d", "canonical_pose", "scale"):
    batch[f"has_{key}"] = weak
  rng = jax.random.key(4)
  loss, _ = method.phases[1].loss(params, state, batch, rng, jnp.int32(6))
  nets = dvae.build_networks(config)
  posterior, _ = common.apply_module(nets["encoder_embed"], "encoder_embed", params, state,
                                     jnp.asarray(batch["image"]), train=True)
  z = np_sample(rng, posterior)
  blocks = {"canonical_pose": jnp.asarray(z[:, :D1]), "viewpoint": jnp.asarray(z[:, D1:])}
  preds = dvae.decode_blocks(config, params, state, blocks, train=False, nets=nets)
  target = common.pose_target(batch, root_joint=0, translation=True, scale=True, pose_unit=0.035)
  expected = (masked(sse(preds["pose3d"], target), weak)
              + 0.01 * masked(sse(preds["canonical_pose"], batch["canonical_pose"]), weak)
              + 0.01 * np.mean(sse(preds["viewpoint"], batch["viewpoint"]))
              + 0.01 * np.mean(np_kl(posterior)))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_factor_pair_loss_is_the_y1_elbo_by_hand():
  config = tiny_config("synthesis_u", beta=2.0)
  method, params, state = build(config)
  batch = make_batch(5)
  rng = jax.random.key(6)
  loss, _ = method.phases[1].loss(params, state, batch, rng, jnp.int32(0))
  nets = dvae.build_networks(config)
  q, _ = common.apply_module(nets["encoder_pose3d"], "encoder_pose3d", params, state,
                             dvae.modality_value("pose3d", batch, config), train=True)
  z = np_sample(jax.random.split(rng)[0], q)
  pred, _ = common.apply_module(nets["decoder_pose3d"], "decoder_pose3d", params, state,
                                jnp.asarray(z), train=True)
  target = dvae.modality_value("pose3d", batch, config)
  # The synthesis models' pose term is in mm^2 (issue 20, finding 7): (1000 x 0.035)^2 = 1225 x
  # the sum of squares in 35-mm units.
  assert config.pose_recon_unit == "millimetres"
  expected = 0.01 * 1225.0 * np.mean(sse(pred, target)) + 2.0 * np.mean(np_kl(q))
  np.testing.assert_allclose(float(loss), expected, rtol=1e-4)


def test_embedding_step_leaves_decoders_bit_identical():
  # One step of the embed phase as the trainer takes it (gradient of the phase loss, the phase's
  # masked optimiser, new batch statistics from the loss), without the trainer's copy-through of
  # frozen leaves: the mask and the eval-mode decoders alone must keep them bit-identical.
  method, params, state = build(tiny_config())
  phase = method.phases[1]
  assert phase.name == "embed"
  grad_fn = jax.jit(jax.value_and_grad(phase.loss, has_aux=True))
  (loss, (_, new_state)), grads = grad_fn(params, state, make_batch(), jax.random.key(0),
                                          jnp.int32(6))
  opt = phase.masked_optimizer(params)
  updates, _ = opt.update(grads, opt.init(params), params)
  new_params = optax.apply_updates(params, updates)
  assert np.isfinite(float(loss))
  for before, after in ((params["params"], new_params["params"]),
                        (state["batch_stats"], new_state["batch_stats"])):
    for name in before:
      same = jax.tree.all(jax.tree.map(np.array_equal, before[name], after[name]))
      assert same == (name != "encoder_embed"), name


@pytest.mark.parametrize("application,other", [("pose", "viewpoint"), ("synthesis_u", "u")])
def test_factor_decoder_reads_only_its_block(application, other):
  config = tiny_config(application)
  _, params, state = build(config)
  r = np.random.default_rng(7)
  blocks = {name: jnp.asarray(r.normal(size=(B, size)), jnp.float32)
            for name, size in dvae.factor_blocks(config)}
  first = config.factor_keys[0]
  out = dvae.decode_blocks(config, params, state, blocks)
  perturbed = dict(blocks, **{other: blocks[other] + 3.0})
  out2 = dvae.decode_blocks(config, params, state, perturbed)
  np.testing.assert_array_equal(np.asarray(out[first]), np.asarray(out2[first]))
  # The whole-z decoder does see the other block.
  assert np.max(np.abs(np.asarray(out[config.whole_target] - out2[config.whole_target]))) > 1e-4


def test_unlabelled_examples_give_zero_disentangle_loss_and_gradient():
  config = tiny_config()
  method, params, state = build(config)
  batch = make_batch(8)
  for key in ("pose3d", "canonical_pose", "viewpoint", "scale"):
    batch[key] = np.zeros_like(batch[key])
    batch[f"has_{key}"] = np.zeros(B, bool)
  (loss, _), grads = jax.jit(jax.value_and_grad(method.phases[0].loss, has_aux=True))(
      params, state, batch, jax.random.key(0), jnp.int32(0))
  assert float(loss) == 0.0
  assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(grads))


def test_predict_returns_rotation_and_root_relative_metres():
  config = tiny_config()
  method, params, state = build(config)
  batch = make_batch(9)
  out = method.predict(params, state, batch)
  r = np.asarray(out["viewpoint"], np.float64)
  np.testing.assert_allclose(np.einsum("bji,bjk->bik", r, r), np.broadcast_to(np.eye(3), r.shape),
                             atol=1e-5)
  np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)
  np.testing.assert_allclose(np.asarray(out["pose3d"][:, 0]), 0.0, atol=1e-7)
  # pose3d = decoded normalised pose x ground-truth scale, made root-relative.
  nets = dvae.build_networks(config)
  post, _ = common.apply_module(nets["encoder_embed"], "encoder_embed", params, state,
                                jnp.asarray(batch["image"]), train=False)
  dec, _ = common.apply_module(nets["decoder_pose3d"], "decoder_pose3d", params, state,
                               post.mean, train=False)
  expected = np.asarray(dec) * batch["scale"][:, None, None]
  np.testing.assert_allclose(np.asarray(out["pose3d"]), expected - expected[:, :1], atol=1e-6)


def test_nearest_rotation_recovers_the_rotation_of_a_stretched_matrix():
  r = np.random.default_rng(10)
  rots = np.stack([rotation(r) for _ in range(3)])
  stretched = rots @ np.diag([1.3, 0.7, 0.2])  # R S with S symmetric positive: polar factor R
  np.testing.assert_allclose(np.asarray(dvae.nearest_rotation(jnp.asarray(stretched))), rots,
                             atol=1e-5)
  reflected = rots @ np.diag([1.0, 1.0, -0.1])  # det < 0: the closest rotation flips the smallest
  got = np.asarray(dvae.nearest_rotation(jnp.asarray(reflected)))
  np.testing.assert_allclose(got, rots, atol=1e-5)


def test_factor_errors_by_hand():
  r = np.random.default_rng(11)
  batch = make_batch(12)
  pred_pose = r.normal(0, 0.03, (B, 21, 3)).astype(np.float32)
  angle = np.deg2rad(30.0)
  rz = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
  pred = {"pose3d": jnp.asarray(pred_pose),
          "canonical_pose": jnp.asarray(batch["canonical_pose"] + np.float32(0.1)),
          "viewpoint": jnp.asarray((batch["viewpoint"] @ rz).astype(np.float32))}
  batch["has_pose3d"] = np.array([True, True, True, False])
  out = dvae.factor_errors(pred, batch)
  rel = batch["pose3d"] - batch["pose3d"][:, :1]
  per = [np.mean([np.linalg.norm(pred_pose[b, j] - rel[b, j]) for j in range(21)])
         for b in range(3)]
  np.testing.assert_allclose(float(out["epe/pose3d"]), np.mean(per), rtol=1e-5)
  np.testing.assert_allclose(float(out["epe/canonical_pose"]), 0.1 * np.sqrt(3), rtol=1e-5)
  np.testing.assert_allclose(float(out["angle_deg/viewpoint"]), 30.0, rtol=1e-3)


def test_synthesis_helpers():
  config = tiny_config("synthesis")
  _, params, state = build(config)
  pose_batch, content_batch = make_batch(13), make_batch(14)
  image = dvae.synthesize(config, params, state, pose_batch, content_batch)
  pose_q, _ = dvae.encode_factors(config, params, state, pose_batch)
  content_q, _ = dvae.encode_factors(config, params, state, content_batch)
  blocks = {"pose3d": pose_q["pose3d"].mean, "content_image": content_q["content_image"].mean}
  np.testing.assert_array_equal(np.asarray(image),
                                np.asarray(dvae.decode_blocks(config, params, state,
                                                              blocks)["image"]))
  walk = dvae.latent_walk(blocks["pose3d"], blocks["pose3d"] + 2.0, 5)
  assert walk.shape == (5, B, D1)
  np.testing.assert_allclose(np.asarray(walk[2] - blocks["pose3d"]), 1.0, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(walk[0]), np.asarray(blocks["pose3d"]))
  with pytest.raises(ValueError, match="num >= 2"):
    dvae.latent_walk(blocks["pose3d"], blocks["pose3d"], 1)


def test_bad_config_is_named():
  with pytest.raises(ValueError, match="factor_dims"):
    method_lib.get_method(tiny_config(factor_dims=(4,)))
  with pytest.raises(ValueError, match="disentangle_steps"):
    method_lib.get_method(tiny_config(disentangle_steps=10))
