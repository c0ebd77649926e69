"""Tests of the keypoint read-out's coordinate maps (hand-computed cells) and their inverse."""

import jax.numpy as jnp
import numpy as np

from handjax.models import keypoints


def test_cell_centres_map_to_crop_pixels_by_hand_and_back():
  # 16 x 8 map over a 64 x 32 crop: cells 4 px wide, 4 px tall; centre of cell (u, v) = (0, 0) is
  # crop pixel (1.5, 1.5), of the last cell (7, 15) it is (29.5, 61.5).
  uv = jnp.asarray([[0.0, 0.0], [7.0, 15.0], [-0.5, -0.5]])
  crop = keypoints.heatmap_to_crop_uv(uv, (16, 8), (64, 32))
  np.testing.assert_allclose(np.asarray(crop), [[1.5, 1.5], [29.5, 61.5], [-0.5, -0.5]])
  # The map's outer edge (-1/2) is the crop's outer edge (-1/2) in both conventions.
  back = keypoints.crop_to_heatmap_uv(crop, (16, 8), (64, 32))
  np.testing.assert_allclose(np.asarray(back), np.asarray(uv), atol=1e-6)
