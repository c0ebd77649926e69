"""Tests for handjax.hand.skeleton against hand-written fixtures of every dataset's joint order.

The fixtures below are written by hand from ../shared/specs/datasets.md (joint *names* in each
dataset's storage order), not derived from the tables under test.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import skeleton

HANDJAX_NAMES = [
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
]  # fmt: skip

# RHD: 0 wrist, 1-4 thumb tip -> MCP (the thumb's 4th joint is our CMC), 5-8 index, 9-12 middle,
# 13-16 ring, 17-20 pinky, each tip -> MCP.
RHD_NAMES = [
    "wrist",
    "thumb_tip", "thumb_ip", "thumb_mcp", "thumb_cmc",
    "index_tip", "index_dip", "index_pip", "index_mcp",
    "middle_tip", "middle_dip", "middle_pip", "middle_mcp",
    "ring_tip", "ring_dip", "ring_pip", "ring_mcp",
    "pinky_tip", "pinky_dip", "pinky_pip", "pinky_mcp",
]  # fmt: skip

# STB: 0 palm centre, 1-4 pinky MCP -> tip, 5-8 ring, 9-12 middle, 13-16 index, 17-20 thumb.
STB_NAMES = [
    "palm",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
]  # fmt: skip


def _names(names):
  return np.array(names, dtype=object)[:, None]  # (21, 1): joint axis second to last.


def test_table_matches_hand_written_names():
  assert list(skeleton.JOINT_NAMES) == HANDJAX_NAMES
  assert skeleton.NUM_BONES == 20
  # Every bone connects consecutive joints of a finger, or the wrist to a finger base.
  bases = {1, 5, 9, 13, 17}
  for parent, child in skeleton.BONES:
    assert parent == (0 if child in bases else child - 1)
  assert HANDJAX_NAMES[skeleton.REFERENCE_SCALE_BONE[0]] == "middle_mcp"
  assert HANDJAX_NAMES[skeleton.REFERENCE_SCALE_BONE[1]] == "middle_pip"


def test_rhd_order_maps_to_handjax():
  out = skeleton.rhd_to_handjax(_names(RHD_NAMES))[:, 0]
  assert list(out) == HANDJAX_NAMES
  back = skeleton.handjax_to_rhd(_names(HANDJAX_NAMES))[:, 0]
  assert list(back) == RHD_NAMES


def test_rhd_42_keypoints_split_left_then_right():
  names42 = np.array(
      [f"left_{n}" for n in RHD_NAMES] + [f"right_{n}" for n in RHD_NAMES], dtype=object
  )[:, None]
  left, right = skeleton.split_rhd_hands(names42)
  assert list(skeleton.rhd_to_handjax(left)[:, 0]) == [f"left_{n}" for n in HANDJAX_NAMES]
  assert list(skeleton.rhd_to_handjax(right)[:, 0]) == [f"right_{n}" for n in HANDJAX_NAMES]
  with pytest.raises(ValueError, match="42"):
    skeleton.split_rhd_hands(np.zeros((21, 3)))


def test_stb_order_maps_to_handjax_with_palm_at_root():
  out = list(skeleton.stb_to_handjax(_names(STB_NAMES))[:, 0])
  assert out[0] == "palm"
  assert out[1:] == HANDJAX_NAMES[1:]
  back = skeleton.handjax_to_stb(skeleton.stb_to_handjax(_names(STB_NAMES)))
  assert list(back[:, 0]) == STB_NAMES


def test_freihand_is_handjax_order():
  assert list(skeleton.freihand_to_handjax(_names(HANDJAX_NAMES))[:, 0]) == HANDJAX_NAMES


@pytest.mark.parametrize(
    "forward,backward",
    [
        (skeleton.rhd_to_handjax, skeleton.handjax_to_rhd),
        (skeleton.stb_to_handjax, skeleton.handjax_to_stb),
    ],
)
@pytest.mark.parametrize("xp", [np, jnp])
def test_conversions_round_trip_with_batch_axes(forward, backward, xp):
  x = xp.asarray(np.random.default_rng(0).normal(size=(2, 3, 21, 3)).astype(np.float32))
  np.testing.assert_array_equal(np.asarray(backward(forward(x))), np.asarray(x))
  np.testing.assert_array_equal(np.asarray(forward(backward(x))), np.asarray(x))


def test_conversion_rejects_wrong_joint_count():
  with pytest.raises(ValueError, match="21 joints"):
    skeleton.rhd_to_handjax(np.zeros((20, 3)))


def _pose(seed=0):
  return np.random.default_rng(seed).normal(size=(4, 21, 3))


@pytest.mark.parametrize("xp", [np, jnp])
def test_palm_midpoint_round_trip(xp):
  pose = _pose()
  palm = skeleton.wrist_to_palm(xp.asarray(pose))
  np.testing.assert_allclose(
      np.asarray(palm)[:, 0], 0.5 * (pose[:, 0] + pose[:, 9]), rtol=1e-6, atol=1e-6
  )
  np.testing.assert_array_equal(np.asarray(palm)[:, 1:], pose[:, 1:].astype(np.asarray(palm).dtype))
  wrist = skeleton.palm_to_wrist(palm, "midpoint")
  np.testing.assert_allclose(np.asarray(wrist), pose, rtol=1e-5, atol=1e-5)


def test_palm_to_wrist_ring_mcp_hand_computed():
  pose = np.zeros((21, 3))
  pose[0] = [2.0, 2.0, 2.0]  # palm centre
  pose[skeleton.RING_MCP] = [1.0, 2.0, 3.0]
  wrist = skeleton.palm_to_wrist(pose, "ring_mcp")
  # ringMCP + 2 (palm - ringMCP) = (1, 2, 3) + 2 (1, 0, -1) = (3, 2, 1).
  np.testing.assert_allclose(wrist[0], [3.0, 2.0, 1.0])
  np.testing.assert_array_equal(wrist[1:], pose[1:])
  with pytest.raises(ValueError, match="midpoint"):
    skeleton.palm_to_wrist(pose, "centre")


def test_mirroring_negates_x_only_and_flips_handedness():
  pose = _pose(1)
  mirrored = skeleton.mirror_pose(pose)
  np.testing.assert_allclose(mirrored[..., 0], -pose[..., 0])
  np.testing.assert_allclose(mirrored[..., 1:], pose[..., 1:])
  np.testing.assert_allclose(skeleton.mirror_pose(mirrored), pose)
  # A reflection preserves lengths and flips the sign of every signed volume (handedness).
  def volume(p):
    a, b, c = (p[:, j] - p[:, 0] for j in (5, 17, 10))
    return np.einsum("bi,bi->b", np.cross(a, b), c)

  np.testing.assert_allclose(volume(mirrored), -volume(pose))
  np.testing.assert_allclose(
      np.linalg.norm(mirrored[:, 10] - mirrored[:, 9], axis=-1),
      np.linalg.norm(pose[:, 10] - pose[:, 9], axis=-1),
  )
