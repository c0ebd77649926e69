"""Tests of the direct RGB -> 3D regressor: the loss by hand, masks, predict's inverse, training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from handjax.methods import common
from handjax.methods import regression
from handjax.models.resnet import ResNet
from handjax.train import config_checks
from handjax.train import method as method_lib
from handjax.train import sharding as sharding_lib
from handjax.train import state as state_lib

B, S = 4, 16


def make_batch(seed: int = 0) -> dict[str, np.ndarray]:
  r = np.random.default_rng(seed)
  batch = {
      "image": r.uniform(-0.5, 0.5, (B, S, S, 3)).astype(np.float32),
      "pose3d": (r.normal(0.0, 0.03, (B, 21, 3)) + [0.05, -0.02, 0.5]).astype(np.float32),
      "scale": r.uniform(0.02, 0.04, B).astype(np.float32),
      "hand_side": r.integers(0, 2, B).astype(np.int32),
      "has_pose3d": np.ones(B, bool),
      "has_scale": np.ones(B, bool),
  }
  return batch


def tiny_config(**overrides):
  c = regression.default_config()
  c.data.image_size = S
  c.model.resnet_width = 1 / 16
  c.model.resnet_stage_sizes = (1, 1, 1, 1)
  c.model.head_hidden = (16,)
  c.num_steps = 30
  c.optimizer.learning_rate = 3e-3
  c.update(overrides)
  return c


def _network_output(method, params, state, batch, config):
  """The network's normalised prediction, through the module itself (the reference path)."""
  net = regression.build_network(config)
  variables = {"params": params["params"]["regressor"],
               "batch_stats": state["batch_stats"]["regressor"]}
  (pose, _), _ = net.apply(variables, jnp.asarray(batch["image"]), train=True,
                           extra=jax.nn.one_hot(batch["hand_side"], 2), mutable=["batch_stats"])
  return pose


def test_loss_is_the_hand_computed_l2_and_masks_unlabelled_rows():
  config = tiny_config()
  method = method_lib.get_method(config)
  batch = make_batch()
  params, state = method.init(jax.random.key(0), batch)
  pred = np.asarray(_network_output(method, params, state, batch, config))
  target = batch["pose3d"] - batch["pose3d"][:, :1]  # wrist-relative
  target = target / batch["scale"][:, None, None]
  per_example = np.sum((pred - target) ** 2, axis=(1, 2))  # written out, not common.sum_of_squares
  loss_fn = jax.jit(method.phases[0].loss)  # compiled once: eager ResNet calls cost ~30 s here
  loss, (terms, new_state) = loss_fn(params, state, batch, jax.random.key(1), 0)
  np.testing.assert_allclose(float(loss), per_example.mean(), rtol=1e-5)
  assert float(terms["recon/pose3d"]) == float(loss)
  assert not jax.tree.all(jax.tree.map(np.array_equal, new_state["batch_stats"],
                                       state["batch_stats"]))
  # Rows without a pose (or its scale) do not count, and their placeholder zeros give no NaN.
  masked = dict(batch, has_pose3d=np.array([True, False, True, True]),
                has_scale=np.array([True, True, True, False]))
  masked["scale"] = masked["scale"] * np.array([1, 1, 1, 0], np.float32)
  loss_m, _ = loss_fn(params, state, masked, jax.random.key(1), 0)
  np.testing.assert_allclose(float(loss_m), per_example[[0, 2]].mean(), rtol=1e-5)
  none = dict(batch, has_pose3d=np.zeros(B, bool))
  value, grads = jax.jit(jax.value_and_grad(
      lambda p: method.phases[0].loss(p, state, none, jax.random.key(1), 0)[0]))(params)
  assert float(value) == 0.0 and float(optax.tree.norm(grads)) == 0.0


def test_predict_undoes_the_normalisation_with_the_ground_truth_scale():
  config = tiny_config()
  method = method_lib.get_method(config)
  batch = make_batch(1)
  params, state = method.init(jax.random.key(0), batch)
  net = regression.build_network(config)
  variables = {"params": params["params"]["regressor"],
               "batch_stats": state["batch_stats"]["regressor"]}
  raw = np.asarray(net.apply(variables, jnp.asarray(batch["image"]), train=False,
                             extra=jax.nn.one_hot(batch["hand_side"], 2))[0])
  expected = raw * batch["scale"][:, None, None]
  expected = expected - expected[:, :1]
  np.testing.assert_allclose(np.asarray(method.predict(params, state, batch)["pose3d"]),
                             expected, rtol=1e-5, atol=1e-7)
  # A photo (no scale, no hand side) gets the fallback scale and is taken as a right hand.
  photo = {"image": batch["image"]}
  raw_right = np.asarray(net.apply(variables, jnp.asarray(batch["image"]), train=False,
                                   extra=jnp.tile(jnp.array([[0.0, 1.0]]), (B, 1)))[0])
  want = raw_right * config.fallback_scale
  np.testing.assert_allclose(np.asarray(method.predict(params, state, photo)["pose3d"]),
                             want - want[:, :1], rtol=1e-5, atol=1e-7)


