"""Image-like and point-cloud decoders: the DCGAN-style deconvolution decoder (Spurr et al. CVPR 2018
supp. Table 4; heat-map decoder of Yang et al. ICCV 2019 Sec. 4.2) and the FoldingNet decoder
(Yang, Feng, Shen & Tian CVPR 2018; point-cloud decoder of Yang et al. ICCV 2019 Sec. 4.2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


class DeconvDecoder(nn.Module):
  """DCGAN-style decoder, Spurr et al. CVPR 2018 supp. Table 4 (Radford et al. ICLR 2016).

    h = relu(BN(Linear(z))) reshaped to (base, base, base_channels),
    h <- relu(BN(ConvT_{4x4, stride 2}(h))) for each hidden width, then a last ConvT to out_channels.

  Table 4 is `output_size=256, channels=(128, 64, 32, 16, 8), out_channels=3` (4 -> 256 in six
  doublings); depth maps use out_channels=1, heat maps 21 (ICCV 2019 Sec. 4.2). Each transposed
  convolution exactly doubles the size ("SAME" padding; PyTorch's padding=1 gives the same shapes).
  The number of doublings is log2(output_size / base_size); the first (doublings - 1) entries of
  `channels` are used. The output is linear (the caller applies any output nonlinearity).

  Attributes:
    output_size: output height = width; base_size * 2^k.
    out_channels: C of the output.
    channels: hidden widths of the transposed convolutions, widest first.
    base_size: spatial size after the reshape (4 in Table 4).
    base_channels: channels after the reshape (256 in Table 4; Linear width = base^2 x this).
  """

  output_size: int = 256
  out_channels: int = 3
  channels: Sequence[int] = (128, 64, 32, 16, 8)
  base_size: int = 4
  base_channels: int = 256

  def num_upsamplings(self) -> int:
    ratio = self.output_size / self.base_size
    k = int(round(math.log2(ratio))) if ratio >= 1 else -1
    if k < 1 or self.base_size * 2**k != self.output_size:
      raise ValueError(f"output_size must be base_size * 2^k with k >= 1, got output_size="
                       f"{self.output_size}, base_size={self.base_size}.")
    if len(self.channels) < k - 1:
      raise ValueError(f"output_size {self.output_size} needs {k - 1} hidden widths in `channels`, "
                       f"got {len(self.channels)}.")
    return k

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    """z: (B, D) -> (B, output_size, output_size, out_channels)."""
    k = self.num_upsamplings()
    ura = not train
    h = nn.Dense(self.base_size**2 * self.base_channels, name="dense")(z)
    h = nn.relu(nn.BatchNorm(momentum=0.9, epsilon=1e-5, name="bn_dense")(h, use_running_average=ura))
    h = jnp.reshape(h, z.shape[:-1] + (self.base_size, self.base_size, self.base_channels))
    for i in range(k - 1):
      h = nn.ConvTranspose(self.channels[i], (4, 4), (2, 2), padding="SAME", name=f"deconv_{i}")(h)
      h = nn.relu(nn.BatchNorm(momentum=0.9, epsilon=1e-5, name=f"bn_{i}")(h,
                                                                          use_running_average=ura))
    return nn.ConvTranspose(self.out_channels, (4, 4), (2, 2), padding="SAME", name="out")(h)


def folding_grid(num_points: int, half_width: float = 0.3) -> np.ndarray:
  """The 2D lattice FoldingNet folds: rows x cols = num_points points on [-a, a]^2 (float32).

  rows is the largest divisor of num_points not above sqrt(num_points) (16 x 16 for 256; a prime N
  gives a 1 x N line). Points are ordered row-major, u (column coordinate) first in each pair.
  """
  if num_points < 1:
    raise ValueError(f"num_points must be >= 1, got {num_points}.")
  rows = max(d for d in range(1, int(math.isqrt(num_points)) + 1) if num_points % d == 0)
  cols = num_points // rows
  lin = lambda n: np.linspace(-half_width, half_width, n) if n > 1 else np.zeros(1)
  vv, uu = np.meshgrid(lin(rows), lin(cols), indexing="ij")
  return np.stack([uu.ravel(), vv.ravel()], axis=-1).astype(np.float32)


class FoldingNet(nn.Module):
  """FoldingNet decoder (Yang et al. CVPR 2018, Sec. 2.2), as used by Yang et al. ICCV 2019 Sec. 4.2.

    fold_1 = MLP_1([z, g]),   fold_2 = MLP_2([z, fold_1]),   one row per grid point g,

  where z (the codeword) is replicated for each of the N points of a fixed 2D grid, and each MLP is
  Linear(hidden)-ReLU-Linear(hidden)-ReLU-Linear(3) shared by all points. The output has exactly
  `num_points` points (256 in ICCV 2019, one per sampled input point).

  Attributes:
    num_points: N.
    hidden: width of the folding MLPs (512 in FoldingNet).
    grid_half_width: the grid spans [-a, a]^2 (0.3 in FoldingNet's code).
  """

  num_points: int = 256
  hidden: int = 512
  grid_half_width: float = 0.3

  @nn.compact
  def __call__(self, z: jax.Array,
               return_intermediate: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """z: (B, D) -> (B, N, 3); with `return_intermediate` also the first fold (B, N, 3)."""
    grid = jnp.asarray(folding_grid(self.num_points, self.grid_half_width), z.dtype)
    codeword = jnp.broadcast_to(z[..., None, :], z.shape[:-1] + (self.num_points, z.shape[-1]))
    grid = jnp.broadcast_to(grid, z.shape[:-1] + grid.shape)

    def fold(x: jax.Array, name: str) -> jax.Array:
      x = nn.relu(nn.Dense(self.hidden, name=f"{name}_0")(x))
      x = nn.relu(nn.Dense(self.hidden, name=f"{name}_1")(x))
      return nn.Dense(3, name=f"{name}_2")(x)

    fold1 = fold(jnp.concatenate([codeword, grid], axis=-1), "fold1")
    fold2 = fold(jnp.concatenate([codeword, fold1], axis=-1), "fold2")
    return (fold2, fold1) if return_intermediate else fold2
