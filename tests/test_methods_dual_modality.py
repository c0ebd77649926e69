"""Tests of the dual-modality method (Yang dissertation ch. 7): losses against handjax.losses, the
confidence selection, and an RGB-only inference path."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from handjax.hand import lifting
from handjax.losses import image as image_losses
from handjax.losses.contrastive import nt_xent
from handjax.losses.pose import pose_25d_distance
from handjax.methods import dual_modality as dm
from handjax.train import method as method_lib

SIZE = 32
UNIT = 64 / SIZE  # loss units: pixels of a 64 x 64 output map (Sec. 7.4) per map pixel
BATCH = 4


def _config(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "dual_modality"
  c.num_steps = 10
  c.batch_size = BATCH
  c.data = ml_collections.ConfigDict({"image_size": SIZE})
  c.model = ml_collections.ConfigDict({"depth": 18, "width": 0.125, "stage_sizes": (1, 1, 1, 1),
                                       "map_size": SIZE, "decoder_channels": (8, 8),
                                       "base_channels": 8, "proj_dim": 128})
  c.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-3})
  c.dualmod = dm.default_dualmod_config()
  c.dualmod.pretrain_steps = 5
  c.dualmod.update(overrides)
  return c


def _batch(labelled=(True, True, False, False)) -> dict[str, jax.Array]:
  rng = np.random.default_rng(0)
  K = np.array([[60.0, 0, 15.5], [0, 60.0, 15.5], [0, 0, 1]], np.float32)
  pose = rng.normal(0, 0.03, (BATCH, 21, 3)) + np.array([0, 0, 0.5])
  uv = np.einsum("ij,bnj->bni", K, pose)
  uv = uv[..., :2] / uv[..., 2:]
  scale = np.linalg.norm(pose[:, 10] - pose[:, 9], axis=-1)
  mask = (rng.uniform(size=(BATCH, SIZE, SIZE, 1)) > 0.6).astype(np.uint8)
  depth = np.where(mask > 0, rng.uniform(0.45, 0.55, mask.shape), 0.0)
  return {"image": jnp.asarray(rng.uniform(-0.5, 0.5, (BATCH, SIZE, SIZE, 3)), jnp.float32),
          "depth": jnp.asarray(depth, jnp.float32), "mask": jnp.asarray(mask),
          "uv": jnp.asarray(uv, jnp.float32),
          "pose3d_normalized": jnp.asarray((pose - pose[:, :1]) / scale[:, None, None],
                                           jnp.float32),
          "scale": jnp.asarray(scale, jnp.float32),
          "K": jnp.broadcast_to(jnp.asarray(K), (BATCH, 3, 3)),
          "hand_side": jnp.zeros((BATCH,), jnp.int32), "has_pose3d": jnp.array(labelled)}


@pytest.fixture(scope="module")
def setup():
  config = _config()
  method = method_lib.get_method(config)
  batch = _batch()
  params, state = jax.jit(method.init)(jax.random.key(1), batch)
  return config, method, batch, params, state


def _m(out, batch):
  """Eq. 7.1 from handjax.losses (map == image resolution; uv in loss units = pixels * UNIT)."""
  pose = pose_25d_distance(out["uv"] * UNIT, out["depth"], batch["uv"] * UNIT,
                           batch["pose3d_normalized"][..., 2], 50.0)
  mask = image_losses.mask_l1(jax.nn.sigmoid(out["mask_logits"]), batch["mask"].astype(jnp.float32))
  depth = image_losses.depth_l1(out["depth_map"], batch["depth"])
  return pose + 100.0 * mask + 50.0 * depth


def test_pretrain_loss_is_eq_7_7(setup):
  config, method, batch, params, state = setup
  rng = jax.random.key(5)
  loss, (metrics, _) = method.phases[0].loss(params, state, batch, rng, jnp.int32(0))
  net = dm.network(config)
  variables = {**params, **state}
  out = net.apply(variables, batch["image"], batch["depth"], True, mutable=["batch_stats"])[0]
  image_p, depth_p = dm.texture_augment(rng, batch["image"], batch["depth"], 0.3)
  out_p = net.apply(variables, image_p, depth_p, True, mutable=["batch_stats"])[0]
  rows = np.asarray(batch["has_pose3d"])
  sup = sum(np.asarray(_m(out[b], batch)) for b in dm.BRANCHES)
  valid = batch["has_pose3d"]
  con = (nt_xent(out["z_rgb"], out_p["z_rgb"], 0.5, valid)
         + nt_xent(out["z_depth"], out_p["z_depth"], 0.5, valid)
         + nt_xent(out["z_rgb"], out["z_fusion"], 0.5, valid)
         + nt_xent(out_p["z_rgb"], out_p["z_fusion"], 0.5, valid))
  # Eq. 7.3 sums over the B anchors while L_s is a mean over rows: the loss uses the mean over
  # (valid) anchors times the paper's pre-training batch 140, so lambda_c = 0.1 weighs an anchor
  # as it does at batch 140 whatever the batch (issue 20, finding 8). Two valid anchors here.
  con_mean = con / 2
  np.testing.assert_allclose(metrics["contrastive"], con_mean, rtol=1e-4)
  np.testing.assert_allclose(loss, np.mean(sup[rows]) + 0.1 * 140 * con_mean, rtol=1e-4)
  # Texture augmentation leaves the background of the depth map at 0 (unknown) and changes the rest.
  assert np.all(np.asarray(depth_p)[np.asarray(batch["depth"]) == 0] == 0)
  assert not np.allclose(image_p, batch["image"])


def test_confidence_selection_through_finetune_loss(setup):
  """One unlabelled row: eps just below its C drops L_l exactly, eps just above keeps it."""
  _, _, _, params, state = setup  # the switches below leave the parameter tree unchanged
  batch = _batch(labelled=(True, True, True, False))
  method = method_lib.get_method(_config(pretrain_steps=0, use_self_distillation=False))
  rng = jax.random.key(2)
  _, (metrics, _) = method.phases[0].loss(params, state, batch, rng, jnp.int32(0))
  c = float(metrics["confidence"])
  assert c > 0
  results = {}
  for eps in (0.99 * c, 1.01 * c):
    m = method_lib.get_method(_config(pretrain_steps=0, use_self_distillation=False, epsilon=eps))
    loss, (met, _) = m.phases[0].loss(params, state, batch, rng, jnp.int32(0))
    results[eps] = (float(loss), float(met["pseudo"]), float(met["kept_fraction"]))
  below, above = results[0.99 * c], results[1.01 * c]
  assert below[1] == 0.0 and below[2] == 0.0
  assert above[1] > 0.0 and above[2] == 1.0
  np.testing.assert_allclose(above[0] - below[0], above[1], rtol=1e-4)  # lambda_l = 1


def test_predict_never_touches_depth_branch(setup):
  config, method, batch, params, state = setup
  no_depth = {k: v for k, v in batch.items() if k != "depth"}
  out = method.predict(params, state, no_depth)
  # Sentinel: NaN depth-branch parameters and statistics cannot change an RGB-only prediction.
  poisoned = jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.full_like(x, jnp.nan) if "depth_net" in jax.tree_util.keystr(path) else x,
      (params, state))
  out2 = method.predict(*poisoned, no_depth)
  np.testing.assert_array_equal(out["pose3d"], out2["pose3d"])
  net = dm.network(config)
  ref = net.apply({**params, **state}, batch["image"], method=dm.DualModalityNet.predict_rgb)
  uv = dm.map_to_image_uv(ref["uv"], SIZE, SIZE)
  pose = lifting.lift_25d(uv, ref["depth"], batch["K"], batch["scale"])
  np.testing.assert_allclose(out["pose3d"], pose - pose[:, :1], rtol=1e-4, atol=1e-6)
  assert any("depth_net" in jax.tree_util.keystr(p)
             for p, _ in jax.tree_util.tree_flatten_with_path(params)[0])


def test_pseudo_label_is_mean_and_variance():
  rng = np.random.default_rng(1)
  cands = [lifting.Pose25D(jnp.asarray(rng.normal(size=(2, 21, 2))),
                           jnp.asarray(rng.normal(size=(2, 21)))) for _ in range(4)]
  r, conf = dm.pseudo_label(cands, 50.0)
  uv = np.stack([np.asarray(c.uv) for c in cands])
  d = np.stack([np.asarray(c.depth) for c in cands])
  np.testing.assert_allclose(r.uv, uv.mean(0), atol=1e-6)
  var = (((uv - uv.mean(0)) ** 2).sum((-1, -2)) + 50 * ((d - d.mean(0)) ** 2).sum(-1)).mean(0)
  np.testing.assert_allclose(conf, var, rtol=1e-5)


def test_few_pretrain_steps_reduce_loss(setup):
  import optax  # pylint: disable=g-import-not-at-top
  _, _, batch, params, state = setup
  # Eq. 7.6 alone keeps the compilation short; the contrastive term is checked above.
  loss_fn = method_lib.get_method(_config(use_contrastive=False)).phases[0].loss
  opt = optax.adam(3e-3)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, state, opt_state, i):
    (loss, (_, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, state, batch, jax.random.fold_in(jax.random.key(0), i), i)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), {**state, **new_state}, opt_state, loss

  losses = []
  for i in range(12):
    params, state, opt_state, loss = step(params, state, opt_state, jnp.int32(i))
    assert np.isfinite(loss)
    losses.append(float(loss))
  assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


def test_finetune_phase_has_its_own_learning_rate():
  """Sec. 7.4: pre-train at 2.5e-4, fine-tune at 2.5e-5. Adam's first update is -lr * sign(g)."""
  config = _config()
  config.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 2.5e-4})
  config.finetune_optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 2.5e-5})
  method = method_lib.get_method(config)
  assert [(p.name, p.start, p.stop) for p in method.phases] == [("pretrain", 0, 5),
                                                                ("finetune", 5, None)]
  grads = {"w": jnp.array([0.3, -2.0, 5.0])}
  for phase, lr in zip(method.phases, (2.5e-4, 2.5e-5)):
    updates, _ = phase.optimizer.update(grads, phase.optimizer.init(grads), grads)
    np.testing.assert_allclose(updates["w"], -lr * np.sign(grads["w"]), rtol=1e-5)
  # Without a fine-tuning block both phases use config.optimizer.
  method = method_lib.get_method(_config())
  updates, _ = method.phases[1].optimizer.update(grads, method.phases[1].optimizer.init(grads),
                                                 grads)
  np.testing.assert_allclose(updates["w"], -1e-3 * np.sign(grads["w"]), rtol=1e-5)


