"""Attention fusion and the dual-modality (RGB + depth map) ResNet, Yang dissertation ch. 7
(Sec. 7.3.3, Eq. 7.2, Fig. 7.2-7.3).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from handjax.models.resnet import ResNet


def attention_weights(features: jax.Array, eps: float = 1e-12) -> jax.Array:
  """Spatial attention weights, Yang dissertation Eq. 7.2.

    w_ij = <f_bar, f_ij> / sum_{i,j} <f_bar, f_ij> x (h w),   f_bar = mean_ij f_ij,

  so the weights of each example sum to h*w. Since sum_ij <f_bar, f_ij> = h w ||f_bar||^2, this is
  w_ij = <f_bar, f_ij> / ||f_bar||^2. Where ||f_bar||^2 <= eps (e.g. an all-zero feature map) the
  weights are uniform (all 1), with finite gradients (double `where`).

  Args:
    features: (B, h, w, C) feature maps.
    eps: threshold on ||f_bar||^2 below which the map counts as degenerate.

  Returns:
    (B, h, w) weights.
  """
  if features.ndim != 4:
    raise ValueError(f"attention_weights expects (B, h, w, C) feature maps, got {features.shape}.")
  mean = jnp.mean(features, axis=(1, 2), keepdims=True)  # f_bar, (B, 1, 1, C)
  inner = jnp.sum(features * mean, axis=-1)  # (B, h, w)
  norm_sq = jnp.sum(jnp.square(mean), axis=-1)  # (B, 1, 1)
  ok = norm_sq > eps
  safe = jnp.where(ok, norm_sq, 1.0)
  return jnp.where(ok, inner / safe, 1.0)


class AttentionFusion(nn.Module):
  """Att(f_guide) (.) f: multiply each position of `features` by the Eq. 7.2 weight computed from
  `guide` (Yang dissertation Sec. 7.3.3.1; the depth-map features guide both branches). No parameters.
  """

  @nn.compact
  def __call__(self, features: jax.Array, guide: jax.Array | None = None) -> jax.Array:
    """features, guide: (B, h, w, C); guide None = self-attention. Returns (B, h, w, C)."""
    guide = features if guide is None else guide
    if guide.shape[:3] != features.shape[:3]:
      raise ValueError(f"guide and features must share (B, h, w), got {guide.shape} vs "
                       f"{features.shape}.")
    return attention_weights(guide)[..., None] * features


class DualBranchResNet(nn.Module):
  """Dual-modality encoder with RGB, depth-map (DM) and fusion branches, Yang dissertation Sec.
  7.3.3 and Fig. 7.2 (ResNet-101 there; ResNet-18/34 here, configurable width).

    RGB branch:    plain ResNet on the image (BatchNorm set "rgb"), the only branch used at test time.
    DM branch:     its own ResNet on the depth map; after conv1 and each of conv2_x..conv5_x its
                   features are self-attended, f_DM <- Att(f_DM) (.) f_DM.
    Fusion branch: the RGB convolution kernels (shared parameters) with its own BatchNorm set
                   ("fusion"); after conv1 and each stage, f_F <- Att(stop(f_DM)) (.) f_F, the
                   attention coming from the DM branch at the same depth.

  The stop-gradient (Sec. 7.3.4.2: "stop the back propagation from the fusion branch ... to prevent
  inaccurate RGB features from degenerating the attention") blocks every gradient from the fusion
  branch into the DM branch: losses on the fusion output train only the shared RGB kernels and the
  fusion BatchNorm set. Disable with `stop_gradient=False` for the "w/out SG" ablation (Table 7.2b).

  Attributes:
    depth: ResNet depth (18 or 34).
    width: channel multiplier.
    stop_gradient: apply stop(.) to the attention the fusion branch receives.
    stage_sizes: optional blocks per stage overriding the depth's (see `ResNet`).
  """

  depth: int = 18
  width: float = 1.0
  stop_gradient: bool = True
  stage_sizes: tuple[int, int, int, int] | None = None

  def setup(self):
    self.rgb_net = ResNet(self.depth, self.width, ("rgb", "fusion"), self.stage_sizes)
    self.depth_net = ResNet(self.depth, self.width, ("dm",), self.stage_sizes)

  def __call__(self, image: jax.Array, depth_map: jax.Array, train: bool,
               return_stages: bool = False) -> dict[str, jax.Array]:
    """image (B, H, W, 3), depth_map (B, H, W, 1) -> {"rgb", "depth", "fusion"} last maps (B, h, w, C).

    With `return_stages`, also "<branch>_stages": the five stage maps (after attention) per branch.
    """
    if image.shape[:3] != depth_map.shape[:3]:
      raise ValueError(f"image and depth_map must share (B, H, W), got {image.shape} and "
                       f"{depth_map.shape}.")
    rgb = self.rgb_net.stem(image, train, "rgb")
    fusion = self.rgb_net.stem(image, train, "fusion")
    dm = self.depth_net.stem(depth_map, train, "dm")
    stages = {"rgb": [], "depth": [], "fusion": []}
    for i in range(5):
      if i > 0:
        rgb = self.rgb_net.stage(i - 1, rgb, train, "rgb")
        fusion = self.rgb_net.stage(i - 1, fusion, train, "fusion")
        dm = self.depth_net.stage(i - 1, dm, train, "dm")
      weights = attention_weights(dm)[..., None]
      fusion_weights = jax.lax.stop_gradient(weights) if self.stop_gradient else weights
      fusion = fusion_weights * fusion
      dm = weights * dm
      for name, value in (("rgb", rgb), ("depth", dm), ("fusion", fusion)):
        stages[name].append(value)
    out = {"rgb": rgb, "depth": dm, "fusion": fusion}
    if return_stages:
      out.update({f"{k}_stages": v for k, v in stages.items()})
    return out
