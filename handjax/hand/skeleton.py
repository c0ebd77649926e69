"""The handjax 21-joint hand skeleton and conversions from the public datasets' orders.

One table for every module and dataset (../shared/DESIGN.md, "Conventions"):

    0       wrist
    1-4     thumb   CMC, MCP, IP, tip
    5-8     index   MCP, PIP, DIP, tip
    9-12    middle  MCP, PIP, DIP, tip
    13-16   ring    MCP, PIP, DIP, tip
    17-20   pinky   MCP, PIP, DIP, tip

Each finger is ordered base -> tip; the base of every finger hangs off the wrist. This is also
FreiHAND's order. RHD stores fingers tip -> base; STB stores a palm centre as joint 0 and the
fingers pinky-first, base -> tip (../shared/specs/datasets.md).

All conversions take arrays whose joint axis is second to last (``(..., 21, D)``) and work on
numpy and jax arrays alike.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

NUM_JOINTS = 21
FINGER_NAMES = ("thumb", "index", "middle", "ring", "pinky")
_SEGMENTS = {
    "thumb": ("cmc", "mcp", "ip", "tip"),
    "index": ("mcp", "pip", "dip", "tip"),
    "middle": ("mcp", "pip", "dip", "tip"),
    "ring": ("mcp", "pip", "dip", "tip"),
    "pinky": ("mcp", "pip", "dip", "tip"),
}
JOINT_NAMES: tuple[str, ...] = ("wrist",) + tuple(
    f"{finger}_{segment}" for finger in FINGER_NAMES for segment in _SEGMENTS[finger]
)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

# FINGERS[f] = the four joint indices of finger f, base -> tip.
FINGERS: dict[str, tuple[int, int, int, int]] = {
    finger: tuple(1 + 4 * f + k for k in range(4)) for f, finger in enumerate(FINGER_NAMES)
}
# Parent of each joint (-1 for the wrist): finger bases hang off the wrist.
PARENTS: tuple[int, ...] = (-1,) + tuple(
    0 if k == 0 else 1 + 4 * f + k - 1 for f in range(5) for k in range(4)
)
# The 20 bones as (parent, child), ordered by child index (bone b ends at joint b + 1).
BONES: tuple[tuple[int, int], ...] = tuple((PARENTS[j], j) for j in range(1, NUM_JOINTS))
NUM_BONES = len(BONES)

WRIST = 0
MIDDLE_MCP = JOINT_INDEX["middle_mcp"]
MIDDLE_PIP = JOINT_INDEX["middle_pip"]
RING_MCP = JOINT_INDEX["ring_mcp"]
# Reference scale of the RHD/STB protocol: the middle-finger MCP -> PIP bone.
REFERENCE_SCALE_BONE = (MIDDLE_MCP, MIDDLE_PIP)

# --- Dataset orders ---------------------------------------------------------------------------
# X_TO_HANDJAX[j] = index, in dataset X's order, of handjax joint j; so handjax = x[..., idx, :].

# RHD (one hand of 21; the 42 keypoints are left 0-20 and right 21-41): wrist, fingers tip -> MCP.
RHD_TO_HANDJAX: tuple[int, ...] = (0,) + tuple(1 + 4 * f + (3 - k) for f in range(5) for k in range(4))
# STB: palm centre, then pinky, ring, middle, index, thumb, each MCP -> tip.
STB_TO_HANDJAX: tuple[int, ...] = (0,) + tuple(1 + 4 * (4 - f) + k for f in range(5) for k in range(4))
# FreiHAND: already the handjax order.
FREIHAND_TO_HANDJAX: tuple[int, ...] = tuple(range(NUM_JOINTS))


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
  inv = [0] * len(perm)
  for j, i in enumerate(perm):
    inv[i] = j
  return tuple(inv)


HANDJAX_TO_RHD = _inverse(RHD_TO_HANDJAX)
HANDJAX_TO_STB = _inverse(STB_TO_HANDJAX)


def _take_joints(x, order: tuple[int, ...]):
  if x.shape[-2] != NUM_JOINTS:
    raise ValueError(f"expected {NUM_JOINTS} joints on axis -2, got shape {tuple(x.shape)}")
  return x[..., np.asarray(order), :]


def rhd_to_handjax(keypoints):
  """One RHD hand (..., 21, D) in RHD order -> handjax order. Split RHD's 42 into 0-20 / 21-41 first."""
  return _take_joints(keypoints, RHD_TO_HANDJAX)


def handjax_to_rhd(keypoints):
  return _take_joints(keypoints, HANDJAX_TO_RHD)


def stb_to_handjax(keypoints):
  """STB (..., 21, D) -> handjax order. Joint 0 stays STB's palm centre; see `palm_to_wrist`."""
  return _take_joints(keypoints, STB_TO_HANDJAX)


def handjax_to_stb(keypoints):
  return _take_joints(keypoints, HANDJAX_TO_STB)


def freihand_to_handjax(keypoints):
  """FreiHAND (..., 21, D) is already in the handjax order; validated and returned as is."""
  return _take_joints(keypoints, FREIHAND_TO_HANDJAX)


def split_rhd_hands(keypoints42):
  """RHD's (..., 42, D) -> (left, right), each (..., 21, D) still in RHD order."""
  if keypoints42.shape[-2] != 2 * NUM_JOINTS:
    raise ValueError(f"expected 42 RHD keypoints on axis -2, got shape {tuple(keypoints42.shape)}")
  return keypoints42[..., :NUM_JOINTS, :], keypoints42[..., NUM_JOINTS:, :]


# --- Palm <-> wrist ---------------------------------------------------------------------------
PalmConvention = Literal["midpoint", "ring_mcp"]


def _set_root(pose, root):
  # Works for numpy and jax arrays without in-place updates.
  xp = np if isinstance(pose, np.ndarray) else _jnp()
  return xp.concatenate([root[..., None, :], pose[..., 1:, :]], axis=-2)


def _jnp():
  import jax.numpy as jnp  # Local: keeps the table importable without initialising JAX.

  return jnp


def wrist_to_palm(pose):
  """Replaces joint 0 (wrist) by the RHD reference palm, 0.5 * (wrist + middle MCP)."""
  return _set_root(pose, 0.5 * (pose[..., WRIST, :] + pose[..., MIDDLE_MCP, :]))


def palm_to_wrist(pose, convention: PalmConvention = "midpoint"):
  """Replaces joint 0 (a palm centre) by a wrist estimate.

  Args:
    pose: (..., 21, D) in handjax order with a palm centre at joint 0.
    convention: "midpoint" inverts `wrist_to_palm` exactly (wrist = 2 palm - middle MCP);
      "ring_mcp" is the STB extrapolation of specs/datasets.md (wrist = ringMCP + 2 (palm - ringMCP)).
  """
  palm = pose[..., WRIST, :]
  if convention == "midpoint":
    wrist = 2.0 * palm - pose[..., MIDDLE_MCP, :]
  elif convention == "ring_mcp":
    ring = pose[..., RING_MCP, :]
    wrist = ring + 2.0 * (palm - ring)
  else:
    raise ValueError(f"palm convention must be 'midpoint' or 'ring_mcp', got {convention!r}")
  return _set_root(pose, wrist)


# --- Mirroring --------------------------------------------------------------------------------
LEFT, RIGHT = 0, 1  # `hand_side` values.


def mirror_pose(pose):
  """Mirrors a 3D pose across the camera's x = 0 plane (left <-> right hand, joint order kept)."""
  sign = np.array([-1.0] + [1.0] * (pose.shape[-1] - 1), dtype=np.float32)
  return pose * sign