def test_finetune_loss_is_eq_7_10_term_by_term(setup):
  """L = L_s + lambda_f L_f + lambda_l L_l (Eq. 7.10) with non-default weights; L_s is Eq. 7.6 on
  the labelled rows (the same reference as Eq. 7.7's test); L_l and L_f are means over the
  unlabelled rows, and switching each off removes exactly its term."""
  _, _, batch, params, state = setup
  rng = jax.random.key(9)
  lam_f, lam_l = 0.7, 1.9
  full = method_lib.get_method(_config(pretrain_steps=0, lambda_f=lam_f, lambda_l=lam_l,
                                       epsilon=1e9))
  loss, (metrics, _) = full.phases[0].loss(params, state, batch, rng, jnp.int32(0))
  config = _config()
  out = dm.network(config).apply({**params, **state}, batch["image"], batch["depth"], True,
                                 mutable=["batch_stats"])[0]
  rows = np.asarray(batch["has_pose3d"])
  sup = sum(np.asarray(_m(out[b], batch)) for b in dm.BRANCHES)
  assert metrics["pseudo"] > 0 and metrics["distill"] > 0 and metrics["kept_fraction"] == 1.0
  np.testing.assert_allclose(
      loss, np.mean(sup[rows]) + lam_f * metrics["distill"] + lam_l * metrics["pseudo"], rtol=1e-4)
  no_sd = method_lib.get_method(_config(pretrain_steps=0, lambda_f=lam_f, lambda_l=lam_l,
                                        epsilon=1e9, use_self_distillation=False))
  loss_no_sd, (m_no_sd, _) = no_sd.phases[0].loss(params, state, batch, rng, jnp.int32(0))
  assert "distill" not in m_no_sd
  # Without self-distillation the fusion branch gets no predicted depth: only L_f and the fusion
  # student's share of L_l change, so compare L_s + lambda_l L_l with the run's own metrics.
  np.testing.assert_allclose(loss_no_sd, np.mean(sup[rows]) + lam_l * m_no_sd["pseudo"], rtol=1e-4)
  none_kept = method_lib.get_method(_config(pretrain_steps=0, lambda_f=lam_f, lambda_l=lam_l,
                                            epsilon=-1.0, use_self_distillation=False))
  loss_sup, _ = none_kept.phases[0].loss(params, state, batch, rng, jnp.int32(0))
  np.testing.assert_allclose(loss_sup, np.mean(sup[rows]), rtol=1e-4)


