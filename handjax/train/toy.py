"""Toy methods and an in-memory toy dataset that exercise the generic loop end to end.

They are not hand-pose models: a BatchNorm MLP regresses ``pose3d`` from a flattened small image
whose pixels are a fixed linear function of the pose. They exist so the loop, checkpointing,
sharding and phases can be tested in seconds, and so ``experiments/configs/toy.py`` runs anywhere.

- ``toy``: one phase (all parameters, Adam).
- ``toy_two_phase``: two players on one network, as in alternating schemes (Spurr et al. CVPR 2018,
  Alg. 1; adversarial D/G steps): phase ``body`` updates ``body`` + ``bn`` on even steps, phase
  ``head`` updates ``head`` on odd steps, each with its own optimiser and loss weight.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from handjax.train import method as method_lib

NUM_JOINTS = 21


class ToyNet(nn.Module):
  """Flatten -> Dense -> BatchNorm -> ReLU -> Dense -> (21, 3)."""

  hidden: int = 32

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> jax.Array:
    x = image.reshape(image.shape[0], -1)
    # No bias: the BatchNorm shift that follows makes it redundant (its gradient is zero).
    x = nn.Dense(self.hidden, use_bias=False, name="body")(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, name="bn")(x)
    x = nn.relu(x)
    x = nn.Dense(NUM_JOINTS * 3, name="head")(x)
    return 0.05 * x.reshape(x.shape[0], NUM_JOINTS, 3)


def _input_spec(config: ml_collections.ConfigDict) -> dict[str, jax.ShapeDtypeStruct]:
  s = config.data.image_size
  return {"image": jax.ShapeDtypeStruct((s, s, 3), jnp.float32),
          "pose3d": jax.ShapeDtypeStruct((NUM_JOINTS, 3), jnp.float32)}


def _make_loss(net: ToyNet, nan_at_step: int, weight: float = 1.0):
  """Mean squared joint error in m^2 (times ``weight``); NaN at ``nan_at_step`` for guard tests."""

  def loss_fn(params, model_state, batch, rng, step):
    del rng
    pred, updates = net.apply({**params, **model_state}, batch["image"], train=True,
                              mutable=["batch_stats"])
    mse = jnp.mean(jnp.sum((pred - batch["pose3d"]) ** 2, axis=-1))
    # Injected failure: the loss turns NaN at one step, to test the non-finite guard.
    mse = mse * jnp.where(step == nan_at_step, jnp.nan, 1.0)
    return weight * mse, ({"mse": mse}, dict(updates))

  return loss_fn


def _make_method(config: ml_collections.ConfigDict, two_phase: bool) -> method_lib.Method:
  net = ToyNet(hidden=config.get("toy_hidden", 32))
  nan_at = int(config.get("toy_nan_at_step", -1))

  def init(rng, batch):
    variables = net.init(rng, batch["image"], train=False)
    return {"params": variables["params"]}, {"batch_stats": variables["batch_stats"]}

  def predict(params, model_state, batch):
    return {"pose3d": net.apply({**params, **model_state}, batch["image"], train=False)}

  opt = method_lib.make_optimizer(config.optimizer, config.num_steps)
  if two_phase:
    phases = [
        method_lib.Phase("body", _make_loss(net, nan_at), opt,
                         method_lib.subtree_mask("params/body", "params/bn"), every=2, offset=0),
        method_lib.Phase("head", _make_loss(net, nan_at, weight=2.0), optax.sgd(0.1),
                         method_lib.subtree_mask("params/head"), every=2, offset=1),
    ]
  else:
    phases = method_lib.single_phase(_make_loss(net, nan_at), opt)
  return method_lib.Method(name="toy_two_phase" if two_phase else "toy", init=init, phases=phases,
                           predict=predict, input_spec=_input_spec(config))


@method_lib.register_method("toy")
def toy_method(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Single-phase BatchNorm MLP (see module docstring)."""
  return _make_method(config, two_phase=False)


@method_lib.register_method("toy_two_phase")
def toy_two_phase_method(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Two alternating players on one BatchNorm MLP (see module docstring)."""
  return _make_method(config, two_phase=True)


@functools.lru_cache(maxsize=8)
def _toy_arrays(split: str, size: int, image_size: int) -> dict[str, np.ndarray]:
  """Deterministic toy examples: random root-relative poses, image = fixed linear map of pose."""
  rng = np.random.default_rng({"train": 1, "test": 2}[split])
  pose = rng.normal(0.0, 0.03, (size, NUM_JOINTS, 3)).astype(np.float32)
  pose -= pose[:, :1]  # root-relative, as every handjax pose
  proj = np.random.default_rng(0).normal(0, 1.0, (NUM_JOINTS * 3, image_size * image_size * 3))
  image = np.tanh(pose.reshape(size, -1) @ proj).reshape(size, image_size, image_size, 3)
  return {"image": (0.5 * image).astype(np.float32), "pose3d": pose}


def toy_dataset(config: ml_collections.ConfigDict, split: str, *, process_index: int,
                process_count: int, seed: int) -> Any:
  """Dataset factory with the signature of ``handjax.data.pipeline.make_dataset``.

  Train: an infinite shuffled stream, batched into global batches of ``config.batch_size``; process
  ``p`` keeps rows ``[p*b, (p+1)*b)`` with ``b = batch_size / process_count``, so the global batch is
  the same whatever the number of processes. Test: one pass, last batch partial.
  """
  d = config.data
  size = d.num_train if split == "train" else d.num_test
  arrays = _toy_arrays(split, size, d.image_size)
  ds = grain.MapDataset.range(size).map(lambda i: {k: v[i] for k, v in arrays.items()})
  local = config.batch_size // process_count
  if split == "train":
    ds = ds.shuffle(seed=seed).repeat().batch(config.batch_size)
    ds = ds.map(lambda b: {k: v[process_index * local:(process_index + 1) * local]
                           for k, v in b.items()})
  else:
    ds = ds[process_index::process_count].batch(local, drop_remainder=False)
  # In-memory data: reading in threads ahead of time would cost more than it saves.
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))
