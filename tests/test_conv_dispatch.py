"""handjax.models.conv: `conv2d` is XLA's convolution on every shape; `Conv` is flax's `nn.Conv`."""

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.models import conv as conv_lib

_NHWC = ("NHWC", "HWIO", "NHWC")
# (input hw, kernel, stride, pads): output maps 2x2, 1x1, 1x3 (the GEMM path) and 4x4, 8x8 (lax).
CASES = [((2, 2), 3, 1, ((1, 1), (1, 1))), ((4, 4), 3, 2, ((1, 1), (1, 1))),
         ((4, 4), 1, 2, ((0, 0), (0, 0))), ((1, 1), 3, 1, ((1, 1), (1, 1))),
         ((3, 5), 3, 1, ((0, 0), (0, 0))), ((4, 4), 3, 1, ((1, 1), (1, 1))),
         ((16, 16), 7, 2, ((3, 3), (3, 3))), ((8, 8), 3, 1, ((0, 2), (1, 0)))]


def _reference(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


def _uses_gemm(x, w, strides, pads) -> bool:
  jaxpr = jax.make_jaxpr(lambda x, w: conv_lib.conv2d(x, w, strides, pads))(x, w)
  return all(e.primitive.name != "conv_general_dilated" for e in jaxpr.jaxpr.eqns)


@pytest.mark.parametrize("hw,k,s,pads", CASES)
def test_conv2d_equals_xla_convolution_and_its_gradients(hw, k, s, pads):
  rng = np.random.default_rng(sum(hw) * 10 + k)
  x = jnp.asarray(rng.normal(size=(3, *hw, 5)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, 5, 6)), jnp.float32)
  strides = (s, s)
  out_hw = conv_lib.output_hw(x, (k, k), strides, pads)
  expected = _reference(x, w, strides, pads)
  assert expected.shape[1:3] == out_hw
  # The path is the one the threshold names: GEMM at <= SMALL_MAP_PIXELS output pixels only.
  assert _uses_gemm(x, w, strides, pads) == (out_hw[0] * out_hw[1] <= conv_lib.SMALL_MAP_PIXELS)
  np.testing.assert_allclose(conv_lib.conv2d(x, w, strides, pads), expected, atol=1e-4, rtol=1e-5)
  grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(conv_lib.conv2d(x, w, strides, pads))), (0, 1))(x, w)
  ref_grads = jax.grad(lambda x, w: jnp.sum(jnp.sin(_reference(x, w, strides, pads))), (0, 1))(x, w)
  for g, e in zip(grads, ref_grads):
    np.testing.assert_allclose(g, e, atol=1e-4, rtol=1e-4)


def test_im2col_by_a_loop_over_output_pixels():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 5, 4, 3)).astype(np.float32)
  w = rng.normal(size=(3, 2, 3, 4)).astype(np.float32)
  pads, (sh, sw) = ((1, 0), (0, 1)), (2, 1)
  xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  ho, wo = (5 + 1 - 3) // sh + 1, (4 + 1 - 2) // sw + 1
  expected = np.zeros((2, ho, wo, 4), np.float32)
  for i in range(ho):
    for j in range(wo):
      window = xp[:, i * sh:i * sh + 3, j * sw:j * sw + 2, :]
      expected[:, i, j] = np.einsum("bhwc,hwco->bo", window, w)
  np.testing.assert_allclose(conv_lib.conv_im2col(jnp.asarray(x), jnp.asarray(w), (sh, sw), pads),
                             expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("hw", [(2, 2), (9, 9)])
def test_conv_module_has_flax_conv_parameters_and_output(hw):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, *hw, 4)), jnp.float32)
  pads = ((1, 1), (1, 1))
  ours = conv_lib.Conv(7, (3, 3), (2, 2), padding=pads)
  theirs = nn.Conv(7, (3, 3), (2, 2), padding=pads)
  v_ours = ours.init(jax.random.key(3), x)
  v_theirs = theirs.init(jax.random.key(3), x)
  assert jax.tree.map(jnp.shape, v_ours) == jax.tree.map(jnp.shape, v_theirs)
  for a, b in zip(jax.tree.leaves(v_ours), jax.tree.leaves(v_theirs)):
    np.testing.assert_array_equal(a, b)  # same names, shapes and initial values
  v = jax.tree.map(lambda a: a + 0.1, v_theirs)  # a non-zero bias too
  np.testing.assert_allclose(ours.apply(v, x), theirs.apply(v, x), atol=1e-5, rtol=1e-5)


def test_conv_module_names_the_expected_rank():
  with pytest.raises(ValueError, match="rank 4"):
    conv_lib.Conv(2, (3, 3)).init(jax.random.key(0), jnp.zeros((4, 4, 3)))