def test_texture_operations_against_numpy():
  rng = np.random.default_rng(3)
  image = rng.uniform(-0.5, 0.5, (3, 6, 5, 3)).astype(np.float32)
  gain = rng.uniform(0.7, 1.3, (3, 1, 1, 3)).astype(np.float32)
  bias = rng.uniform(-0.1, 0.1, (3, 1, 1, 1)).astype(np.float32)
  np.testing.assert_allclose(dm.jitter_colour(image, gain, bias), gain * image + bias, rtol=1e-6)
  grey = dm.to_grey(jnp.asarray(image), jnp.array([True, False, True]))
  luma = 0.299 * image[..., 0] + 0.587 * image[..., 1] + 0.114 * image[..., 2]
  for c in range(3):
    np.testing.assert_allclose(grey[0, ..., c], luma[0], atol=1e-6)
  np.testing.assert_array_equal(grey[1], image[1])
  mask = np.asarray(dm.box_mask(6, 5, jnp.array([1, 0]), jnp.array([2, 4]), jnp.array([3, 6]),
                                jnp.array([2, 1])))
  expected = np.zeros((2, 6, 5, 1), bool)
  expected[0, 1:4, 2:4] = True
  expected[1, 0:6, 4:5] = True
  np.testing.assert_array_equal(mask, expected)
  depth = np.array([[0.0, 0.5, 0.6, 0.7]], np.float32).reshape(1, 1, 4, 1)
  u = np.array([0.01, 0.01, 0.5, 0.99], np.float32).reshape(1, 1, 4, 1)
  np.testing.assert_allclose(dm.salt_and_pepper(depth, u, 0.1).ravel(), [0.0, 0.0, 0.6, 0.7])


