"""Tests of the aligned latent spaces (Yang et al. ICCV 2019): Table 1 strategies, by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handjax.losses import elbo
from handjax.losses import gaussian
from handjax.losses.heatmap import heatmap_l2
from handjax.losses.pointcloud import chamfer_distance
from handjax.losses.pointcloud import earth_movers_distance
from handjax.losses.pose import pose_l2
from handjax.methods import aligned_latents as al
from handjax.train import method as method_lib

B, S, H, N = 4, 32, 8, 16
ROOT = 9  # middle MCP, the ICCV root


def make_batch(seed: int = 0, labelled: bool = True, points: bool = True) -> dict:
  r = np.random.default_rng(seed)
  pose = r.normal(0.0, 0.03, (B, 21, 3)) + np.array([0.05, -0.02, 0.5])
  batch = {
      "image": r.uniform(-0.5, 0.5, (B, S, S, 3)),
      "pose3d": pose, "scale": r.uniform(0.02, 0.04, B),
      "heatmaps": r.uniform(0.0, 1.0, (B, H, H, 21)),
      "points": r.normal(0.0, 0.03, (B, N, 3)) + np.array([0.0, 0.0, 0.5]),
  }
  batch = {k: v.astype(np.float32) for k, v in batch.items()}
  batch.update(has_pose3d=np.full(B, labelled), has_scale=np.full(B, labelled),
               has_heatmaps=np.ones(B, bool), has_points=np.full(B, points))
  if not labelled:
    batch["pose3d"] = np.zeros_like(batch["pose3d"])
    batch["scale"] = np.zeros_like(batch["scale"])
  return batch


def tiny_config(**overrides):
  c = al.default_config()
  c.data.image_size, c.data.heatmap_size, c.data.num_points = S, H, N
  c.latent_dim = 6
  c.beta_steps = 10
  c.model.resnet_width = 1 / 16
  c.model.resnet_stage_sizes = (1, 1, 1, 1)
  c.model.head_hidden = (16,)
  c.model.pointset_width = 16
  c.model.pointset_blocks = 1
  c.model.pose_hidden = (16, 16, 16)
  c.model.deconv_channels = (8, 8, 8)
  c.model.deconv_base_channels = 8
  c.model.folding_hidden = 16
  c.emd.relative_epsilon = 0.1
  c.emd.epsilon_decay = 0.5
  c.emd.num_iterations = 10
  c.num_steps = 30
  c.optimizer.learning_rate = 3e-3
  c.optimizer.lr_drop_steps = ()
  for key, value in overrides.items():
    c[key] = value
  return c


STRATEGIES = {
    "S1_R2P": dict(encoders="R", decoders="P", alignment="none"),
    "S2_R2HP": dict(encoders="R", decoders="HP", alignment="none"),
    "S2_R2CP": dict(encoders="R", decoders="CP", alignment="none"),
    "S2_R2CHP": dict(encoders="R", decoders="CHP", alignment="none"),
    "S3_RC2CHP_kl": dict(encoders="RC", decoders="CHP", alignment="kl"),
    "S4_RC2CHP_poe": dict(encoders="RC", decoders="CHP", alignment="experts", fusion="poe"),
    "S4_RC2CHP_moe": dict(encoders="RC", decoders="CHP", alignment="experts", fusion="moe"),
    "S4_RC2CHP_mopoe": dict(encoders="RC", decoders="CHP", alignment="experts", fusion="mopoe"),
}


_GRAD_FNS = {}


def grad_fn(name: str, method):
  """One compiled value_and_grad per strategy, shared by the tests (the batch is an argument)."""
  if name not in _GRAD_FNS:
    _GRAD_FNS[name] = jax.jit(jax.value_and_grad(method.phases[0].loss, has_aux=True))
  return _GRAD_FNS[name]


def build(name: str, **overrides):
  config = tiny_config(**STRATEGIES[name], **overrides)
  method = method_lib.get_method(config)
  params, state = method.init(jax.random.key(0), make_batch())
  return config, method, params, state


class Hand:
  """The strategy composed by hand from the networks and handjax.losses terms."""

  def __init__(self, config, params, state, batch):
    self.config, self.nets = config, al.build_networks(config)
    self.params, self.stats = params["params"], state.get("batch_stats", {})
    pose = batch["pose3d"] - batch["pose3d"][:, ROOT:ROOT + 1]
    cloud = batch["points"] - batch["points"].mean(axis=1, keepdims=True)
    self.cloud = jnp.asarray(cloud / config.cloud_unit)
    self.image = jnp.asarray(batch["image"])
    self.values = {"pose3d": pose / batch["scale"][:, None, None], "heatmaps": batch["heatmaps"],
                   "points": self.cloud}
    labelled = batch["has_pose3d"] & batch["has_scale"]
    self.masks = {"pose3d": labelled, "heatmaps": batch["has_heatmaps"] & labelled,
                  "points": batch["has_points"]}
    emd = lambda x, y: earth_movers_distance(x, y, relative_epsilon=0.1, epsilon_decay=0.5,
                                             num_iterations=10)
    self.recon_all = {"pose3d": pose_l2, "heatmaps": heatmap_l2,
                      "points": lambda x, y: chamfer_distance(x, y) + emd(x, y)}
    self.weights_all = {"pose3d": 1.0, "heatmaps": 0.01, "points": 1.0}

  def apply(self, name, *args):
    variables = {"params": self.params[name]}
    if name in self.stats:
      variables["batch_stats"] = self.stats[name]
      return self.nets[name].apply(variables, *args, train=True, mutable=["batch_stats"])[0]
    if name.startswith("decoder_points") or name.startswith("decoder_pose3d"):
      return self.nets[name].apply(variables, *args)
    return self.nets[name].apply(variables, *args, train=True)

  def pieces(self, targets):
    decode = lambda z: {t: self.apply(f"decoder_{t}", z) for t in targets}
    pick = lambda d: {t: d[t] for t in targets}
    return decode, pick(self.values), pick(self.recon_all), pick(self.weights_all), pick(self.masks)


TARGETS = {"P": ["pose3d"], "HP": ["pose3d", "heatmaps"], "CP": ["pose3d", "points"],
           "CHP": ["pose3d", "heatmaps", "points"]}


@pytest.mark.parametrize("name", ["S1_R2P", "S3_RC2CHP_kl", "S4_RC2CHP_poe",
                                  pytest.param("S2_R2CHP", marks=pytest.mark.slow)])
def test_strategy_loss_is_the_paper_objective(name):
  config, method, params, state = build(name)
  batch = make_batch(1)
  batch["has_pose3d"][1] = False  # weakly labelled row: only the cloud (and KL) terms see it
  batch["has_points"][3] = name == "S1_R2P"  # a row without a cloud: PoE drops that expert
  rng, step = jax.random.key(5), 4
  beta = 1e-5 * (1e-3 / 1e-5) ** (step / config.beta_steps)  # log-linear, Sec. 5

  def by_hand(params, state):
    hand = Hand(config, params, state, batch)
    decode, values, recon, weights, masks = hand.pieces(TARGETS[config.decoders])
    q_image = hand.apply("encoder_image", hand.image)
    if config.alignment == "none":
      any_target = np.logical_or.reduce([np.asarray(m) for m in masks.values()])
      return elbo.cross_modal_elbo(rng, q_image, decode, values, recon, weights, beta,
                                   target_masks=masks, example_mask=any_target)[0]
    if config.alignment == "kl":
      q_joint = hand.apply("encoder_joint", [hand.image, hand.cloud])
      return elbo.kl_alignment_objective(rng, q_joint, q_image, decode, values, recon, weights,
                                         beta, 1.0, target_masks=masks,
                                         joint_mask=batch["has_points"])[0]
    q_cloud = hand.apply("encoder_points", hand.cloud)
    return elbo.poe_alignment_objective(
        rng, {"image": q_image, "points": q_cloud}, decode, values, recon, weights, beta,
        expert_masks={"points": batch["has_points"]}, target_masks=masks)[0]

  both = jax.jit(lambda p, st: (method.phases[0].loss(p, st, batch, rng, jnp.int32(step)),
                                by_hand(p, st)))
  (loss, (terms, _)), expected = both(params, state)  # one compilation for both
  np.testing.assert_allclose(float(terms["beta"]), beta, rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)
  assert np.isfinite(float(loss))


@pytest.mark.parametrize("fusion", [pytest.param("moe", marks=pytest.mark.slow), "mopoe"])
def test_mixture_fusion_by_brute_force(fusion):
  config, method, params, state = build(f"S4_RC2CHP_{fusion}")
  batch = make_batch(2)
  batch["has_points"][0] = False
  rng = jax.random.key(3)
  both = jax.jit(lambda p, st: (method.phases[0].loss(p, st, batch, rng, jnp.int32(0)),
                                _mixture_by_hand(config, p, st, batch, rng, fusion)))
  (loss, (terms, _)), (expected, joint_terms) = both(params, state)
  for t, value in joint_terms.items():
    np.testing.assert_allclose(float(terms[f"joint/recon/{t}"]), float(value), rtol=1e-5)
  np.testing.assert_allclose(float(loss), float(expected), rtol=1e-5)


def _mixture_by_hand(config, params, state, batch, rng, fusion):
  """Unimodal ELBOs + the stratified joint term, looping over components and examples."""
  hand = Hand(config, params, state, batch)
  decode, values, recon, weights, masks = hand.pieces(TARGETS["CHP"])
  beta = 1e-5
  q = {"image": hand.apply("encoder_image", hand.image),
       "points": hand.apply("encoder_points", hand.cloud)}
  keys = jax.random.split(rng, 3)  # "image", "points", joint
  expected = 0.0
  for i, name in enumerate(["image", "points"]):
    expected += (elbo.cross_modal_elbo(
        keys[i], q[name], decode, values, recon, weights, beta, target_masks=masks,
        example_mask=None if name == "image" else batch["has_points"])[0])
  # Components: MoE = [q_image, q_points]; MoPoE = PoE over {image}, {points}, {image, points}.
  if fusion == "moe":
    components = [q["image"], q["points"]]
    valid = [np.ones(B, bool), batch["has_points"]]
  else:
    # An absent expert has zero precision in a product (its component weight is 0 anyway, but
    # the decoders' BatchNorm sees every row of the batch).
    has_points = batch["has_points"][:, None]
    components = [gaussian.product_of_experts([q["image"]]),
                  gaussian.product_of_experts([q["points"]], has_points),
                  gaussian.product_of_experts([q["image"], q["points"]],
                                              np.concatenate([np.ones_like(has_points),
                                                              has_points], axis=1))]
    valid = [np.ones(B, bool), batch["has_points"], batch["has_points"]]
  ckeys = jax.random.split(keys[2], len(components))
  joint = 0.0
  joint_terms = {}
  for t in ["heatmaps", "points", "pose3d"]:
    per_example = [0.0] * B
    for k, comp in enumerate(components):
      pred = decode(gaussian.sample(ckeys[k], comp))[t]
      target = jnp.where(jnp.reshape(masks[t], (B,) + (1,) * (values[t].ndim - 1)), values[t], 0)
      loss_k = recon[t](pred, target)
      for b in range(B):  # uniform weights over the valid components of each example
        if valid[k][b]:
          per_example[b] = per_example[b] + loss_k[b] / sum(v[b] for v in valid)
    m = np.asarray(masks[t], bool)
    joint_terms[t] = sum(per_example[b] for b in range(B) if m[b]) / max(1, m.sum())
    joint += weights[t] * joint_terms[t]
  return expected + joint, joint_terms


@pytest.mark.parametrize("name", ["S3_RC2CHP_kl", "S4_RC2CHP_poe"])
def test_predict_uses_only_the_rgb_encoder(name):
  config, method, params, state = build(name)
  batch = {k: v for k, v in make_batch(3).items() if k not in ("points", "has_points")}
  poisoned = jax.tree_util.tree_map_with_path(
      lambda path, x: x * jnp.nan if any(getattr(k, "key", None) in ("encoder_points",
                                                                      "encoder_joint")
                                         for k in path) else x, params)
  out = method.predict(poisoned, state, batch)
  assert np.all(np.isfinite(np.asarray(out["pose3d"])))
  # By hand: pose decoder(RGB posterior mean) * ground-truth scale, root-relative (middle MCP).
  hand = Hand(config, params, state, make_batch(3))
  q = hand.nets["encoder_image"].apply(
      {"params": hand.params["encoder_image"], "batch_stats": hand.stats["encoder_image"]},
      hand.image, train=False)
  raw = np.asarray(hand.nets["decoder_pose3d"].apply({"params": hand.params["decoder_pose3d"]},
                                                    q.mean)) * batch["scale"][:, None, None]
  np.testing.assert_allclose(np.asarray(out["pose3d"]), raw - raw[:, ROOT:ROOT + 1], rtol=1e-5,
                             atol=1e-7)


def test_weak_supervision_unlabelled_rows_train_only_the_cloud_parts():
  _, method, params, state = build("S4_RC2CHP_poe")
  batch = make_batch(4, labelled=False)
  (loss, (terms, _)), grads = grad_fn("S4_RC2CHP_poe", method)(
      params, state, batch, jax.random.key(0), jnp.int32(0))
  norms = {k: float(optax.tree.norm(v)) for k, v in grads["params"].items()}
  assert np.isfinite(float(loss)) and all(np.isfinite(v) for v in norms.values())
  assert norms["decoder_pose3d"] == 0.0 and norms["decoder_heatmaps"] == 0.0
  assert norms["decoder_points"] > 0 and norms["encoder_points"] > 0 and norms["encoder_image"] > 0
  assert float(terms["image/recon/pose3d"]) == 0.0 and float(terms["joint/recon/points"]) > 0


@pytest.mark.parametrize("name", [
    "S4_RC2CHP_poe",  # the default run trains S4 only: each extra strategy costs a compilation
    pytest.param("S1_R2P", marks=pytest.mark.slow),
    pytest.param("S3_RC2CHP_kl", marks=pytest.mark.slow),
    pytest.param("S2_R2HP", marks=pytest.mark.slow),
    pytest.param("S2_R2CP", marks=pytest.mark.slow),
    pytest.param("S2_R2CHP", marks=pytest.mark.slow),
    pytest.param("S4_RC2CHP_moe", marks=pytest.mark.slow),
    pytest.param("S4_RC2CHP_mopoe", marks=pytest.mark.slow)])
def test_a_few_steps_reduce_the_loss(name):
  _, method, params, state = build(name)
  phase = method.phases[0]
  batch = make_batch(6)
  opt = phase.masked_optimizer(params)
  opt_state = opt.init(params)
  update = jax.jit(opt.update)
  losses = []
  for s in range(15):
    (loss, (_, state)), grads = grad_fn(name, method)(params, state, batch, jax.random.key(s),
                                                      jnp.int32(0))
    updates, opt_state = update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    losses.append(float(loss))
  assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses


def test_strategy_validation_names_the_problem():
  for bad, match in [(dict(encoders="R", decoders="CHP", alignment="kl"), "needs encoders 'RC'"),
                     (dict(encoders="RC", decoders="CHP", alignment="none"), "need alignment"),
                     (dict(encoders="R", decoders="CH", alignment="none"), "must contain 'P'"),
                     (dict(encoders="R", decoders="PX", alignment="none"), "letters"),
                     (dict(encoders="RC", decoders="P", alignment="experts", fusion="sum"),
                      "fusion")]:
    with pytest.raises(ValueError, match=match):
      al.strategy(tiny_config(**bad))


def test_learning_rate_drops_by_ten_twice():
  # Adam with a constant gradient moves each step by ~lr (m / sqrt(v) = 1), so the update sizes
  # read the schedule: 1e-4, then 1e-5 from step 3, then 1e-6 from step 5 (Sec. 5).
  from handjax.methods import common  # pylint: disable=g-import-not-at-top

  config = tiny_config()
  config.optimizer.learning_rate = 1e-4
  config.optimizer.lr_drop_steps = (3, 5)
  opt = common.make_optimizer(config.optimizer, 10)
  params = {"w": jnp.zeros(())}
  state = opt.init(params)
  sizes = []
  for _ in range(7):
    updates, state = opt.update({"w": jnp.ones(())}, state, params)
    sizes.append(-float(updates["w"]))
  np.testing.assert_allclose(sizes, [1e-4] * 3 + [1e-5] * 2 + [1e-6] * 2, rtol=1e-3)
