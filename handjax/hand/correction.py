"""Pose correction: greedy registration of a template skeleton along the kinematic chain.

Two corrections of a noisy (pseudo-label) pose, both pure jnp, batched and jit/vmap/grad-safe:

* `register_pose` (Yang dissertation Sec. 6.3.2, "Label Correction", and Fig. 6.4 right; SemiHand,
  ICCV 2021): the root is aligned by translation, then, bone by bone down the kinematic chain, each
  child joint is placed at its registered parent plus the template bone length along the direction
  from the *registered* parent to the *observed* child. Bone lengths become the template's exactly;
  errors at the end points do not accumulate because each direction aims at the observed joint.
* `correct_pose` (dissertation Sec. 7.3.5.1, the dual-modality network): the same greedy walk, but
  each direction is first expressed as (flexion, abduction) in the local joint frame of
  `kinematics.joint_angles` and both angles are clamped to the intervals of `ANGLE_LIMITS_DEG`.
  Measured with `kinematics.joint_angles`, every angle of the result lies inside its interval.

`correct_pose_25d` applies either one to a 2.5D pose (uv, root-relative depth) by lifting it to 3D
(`lifting.root_depth_all_bones`: the root depth at which the bones best match the template's),
correcting, and projecting back.

Degenerate inputs: where the observed child coincides with its registered parent (a zero-length
observed bone) the direction is undefined; the fallback is to continue straight along the registered
parent bone (flexion = abduction = 0), and for the five wrist -> finger-base bones, which have no
parent bone, the template's direction of that bone (`TEMPLATE_POSE`, mirrored for right hands).
Values and gradients stay finite.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from handjax.hand import kinematics
from handjax.hand import lifting
from handjax.hand import skeleton
from handjax.hand.kinematics import safe_norm
from handjax.hand.kinematics import safe_normalize

# Template hand (metres) in the frame of the `joint_angles` docstring: a LEFT hand seen palm-on,
# fingers up (-y), thumb at -x, palm normal (0, 0, -1). It is the procedural renderer's mean
# subject (hand length 18.5 cm, mean proportions, thickness 1) with every joint angle 0, i.e.
# `handjax.data.synthetic.hand_model.forward_kinematics` of that shape, mapped (x, y, z) ->
# (-x, -y, -z) (mirror to a left hand, then turn the fingers up and the palm to the camera).
# Produced by `/work/venv/bin/python tests/test_correction.py --fit` (rounded to 0.1 mm); a test
# checks it against the renderer.
TEMPLATE_POSE = np.array([
    (0.0000, 0.0000, 0.0000),
    (-0.0203, -0.0222, -0.0065),
    (-0.0513, -0.0532, -0.0182),
    (-0.0722, -0.0740, -0.0261),
    (-0.0892, -0.0911, -0.0326),
    (-0.0194, -0.0842, 0.0000),
    (-0.0229, -0.1238, 0.0000),
    (-0.0250, -0.1478, 0.0000),
    (-0.0268, -0.1680, 0.0000),
    (0.0000, -0.0879, 0.0000),
    (0.0000, -0.1332, 0.0000),
    (0.0000, -0.1610, 0.0000),
    (0.0000, -0.1832, 0.0000),
    (0.0176, -0.0833, 0.0000),
    (0.0220, -0.1256, 0.0000),
    (0.0248, -0.1522, 0.0000),
    (0.0271, -0.1734, 0.0000),
    (0.0333, -0.0740, 0.0000),
    (0.0408, -0.1064, 0.0000),
    (0.0452, -0.1254, 0.0000),
    (0.0493, -0.1434, 0.0000),
], np.float32)

# Biomechanical intervals (degrees) in the convention of `kinematics.joint_angles` (left-hand frame,
# flexion > 0 towards the palm, abduction > 0 towards the thumb), one row per `ANGLE_JOINTS` entry
# (thumb CMC, MCP, IP; then MCP, PIP, DIP of index, middle, ring, pinky), columns
# (flexion min, flexion max, abduction min, abduction max).
#
# The renderer's own table (`hand_model.ANGLE_LIMITS`) is not reusable as is: it parameterises
# rotations of the renderer's bone frames (finger splay, a thumb frame tilted out of the palm),
# not the anatomical frame that `joint_angles` measures. So these intervals are the renderer's
# limits *translated* into the `joint_angles` convention: the range of `joint_angles` over 20,000
# renderer hands (random subjects, angles uniform within `hand_model.ANGLE_LIMITS`), widened by 5
# degrees and rounded outwards to a multiple of 5 degrees. Every synthetic training pose is thus
# feasible. Produced by `/work/venv/bin/python tests/test_correction.py --fit`.
# The PIP/DIP abduction intervals are not zero-width because `joint_angles` measures abduction
# against the palm's radial axis, not the finger's own hinge axis (a splayed, flexed finger shows
# apparent abduction at its PIP and DIP).
ANGLE_LIMITS_DEG = np.array([
    # flex_min, flex_max, abd_min, abd_max
    (-15.0, 75.0, -60.0, 25.0),  # thumb CMC
    (-15.0, 70.0, -35.0, 15.0),  # thumb MCP
    (-25.0, 90.0, -45.0, 45.0),  # thumb IP
    (-30.0, 95.0, -35.0, 20.0),  # index MCP
    (-5.0, 120.0, -20.0, 35.0),  # index PIP
    (-15.0, 85.0, -20.0, 35.0),  # index DIP
    (-30.0, 95.0, -20.0, 20.0),  # middle MCP
    (-5.0, 120.0, -20.0, 20.0),  # middle PIP
    (-15.0, 90.0, -20.0, 20.0),  # middle DIP
    (-30.0, 95.0, -15.0, 30.0),  # ring MCP
    (-5.0, 120.0, -30.0, 15.0),  # ring PIP
    (-10.0, 85.0, -25.0, 15.0),  # ring DIP
    (-35.0, 95.0, -15.0, 45.0),  # pinky MCP
    (-5.0, 120.0, -45.0, 25.0),  # pinky PIP
    (-15.0, 85.0, -45.0, 20.0),  # pinky DIP
], np.float32)

# _LEVELS[k] = the five joints at depth k + 1 of the chains (thumb, index, ..., pinky).
_LEVELS = np.array([[1 + 4 * f + k for f in range(5)] for k in range(4)], np.int32)
# Row of ANGLE_LIMITS_DEG for finger f at level k (k = 1, 2, 3): the angle is measured at the
# parent joint (level k - 1), the ANGLE_JOINTS entry 3 f + k - 1.
_LIMIT_ROWS = np.array([[3 * f + k - 1 for f in range(5)] for k in (1, 2, 3)], np.int32)
_INDEX_BASE = skeleton.FINGERS["index"][0]
_PINKY_BASE = skeleton.FINGERS["pinky"][0]


def template_bone_lengths(template: jax.Array | np.ndarray = TEMPLATE_POSE) -> jax.Array:
  """The 20 bone lengths (`skeleton.BONES` order) of a template pose, default `TEMPLATE_POSE`."""
  return kinematics.bone_lengths(jnp.asarray(template))


def _check_inputs(pose: jax.Array, lengths: jax.Array) -> None:
  if pose.ndim < 2 or pose.shape[-2:] != (skeleton.NUM_JOINTS, 3):
    raise ValueError(
        f"pose must have shape (..., {skeleton.NUM_JOINTS}, 3) in the handjax joint order, "
        f"got {tuple(pose.shape)}")
  if lengths.shape[-1:] != (skeleton.NUM_BONES,):
    raise ValueError(
        f"bone_lengths must have shape (..., {skeleton.NUM_BONES}) in skeleton.BONES order, "
        f"got {tuple(lengths.shape)}")


def _mirror(pose: jax.Array, hand_side: int | jax.Array) -> jax.Array:
  """x -> -x for right hands (an involution), broadcast over the batch; as in `joint_angles`."""
  sign = jnp.where(jnp.asarray(hand_side) == skeleton.RIGHT, -1.0, 1.0).astype(pose.dtype)
  flip = jnp.stack([sign, jnp.ones_like(sign), jnp.ones_like(sign)], -1)
  return pose * flip[..., None, :]


def _safe_atan2(y: jax.Array, x: jax.Array) -> jax.Array:
  # Angle 0 with gradient 0 at the origin, as `kinematics.joint_angles` does.
  ok = x * x + y * y > 1e-12
  return jnp.where(ok, jnp.arctan2(jnp.where(ok, y, 0.0), jnp.where(ok, x, 1.0)), 0.0)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sum(a * b, axis=-1, keepdims=True)


def _unit_orthogonal(v: jax.Array, axis: jax.Array, fallback: jax.Array) -> jax.Array:
  return safe_normalize(v - _dot(v, axis) * axis, fallback)


# An aim shorter than this share of its bone's length is no direction: a child observed on its
# parent is still a few float32 ulps (~1e-8 m at hand scale) from the *registered* parent, which
# `safe_normalize`'s absolute threshold would turn into an arbitrary unit vector.
_DEGENERATE_AIM = 1e-5


def _aim_direction(aim: jax.Array, length: jax.Array, fallback: jax.Array) -> jax.Array:
  """aim / ||aim||, or `fallback` where ||aim|| <= _DEGENERATE_AIM * length (any units)."""
  fallback = jnp.broadcast_to(fallback, aim.shape)
  degenerate = _dot(aim, aim) <= (_DEGENERATE_AIM * length) ** 2
  return jnp.where(degenerate, fallback, safe_normalize(aim, fallback))


def _greedy_chain(
    observed: jax.Array,
    lengths: jax.Array,
    limits_rad: jax.Array | None,
) -> jax.Array:
  """The shared greedy walk on a LEFT-hand pose; clamps angles when `limits_rad` is given."""
  dtype = observed.dtype
  lengths = jnp.broadcast_to(lengths.astype(dtype), observed.shape[:-2] + (skeleton.NUM_BONES,))
  template_dirs = safe_normalize(jnp.asarray(TEMPLATE_POSE[_LEVELS[0]], dtype))  # (5, 3)

  def const(v):
    return jnp.broadcast_to(jnp.asarray(v, dtype), observed.shape[:-2] + (5, 3))

  wrist = observed[..., skeleton.WRIST, :]
  # Level 0: wrist -> finger bases; only lengths are constrained (no angle is measured there).
  aim = observed[..., _LEVELS[0], :] - wrist[..., None, :]
  length = lengths[..., _LEVELS[0] - 1, None]
  direction = _aim_direction(aim, length, template_dirs)
  level = wrist[..., None, :] + length * direction
  joints = [wrist[..., None, :], level]
  parent_dir = direction

  if limits_rad is not None:
    # The frame of `kinematics.joint_angles`, built from the registered palm (fixed from here on).
    index_base = level[..., 1, :] - wrist
    pinky_base = level[..., 4, :] - wrist
    normal = safe_normalize(-jnp.cross(index_base, pinky_base),
                            jnp.asarray([0.0, 0.0, -1.0], dtype))[..., None, :]
    metacarpal = safe_normalize(direction, const([0.0, -1.0, 0.0]))
    radial = safe_normalize(jnp.cross(normal, metacarpal), const([-1.0, 0.0, 0.0]))
    normal = jnp.broadcast_to(normal, metacarpal.shape)

  for k in (1, 2, 3):
    parent = level
    aim = observed[..., _LEVELS[k], :] - parent
    if limits_rad is None:
      direction = _aim_direction(aim, lengths[..., _LEVELS[k] - 1, None], parent_dir)
    else:
      u = safe_normalize(parent_dir, metacarpal)
      r = _unit_orthogonal(radial, u, _unit_orthogonal(normal, u, const([0.0, 0.0, -1.0])))
      n = jnp.cross(u, r)
      along, palmar, side = _dot(aim, u)[..., 0], _dot(aim, n)[..., 0], _dot(aim, r)[..., 0]
      flexion = _safe_atan2(palmar, along)
      abduction = _safe_atan2(side, safe_norm(jnp.stack([along, palmar], -1)))
      lim = limits_rad[_LIMIT_ROWS[k - 1]]  # (5, 4)
      flexion = jnp.clip(flexion, lim[:, 0], lim[:, 1])[..., None]
      abduction = jnp.clip(abduction, lim[:, 2], lim[:, 3])[..., None]
      direction = (jnp.cos(abduction) * (jnp.cos(flexion) * u + jnp.sin(flexion) * n)
                   + jnp.sin(abduction) * r)
    level = parent + lengths[..., _LEVELS[k] - 1, None] * direction
    joints.append(level)
    parent_dir = direction

  # joints[k] holds level k - 1 (joints[0] the wrist); reorder to the handjax joint order.
  stacked = jnp.concatenate(joints, axis=-2)  # (..., 21, 3) in order wrist, L0, L1, L2, L3
  order = np.argsort(np.concatenate([[skeleton.WRIST], _LEVELS.reshape(-1)]))
  return stacked[..., order, :]


def register_pose(
    observed: jax.Array,
    bone_lengths: jax.Array | None = None,
    hand_side: int | jax.Array = skeleton.LEFT,
) -> jax.Array:
  """Pose registration P of SemiHand (Yang dissertation Sec. 6.3.2 and Fig. 6.4 right).

  Greedy approximation along the kinematic chain: r_root = p_root (alignment by translation), then
  for every bone (parent a, child b) in chain order

      r_b = r_a + l_ab * (p_b - r_a) / ||p_b - r_a||,

  with l_ab the template length and p the observed pose: the direction runs from the *registered*
  parent to the *observed* child, so end-point errors do not accumulate down the finger. A
  zero-length aim (||p_b - r_a|| <= 1e-5 l_ab, so float32 rounding counts as zero) continues
  along the registered parent bone; for the wrist -> base
  bones, along the template's bone (`TEMPLATE_POSE`, mirrored for right hands).

  Args:
    observed: (..., 21, 3) pose (any units; root = joint 0).
    bone_lengths: (..., 20) or (20,) template lengths in the units of `observed`, `skeleton.BONES`
      order; default the lengths of `TEMPLATE_POSE` (metres).
    hand_side: `skeleton.LEFT` / `skeleton.RIGHT` or an integer array (...,); only selects the
      mirrored template direction of the fallback.

  Returns:
    (..., 21, 3) registered pose with `kinematics.bone_lengths` equal to `bone_lengths`.
  """
  lengths = template_bone_lengths() if bone_lengths is None else jnp.asarray(bone_lengths)
  _check_inputs(observed, lengths)
  left = _mirror(observed, hand_side)
  return _mirror(_greedy_chain(left, lengths, None), hand_side)


def correct_pose(
    observed: jax.Array,
    bone_lengths: jax.Array | None = None,
    hand_side: int | jax.Array = skeleton.LEFT,
    angle_limits_deg: jax.Array | np.ndarray = ANGLE_LIMITS_DEG,
) -> jax.Array:
  """Bone-length and joint-angle correction (Yang dissertation Sec. 7.3.5.1).

  The greedy chain of `register_pose`, but at every finger joint the aim v = p_b - r_a is written
  in the local frame (u, n', r') of `kinematics.joint_angles` built from the already registered
  joints (u the parent bone, n' palmar, r' radial) as

      flexion = atan2(v . n', v . u),  abduction = atan2(v . r', ||(v . u, v . n')||),

  both are clamped to their interval of `angle_limits_deg`, and the child is placed at
  r_b = r_a + l_ab [cos(abd) (cos(flex) u + sin(flex) n') + sin(abd) r']. Following the
  dissertation ("build a local coordinate system ... greedy approximation ... joint angles that
  exceed a valid interval are rectified", after Spurr et al. ECCV 2020), the clamp is per angle,
  joint by joint from the palm outwards. The wrist -> finger-base bones only get their lengths
  (no angle is measured there). Right hands are mirrored to left, corrected and mirrored back.

  A pose whose bone lengths equal the template's and whose angles are inside the intervals is
  returned unchanged (up to rounding).

  Args:
    observed: (..., 21, 3) pose.
    bone_lengths: (..., 20) or (20,) template lengths; default those of `TEMPLATE_POSE`.
    hand_side: `skeleton.LEFT` / `skeleton.RIGHT` or an integer array (...,).
    angle_limits_deg: (15, 4) intervals in degrees, layout of `ANGLE_LIMITS_DEG`.

  Returns:
    (..., 21, 3) corrected pose.
  """
  lengths = template_bone_lengths() if bone_lengths is None else jnp.asarray(bone_lengths)
  _check_inputs(observed, lengths)
  limits = jnp.asarray(angle_limits_deg)
  if limits.shape != (len(kinematics.ANGLE_JOINTS), 4):
    raise ValueError(
        f"angle_limits_deg must have shape ({len(kinematics.ANGLE_JOINTS)}, 4) = (joint, "
        f"[flex_min, flex_max, abd_min, abd_max]), got {tuple(limits.shape)}")
  left = _mirror(observed, hand_side)
  corrected = _greedy_chain(left, lengths, jnp.deg2rad(limits).astype(observed.dtype))
  return _mirror(corrected, hand_side)


def correct_pose_25d(
    uv: jax.Array,
    depth: jax.Array,
    K: jax.Array,
    hand_side: int | jax.Array = skeleton.LEFT,
    template: jax.Array | np.ndarray = TEMPLATE_POSE,
    clamp_angles: bool = False,
) -> tuple[jax.Array, jax.Array]:
  """P(p) for a 2.5D pose p = (uv, d): lift, correct in 3D, project back (SemiHand Eq. 6.5, 6.8).

  SemiHand corrects 2.5D pseudo-labels (uv pixels, d metric depth relative to the root). The
  registration needs 3D, so the pose is lifted with the root depth at which its bones best match
  the template's lengths (`lifting.root_depth_all_bones`: Iqbal et al.'s quadratic, disambiguated
  and refined with all 20 bones, so the hand is assumed template-sized, which is what the
  registration enforces anyway), corrected (`register_pose`, or `correct_pose` when
  `clamp_angles`), and mapped back to (uv, d) with `lifting.pose_to_25d`.

  Args:
    uv: (..., 21, 2) pixel coordinates.
    depth: (..., 21) metric depth relative to joint 0 (metres).
    K: (..., 3, 3) intrinsics of the image `uv` refers to.
    hand_side: `skeleton.LEFT` / `skeleton.RIGHT` or an integer array (...,).
    template: (21, 3) or (..., 21, 3) template pose in metres whose bone lengths are imposed.
    clamp_angles: also clamp joint angles (Sec. 7.3.5.1) instead of lengths only (Sec. 6.3.2).

  Returns:
    (uv, depth) of the corrected pose, shapes as the inputs.
  """
  template = jnp.asarray(template, uv.dtype)
  lengths = template_bone_lengths(template)
  root = lifting.root_depth_all_bones(uv, depth, K, lengths)
  pose = lifting.backproject_25d(uv, depth, root, K)
  fix = correct_pose if clamp_angles else register_pose
  corrected = fix(pose, lengths, hand_side)
  return lifting.pose_to_25d(corrected, K)


__all__ = [
    "ANGLE_LIMITS_DEG",
    "TEMPLATE_POSE",
    "correct_pose",
    "correct_pose_25d",
    "register_pose",
    "template_bone_lengths",
]
