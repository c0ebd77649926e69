"""Sharded train step: device-count invariance, global-batch BatchNorm, phases and their subsets."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from experiments.configs import toy as toy_config
from handjax.train import method as method_lib
from handjax.train import sharding
from handjax.train import state as state_lib
from handjax.train import toy


def _config(method="toy"):
  config = toy_config.get_config()
  config.method = method
  config.batch_size = 8
  config.data.image_size = 4
  config.data.num_train = 32
  return config


def _batches(config, n):
  it = iter(toy.toy_dataset(config, "train", process_index=0, process_count=1, seed=0))
  return [next(it) for _ in range(n)]


def _run(method, batches, devices, num_steps):
  """Runs ``num_steps`` loop steps on a mesh over ``devices``; returns host states after each."""
  mesh = sharding.make_mesh(devices)
  first = sharding.global_batch(batches[0], mesh)
  state, shardings = state_lib.create_train_state(method, 0, first, mesh)
  fns = [state_lib.make_phase_step(method, i, shardings, mesh) for i in range(len(method.phases))]
  history, metrics = [sharding.to_host(state)], []
  for step in range(num_steps):
    batch = sharding.global_batch(batches[step], mesh)
    active = [i for i, p in enumerate(method.phases) if p.runs_at(step)]
    with jax.transfer_guard("disallow"):
      for j, i in enumerate(active):
        state, m = fns[i](state, batch, j == len(active) - 1)
    history.append(sharding.to_host(state))
    metrics.append(jax.device_get(m))
  return history, metrics


def test_one_and_four_devices_give_the_same_step():
  config = _config()
  method = toy.toy_method(config)
  batches = _batches(config, 3)
  (h1, m1), (h4, m4) = (_run(method, batches, jax.devices()[:n], 3) for n in (1, 4))
  for a, b in zip(m1, m4):
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), h1[-1], h4[-1])
  assert int(h4[-1].step) == 3


def test_batch_stats_are_those_of_the_global_batch():
  """Running mean after one step = 0.9 * 0 + 0.1 * mean over the *global* batch of x @ W (numpy)."""
  config = _config()
  method = toy.toy_method(config)
  batches = _batches(config, 1)
  history, _ = _run(method, batches, jax.devices()[:4], 1)
  kernel = history[0].params["params"]["body"]["kernel"]
  hidden = batches[0]["image"].reshape(8, -1).astype(np.float64) @ kernel
  expected_mean = 0.1 * hidden.mean(0)
  expected_var = 0.9 * 1.0 + 0.1 * hidden.var(0)  # flax: biased batch variance, init var 1.
  stats = history[1].model_state["batch_stats"]["bn"]
  np.testing.assert_allclose(stats["mean"], expected_mean, rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(stats["var"], expected_var, rtol=1e-4)
  # A per-device (2-example) statistic would differ: make sure the test can tell them apart.
  local = 0.1 * hidden[:2].mean(0)
  assert np.abs(local - expected_mean).max() > 1e-3


def test_two_phases_update_only_their_subset():
  config = _config("toy_two_phase")
  method = toy.toy_two_phase_method(config)
  history, metrics = _run(method, _batches(config, 4), jax.devices()[:2], 4)
  for step in range(4):
    before, after = history[step], history[step + 1]
    changed = "body" if step % 2 == 0 else "head"
    frozen = ["head"] if changed == "body" else ["body", "bn"]
    for name in frozen:
      for leaf_b, leaf_a in zip(jax.tree.leaves(before.params["params"][name]),
                                jax.tree.leaves(after.params["params"][name])):
        assert np.array_equal(leaf_b, leaf_a), (step, name)
    assert not np.array_equal(before.params["params"][changed]["kernel"],
                              after.params["params"][changed]["kernel"])
    # The other phase's optimiser state is untouched too.
    other = "head" if changed == "body" else "body"
    for leaf_b, leaf_a in zip(jax.tree.leaves(before.opt_state[other]),
                              jax.tree.leaves(after.opt_state[other])):
      assert np.array_equal(leaf_b, leaf_a)
    assert f"{changed}/loss" in metrics[step] and int(after.step) == step + 1
  # The head phase is plain SGD(0.1) on 2 * mse: check its update against the gradient directly.
  net = toy.ToyNet(hidden=config.toy_hidden)
  batch = _batches(config, 4)[1]
  before = history[1]

  def loss(head):
    params = {"params": {**before.params["params"], "head": head}}
    pred = net.apply({**params, **before.model_state}, batch["image"], train=True,
                     mutable=["batch_stats"])[0]
    return 2.0 * jnp.mean(jnp.sum((pred - batch["pose3d"]) ** 2, -1))

  grad = jax.grad(loss)(before.params["params"]["head"])
  expected = jax.tree.map(lambda p, g: p - 0.1 * g, before.params["params"]["head"], grad)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8),
               history[2].params["params"]["head"], expected)


def test_phase_schedule_and_masks():
  phase = method_lib.Phase("p", loss=None, optimizer=optax.sgd(1.0), every=3, offset=1, start=2,
                           stop=11)
  assert [s for s in range(14) if phase.runs_at(s)] == [3, 6, 9]
  with pytest.raises(ValueError, match="offset"):
    method_lib.Phase("p", loss=None, optimizer=optax.sgd(1.0), every=2, offset=2)
  params = {"params": {"enc": {"w": 1.0}, "encoder": {"w": 2.0}}}
  mask = method_lib.subtree_mask("params/enc")(params)
  assert mask == {"params": {"enc": {"w": True}, "encoder": {"w": False}}}
  with pytest.raises(ValueError, match="selects no parameter"):
    method_lib.subtree_mask("params/missing")(params)


def test_unknown_method_and_bad_batch_size_are_clear_errors():
  config = _config()
  config.method = "no_such_method"
  with pytest.raises(ValueError, match="no_such_method.*registered"):
    method_lib.get_method(config)
  mesh = sharding.make_mesh(jax.devices()[:3])
  with pytest.raises(ValueError, match="batch_size=8 is not divisible by the 3 devices"):
    sharding.local_batch_size(8, mesh)


def test_make_optimizer_schedules():
  opt_config = ml_collections.ConfigDict(dict(name="sgd", learning_rate=1.0, warmup_steps=4,
                                              decay="constant", grad_clip=0.0))
  opt = method_lib.make_optimizer(opt_config, 10)
  params = jnp.zeros(())
  state = opt.init(params)
  steps = []
  for _ in range(6):
    update, state = opt.update(jnp.ones(()), state)
    steps.append(-float(update))
  np.testing.assert_allclose(steps, [0.0, 0.25, 0.5, 0.75, 1.0, 1.0], atol=1e-7)
  with pytest.raises(ValueError, match="Unknown optimizer 'lamb'"):
    method_lib.make_optimizer(ml_collections.ConfigDict(dict(name="lamb", learning_rate=1.0)), 10)


def test_emd_loss_compiles_over_a_batch_sharded_on_the_mesh():
  # Regression: with Explicit mesh axes (jax.make_mesh's default) ott-jax's Sinkhorn failed to trace
  # on a batch-sharded input, which broke every point-cloud method in the trainer.
  from handjax.losses import pointcloud

  mesh = sharding.make_mesh(jax.devices()[:4])
  x = jax.random.uniform(jax.random.key(1), (8, 16, 3))
  y = jax.random.uniform(jax.random.key(2), (8, 16, 3))
  xs, ys = (jax.device_put(a, sharding.batch_sharded(mesh)) for a in (x, y))
  loss = lambda a, b: pointcloud.earth_movers_distance(a, b, num_iterations=60).mean()
  value, grad = jax.jit(jax.value_and_grad(loss))(xs, ys)
  want = jax.jit(loss)(x, y)
  np.testing.assert_allclose(value, want, rtol=1e-5)
  assert np.all(np.isfinite(np.asarray(grad)))
