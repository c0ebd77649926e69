"""ResNet-18/34 image encoders with Gaussian heads (Spurr et al. CVPR 2018 Sec. 4 and supp. Table 4;
Yang et al. ICCV 2019 Sec. 4.2; Stergioulas et al. Sec. 4.2).

All papers encode RGB (and depth) crops with a ResNet-18 whose classifier is replaced by dense layers
predicting the mean and log-variance of the latent posterior q(z|x). Here the backbone is trained
from scratch (no downloaded weights); widths scale by `width` so tests run at a tiny size.

Batch normalisation: every module takes `train: bool` (batch statistics when True, running averages
when False; they live in the 'batch_stats' collection). A `ResNet` may keep several independent sets
of BatchNorm statistics/affines over one set of convolution kernels (`norm_branches`): the fusion
branch of the dual-modality network (Yang dissertation Sec. 7.3.3) shares the RGB kernels but has
its own BatchNorm layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from handjax.losses.gaussian import Gaussian
from handjax.models.conv import Conv

STAGE_SIZES = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
BASE_WIDTHS = (64, 128, 256, 512)

# torchvision's ResNet initialisation: Kaiming normal, fan_out, for every convolution.
_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _batch_norm(name: str | None = None) -> nn.BatchNorm:
  # PyTorch defaults (momentum 0.1 there is 0.9 here; eps 1e-5), as the papers' code used.
  return nn.BatchNorm(momentum=0.9, epsilon=1e-5, name=name)


def scaled_widths(width: float) -> tuple[int, ...]:
  """Stage widths (64, 128, 256, 512) times the width multiplier, at least 1 channel each."""
  return tuple(max(1, int(round(c * width))) for c in BASE_WIDTHS)


class BasicBlock(nn.Module):
  """ResNet basic block (He et al. CVPR 2016, Fig. 2 left): relu(x' + bn(conv3(relu(bn(conv3(x)))))).

  x' is x, or bn(conv1x1(x)) with the block's stride where the shape changes (`project`). One
  BatchNorm set per entry of `norm_branches`; the convolution kernels are shared by all branches.

  Attributes:
    features: output channels.
    strides: spatial stride of the first convolution (and of the projection).
    project: use a 1x1 projection shortcut.
    norm_branches: names of the BatchNorm sets.
  """

  features: int
  strides: int = 1
  project: bool = False
  norm_branches: tuple[str, ...] = ("main",)

  def setup(self):
    pad = ((1, 1), (1, 1))
    stride = (self.strides, self.strides)
    self.conv1 = Conv(self.features, (3, 3), stride, padding=pad, use_bias=False,
                      kernel_init=_conv_init)
    self.conv2 = Conv(self.features, (3, 3), padding=pad, use_bias=False, kernel_init=_conv_init)
    self.bn1 = {b: _batch_norm() for b in self.norm_branches}
    self.bn2 = {b: _batch_norm() for b in self.norm_branches}
    if self.project:
      self.proj_conv = Conv(self.features, (1, 1), stride, use_bias=False, kernel_init=_conv_init)
      self.proj_bn = {b: _batch_norm() for b in self.norm_branches}

  def __call__(self, x: jax.Array, train: bool, branch: str) -> jax.Array:
    ura = not train
    y = nn.relu(self.bn1[branch](self.conv1(x), use_running_average=ura))
    y = self.bn2[branch](self.conv2(y), use_running_average=ura)
    shortcut = x
    if self.project:
      shortcut = self.proj_bn[branch](self.proj_conv(x), use_running_average=ura)
    return nn.relu(y + shortcut)


class ResNet(nn.Module):
  """ResNet-18/34 feature extractor (He et al. CVPR 2016, Table 1) without the classifier.

  conv7x7/2 - BN - ReLU - maxpool3x3/2 (the "conv1" stage), then four stages of basic blocks
  (conv2_x ... conv5_x) with widths (64, 128, 256, 512) x `width`, then global average pooling. The
  encoder of Spurr et al. CVPR 2018 (supp. Table 4), Yang et al. ICCV 2019 (Sec. 4.2) and Stergioulas
  et al. (Sec. 4.2), trained from scratch. Any input size >= 1 pixel works (padding as torchvision:
  a 32x32 input gives stage maps of 8, 8, 4, 2, 1 pixels; 256x256 gives 64, 64, 32, 16, 8). Input
  channels are whatever the image has (3 for RGB, 1 for depth).

  `stem`, `stage` and `pool` are public so that the dual-branch network can interleave branches
  stage by stage (Yang dissertation Sec. 7.3.3).

  Attributes:
    depth: 18 or 34.
    width: channel multiplier (1.0 = the papers' size).
    norm_branches: names of independent BatchNorm sets sharing the convolution kernels.
    stage_sizes: blocks per stage overriding the depth's (e.g. (1, 1, 1, 1) for a tiny test
      network); None = ResNet-`depth`.
  """

  depth: int = 18
  width: float = 1.0
  norm_branches: tuple[str, ...] = ("main",)
  stage_sizes: tuple[int, int, int, int] | None = None

  def setup(self):
    if self.stage_sizes is not None:
      if len(self.stage_sizes) != 4 or min(self.stage_sizes) < 1:
        raise ValueError(f"stage_sizes must be 4 positive block counts, got {self.stage_sizes}.")
    elif self.depth not in STAGE_SIZES:
      raise ValueError(f"ResNet depth must be one of {sorted(STAGE_SIZES)}, got {self.depth}.")
    if not self.norm_branches:
      raise ValueError("norm_branches must name at least one BatchNorm set.")
    widths = scaled_widths(self.width)
    self.stem_conv = Conv(widths[0], (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                          kernel_init=_conv_init)
    self.stem_bn = {b: _batch_norm() for b in self.norm_branches}
    stages = []
    sizes = STAGE_SIZES[self.depth] if self.stage_sizes is None else self.stage_sizes
    for i, n_blocks in enumerate(sizes):
      blocks = []
      for j in range(n_blocks):
        # Only the first block of stages 2-4 changes the shape (stride 2, doubled width).
        downsample = i > 0 and j == 0
        blocks.append(BasicBlock(widths[i], 2 if downsample else 1, downsample, self.norm_branches))
      stages.append(tuple(blocks))
    self.stages = tuple(stages)

  @property
  def num_features(self) -> int:
    """Channels of the pooled feature vector (512 x width)."""
    return scaled_widths(self.width)[-1]

  def _check(self, x: jax.Array, branch: str | None) -> str:
    if x.ndim != 4:
      raise ValueError(f"ResNet expects NHWC images of rank 4 (B, H, W, C), got shape {x.shape}.")
    branch = self.norm_branches[0] if branch is None else branch
    if branch not in self.norm_branches:
      raise ValueError(f"branch must be one of {self.norm_branches}, got {branch!r}.")
    return branch

  def stem(self, x: jax.Array, train: bool, branch: str | None = None) -> jax.Array:
    """conv1 stage: (B, H, W, C) -> (B, ceil(H/4), ceil(W/4), 64 x width)."""
    branch = self._check(x, branch)
    x = nn.relu(self.stem_bn[branch](self.stem_conv(x), use_running_average=not train))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  def stage(self, index: int, x: jax.Array, train: bool, branch: str | None = None) -> jax.Array:
    """Stage conv{index+2}_x (index 0..3) of basic blocks."""
    branch = self._check(x, branch)
    for block in self.stages[index]:
      x = block(x, train, branch)
    return x

  @staticmethod
  def pool(x: jax.Array) -> jax.Array:
    """Global average pooling (B, h, w, C) -> (B, C)."""
    return jnp.mean(x, axis=(1, 2))

  def __call__(self, x: jax.Array, train: bool, branch: str | None = None,
               return_stages: bool = False) -> jax.Array | tuple[jax.Array, list[jax.Array]]:
    """Pooled features (B, 512 x width); with `return_stages` also [conv1, conv2_x .. conv5_x] maps."""
    if self.is_initializing():
      # Create every BatchNorm set at init, whichever branch the init call names.
      for other in self.norm_branches:
        if other != self._check(x, branch):
          self._forward(x, train, other)
    pooled, maps = self._forward(x, train, branch)
    return (pooled, maps) if return_stages else pooled

  def _forward(self, x: jax.Array, train: bool,
               branch: str | None) -> tuple[jax.Array, list[jax.Array]]:
    maps = [self.stem(x, train, branch)]
    for i in range(4):
      maps.append(self.stage(i, maps[-1], train, branch))
    return self.pool(maps[-1]), maps


def soft_clip(x: jax.Array, limit: float | None) -> jax.Array:
  """limit * tanh(x / limit): identity near 0 (slope 1), bounded by +-limit; None = no clipping."""
  if limit is None:
    return x
  return limit * jnp.tanh(x / limit)


class GaussianHead(nn.Module):
  """Dense layers -> diagonal Gaussian q(z|x) = N(mean, exp(logvar)).

    h = relu(Dense(h_k) ... relu(Dense(h_1)([x, extra]))),
    mean = Dense(h),   logvar = L tanh(Dense'(h) / L).

  Spurr et al. CVPR 2018 replace the ResNet classifier by the linear map to (mean, logvar)
  (`hidden=()`); Yang et al. ICCV 2019 Sec. 4.2 use "two additional fully connected layers"
  (`hidden=(width,)`). The soft clip with L = `max_abs_logvar` keeps the log-variance finite for any
  finite input (exp(logvar) never overflows) and is the identity to first order for |logvar| << L.

  Attributes:
    latent_dim: D.
    hidden: widths of the hidden ReLU layers.
    max_abs_logvar: L of the soft clip; None disables it.
  """

  latent_dim: int
  hidden: Sequence[int] = ()
  max_abs_logvar: float | None = 20.0

  @nn.compact
  def __call__(self, x: jax.Array, extra: jax.Array | None = None) -> Gaussian:
    """x: (B, F) features; extra: optional (B, E) vector (e.g. hand side one-hot, Spurr's "H")."""
    if extra is not None:
      x = jnp.concatenate([x, extra.astype(x.dtype)], axis=-1)
    for i, width in enumerate(self.hidden):
      x = nn.relu(nn.Dense(width, name=f"hidden_{i}")(x))
    mean = nn.Dense(self.latent_dim, name="mean")(x)
    logvar = soft_clip(nn.Dense(self.latent_dim, name="logvar")(x), self.max_abs_logvar)
    return Gaussian(mean, logvar)


class ResNetEncoder(nn.Module):
  """Image encoder q(z|x): `ResNet` -> `GaussianHead` (Spurr et al. CVPR 2018 supp. Table 4, RGB and
  depth encoders; Yang et al. ICCV 2019 Sec. 4.2; Stergioulas et al. E_RGB).

  Depth images use the same network with one input channel (Spurr supp. 7.1, "Depth to 3D").

  Attributes:
    latent_dim: D.
    depth: ResNet depth (18 or 34).
    width: ResNet channel multiplier.
    head_hidden: hidden widths of the Gaussian head.
    in_channels: expected input channels (checked), 3 for RGB, 1 for depth.
    max_abs_logvar: see `GaussianHead`.
    stage_sizes: optional blocks per stage overriding the depth's (see `ResNet`).
  """

  latent_dim: int
  depth: int = 18
  width: float = 1.0
  head_hidden: Sequence[int] = ()
  in_channels: int = 3
  max_abs_logvar: float | None = 20.0
  stage_sizes: tuple[int, int, int, int] | None = None

  @nn.compact
  def __call__(self, image: jax.Array, train: bool, extra: jax.Array | None = None) -> Gaussian:
    """image (B, H, W, in_channels), extra optional (B, E) -> Gaussian with (B, latent_dim) arrays."""
    if image.ndim != 4 or image.shape[-1] != self.in_channels:
      raise ValueError(f"ResNetEncoder expects images (B, H, W, {self.in_channels}), got "
                       f"{image.shape}.")
    features = ResNet(self.depth, self.width, stage_sizes=self.stage_sizes,
                      name="backbone")(image, train)
    return GaussianHead(self.latent_dim, tuple(self.head_hidden), self.max_abs_logvar,
                        name="head")(features, extra)