def test_a_few_compiled_train_steps_fit_a_fixed_batch():
  config = tiny_config()
  method = method_lib.get_method(config)
  mesh = sharding_lib.make_mesh(jax.devices()[:1])
  batch = sharding_lib.global_batch(make_batch(2), mesh)
  state, shardings = state_lib.create_train_state(method, 0, batch, mesh)
  step = state_lib.make_phase_step(method, 0, shardings, mesh)
  losses = []
  for _ in range(30):
    state, metrics = step(state, batch, True)
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < 0.6 * losses[0], losses
  # The trained prediction is closer to the labels than the mean pose of the batch.
  pred = np.asarray(method.predict(state.params, state.model_state, jax.device_get(batch))["pose3d"])
  gt = np.asarray(batch["pose3d"]) - np.asarray(batch["pose3d"])[:, :1]
  assert np.linalg.norm(pred - gt, axis=-1).mean() < np.linalg.norm(gt - gt.mean(0), axis=-1).mean()
  assert common.has(make_batch(), "pose3d").all()


def test_keypoint_terms_are_the_hand_computed_2d_losses_and_mask_rows_without_uv():
  config = tiny_config(keypoint_weight=2.0, heatmap_weight=0.5, heatmap_sigma=1.5)
  config.model.keypoints = True
  method = method_lib.get_method(config)
  r = np.random.default_rng(3)
  batch = dict(make_batch(3), uv=r.uniform(0.0, S - 1.0, (B, 21, 2)).astype(np.float32),
               has_uv=np.array([True, True, False, True]))
  params, state = method.init(jax.random.key(0), batch)
  net = regression.build_network(config)
  variables = {"params": params["params"]["regressor"],
               "batch_stats": state["batch_stats"]["regressor"]}
  (pose, (uv, logits)), _ = net.apply(variables, jnp.asarray(batch["image"]), train=True,
                                      extra=jax.nn.one_hot(batch["hand_side"], 2),
                                      mutable=["batch_stats"])
  uv, logits = np.asarray(uv, np.float64), np.asarray(logits, np.float64)
  h = logits.shape[1]  # a stride-4 map: 4 x 4 cells of 4 px over the 16 px crop
  assert logits.shape == (B, S // 4, S // 4, 21) and h == S // 4
  target = (batch["uv"] - S / 2) / (S / 2)
  l2 = np.sum((uv - target) ** 2, axis=(1, 2))
  # The cross-entropy written out: label in map cells, normalised Gaussian, log-softmax per joint.
  centres = (np.arange(h) + 0.5) * (S / h) - 0.5  # crop coordinates of the cell centres
  ce = np.zeros(B)
  for b in range(B):
    for j in range(21):
      u, v = batch["uv"][b, j]
      g = np.exp(-((centres[None, :] - u) ** 2 + (centres[:, None] - v) ** 2)
                 / (2 * (1.5 * S / h) ** 2))
      t = g / g.sum()
      z = logits[b, :, :, j]
      log_p = z - z.max() - np.log(np.exp(z - z.max()).sum())
      ce[b] += -(t * log_p).sum()
  keep = batch["has_uv"]
  pose_target = (batch["pose3d"] - batch["pose3d"][:, :1]) / batch["scale"][:, None, None]
  pose_l2 = np.sum((np.asarray(pose) - pose_target) ** 2, axis=(1, 2)).mean()
  loss, (terms, _) = method.phases[0].loss(params, state, batch, jax.random.key(1), 0)
  np.testing.assert_allclose(float(terms["keypoints2d"]), l2[keep].mean(), rtol=1e-4)
  np.testing.assert_allclose(float(terms["heatmap_ce"]), ce[keep].mean(), rtol=1e-4)
  np.testing.assert_allclose(float(loss), pose_l2 + 2.0 * l2[keep].mean() + 0.5 * ce[keep].mean(),
                             rtol=1e-4)
  # The read-out is the softmax-weighted mean of the cell centres, normalised like the labels.
  p = np.exp(logits - logits.max(axis=(1, 2), keepdims=True))
  p = p / p.sum(axis=(1, 2), keepdims=True)
  want_u = np.einsum("bhwj,w->bj", p, centres)
  want_v = np.einsum("bhwj,h->bj", p, centres)
  np.testing.assert_allclose(uv, (np.stack([want_u, want_v], -1) - S / 2) / (S / 2), atol=1e-5)


def test_euclidean_pose_loss_is_the_hand_computed_sum_of_joint_distances():
  config = tiny_config(pose_loss="euclidean")
  method = method_lib.get_method(config)
  batch = make_batch(4)
  params, state = method.init(jax.random.key(0), batch)
  pred = np.asarray(_network_output(method, params, state, batch, config), np.float64)
  target = (batch["pose3d"] - batch["pose3d"][:, :1]) / batch["scale"][:, None, None]
  per_example = np.zeros(B)
  for b in range(B):  # a loop over joints, not a vectorised norm
    for j in range(21):
      per_example[b] += np.sqrt(sum((pred[b, j, k] - target[b, j, k]) ** 2 for k in range(3)))
  loss, (terms, _) = method.phases[0].loss(params, state, batch, jax.random.key(1), 0)
  np.testing.assert_allclose(float(loss), per_example.mean(), rtol=1e-5)
  assert float(terms["recon/pose3d"]) == float(loss)
  # Differs from the squared loss on the same parameters (it is another objective, not a rescale).
  squared, _ = method_lib.get_method(tiny_config()).phases[0].loss(params, state, batch,
                                                                   jax.random.key(1), 0)
  assert abs(float(squared) - float(loss)) > 0.1 * float(loss)


def test_pose_error_gradient_is_finite_at_a_perfect_prediction_and_matches_finite_differences():
  r = np.random.default_rng(5)
  target = jnp.asarray(r.normal(size=(2, 21, 3)), jnp.float32)
  # Perfect prediction: value 0, gradient 0 (not NaN) for both kinds.
  for kind in regression.POSE_LOSSES:
    value, grad = jax.value_and_grad(lambda p, k=kind: jnp.sum(
        regression.pose_error(p, target, k)))(target)
    assert float(value) == 0.0 and np.all(np.asarray(grad) == 0.0), kind
  # Away from zero the Euclidean gradient is the unit error vector: check by central differences.
  pred = np.asarray(target, np.float64) + r.normal(size=(2, 21, 3))
  f = lambda p: float(jnp.sum(regression.pose_error(jnp.asarray(p, jnp.float32), target,
                                                    "euclidean")))
  grad = np.asarray(jax.grad(lambda p: jnp.sum(regression.pose_error(p, target, "euclidean")))(
      jnp.asarray(pred, jnp.float32)))
  eps = 1e-2
  for idx in [(0, 0, 0), (1, 7, 2), (0, 20, 1)]:
    up, down = pred.copy(), pred.copy()
    up[idx] += eps
    down[idx] -= eps
    np.testing.assert_allclose(grad[idx], (f(up) - f(down)) / (2 * eps), atol=2e-3)


def test_unknown_pose_loss_is_a_config_error_naming_the_field():
  with pytest.raises(config_checks.ConfigError, match=r"config\.pose_loss='l1'"):
    method_lib.get_method(tiny_config(pose_loss="l1"))


def test_flattened_head_reads_the_conv5_map_in_row_major_order():
  # 64 px: the conv5_x map is 2 x 2, so flattening keeps where a feature fired and pooling not.
  size = 64
  config = tiny_config()
  config.data.image_size = size
  config.model.head_features = "flattened"
  net = regression.build_network(config)
  r = np.random.default_rng(5)
  image = jnp.asarray(r.uniform(-0.5, 0.5, (B, size, size, 3)), jnp.float32)
  extra = jax.nn.one_hot(jnp.arange(B) % 2, 2)
  variables = net.init(jax.random.key(1), image, train=False, extra=extra)
  pose, keypoints = net.apply(variables, image, train=False, extra=extra)
  assert keypoints is None
  backbone = ResNet(18, config.model.resnet_width, stage_sizes=(1, 1, 1, 1))
  _, maps = backbone.apply({"params": variables["params"]["backbone"],
                            "batch_stats": variables["batch_stats"]["backbone"]},
                           image, False, return_stages=True)
  conv5 = np.asarray(maps[-1])
  assert conv5.shape[1:3] == (2, 2)
  flat = np.stack([np.concatenate([conv5[b, i, j] for i in range(2) for j in range(2)])
                   for b in range(B)])
  head = jax.tree.map(np.asarray, variables["params"]["head"])
  hidden = np.maximum(np.concatenate([flat, np.asarray(extra)], -1) @ head["dense_0"]["kernel"]
                      + head["dense_0"]["bias"], 0.0)
  want = hidden @ head["dense_1"]["kernel"] + head["dense_1"]["bias"]
  np.testing.assert_allclose(np.asarray(pose).reshape(B, -1), want, rtol=1e-4, atol=1e-5)
  # The pooled head of the same backbone reads C numbers instead of 2 x 2 x C.
  pooled_config = tiny_config()
  pooled_config.data.image_size = size
  pooled_net = regression.build_network(pooled_config)
  pooled = pooled_net.init(jax.random.key(1), image, train=False, extra=extra)
  assert pooled["params"]["head"]["dense_0"]["kernel"].shape[0] == conv5.shape[-1] + 2
  assert head["dense_0"]["kernel"].shape[0] == 4 * conv5.shape[-1] + 2


def test_unknown_or_unsupported_head_features_are_config_errors_naming_the_field():
  bad = tiny_config()
  bad.model.head_features = "max"
  with pytest.raises(config_checks.ConfigError, match=r"config\.model\.head_features='max'"):
    regression.build_network(bad)
  with_keypoints = tiny_config()
  with_keypoints.model.head_features = "flattened"
  with_keypoints.model.keypoints = True
  with pytest.raises(config_checks.ConfigError, match="model.keypoints"):
    regression.build_network(with_keypoints)
