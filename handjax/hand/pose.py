"""Root-relative and scale-normalised poses (the RHD/STB evaluation protocol).

The usual protocol (../shared/specs/datasets.md, "Evaluation protocols") gives the root position and
the global scale at test time: a network predicts

    normalized = (pose - pose[root]) / scale,    scale = ||pose[b1] - pose[b0]||,

with (b0, b1) = `skeleton.REFERENCE_SCALE_BONE` (the middle-finger MCP -> PIP bone), and the metric
pose is recovered as `root + scale * normalized` (`denormalize_pose`).

Zero scale (all joints at one point, or a collapsed reference bone) is made safe by dividing by
max(scale, SCALE_EPS) with SCALE_EPS = 1e-6 m (one micrometre, far below any real bone, ~3 cm):
values and gradients stay finite, and the divisor actually used is what `normalize_pose` returns,
so `denormalize_pose(*normalize_pose(pose))` reproduces `pose` exactly even then.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from handjax.hand import skeleton
from handjax.hand.kinematics import safe_norm

SCALE_EPS = 1e-6  # metres; lower bound on the scale divisor.


def _check_joints(pose: jax.Array, name: str = "pose") -> None:
  if pose.ndim < 2 or pose.shape[-1] != 3:
    raise ValueError(f"{name} must have shape (..., J, 3), got {tuple(pose.shape)}")


def root_relative(pose: jax.Array, root: int = skeleton.WRIST) -> jax.Array:
  """Translates a pose so that joint `root` is at the origin: pose - pose[..., root, :].

  Args:
    pose: (..., J, 3) joint positions.
    root: index of the root joint (default the wrist, joint 0).

  Returns:
    (..., J, 3) root-relative pose; joint `root` is exactly zero.
  """
  _check_joints(pose)
  return pose - pose[..., root : root + 1, :]


def bone_scale(
    pose: jax.Array, bone: tuple[int, int] = skeleton.REFERENCE_SCALE_BONE
) -> jax.Array:
  """Length of one named bone, ||pose[b1] - pose[b0]|| (specs/datasets.md, "Reference scale").

  Safe at zero length: the value is 0 and the gradient is 0 there (double-`where` square root),
  instead of the NaN that `jnp.linalg.norm` gives.

  Args:
    pose: (..., J, 3) joint positions.
    bone: (b0, b1) joint indices; default the middle-finger MCP -> PIP bone.

  Returns:
    (...,) bone lengths in the units of `pose`.
  """
  _check_joints(pose)
  b0, b1 = bone
  return safe_norm(pose[..., b1, :] - pose[..., b0, :])


def normalize_pose(
    pose: jax.Array,
    root: int = skeleton.WRIST,
    bone: tuple[int, int] = skeleton.REFERENCE_SCALE_BONE,
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Root-relative, scale-normalised pose: (pose - root) / max(scale, SCALE_EPS).

  Args:
    pose: (..., J, 3) joint positions.
    root: root joint index.
    bone: the reference bone whose length is the scale.

  Returns:
    (normalized, root_position, scale): (..., J, 3), (..., 3) and (...,); `scale` is the divisor
    actually used, max(||bone||, SCALE_EPS), so `denormalize_pose` inverts exactly.
  """
  root_position = pose[..., root, :]
  scale = jnp.maximum(bone_scale(pose, bone), SCALE_EPS)
  normalized = (pose - root_position[..., None, :]) / scale[..., None, None]
  return normalized, root_position, scale


def denormalize_pose(
    normalized: jax.Array, root_position: jax.Array, scale: jax.Array
) -> jax.Array:
  """Inverse of `normalize_pose`: root_position + scale * normalized.

  Args:
    normalized: (..., J, 3) root-relative, scale-normalised pose.
    root_position: (..., 3) root joint position.
    scale: (...,) scale (e.g. the ground-truth reference bone length at test time).

  Returns:
    (..., J, 3) pose in the units of `root_position`.
  """
  _check_joints(normalized, "normalized")
  scale = jnp.asarray(scale)
  return root_position[..., None, :] + scale[..., None, None] * normalized
