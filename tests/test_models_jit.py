"""Every handjax.models module jit-compiles and runs forward + backward at test size with finite,
non-zero gradients (train-mode BatchNorm where the module has it). DualBranchResNet's jitted backward
pass is tested in test_models_conv.py (the stop-gradient test), so it is not compiled twice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses.gaussian import Gaussian
from handjax.models import (MLP, DeconvDecoder, FoldingNet, GaussianHead, Hourglass,
                            InjectionDecoder, JointEncoder, LatentDiscriminator, PointSetEncoder,
                            PointSetFeatures, ResNet, ResNetEncoder, VariationalMapper)

TINY = (1, 1, 1, 1)


def _gaussian_sum(q):
  return jnp.sum(q.mean ** 2) + jnp.sum(jnp.exp(q.logvar))


MODULE_CASES = {
    "resnet_encoder": (ResNetEncoder(4, width=1 / 16, head_hidden=(8,)),
                       lambda k: (jax.random.normal(k, (2, 32, 32, 3)), True), _gaussian_sum),
    "mlp": (MLP((16, 16, 3)), lambda k: (jax.random.normal(k, (2, 5)), True), jnp.sum),
    "injection": (InjectionDecoder((16, 16, 16), 63), lambda k: (jax.random.normal(k, (2, 5)), True),
                  jnp.sum),
    "deconv": (DeconvDecoder(32, 21, (8, 4), base_channels=8),
               lambda k: (jax.random.normal(k, (2, 5)), True), jnp.sum),
    "folding": (FoldingNet(256, 16), lambda k: (jax.random.normal(k, (2, 5)),), jnp.sum),
    "pointset": (PointSetEncoder(4, width=16, num_blocks=2),
                 lambda k: (jax.random.normal(k, (2, 64, 3)),), _gaussian_sum),
    "joint": (JointEncoder([ResNet(18, 1 / 16, stage_sizes=TINY), PointSetFeatures(width=8)],
                           GaussianHead(4)),
              lambda k: ([jax.random.normal(k, (2, 32, 32, 3)), jax.random.normal(k, (2, 16, 3))],
                         True),
              _gaussian_sum),
    "mapper": (VariationalMapper((16,)),
               lambda k: (Gaussian(jax.random.normal(k, (2, 4)), jnp.zeros((2, 4))), True),
               _gaussian_sum),
    "discriminator": (LatentDiscriminator((16,)), lambda k: (jax.random.normal(k, (2, 4)),), jnp.sum),
    "hourglass": (Hourglass(5, 4, 2, 1), lambda k: (jax.random.normal(k, (2, 8, 8, 3)), True),
                  lambda outs: sum(jnp.sum(o["uv"]) + jnp.sum(o["depth"]) + jnp.sum(o["mask_logits"])
                                   for o in outs)),
}


@pytest.mark.parametrize("name", sorted(MODULE_CASES))
def test_module_jits_forward_and_backward(rng, name):
  model, make_args, reduce = MODULE_CASES[name]
  args = make_args(rng)
  variables = model.init(rng, *args)
  params = variables["params"]
  rest = {k: v for k, v in variables.items() if k != "params"}

  @jax.jit
  def loss_and_grad(params):
    def loss(p):
      if rest:  # train-mode BatchNorm: batch statistics, updated stats discarded here
        out, _ = model.apply({"params": p, **rest}, *args, mutable=list(rest))
      else:
        out = model.apply({"params": p}, *args)
      return reduce(out)
    return jax.value_and_grad(loss)(params)

  value, grads = loss_and_grad(params)
  assert np.isfinite(value)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert sum(float(jnp.sum(jnp.abs(g))) for g in leaves) > 0
