"""Stacked hourglass network with 2.5D heads (latent heat maps + latent depth maps, Iqbal et al.
ECCV 2018) and a mask head: the backbone of Yang dissertation ch. 6 (Sec. 6.4: two stacks, 64x64 in
and out), read out as in Sec. 2.3.2 / Fig. 3.1.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from handjax.losses.heatmap import soft_argmax


def latent_25d_readout(latent_heatmaps: jax.Array, latent_depthmaps: jax.Array,
                       temperature: float = 1.0) -> tuple[jax.Array, jax.Array]:
  """2.5D read-out of latent maps, Yang dissertation Sec. 2.3.2 / Fig. 3.1 (Iqbal et al. ECCV 2018).

    H_k = softmax_p(H*_k / T),   (u_k, v_k) = sum_p H_k(p) p,   z_k = sum_p H_k(p) D*_k(p),

  the soft-argmax of Eq. 2.3 for the 2D location and the heat-map-weighted sum of the latent depth
  map for the scale-normalised root-relative depth.

  Args:
    latent_heatmaps: (..., h, w, K) logits H*.
    latent_depthmaps: (..., h, w, K) latent depth maps D*.
    temperature: softmax temperature T.

  Returns:
    uv: (..., K, 2) in heat-map pixel coordinates (u = column); depth: (..., K).
  """
  if latent_heatmaps.shape != latent_depthmaps.shape:
    raise ValueError(f"latent heat maps and depth maps must share a shape, got "
                     f"{latent_heatmaps.shape} and {latent_depthmaps.shape}.")
  uv = soft_argmax(latent_heatmaps, temperature)
  shape = latent_heatmaps.shape
  flat = jnp.reshape(latent_heatmaps, shape[:-3] + (shape[-3] * shape[-2], shape[-1]))
  probs = jax.nn.softmax(flat / temperature, axis=-2)
  depth_flat = jnp.reshape(latent_depthmaps, flat.shape)
  return uv, jnp.sum(probs * depth_flat, axis=-2)


def _bn(name: str | None = None) -> nn.BatchNorm:
  return nn.BatchNorm(momentum=0.9, epsilon=1e-5, name=name)


class Residual(nn.Module):
  """Pre-activation bottleneck residual module of the hourglass (Newell et al. ECCV 2016, Fig. 4):
  BN-ReLU-conv1x1(C/2)-BN-ReLU-conv3x3(C/2)-BN-ReLU-conv1x1(C), plus x (1x1 conv if widths differ).
  """

  features: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    ura = not train
    half = max(1, self.features // 2)
    y = nn.Conv(half, (1, 1))(nn.relu(_bn()(x, use_running_average=ura)))
    y = nn.Conv(half, (3, 3))(nn.relu(_bn()(y, use_running_average=ura)))
    y = nn.Conv(self.features, (1, 1))(nn.relu(_bn()(y, use_running_average=ura)))
    skip = x if x.shape[-1] == self.features else nn.Conv(self.features, (1, 1), name="skip")(x)
    return y + skip


class HourglassModule(nn.Module):
  """One recursive hourglass of `levels` down/up levels (Newell et al. ECCV 2016, Fig. 3):
  out = res(x) + upsample2(res(inner(res(maxpool2(x))))), inner the next level (res at the bottom).
  """

  features: int
  levels: int

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    up = Residual(self.features)(x, train)
    low = nn.max_pool(x, (2, 2), (2, 2))
    low = Residual(self.features)(low, train)
    if self.levels > 1:
      low = HourglassModule(self.features, self.levels - 1)(low, train)
    else:
      low = Residual(self.features)(low, train)
    low = Residual(self.features)(low, train)
    low = jnp.repeat(jnp.repeat(low, 2, axis=1), 2, axis=2)  # nearest-neighbour upsampling
    return up + low


class Hourglass(nn.Module):
  """Stacked hourglass with 2.5D and mask heads, Yang dissertation ch. 6 (two stacks, Sec. 6.4).

  Stem: conv{7x7, stride `stem_stride`}-BN-ReLU and a residual module. Each stack: hourglass ->
  residual -> conv1x1-BN-ReLU features -> 1x1 heads for K latent heat maps H*, K latent depth maps D*
  and one mask logit map; between stacks the features and the predictions are mapped back by 1x1
  convolutions and added (intermediate supervision, Newell et al.). Every stack is read out by
  `latent_25d_readout` (uv, depth). `stem_stride=1` keeps the output at the input resolution
  (ch. 6: 64x64 in and out); the spatial size must be divisible by stem_stride * 2^levels.

  Attributes:
    num_keypoints: K (21).
    features: channels of the hourglass.
    num_stacks: 2 in ch. 6.
    levels: down-sampling levels per hourglass (4 in Newell et al.).
    stem_stride: stride of the first convolution (1 or 2).
    temperature: soft-argmax temperature.
  """

  num_keypoints: int = 21
  features: int = 256
  num_stacks: int = 2
  levels: int = 4
  stem_stride: int = 1
  temperature: float = 1.0

  @nn.compact
  def __call__(self, image: jax.Array, train: bool) -> list[dict[str, jax.Array]]:
    """image (B, H, W, C) -> one dict per stack with "heatmaps" (latent H*, (B, h, w, K)),
    "depthmaps" (B, h, w, K), "mask_logits" (B, h, w, 1), "uv" (B, K, 2) in heat-map pixels and
    "depth" (B, K).
    """
    factor = self.stem_stride * 2**self.levels
    if image.ndim != 4 or image.shape[1] % factor or image.shape[2] % factor:
      raise ValueError(f"Hourglass expects (B, H, W, C) images with H, W divisible by "
                       f"stem_stride * 2^levels = {factor}, got {image.shape}.")
    ura = not train
    s = self.stem_stride
    x = nn.Conv(self.features, (7, 7), (s, s), name="stem_conv")(image)
    x = nn.relu(_bn("stem_bn")(x, use_running_average=ura))
    x = Residual(self.features, name="stem_res")(x, train)
    outputs = []
    for i in range(self.num_stacks):
      y = HourglassModule(self.features, self.levels, name=f"hourglass_{i}")(x, train)
      y = Residual(self.features, name=f"res_{i}")(y, train)
      y = nn.Conv(self.features, (1, 1), name=f"feat_conv_{i}")(y)
      y = nn.relu(_bn(f"feat_bn_{i}")(y, use_running_average=ura))
      k = self.num_keypoints
      heat = nn.Conv(k, (1, 1), name=f"heat_{i}")(y)
      depth = nn.Conv(k, (1, 1), name=f"depth_{i}")(y)
      mask = nn.Conv(1, (1, 1), name=f"mask_{i}")(y)
      uv, z = latent_25d_readout(heat, depth, self.temperature)
      outputs.append({"heatmaps": heat, "depthmaps": depth, "mask_logits": mask, "uv": uv,
                      "depth": z})
      if i < self.num_stacks - 1:
        preds = jnp.concatenate([heat, depth, mask], axis=-1)
        x = (x + nn.Conv(self.features, (1, 1), name=f"merge_feat_{i}")(y)
             + nn.Conv(self.features, (1, 1), name=f"merge_pred_{i}")(preds))
    return outputs
