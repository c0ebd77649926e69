"""Hand kinematics: bones, the Kinematic Chain Space, joint-line distances and joint angles.

Everything takes poses of shape (..., 21, 3) in the handjax joint order (`skeleton.JOINT_NAMES`),
accepts any leading batch axes, and is jit-, vmap- and grad-safe, including at degenerate poses
(zero-length bones, coincident and collinear joints): where a quantity is not differentiable
(a norm at 0, Heron's square root at a flat triangle, an angle of a zero vector) the value is
continuous and the gradient is a finite sub-gradient (0 in the degenerate direction), obtained with
the double-`where` trick so that no NaN reaches the backward pass.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handjax.hand import skeleton

# Squared lengths (m^2) at or below which a vector is treated as zero: (1e-9 m)^2. Far below any
# measurable hand distance, and far above float32's smallest normal number (~1e-38), so the
# guarded branches never see a denormal.
TINY_SQ = 1e-18


def safe_norm(x: jax.Array, axis: int = -1, keepdims: bool = False) -> jax.Array:
  """Euclidean norm with a finite gradient everywhere.

  ||x|| = sqrt(sum x^2) has an undefined (NaN in JAX) gradient at x = 0. Here, where
  sum x^2 <= TINY_SQ, the value is 0 and the gradient 0 (a valid sub-gradient); elsewhere both are
  exact. The inner `where` keeps the untaken branch's sqrt away from 0 (double-`where` trick).

  Args:
    x: array.
    axis: axis to reduce.
    keepdims: keep the reduced axis.

  Returns:
    The norms.
  """
  sq = jnp.sum(x * x, axis=axis, keepdims=keepdims)
  ok = sq > TINY_SQ
  return jnp.where(ok, jnp.sqrt(jnp.where(ok, sq, 1.0)), 0.0)


def safe_normalize(x: jax.Array, fallback: jax.Array | None = None) -> jax.Array:
  """x / ||x|| along the last axis; `fallback` (default zeros) where ||x||^2 <= TINY_SQ.

  Args:
    x: (..., D) vectors.
    fallback: (..., D) (broadcastable) vectors returned where x is numerically zero.

  Returns:
    (..., D) unit vectors (or the fallback); finite values and gradients everywhere.
  """
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  ok = sq > TINY_SQ
  unit = x / jnp.sqrt(jnp.where(ok, sq, 1.0))
  if fallback is None:
    fallback = jnp.zeros_like(x)
  return jnp.where(ok, unit, jnp.broadcast_to(fallback, x.shape).astype(x.dtype))


def _check_pose(pose: jax.Array, name: str = "pose") -> None:
  if pose.ndim < 2 or pose.shape[-2:] != (skeleton.NUM_JOINTS, 3):
    raise ValueError(
        f"{name} must have shape (..., {skeleton.NUM_JOINTS}, 3) in the handjax joint order, "
        f"got {tuple(pose.shape)}"
    )


# Index tables are int32 so that gathers behave the same with and without jax_enable_x64
# (int64 index constants cached under x64 clash with int32 shapes once x64 is switched off).
_PARENT_IDX = np.array([p for p, _ in skeleton.BONES], np.int32)
_CHILD_IDX = np.array([c for _, c in skeleton.BONES], np.int32)


def bone_vectors(pose: jax.Array) -> jax.Array:
  """The 20 bone vectors b_k = p_child - p_parent, in `skeleton.BONES` order.

  Stergioulas et al. (seed 004), Eq. 8: b_k = p_r - p_t = J c. The paper leaves the orientation
  open; here bones point from parent to child (away from the wrist). Flipping every bone leaves
  B^T B unchanged.

  Args:
    pose: (..., 21, 3).

  Returns:
    (..., 20, 3) bone vectors; bone k ends at joint k + 1.
  """
  _check_pose(pose)
  return pose[..., _CHILD_IDX, :] - pose[..., _PARENT_IDX, :]


def bone_lengths(pose: jax.Array) -> jax.Array:
  """Lengths ||b_k|| of the 20 bones (finite gradient at zero length, see `safe_norm`).

  Args:
    pose: (..., 21, 3).

  Returns:
    (..., 20) lengths in the units of `pose`.
  """
  return safe_norm(bone_vectors(pose))


def kcs(pose: jax.Array) -> jax.Array:
  """The Kinematic Chain Space matrix KCS = B^T B (Stergioulas et al., seed 004, Eq. 8-12).

  B = J C is the 3 x 20 matrix whose columns are the bone vectors (Eq. 10-11), so
  KCS[k, m] = <b_k, b_m>: the diagonal holds the squared bone lengths l_k^2 (Eq. 12) and the
  off-diagonal entries l_k l_m cos(angle between bones k and m) (Wandt et al. ECCV 2018).
  A polynomial in the joints: smooth everywhere, no guards needed.

  Args:
    pose: (..., 21, 3).

  Returns:
    (..., 20, 20) symmetric positive semi-definite matrices.
  """
  bones = bone_vectors(pose)
  return jnp.einsum("...kd,...md->...km", bones, bones)


# --- Joint-line distances ---------------------------------------------------------------------

# The 190 lines of Stergioulas et al. (seed 004, Sec. 3.2.2): every pair (j, k), j < k, of the 20
# non-root joints 1..20, i.e. C(20, 2) = 190. The paper states "190 lines ... for the 21 hand
# joints" without listing them; C(21, 2) = 210, and of the two sets of size 190 (pairs avoiding
# joint 0, or all pairs minus the 20 bones) we take the pairs avoiding joint 0 because (a) it is
# what the count gives when lines are formed from the 20 root-relative joints a network predicts
# (joint 0 is identically 0 there), and (b) joint 0 is the one joint whose definition differs
# between datasets (RHD wrist vs STB palm centre), so no line depends on that choice. Joint 0 still
# enters as a *point* i. Bone lines are kept: the distance of a fingertip to its proximal bone's
# line is a direct measure of finger curl.
LINES: tuple[tuple[int, int], ...] = tuple(itertools.combinations(range(1, skeleton.NUM_JOINTS), 2))
NUM_LINES = len(LINES)  # 190
_LINE_J = np.array([j for j, _ in LINES], np.int32)
_LINE_K = np.array([k for _, k in LINES], np.int32)
# ON_LINE[i, l] is True where joint i is one of line l's two joints (distance identically 0).
ON_LINE = (np.arange(skeleton.NUM_JOINTS)[:, None] == _LINE_J[None]) | (
    np.arange(skeleton.NUM_JOINTS)[:, None] == _LINE_K[None]
)

# Threshold on Heron's 16 * area^2 (units m^4) below which a triangle is treated as flat:
# (1e-9 m)^4 scale, i.e. only exactly (numerically) flat triangles; see `joint_line_distances`.
TINY_HERON = 1e-36


def pairwise_distances(points: jax.Array) -> jax.Array:
  """All pairwise distances ||p_i - p_j|| with finite gradients (0 on the diagonal).

  Args:
    points: (..., N, 3).

  Returns:
    (..., N, N) symmetric distance matrices.
  """
  return safe_norm(points[..., :, None, :] - points[..., None, :, :])


def joint_line_distances(pose: jax.Array) -> jax.Array:
  """Distance of every joint i to every line l = (j, k) of `LINES`, by Heron's formula.

  Stergioulas et al. (seed 004), Eq. 14-15 (after Zhang et al. WACV 2017): with
  d_ij, d_ik, d_jk the side lengths of the triangle (i, j, k) and s = (d_ij + d_ik + d_jk) / 2,

      S(i, l) = 2 sqrt(s (s - d_ij)(s - d_ik)(s - d_jk)) / d_jk,

  computed as sqrt(P) / (2 d_jk) with P = (a+b+c)(-a+b+c)(a-b+c)(a+b-c) = 16 s(s-a)(s-b)(s-c).
  Eq. 15 stacks S into a J x L matrix: here (..., 21, 190), lines ordered as `LINES`.

  Degenerate cases (values continuous, gradients finite):
    * flat triangles (i on the line; P <= TINY_HERON, or P < 0 from rounding): S = 0 with gradient
      0 in place of Heron's infinite sqrt derivative (a valid sub-gradient of the distance);
    * coincident line joints (d_jk = 0, the line is undefined): S = d_ij, the distance to the
      point the line has collapsed to;
    * i == j or i == k (`ON_LINE`): exactly 0.
  Precision: Heron's formula loses accuracy for needle-like triangles; in float32 the error of a
  near-zero distance is ~sqrt(float32 eps) ~ 3e-4 times the triangle's size (use float64 or
  `joint_line_distances_cross` where that matters).

  Args:
    pose: (..., 21, 3).

  Returns:
    (..., 21, 190) distances in the units of `pose`.
  """
  _check_pose(pose)
  d = pairwise_distances(pose)  # (..., 21, 21)
  a = d[..., :, _LINE_J]  # d_ij, (..., 21, 190)
  b = d[..., :, _LINE_K]  # d_ik
  c = d[..., _LINE_J, _LINE_K][..., None, :]  # d_jk, (..., 1, 190)
  p16 = (a + b + c) * (-a + b + c) * (a - b + c) * (a + b - c)
  flat = p16 <= TINY_HERON
  root = jnp.where(flat, 0.0, jnp.sqrt(jnp.where(flat, 1.0, p16)))
  line_ok = c > jnp.sqrt(TINY_SQ)
  dist = jnp.where(line_ok, root / (2.0 * jnp.where(line_ok, c, 1.0)), a)
  return jnp.where(ON_LINE, 0.0, dist)


def joint_line_distances_cross(pose: jax.Array) -> jax.Array:
  """Same quantity as `joint_line_distances` by the cross product, ||(p_i-p_j) x (p_k-p_j)|| / d_jk.

  Numerically better conditioned than Heron's formula near collinear joints (straight fingers),
  with bounded gradients there; provided as the accurate alternative and as a cross-check.

  Args:
    pose: (..., 21, 3).

  Returns:
    (..., 21, 190) distances, same layout and degenerate-case rules as `joint_line_distances`.
  """
  _check_pose(pose)
  pj = pose[..., _LINE_J, :][..., None, :, :]  # (..., 1, 190, 3)
  line = pose[..., _LINE_K, :][..., None, :, :] - pj
  to_i = pose[..., :, None, :] - pj  # (..., 21, 190, 3)
  area2 = safe_norm(jnp.cross(to_i, line))
  c = safe_norm(line)
  line_ok = c > jnp.sqrt(TINY_SQ)
  dist = jnp.where(line_ok, area2 / jnp.where(line_ok, c, 1.0), safe_norm(to_i))
  return jnp.where(ON_LINE, 0.0, dist)


# --- Joint angles -----------------------------------------------------------------------------

# The 15 joints at which angles are measured: for each finger (thumb, index, middle, ring, pinky)
# its first three joints (thumb CMC, MCP, IP; finger MCP, PIP, DIP), each the parent end of the
# bone whose direction is measured.
ANGLE_JOINTS: tuple[int, ...] = tuple(
    j for finger in skeleton.FINGER_NAMES for j in skeleton.FINGERS[finger][:3]
)
# _CHAIN[f] = (wrist, base, 2nd, 3rd, tip) of finger f.
_CHAIN = np.array(
    [(skeleton.WRIST,) + skeleton.FINGERS[finger] for finger in skeleton.FINGER_NAMES], np.int32
)
# Threshold on squared unit-vector components below which an angle is undefined (set to 0).
_TINY_UNIT_SQ = 1e-12


class JointAngles(NamedTuple):
  """Flexion and abduction (radians) at `ANGLE_JOINTS`, each (..., 15)."""

  flexion: jax.Array
  abduction: jax.Array


def _safe_atan2(y: jax.Array, x: jax.Array) -> jax.Array:
  # atan2 has a 0/0 gradient at the origin: return angle 0 and gradient 0 there.
  ok = x * x + y * y > _TINY_UNIT_SQ
  return jnp.where(ok, jnp.arctan2(jnp.where(ok, y, 0.0), jnp.where(ok, x, 1.0)), 0.0)


def _dot(a: jax.Array, b: jax.Array) -> jax.Array:
  return jnp.sum(a * b, axis=-1)


def _unit_orthogonal(v: jax.Array, axis: jax.Array, fallback: jax.Array) -> jax.Array:
  return safe_normalize(v - _dot(v, axis)[..., None] * axis, fallback)


def joint_angles(pose: jax.Array, hand_side: int | jax.Array = skeleton.LEFT) -> JointAngles:
  """Flexion and abduction of each finger joint in a local, anatomically oriented frame.

  Right hands are first mirrored to left (x -> -x, `skeleton.mirror_pose`), so both sides share one
  sign convention. Then, with w the wrist and unit vectors throughout:

    * palmar normal  n  = -normalize((index_MCP - w) x (pinky_MCP - w)); for a left hand it points
      out of the palm (for a left hand seen palm-on in the camera, fingers up (-y), thumb at -x,
      n = (0, 0, -1), towards the camera);
    * radial axis of a finger  r_f = normalize(n x m_f), m_f the unit metacarpal direction
      (w -> finger base); it points towards the thumb side (-x in the example above);
    * at a joint with parent bone direction u (for the base joint: the metacarpal) and child bone
      v, the local frame is (u, n', r') with r' = the part of r_f orthogonal to u (normalised) and
      n' = u x r' (palmar, orthogonal to the parent bone);
    * flexion   = atan2(v . n', v . u)                     in (-pi, pi]: 0 for a straight joint,
      positive when the child bone bends towards the palm, negative for hyperextension;
    * abduction = atan2(v . r', sqrt((v . u)^2 + (v . n')^2)) in [-pi/2, pi/2]: positive towards
      the thumb (radial), negative towards the little finger (ulnar).
  The thumb uses the same formulas with its CMC as the base joint; its anatomical axes are rotated
  with respect to the palm, so for the thumb these are angles in the palm-aligned frame, not the
  clinical CMC/MCP angles.

  Degenerate inputs (zero-length bones, collinear palm joints, a bone along r_f) fall back to
  fixed axes or give angle 0; values and gradients stay finite.

  Args:
    pose: (..., 21, 3).
    hand_side: `skeleton.LEFT` / `skeleton.RIGHT` or an integer array (...,) of them.

  Returns:
    `JointAngles(flexion, abduction)`, each (..., 15) in radians, joints ordered as `ANGLE_JOINTS`.
  """
  _check_pose(pose)
  sign = jnp.where(jnp.asarray(hand_side) == skeleton.RIGHT, -1.0, 1.0).astype(pose.dtype)
  flip = jnp.stack([sign, jnp.ones_like(sign), jnp.ones_like(sign)], -1)
  pose = pose * flip[..., None, :]

  def const(v):
    return jnp.asarray(v, pose.dtype)

  wrist = pose[..., skeleton.WRIST, :]
  index_base = pose[..., skeleton.FINGERS["index"][0], :] - wrist
  pinky_base = pose[..., skeleton.FINGERS["pinky"][0], :] - wrist
  normal = safe_normalize(-jnp.cross(index_base, pinky_base), const([0.0, 0.0, -1.0]))
  normal = normal[..., None, None, :]  # (..., 1, 1, 3): broadcast over fingers and joints

  # All five fingers at once: dirs[..., f, t] is the unit direction of bone t of finger f
  # (t = 0 the metacarpal, wrist -> base).
  dirs = safe_normalize(pose[..., _CHAIN[:, 1:], :] - pose[..., _CHAIN[:, :-1], :])
  metacarpal = safe_normalize(dirs[..., 0:1, :], const([0.0, -1.0, 0.0]))  # (..., 5, 1, 3)
  radial = safe_normalize(jnp.cross(normal, metacarpal), const([-1.0, 0.0, 0.0]))
  u = safe_normalize(dirs[..., :3, :], metacarpal)  # a collapsed parent bone borrows the metacarpal
  v = dirs[..., 1:, :]  # (..., 5, 3, 3)
  r = _unit_orthogonal(radial, u, _unit_orthogonal(normal, u, const([0.0, 0.0, -1.0])))
  n = jnp.cross(u, r)
  along, palmar, side = _dot(v, u), _dot(v, n), _dot(v, r)  # (..., 5, 3)
  flexion = _safe_atan2(palmar, along)
  abduction = _safe_atan2(side, safe_norm(jnp.stack([along, palmar], -1)))
  flat = pose.shape[:-2] + (len(ANGLE_JOINTS),)
  return JointAngles(flexion.reshape(flat), abduction.reshape(flat))
