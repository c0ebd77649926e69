"""Permutation-invariant point-cloud encoders: ResPEL (Li & Lee CVPR 2019, as used by Yang et al.
ICCV 2019 Sec. 4.2 with the hidden units halved) and a PointNet variant (Qi et al. CVPR 2017).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from handjax.losses.gaussian import Gaussian
from handjax.models.resnet import GaussianHead


class PermutationEquivariantLayer(nn.Module):
  """Permutation-equivariant layer (PEL; Zaheer et al. NeurIPS 2017 "Deep Sets", max variant).

  y_n = Lambda x_n + b - Gamma max_m x_m for every point n: permuting the points permutes the rows of
  y the same way (the max over points is invariant). The form used by Li & Lee CVPR 2019.

  Attributes:
    features: output width.
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """x: (B, N, C) -> (B, N, features)."""
    pooled = jnp.max(x, axis=-2, keepdims=True)
    return (nn.Dense(self.features, name="point")(x)
            - nn.Dense(self.features, use_bias=False, name="pool")(pooled))


class PointSetFeatures(nn.Module):
  """Point-set feature extractor (B, N, 3) -> (B, width), invariant to the order of the N points.

  kind="respel" (Li & Lee CVPR 2019): a PEL to `width`, then `num_blocks` residual blocks
  x <- x + PEL(relu(PEL(relu(x)))), then relu and a max over points. Yang et al. ICCV 2019 Sec. 4.2
  keep Li & Lee's number of PEL layers and halve the hidden units; Li & Lee use 1024, so the default
  width is 512. Li & Lee's exact block count is not restated in the ICCV text; `num_blocks=3`
  (7 PELs) is this library's default, configurable.
  kind="pointnet" (Qi et al. CVPR 2017, without the T-nets): shared per-point Dense+ReLU layers of
  widths (width/8, width/4, width) and a max over points.

  Attributes:
    kind: "respel" or "pointnet".
    width: feature width.
    num_blocks: residual PEL blocks (respel only).
  """

  kind: str = "respel"
  width: int = 512
  num_blocks: int = 3

  @nn.compact
  def __call__(self, points: jax.Array, train: bool = False) -> jax.Array:
    """points: (B, N, 3) (any trailing width); `train` is accepted for a uniform encoder interface."""
    del train  # no BatchNorm: batch statistics would couple the points of different examples
    if points.ndim != 3:
      raise ValueError(f"PointSetFeatures expects points of shape (B, N, C), got {points.shape}.")
    if self.kind == "respel":
      x = PermutationEquivariantLayer(self.width, name="pel_in")(points)
      for i in range(self.num_blocks):
        h = PermutationEquivariantLayer(self.width, name=f"block_{i}_pel_0")(nn.relu(x))
        h = PermutationEquivariantLayer(self.width, name=f"block_{i}_pel_1")(nn.relu(h))
        x = x + h
      x = nn.relu(x)
    elif self.kind == "pointnet":
      x = points
      for i, w in enumerate((max(1, self.width // 8), max(1, self.width // 4), self.width)):
        x = nn.relu(nn.Dense(w, name=f"dense_{i}")(x))
    else:
      raise ValueError(f"kind must be 'respel' or 'pointnet', got {self.kind!r}.")
    return jnp.max(x, axis=-2)


class PointSetEncoder(nn.Module):
  """Point-cloud encoder q(z|w): `PointSetFeatures` -> `GaussianHead` (Yang et al. ICCV 2019, 4.2).

  Attributes:
    latent_dim: D.
    kind: "respel" or "pointnet".
    width: feature width.
    num_blocks: residual PEL blocks.
    head_hidden: hidden widths of the Gaussian head.
  """

  latent_dim: int
  kind: str = "respel"
  width: int = 512
  num_blocks: int = 3
  head_hidden: tuple[int, ...] = ()

  @nn.compact
  def __call__(self, points: jax.Array, train: bool = False) -> Gaussian:
    """points: (B, N, 3) -> Gaussian with (B, latent_dim) arrays."""
    features = PointSetFeatures(self.kind, self.width, self.num_blocks, name="features")(points)
    return GaussianHead(self.latent_dim, self.head_hidden, name="head")(features)
