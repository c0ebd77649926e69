"""A ResNet with a 2D keypoint read-out: heat-map logits at stride 4 and their soft-argmax.

The global average pooling that ends every encoder of the papers keeps what the crop shows but not
where: at 64 px the quarter-width ResNet-18's last map is 2 x 2, and the regressor's projected 2D
error stays at 12 px (RESULTS.md, "What limits accuracy at CPU scale"). This module adds the dense
path of integral regression (Sun et al. ECCV 2018; Yang dissertation Eq. 2.3): the stage maps are
merged top-down to the stem's stride-4 resolution (a feature pyramid, Lin et al. CVPR 2017, with
nearest-neighbour upsampling and 1x1 lateral projections), a 1x1 convolution gives one logit map
per keypoint, and the soft-argmax reads out (u, v). The pooled features and the normalised (u, v)
are what a pose head or a latent posterior then sees.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from handjax.losses.heatmap import soft_argmax
from handjax.models.resnet import ResNet, scaled_widths


def heatmap_to_crop_uv(uv: jax.Array, map_size: tuple[int, int],
                       image_size: tuple[int, int]) -> jax.Array:
  """Heat-map pixel coordinates -> crop pixel coordinates (both with pixel centres at integers).

  A map of h rows over an image of H rows has cells H / h pixels tall; the centre of cell i is at
  image row (i + 1/2) H / h - 1/2 (likewise for columns).
  """
  h, w = map_size
  height, width = image_size
  cell = jnp.asarray([width / w, height / h], uv.dtype)
  return (uv + 0.5) * cell - 0.5


def crop_to_heatmap_uv(uv: jax.Array, map_size: tuple[int, int],
                       image_size: tuple[int, int]) -> jax.Array:
  """The inverse of `heatmap_to_crop_uv`: crop pixel coordinates -> heat-map pixel coordinates."""
  h, w = map_size
  height, width = image_size
  cell = jnp.asarray([width / w, height / h], uv.dtype)
  return (uv + 0.5) / cell - 0.5


class KeypointResNet(nn.Module):
  """ResNet -> (pooled features, keypoints (u, v) in [-1, 1] of the crop, heat-map logits).

  Top-down merge (Lin et al. CVPR 2017): y = conv5_x; for s in conv4_x, conv3_x, conv2_x:
  y = relu(BN(conv3x3(upsample(y) + conv1x1(s)))); logits = conv1x1_K(y) at stride 4. The (u, v)
  are the soft-argmax (Yang dissertation Eq. 2.3) mapped to crop pixels and normalised like
  ``handjax.methods.common.normalized_uv``: (uv - c) / c, c = half the crop side.

  Attributes:
    num_keypoints: K heat maps.
    depth: ResNet depth (18 or 34).
    width: ResNet channel multiplier.
    stage_sizes: optional blocks per stage (see `ResNet`).
    decoder_width: channels of the merged maps; None = the conv3_x width (128 x width).
  """

  num_keypoints: int = 21
  depth: int = 18
  width: float = 1.0
  stage_sizes: tuple[int, int, int, int] | None = None
  decoder_width: int | None = None

  @nn.compact
  def __call__(self, image: jax.Array,
               train: bool) -> tuple[jax.Array, jax.Array, jax.Array]:
    """image (B, H, W, C) -> pooled (B, F), uv (B, K, 2) in [-1, 1], logits (B, H/4, W/4, K)."""
    pooled, maps = ResNet(self.depth, self.width, stage_sizes=self.stage_sizes,
                          name="backbone")(image, train, return_stages=True)
    channels = self.decoder_width or scaled_widths(self.width)[1]
    y = nn.Conv(channels, (1, 1), name="lateral_3")(maps[4])
    for i in (2, 1, 0):
      skip = maps[i + 1]
      y = jax.image.resize(y, y.shape[:1] + skip.shape[1:3] + y.shape[3:], "nearest")
      y = y + nn.Conv(channels, (1, 1), name=f"lateral_{i}")(skip)
      y = nn.Conv(channels, (3, 3), use_bias=False, name=f"merge_{i}")(y)
      y = nn.relu(nn.BatchNorm(momentum=0.9, epsilon=1e-5, name=f"merge_bn_{i}")(
          y, use_running_average=not train))
    logits = nn.Conv(self.num_keypoints, (1, 1), name="heatmaps")(y)
    uv = heatmap_to_crop_uv(soft_argmax(logits), logits.shape[1:3], image.shape[1:3])
    half = jnp.asarray([image.shape[2], image.shape[1]], uv.dtype) / 2.0
    return pooled, (uv - half) / half, logits