def test_texture_augment_rates_and_labels_of_the_background():
  """Monte Carlo over 400 examples: grey-scale ~ GREY_PROB, erasure ~ ERASE_PROB with the box
  area in ERASE_AREA, salt-and-pepper on ~ strength x 5% of the known depth pixels."""
  b, size = 400, 32
  image = jnp.tile(jnp.array([0.3, -0.2, 0.1]), (b, size, size, 1))
  depth = jnp.where(jnp.arange(size)[None, :, None, None] < size // 2, 0.5, 0.0) * jnp.ones(
      (b, size, size, 1))
  out_image, out_depth = dm.texture_augment(jax.random.key(0), image, depth, 1.0)
  out_image, out_depth = np.asarray(out_image), np.asarray(out_depth)
  is_grey = np.all(np.abs(out_image[..., 0] - out_image[..., 1]) < 1e-6, axis=(1, 2))
  assert abs(is_grey.mean() - dm.GREY_PROB) < 0.06  # 3 sigma of Binomial(400, 0.2) is 0.06
  erased = (out_image == 0).all(-1)
  has_box = erased.any(axis=(1, 2))
  assert abs(has_box.mean() - dm.ERASE_PROB) < 0.075
  area = erased.sum(axis=(1, 2))[has_box] / size**2
  assert area.min() >= 0.01 and area.max() <= dm.ERASE_AREA[1] + 0.05
  np.testing.assert_array_equal(out_depth[np.asarray(depth) == 0], 0)  # background stays unknown
  known = np.asarray(depth) > 0
  changed = (out_depth != 0.5) & known
  # Changed known pixels: erased (box) or salt/pepper (5%); far = 0.5 here, so salt is invisible.
  pepper_rate = ((out_depth == 0) & known).sum() / known.sum()
  assert 0.02 < pepper_rate < 0.2 and changed.sum() > 0
