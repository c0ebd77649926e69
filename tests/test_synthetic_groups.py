"""Content groups: members share appearance exactly and differ in pose (dissertation Sec. 4.3.3)."""

import numpy as np
from scipy import ndimage

from handjax.data.synthetic import groups


def test_group_members_share_background_but_not_pose():
  out = groups.render_groups(seed=3, start_group=5, num_groups=2, group_size=2, resolution=32,
                             num_points=16)
  np.testing.assert_array_equal(out["content_id"], [5, 5, 6, 6])
  # Background pixels at least 3 px from the hand (blur and anti-aliasing spill hand colour nearby).
  background = np.stack([ndimage.binary_erosion(m[..., 0] == 0, iterations=3) for m in out["mask"]])
  # Same content: where both images show background, the camera sees the same backdrop (noise is
  # part of the shared appearance stream, so the values are identical).
  both = background[0] & background[1]
  assert both.sum() > 100
  np.testing.assert_array_equal(out["image"][0][both], out["image"][1][both])
  # Different content: the backdrops of groups 5 and 6 differ.
  other = background[0] & background[2]
  assert np.abs(out["image"][0][other].astype(int) - out["image"][2][other]).mean() > 5
  # Different poses within a group.
  assert np.abs(out["pose3d"][0] - out["pose3d"][1]).max() > 1e-3
  # Rendering a group alone gives the same examples (a pure function of seed and group index).
  # (Same shapes as above, so no second compilation.)
  shifted = groups.render_groups(seed=3, start_group=6, num_groups=2, group_size=2, resolution=32,
                                 num_points=16)
  np.testing.assert_array_equal(shifted["image"][:2], out["image"][2:])
  np.testing.assert_array_equal(shifted["content_id"], [6, 6, 7, 7])
