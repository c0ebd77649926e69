"""Tests of the cross-modal VAE (Spurr et al. CVPR 2018): losses by hand, Alg. 1 phases, masks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handjax.losses.gaussian import Gaussian
from handjax.methods import common
from handjax.methods import crossmodal_vae as cv
from handjax.train import method as method_lib
from handjax.train import sharding as sharding_lib
from handjax.train import state as state_lib

B, S = 4, 32


def make_batch(seed: int = 0, labelled: bool = True) -> dict[str, np.ndarray]:
  r = np.random.default_rng(seed)
  pose = r.normal(0.0, 0.03, (B, 21, 3)) + np.array([0.05, -0.02, 0.5])
  scale = r.uniform(0.02, 0.04, B)
  depth = np.where(r.uniform(size=(B, S, S, 1)) < 0.5, r.uniform(0.4, 0.6, (B, S, S, 1)), 0.0)
  batch = {
      "image": r.uniform(-0.5, 0.5, (B, S, S, 3)), "depth": depth,
      "uv": r.uniform(0, S, (B, 21, 2)), "pose3d": pose, "scale": scale,
      "hand_side": r.integers(0, 2, B).astype(np.int32),
  }
  batch = {k: (v if v.dtype == np.int32 else v.astype(np.float32)) for k, v in batch.items()}
  batch["has_pose3d"] = np.full(B, labelled)
  batch["has_scale"] = np.full(B, labelled)
  batch["has_uv"] = np.ones(B, bool)
  batch["has_depth"] = np.ones(B, bool)
  if not labelled:
    batch["pose3d"] = np.zeros_like(batch["pose3d"])
    batch["scale"] = np.zeros_like(batch["scale"])
  return batch


def tiny_config(**overrides):
  c = cv.default_config()
  c.data.image_size = S
  c.latent_dim = 6
  c.model.resnet_width = 1 / 16
  c.model.resnet_stage_sizes = (1, 1, 1, 1)
  c.model.mlp_hidden = (16, 16)
  c.model.deconv_channels = (8, 8, 8)
  c.model.deconv_base_channels = 8
  c.num_steps = 20
  c.optimizer.learning_rate = 3e-3
  for key, value in overrides.items():
    if isinstance(value, dict):
      for k, v in value.items():
        c[key][k] = v
    else:
      c[key] = value
  return c


def build(config, seed: int = 0):
  method = method_lib.get_method(config)
  params, state = method.init(jax.random.key(seed), make_batch())
  return method, params, state


def test_variant_pairs_follow_section_4():
  assert cv.variant_pairs("image", 1) == [("image", "pose3d")]
  assert cv.variant_pairs("uv", 2) == [("uv", "pose3d"), ("pose3d", "pose3d")]
  assert cv.variant_pairs("depth", 3) == [("depth", "pose3d"), ("depth", "depth")]
  assert cv.variant_pairs("image", 4) == [("image", "pose3d"), ("image", "image"),
                                          ("pose3d", "pose3d")]
  with pytest.raises(ValueError, match="variant must be"):
    cv.variant_pairs("image", 5)
  with pytest.raises(ValueError, match="input_modality"):
    cv.variant_pairs("pose3d", 1)
  with pytest.raises(ValueError, match="must include"):
    cv.config_pairs(tiny_config(pairs="image>image"))
  with pytest.raises(ValueError, match="must include"):
    cv.config_pairs(tiny_config(pairs="uv>pose3d,pose3d>pose3d"))
  # Fig. 8(b): every modality trained on its own; predict still has both networks.
  assert cv.config_pairs(tiny_config(pairs="image>image,pose3d>pose3d")) == [
      ("image", "image"), ("pose3d", "pose3d")]
  assert cv.config_pairs(tiny_config(pairs="image>pose3d,uv>uv")) == [("image", "pose3d"),
                                                                      ("uv", "uv")]


def test_phases_alternate_over_pairs():
  method = method_lib.get_method(tiny_config(variant=4))
  assert [p.name for p in method.phases] == ["image_to_pose3d", "image_to_image",
                                             "pose3d_to_pose3d"]
  for step in range(7):
    assert [p.runs_at(step) for p in method.phases] == [step % 3 == i for i in range(3)]


def _hand_elbo(rng, posterior: Gaussian, prediction_fn, target, mask, beta):
  """-ELBO by hand in numpy: one sample, sum of squares, closed-form KL, masked means."""
  z = posterior.mean + jnp.exp(0.5 * posterior.logvar) * jax.random.normal(
      rng, posterior.mean.shape)
  pred = np.asarray(prediction_fn(z), np.float64)
  sse = ((pred - np.asarray(target, np.float64)) ** 2).reshape(B, -1).sum(-1)
  mean, logvar = np.asarray(posterior.mean, np.float64), np.asarray(posterior.logvar, np.float64)
  kl = 0.5 * (np.exp(logvar) + mean**2 - 1.0 - logvar).sum(-1)
  m = np.asarray(mask, bool)
  return (sse[m].sum() + beta * kl[m].sum()) / max(1, m.sum())


@pytest.mark.parametrize("pair", [("image", "pose3d"), ("image", "image"), ("pose3d", "pose3d"),
                                  ("uv", "pose3d"), ("depth", "depth")])
def test_pair_loss_is_the_cross_modal_elbo_by_hand(pair):
  enc, dec = pair
  if enc == "pose3d":
    pairs, input_modality = "image>pose3d,pose3d>pose3d", "image"
  elif dec == "pose3d":
    pairs, input_modality = f"{enc}>pose3d", enc
  else:
    pairs, input_modality = f"{enc}>pose3d,{enc}>{dec}", enc
  config = tiny_config(pairs=pairs, input_modality=input_modality, beta=0.7)
  method, params, state = build(config)
  phase = next(p for p in method.phases if p.name == f"{enc}_to_{dec}")
  batch = make_batch(1)
  batch["has_pose3d"][2] = False  # one unlabelled example: dropped where the pose is needed
  rng = jax.random.key(7)
  loss, (terms, new_state) = jax.jit(phase.loss)(params, state, batch, rng, jnp.int32(0))

  # Independent targets: root-relative pose over the ground-truth scale, uv in [-1, 1], depth
  # centred on the mean valid depth.
  pose = batch["pose3d"] - batch["pose3d"][:, :1]
  pose = pose / batch["scale"][:, None, None]
  d = batch["depth"].astype(np.float64)
  valid = d > 0
  centre = (d * valid).sum((1, 2, 3), keepdims=True) / valid.sum((1, 2, 3), keepdims=True)
  values = {"image": batch["image"], "pose3d": pose, "uv": (batch["uv"] - S / 2) / (S / 2),
            "depth": np.where(valid, (d - centre) / config.depth_unit, 0.0)}
  onehot = np.eye(2, dtype=np.float32)[batch["hand_side"]]
  p = params["params"]
  stats = state.get("batch_stats", {})
  enc_module, dec_module = cv.build_encoder(enc, config), cv.build_decoder(dec, config)
  enc_vars = {"params": p[f"encoder_{enc}"]}
  if f"encoder_{enc}" in stats:
    enc_vars["batch_stats"] = stats[f"encoder_{enc}"]
    apply_enc = lambda v, x, e: enc_module.apply(v, x, True, e, mutable=["batch_stats"])
    posterior, _ = jax.jit(apply_enc)(enc_vars, jnp.asarray(values[enc], jnp.float32), onehot)
  else:
    posterior = enc_module.apply(enc_vars, jnp.asarray(values[enc], jnp.float32), onehot)
  dec_vars = {"params": p[f"decoder_{dec}"]}
  if f"decoder_{dec}" in stats:
    dec_vars["batch_stats"] = stats[f"decoder_{dec}"]
    decode = jax.jit(lambda z: dec_module.apply(dec_vars, z, True, mutable=["batch_stats"])[0])
  else:
    decode = lambda z: dec_module.apply(dec_vars, z)
  needs_pose = "pose3d" in pair
  mask = batch["has_pose3d"] if needs_pose else np.ones(B, bool)
  expected = _hand_elbo(rng, posterior, decode, values[dec], mask, beta=0.7)
  np.testing.assert_allclose(float(loss), expected, rtol=2e-5)
  np.testing.assert_allclose(float(terms["loss"]), expected, rtol=2e-5)
  # Only the pair's BatchNorm statistics may change.
  for name, st in stats.items():
    same = jax.tree.all(jax.tree.map(np.array_equal, st, new_state["batch_stats"][name]))
    assert same == (name not in (f"encoder_{enc}", f"decoder_{dec}")), name


def test_alg1_phase_step_updates_only_the_active_pair():
  # The generic trainer's compiled phase step on MLP pairs (cheap to compile); that only the active
  # pair's BatchNorm statistics change is checked in test_pair_loss_is_the_cross_modal_elbo_by_hand.
  config = tiny_config(input_modality="uv", pairs="uv>pose3d,uv>uv,pose3d>pose3d")
  method = method_lib.get_method(config)
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  batch = sharding_lib.global_batch(make_batch(), mesh)
  state, shardings = state_lib.create_train_state(method, 0, batch, mesh)
  before = jax.device_get(state)
  step = state_lib.make_phase_step(method, 1, shardings, mesh)  # uv_to_uv
  state, metrics = step(state, batch, True)
  after = jax.device_get(state)
  assert np.isfinite(metrics["uv_to_uv/loss"]) and metrics["uv_to_uv/grad_norm"] > 0
  assert sorted(before.params["params"]) == ["decoder_pose3d", "decoder_uv", "encoder_pose3d",
                                             "encoder_uv"]
  for name in before.params["params"]:
    same = jax.tree.all(jax.tree.map(np.array_equal, before.params["params"][name],
                                     after.params["params"][name]))
    assert same == (name not in ("encoder_uv", "decoder_uv")), name


def test_semi_supervised_unlabelled_batch_trains_only_the_input_pair():
  # Sec. 4.6 with Var. 3: the i -> i pair trains on unlabelled examples, i -> 3D does not (the
  # 2D input keeps this fast; the image pair uses the same masks).
  method, params, state = build(tiny_config(input_modality="uv", variant=3))
  batch = make_batch(2, labelled=False)  # zero poses and scales, as the pipeline gives them
  rng = jax.random.key(1)
  for phase in method.phases:
    (loss, (terms, _)), grads = jax.value_and_grad(phase.loss, has_aux=True)(
        params, state, batch, rng, jnp.int32(0))
    norm = float(optax.tree.norm(grads))
    assert np.isfinite(float(loss)) and np.isfinite(norm)
    if phase.name == "uv_to_pose3d":
      assert float(loss) == 0.0 and norm == 0.0
    else:
      assert float(loss) > 0.0 and norm > 0.0


def test_predict_undoes_scale_and_is_root_relative():
  config = tiny_config()
  method, params, state = build(config)
  batch = make_batch(3)
  out = method.predict(params, state, batch)
  doubled = dict(batch, scale=2.0 * batch["scale"])
  out2 = method.predict(params, state, doubled)
  np.testing.assert_allclose(np.asarray(out2["pose3d"]), 2.0 * np.asarray(out["pose3d"]),
                             rtol=1e-5, atol=1e-8)
  np.testing.assert_array_equal(np.asarray(out["pose3d"])[:, 0], 0.0)
  # By hand: decoder(posterior mean) * scale - predicted root.
  dec = cv.build_decoder("pose3d", config)
  raw = dec.apply({"params": params["params"]["decoder_pose3d"]}, out["latent_mean"])
  expected = np.asarray(raw) * batch["scale"][:, None, None]
  expected = expected - expected[:, :1]
  np.testing.assert_allclose(np.asarray(out["pose3d"]), expected, rtol=1e-5, atol=1e-7)
  # A photo: no scale, no hand side -> fallback scale, right hand.
  photo = {"image": batch["image"]}
  ref = dict(batch, scale=np.full(B, config.fallback_scale, np.float32),
             hand_side=np.ones(B, np.int32))
  np.testing.assert_allclose(np.asarray(method.predict(params, state, photo)["pose3d"]),
                             np.asarray(method.predict(params, state, ref)["pose3d"]), rtol=1e-6)
  with pytest.raises(KeyError, match="scale"):
    common.safe_scale({"image": batch["image"]})


def test_predict_without_invariances_uses_the_pose_unit():
  config = tiny_config(invariances={"translation": False, "scale": False, "handedness": False})
  method, params, state = build(config)
  batch = make_batch(3)
  out = method.predict(params, state, {k: v for k, v in batch.items() if k != "scale"})
  dec = cv.build_decoder("pose3d", config)
  raw = np.asarray(dec.apply({"params": params["params"]["decoder_pose3d"]},
                             out["latent_mean"])) * config.pose_unit
  np.testing.assert_allclose(np.asarray(out["pose3d"]), raw - raw[:, :1], rtol=1e-5, atol=1e-7)
  # Absolute target in pose units: (P) / unit, not root-relative.
  target = cv.modality_value("pose3d", batch, config)
  np.testing.assert_allclose(np.asarray(target), batch["pose3d"] / config.pose_unit, rtol=1e-6)


def test_handedness_flag_reaches_the_encoder():
  for flag in (True, False):
    config = tiny_config(input_modality="uv",
                         invariances={"translation": True, "scale": True, "handedness": flag})
    method, params, state = build(config)
    batch = make_batch(4)
    flipped = dict(batch, hand_side=1 - batch["hand_side"])
    a = np.asarray(method.predict(params, state, batch)["latent_mean"])
    b = np.asarray(method.predict(params, state, flipped)["latent_mean"])
    assert (np.abs(a - b).max() > 1e-6) == flag


@pytest.mark.parametrize("input_modality,variant", [
    pytest.param("image", 3, marks=pytest.mark.slow), ("uv", 2), ("uv", 4)])
def test_alternating_training_reduces_every_pair_loss(input_modality, variant):
  config = tiny_config(input_modality=input_modality, variant=variant, beta=0.01)
  method, params, state = build(config)
  batch = make_batch(5)
  eval_rng = jax.random.key(3)
  opt = {p.name: p.masked_optimizer(params) for p in method.phases}
  opt_state = {n: o.init(params) for n, o in opt.items()}

  def make_step(phase):
    @jax.jit
    def step(params, state, opt_state, rng):
      (_, (_, new_state)), grads = jax.value_and_grad(phase.loss, has_aux=True)(
          params, state, batch, rng, jnp.int32(0))
      updates, opt_state = opt[phase.name].update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_state, opt_state
    return step

  steps = {p.name: make_step(p) for p in method.phases}
  start = {p.name: float(p.loss(params, state, batch, eval_rng, jnp.int32(0))[0])
           for p in method.phases}
  for s in range(12 * len(method.phases)):
    phase = next(p for p in method.phases if p.runs_at(s))
    params, state, opt_state[phase.name] = steps[phase.name](
        params, state, opt_state[phase.name], jax.random.key(100 + s))
  for p in method.phases:
    end = float(p.loss(params, state, batch, eval_rng, jnp.int32(0))[0])
    assert end < 0.9 * start[p.name], (p.name, start[p.name], end)


def test_normalized_depth_and_uv_by_hand():
  depth = np.zeros((1, 2, 2, 1), np.float32)
  depth[0, 0, 0, 0], depth[0, 1, 1, 0] = 0.5, 0.6
  out = np.asarray(common.normalized_depth(depth, 0.1))
  np.testing.assert_allclose(out[0, :, :, 0], [[-0.5, 0.0], [0.0, 0.5]], atol=1e-6)
  # No valid pixel: all zeros, finite.
  np.testing.assert_array_equal(np.asarray(common.normalized_depth(np.zeros((1, 2, 2, 1)), 0.1)),
                                0.0)
  uv = np.array([[[0.0, 32.0], [16.0, 8.0]]], np.float32)
  np.testing.assert_allclose(np.asarray(common.normalized_uv(uv, 32)), [[[-1, 1], [0, -0.5]]])


def test_mean_pose_baseline_by_hand():
  r = np.random.default_rng(0)
  train = [{"pose3d": r.normal(0, 0.05, (3, 21, 3)), "has_pose3d": np.array([True, False, True])}
           for _ in range(2)]
  test = [{"pose3d": r.normal(0, 0.05, (2, 21, 3)), "visible": np.ones((2, 21), bool)}]
  test[0]["visible"][1, 5] = False
  out = common.mean_pose_baseline(train, test, root_joint=0)
  labelled = np.concatenate([b["pose3d"][b["has_pose3d"]] for b in train])
  mean = (labelled - labelled[:, :1]).mean(axis=0)
  gt = test[0]["pose3d"] - test[0]["pose3d"][:, :1]
  errors = np.linalg.norm(gt - mean, axis=-1)
  np.testing.assert_allclose(out["mean_pose"], mean, rtol=1e-12)
  np.testing.assert_allclose(out["mean_epe_mm"], 1000 * errors[test[0]["visible"]].mean(),
                             rtol=1e-10)
  assert out["num_train"] == 4 and out["num_test"] == 2
  with pytest.raises(ValueError, match="no labelled pose"):
    common.mean_pose_baseline([{"pose3d": np.zeros((1, 21, 3)), "has_pose3d": np.zeros(1, bool)}],
                              test)


def test_kl_warmup_ramps_beta_linearly():
  fixed = tiny_config(beta=0.1)
  assert [float(cv.kl_weight(fixed, s)) for s in (0, 50, 10_000)] == pytest.approx([0.1] * 3)
  ramp = tiny_config(beta=0.1, beta_warmup_steps=200)
  assert [float(cv.kl_weight(ramp, s)) for s in (0, 50, 200, 10_000)] == pytest.approx(
      [0.0, 0.025, 0.1, 0.1])
  # Under jit the step is traced: the same values.
  assert float(jax.jit(lambda s: cv.kl_weight(ramp, s))(jnp.int32(100))) == pytest.approx(0.05)
