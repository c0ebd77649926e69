"""Shared piece of the iccv_*.py configs (not a config itself): one Table 1 strategy on RHD.

Yang et al. ICCV 2019 Table 1 varies only which encoders and decoders train and how the latents are
aligned; everything else is `aligned_latents.default_config` (the paper's Sec. 4-5 settings).
"""

import ml_collections

from handjax.methods import aligned_latents


def make_config(encoders: str, decoders: str, alignment: str,
                fusion: str = "poe") -> ml_collections.ConfigDict:
  """The paper's settings for one strategy (R: RGB, C: point cloud, H: heat maps, P: 3D pose) on
  RHD's dominant hand."""
  config = aligned_latents.default_config()
  config.encoders = encoders
  config.decoders = decoders
  config.alignment = alignment
  config.fusion = fusion
  config.data.dataset = "rhd"
  config.data.builder_config = "dominant"
  return config
