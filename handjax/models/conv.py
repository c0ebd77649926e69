"""2-D convolution for the ResNet backbone: XLA's convolution, or one GEMM on tiny output maps.

XLA:CPU (jax 0.10, Eigen spatial convolutions) is pathologically slow where the output map has only
a few pixels: at 64 px input, conv5_x of ResNet-18 works on 2 x 2 maps, and one of its 3x3
convolutions (quarter width, 128 channels, batch 32) takes 14.6 ms for value + both gradients
against 2.1 ms as an im2col matrix product; at 8 x 8 output maps and above XLA's convolution is
the faster one (BUILD_NOTES, "Issue 17, session 15"). `conv2d` therefore computes maps of at most
`SMALL_MAP_PIXELS` output pixels as patches x kernel and everything else with
`lax.conv_general_dilated`. Both are the same linear map (tested to float32 rounding), so the
choice changes speed, not the model: parameters keep `flax.linen.Conv`'s names and shapes.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
from jax import lax
import jax.numpy as jnp

Pads = tuple[tuple[int, int], tuple[int, int]]
Strides = tuple[int, int]
_NHWC = ("NHWC", "HWIO", "NHWC")

# Largest output map (Ho * Wo) computed as one GEMM: 2 x 2 and below. Chosen by timing the whole
# quarter-width ResNet-18 step at 64 px with thresholds 1, 4, 16 and 64 (4 was fastest; 16 and 64
# put the 4 x 4 and 8 x 8 maps of conv4_x / conv3_x on the slower path).
SMALL_MAP_PIXELS = 4


def output_hw(x: jax.Array, kernel_hw: tuple[int, int], strides: Strides,
              pads: Pads) -> tuple[int, int]:
  """Output height and width of a convolution of NHWC `x` (no dilation)."""
  return tuple((x.shape[1 + a] + sum(pads[a]) - kernel_hw[a]) // strides[a] + 1 for a in (0, 1))


def patches(x: jax.Array, kernel_hw: tuple[int, int], strides: Strides, pads: Pads) -> jax.Array:
  """(B, Ho, Wo, kh * kw, C): the input window of every output pixel, by strided slicing."""
  (kh, kw), (sh, sw) = kernel_hw, strides
  ho, wo = output_hw(x, kernel_hw, strides, pads)
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  cols = [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  return jnp.stack(cols, axis=3)


def conv_im2col(x: jax.Array, kernel: jax.Array, strides: Strides, pads: Pads) -> jax.Array:
  """NHWC x HWIO convolution as (B Ho Wo, kh kw C) @ (kh kw C, O)."""
  kh, kw, c, o = kernel.shape
  return jnp.einsum("bhwkc,kco->bhwo", patches(x, (kh, kw), strides, pads),
                    kernel.reshape(kh * kw, c, o))


def conv_lax(x: jax.Array, kernel: jax.Array, strides: Strides, pads: Pads) -> jax.Array:
  """NHWC x HWIO convolution by `lax.conv_general_dilated`."""
  return lax.conv_general_dilated(x, kernel, strides, pads, dimension_numbers=_NHWC)


def conv2d(x: jax.Array, kernel: jax.Array, strides: Strides, pads: Pads) -> jax.Array:
  """NHWC x HWIO convolution (no dilation, no groups), by whichever way is fast for its shape."""
  ho, wo = output_hw(x, kernel.shape[:2], strides, pads)
  if ho * wo <= SMALL_MAP_PIXELS:
    return conv_im2col(x, kernel, strides, pads)
  return conv_lax(x, kernel, strides, pads)


class Conv(nn.Module):
  """`flax.linen.Conv` restricted to NHWC, explicit padding, no dilation or groups, via `conv2d`.

  The parameters are `flax.linen.Conv`'s ('kernel' (kh, kw, C, features), optional 'bias'), so
  checkpoints and weight copies do not see which module made them.
  """

  features: int
  kernel_size: tuple[int, int]
  strides: Strides = (1, 1)
  padding: Pads = ((0, 0), (0, 0))
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 4:
      raise ValueError(f"Conv expects NHWC inputs of rank 4, got shape {x.shape}.")
    kernel = self.param("kernel", self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features))
    y = conv2d(x, kernel, tuple(self.strides), tuple(tuple(p) for p in self.padding))
    if self.use_bias:
      y = y + self.param("bias", nn.initializers.zeros, (self.features,))
    return y
