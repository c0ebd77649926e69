"""experiments.bench.conv_variants: the timed convolution variants compute XLA's convolution."""

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.bench import conv_variants as cv
from handjax.models.resnet import ResNet

_NHWC = ("NHWC", "HWIO", "NHWC")
CASES = [(3, 1, ((1, 1), (1, 1)), 8), (3, 2, ((1, 1), (1, 1)), 9), (7, 2, ((3, 3), (3, 3)), 16),
         (1, 2, ((0, 0), (0, 0)), 8), (3, 1, ((0, 2), (1, 0)), 7)]


@pytest.mark.parametrize("name", sorted(cv.VARIANTS))
@pytest.mark.parametrize("k,s,pads,hw", CASES)
def test_variant_matches_lax_convolution_and_its_gradients(name, k, s, pads, hw):
  rng = np.random.default_rng(k * 10 + hw)
  x = jnp.asarray(rng.normal(size=(2, hw, hw, 3)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 3, 4)), jnp.float32)
  conv = cv.VARIANTS[name]

  def ref(x, w):
    return lax.conv_general_dilated(x, w, (s, s), pads, dimension_numbers=_NHWC)

  np.testing.assert_allclose(conv(x, w, (s, s), pads), ref(x, w), atol=1e-4, rtol=1e-5)
  grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(conv(x, w, (s, s), pads))), (0, 1))(x, w)
  expected = jax.grad(lambda x, w: jnp.sum(jnp.sin(ref(x, w))), (0, 1))(x, w)
  for g, e in zip(grads, expected):
    np.testing.assert_allclose(g, e, atol=1e-4, rtol=1e-4)


def test_flax_resnet_traced_with_a_variant_gives_the_same_features():
  net = ResNet(18, 0.125, stage_sizes=(1, 1, 1, 1))
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 33, 33, 3)), jnp.float32)
  variables = net.init(jax.random.key(0), x, train=False)
  expected = net.apply(variables, x, train=False)
  shipped = cv.conv_lib.conv2d
  for conv in cv.VARIANTS.values():
    calls = []
    with cv.convolutions_as(lambda *a, conv=conv: calls.append(1) or conv(*a)):
      got = jax.jit(lambda v, x: net.apply(v, x, train=False))(variables, x)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
    assert len(calls) == 1 + 2 * 4 + 3  # stem, two per block, three projections: all replaced
  assert cv.conv_lib.conv2d is shipped  # restored after the block
