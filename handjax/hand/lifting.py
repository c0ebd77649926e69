"""2.5D pose representation and its lifting to 3D (Iqbal et al. ECCV 2018, Sec. 3.3).

A 2.5D pose (Yang dissertation Sec. 2.3.2 and Eq. 6.2; Iqbal et al. 2018) is, per joint, its pixel
coordinates uv and its depth relative to the root joint, d_j = Z_j - Z_root (metres), or the
scale-normalised d_j / s with s the reference-bone length (`skeleton.REFERENCE_SCALE_BONE`, the
middle MCP -> PIP bone of the RHD/STB protocol). Given the intrinsics K, it determines the 3D pose
once the root depth is known, and Iqbal et al. recover the root depth from the scale alone:

    P_j = (Z_root + d_j) a_j,   a_j = K^-1 [u_j, v_j, 1]^T   (a_j has third component 1),

so for the reference bone (n, m) of known length C,

    ||Z_root (a_n - a_m) + (d_n a_n - d_m a_m)||^2 = C^2,

a quadratic A Z^2 + B Z + C' = 0 in Z = Z_root with A = ||a_n - a_m||^2,
B = 2 (a_n - a_m) . (d_n a_n - d_m a_m), C' = ||d_n a_n - d_m a_m||^2 - C^2 (Iqbal Eq. 9-10 in
matrix form). Of its two roots, Iqbal et al. take the larger, Z = (-B + sqrt(B^2 - 4 A C')) / 2A: the
two roots are the two depths at which the reference bone, seen under the given rays, has length C;
the nearer one is (for a hand farther than a few bone lengths from the camera) close to or behind
the camera. With scale-normalised depths and C = 1 everything is in units of s, so
Z_root / s comes out and the metric pose is s times the normalised one (projection is invariant
to scaling about the camera centre).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handjax.hand import kinematics
from handjax.hand import skeleton
from handjax.hand import viewpoint
from handjax.hand.kinematics import safe_norm

class Pose25D(NamedTuple):
  """A 2.5D pose p = (uv, d) (Yang dissertation Sec. 6.3): uv (..., J, 2) pixels, d (..., J) depth
  relative to the root joint (metres, or divided by the reference-bone length where stated)."""

  uv: jax.Array
  depth: jax.Array


# Lower bound on the quadratic's leading coefficient A = ||a_n - a_m||^2 (squared normalised image
# units): A = 0 when both reference joints project to one pixel (the bone lies along the ray) and
# the root depth is then undetermined; the bound only keeps the value and gradient finite.
MIN_QUADRATIC_A = 1e-12


def reference_bone_length(
    pose: jax.Array, bone: tuple[int, int] = skeleton.REFERENCE_SCALE_BONE
) -> jax.Array:
  """||pose[b1] - pose[b0]|| (the scale s of the 2.5D normalisation), finite gradient at 0."""
  return safe_norm(pose[..., bone[1], :] - pose[..., bone[0], :])


def pose_to_25d(
    pose: jax.Array, K: jax.Array, root: int = skeleton.WRIST
) -> tuple[jax.Array, jax.Array]:
  """3D camera-frame pose -> 2.5D (uv, d): uv = `viewpoint.project`, d_j = Z_j - Z_root.

  Divide d by the reference-bone length (`reference_bone_length`) for Iqbal et al.'s
  scale-normalised depth.

  Args:
    pose: (..., J, 3) camera-frame joints (z > 0).
    K: (..., 3, 3) intrinsics.
    root: index of the root joint.

  Returns:
    (uv (..., J, 2) pixels, d (..., J) root-relative depth in the units of `pose`).
  """
  if pose.ndim < 2 or pose.shape[-1] != 3:
    raise ValueError(f"pose must have shape (..., J, 3), got {tuple(pose.shape)}")
  uv = viewpoint.project(pose, K)
  depth = pose[..., 2] - pose[..., root : root + 1, 2]
  return uv, depth


def _rays(uv: jax.Array, K: jax.Array) -> jax.Array:
  homogeneous = jnp.concatenate([uv, jnp.ones_like(uv[..., :1])], axis=-1)
  return jnp.einsum("...ij,...nj->...ni", jnp.linalg.inv(K), homogeneous)


def root_depth_roots(
    uv: jax.Array,
    depth: jax.Array,
    K: jax.Array,
    bone_length: float | jax.Array = 1.0,
    bone: tuple[int, int] = skeleton.REFERENCE_SCALE_BONE,
) -> tuple[jax.Array, jax.Array]:
  """Both roots (larger, smaller) of Iqbal et al.'s quadratic for the root depth (module docstring).

  A negative discriminant (inconsistent uv and d, e.g. noisy predictions: no root depth makes the
  bone long enough) is clamped to 0, giving the depth at which the bone is closest to
  `bone_length`; A is bounded below by `MIN_QUADRATIC_A`. Values and gradients stay finite.

  Args:
    uv: (..., J, 2) pixel coordinates.
    depth: (..., J) root-relative depths, in the units of `bone_length`.
    K: (..., 3, 3) intrinsics.
    bone_length: known length C of the reference bone (1 for scale-normalised depths).
    bone: (n, m) joint indices of the reference bone.

  Returns:
    (z_plus, z_minus), each (...,): the larger root (Iqbal's choice) and the smaller one.
  """
  if uv.shape[-1] != 2 or depth.shape != uv.shape[:-1]:
    raise ValueError(
        f"uv must be (..., J, 2) and depth (..., J), got {tuple(uv.shape)} and "
        f"{tuple(depth.shape)}")
  rays = _rays(uv, K)
  n, m = bone
  diff = rays[..., n, :] - rays[..., m, :]
  offset = depth[..., n, None] * rays[..., n, :] - depth[..., m, None] * rays[..., m, :]
  a = jnp.maximum(jnp.sum(diff * diff, -1), MIN_QUADRATIC_A)
  b = 2.0 * jnp.sum(diff * offset, -1)
  c = jnp.sum(offset * offset, -1) - jnp.square(jnp.asarray(bone_length, uv.dtype))
  disc = b * b - 4.0 * a * c
  ok = disc > 0.0
  root = jnp.where(ok, jnp.sqrt(jnp.where(ok, disc, 1.0)), 0.0)
  return (-b + root) / (2.0 * a), (-b - root) / (2.0 * a)


def root_depth_from_scale(
    uv: jax.Array,
    depth: jax.Array,
    K: jax.Array,
    bone_length: float | jax.Array = 1.0,
    bone: tuple[int, int] = skeleton.REFERENCE_SCALE_BONE,
    prior_lengths: jax.Array | None = None,
) -> jax.Array:
  """Absolute root depth Z_root from a 2.5D pose and the reference-bone length (Iqbal et al. 2018).

  Default (`prior_lengths=None`): Iqbal et al.'s choice, the larger root
  Z_root = (-B + sqrt(B^2 - 4 A C')) / 2A of the quadratic in the module docstring (see
  `root_depth_roots` for the degenerate cases). With scale-normalised depths and `bone_length` = 1
  the result is Z_root / s.

  The larger root is not always the true one: when the reference bone points nearly along the
  viewing ray, A is small and the two roots are of similar size (about 1 in 60 random hand
  orientations at 0.3-1 m, tests/test_lifting.py). Both roots make the reference bone exactly
  `bone_length` long, but only the true one keeps the *other* bones in proportion: the wrong one
  stretches the hand across the image plane by (Z' + d) / (Z + d). So, given `prior_lengths`
  (the 20 bone lengths of a template in units of its reference bone, e.g.
  `kinematics.bone_lengths(correction.TEMPLATE_POSE) / lifting.reference_bone_length(...)`), the
  root in front of the camera whose lifted pose has bone lengths / `bone_length` closest to the
  prior (sum of squared differences) is returned instead (a negative root is never chosen: it
  mirrors the hand through the camera centre, which preserves all bone lengths). This disambiguation is a handjax addition to Iqbal et al.

  Args:
    uv: (..., 21, 2) pixel coordinates (any J >= 2 joints without `prior_lengths`).
    depth: (..., J) root-relative depths in the units of `bone_length`.
    K: (..., 3, 3) intrinsics.
    bone_length: reference-bone length C.
    bone: reference bone (n, m).
    prior_lengths: optional (20,) or (..., 20) bone lengths relative to the reference bone.

  Returns:
    (...,) root depth in the units of `bone_length`.
  """
  z_plus, z_minus = root_depth_roots(uv, depth, K, bone_length, bone)
  if prior_lengths is None:
    return z_plus
  unit = jnp.asarray(bone_length, uv.dtype)

  def misfit(z):
    lengths = kinematics.bone_lengths(backproject_25d(uv, depth, z, K))
    return jnp.sum(jnp.square(lengths / unit[..., None] - prior_lengths), -1)

  # A root behind the camera mirrors the hand through the camera centre, which keeps every bone
  # length: it must be excluded explicitly, not by the misfit.
  use_minus = (z_minus > 0) & (misfit(z_minus) < misfit(z_plus))
  return jnp.where(use_minus, z_minus, z_plus)


def root_depth_all_bones(
    uv: jax.Array,
    depth: jax.Array,
    K: jax.Array,
    bone_lengths: jax.Array,
    iterations: int = 8,
) -> jax.Array:
  """Root depth that best fits *all* 20 bone lengths (a handjax extension of Iqbal et al.).

  Iqbal et al.'s quadratic fixes Z_root from one bone, so noise on that bone's 2.5D coordinates
  rescales the whole lifted hand (e.g. 4 mm of joint noise at 0.5 m moves Z_root by ~8 %). Here
  Z_root minimises sum_k (||Z e_k + f_k|| - l_k)^2, where bone k = (parent p, child c) of the
  lifted pose is Z (a_c - a_p) + (d_c a_c - d_p a_p) = Z e_k + f_k, by `iterations` Gauss-Newton
  steps from the prior-disambiguated quadratic root (`root_depth_from_scale` with the prior
  l_k / l_ref).

  Args:
    uv: (..., 21, 2) pixels.
    depth: (..., 21) root-relative depths (units of `bone_lengths`).
    K: (..., 3, 3) intrinsics.
    bone_lengths: (20,) or (..., 20) known bone lengths (`skeleton.BONES` order).
    iterations: Gauss-Newton steps (the problem is 1D and smooth; 8 is plenty).

  Returns:
    (...,) root depth in the units of `bone_lengths`.
  """
  bone_lengths = jnp.asarray(bone_lengths, uv.dtype)
  ref = bone_lengths[..., skeleton.REFERENCE_SCALE_BONE[1] - 1]
  z = root_depth_from_scale(uv, depth, K, ref, prior_lengths=bone_lengths / ref[..., None])
  rays = _rays(uv, K)
  parents = np.array([p for p, _ in skeleton.BONES], np.int32)
  children = np.array([c for _, c in skeleton.BONES], np.int32)
  e = rays[..., children, :] - rays[..., parents, :]
  f = (depth[..., children, None] * rays[..., children, :]
       - depth[..., parents, None] * rays[..., parents, :])

  def step(_, z):
    vec = z[..., None, None] * e + f
    length = safe_norm(vec)
    jac = jnp.sum(e * vec, -1) / jnp.maximum(length, 1e-12)
    residual = length - bone_lengths
    return z - jnp.sum(jac * residual, -1) / jnp.maximum(jnp.sum(jac * jac, -1), 1e-12)

  return jax.lax.fori_loop(0, iterations, step, z)


def backproject_25d(
    uv: jax.Array, depth: jax.Array, root_depth: jax.Array, K: jax.Array
) -> jax.Array:
  """3D pose from 2.5D and a known root depth: P_j = (Z_root + d_j) K^-1 [u_j, v_j, 1]^T.

  Args:
    uv: (..., J, 2) pixels.
    depth: (..., J) root-relative depths.
    root_depth: (...,) absolute root depth Z_root (same units as `depth`).
    K: (..., 3, 3) intrinsics.

  Returns:
    (..., J, 3) camera-frame pose.
  """
  return viewpoint.backproject(uv, jnp.asarray(root_depth)[..., None] + depth, K)


def lift_25d(
    uv: jax.Array,
    depth_normalized: jax.Array,
    K: jax.Array,
    scale: float | jax.Array = 1.0,
    bone: tuple[int, int] = skeleton.REFERENCE_SCALE_BONE,
    prior_lengths: jax.Array | None = None,
) -> jax.Array:
  """Scale-normalised 2.5D -> metric 3D pose (Iqbal et al. ECCV 2018, Sec. 3.3).

  Solves the root-depth quadratic with unit bone length (`root_depth_from_scale`), back-projects
  P_j / s = (Z_root / s + d_j / s) K^-1 [u_j, v_j, 1]^T, and multiplies by the scale s (the
  evaluation protocol gives s at test time: specs/datasets.md). The result's reference bone has
  length `scale` whenever the quadratic has a real root.

  Args:
    uv: (..., J, 2) pixel coordinates.
    depth_normalized: (..., J) (Z_j - Z_root) / s.
    K: (..., 3, 3) intrinsics.
    scale: (...,) or scalar reference-bone length s (metres).
    bone: reference bone (n, m).
    prior_lengths: optional bone-length prior that picks the root (`root_depth_from_scale`);
      default Iqbal et al.'s larger root.

  Returns:
    (..., J, 3) camera-frame pose in the units of `scale`.
  """
  root = root_depth_from_scale(uv, depth_normalized, K, 1.0, bone, prior_lengths)
  normalized = backproject_25d(uv, depth_normalized, root, K)
  return jnp.asarray(scale, uv.dtype)[..., None, None] * normalized


__all__ = [
    "MIN_QUADRATIC_A",
    "Pose25D",
    "backproject_25d",
    "lift_25d",
    "pose_to_25d",
    "reference_bone_length",
    "root_depth_all_bones",
    "root_depth_from_scale",
    "root_depth_roots",
]
