"""Camera geometry for hands: projection, view correction, canonical pose + viewpoint.

Conventions (../shared/DESIGN.md): OpenCV camera frame (x right, y down, z forward), metres, pixel
coordinates u = column, v = row with pixel centres at integers, intrinsics
K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]. Rotations act on column vectors, x' = R x; on arrays of
points (..., N, 3) (row vectors) that is `points @ R^T` (`rotate_points`).

Three pieces:

* `project` / `backproject`: the pinhole model, uv = (K X)_{1,2} / (K X)_3 and
  X = depth K^-1 [u, v, 1] with depth = z (not the distance along the ray).
* View correction (Yang et al. ICCV 2019, Sec. 4.1, following Li & Lee CVPR 2019): after cropping,
  the hand sits at the image centre although the camera saw it off-axis; rotating the camera frame
  so that the ray through the crop centre becomes the optical axis removes that many-to-one
  observation-pose pairing. `view_correction_rotation` returns that rotation.
* Canonical pose + viewpoint (Zimmermann & Brox ICCV 2017; Yang & Yao CVPR 2019 / dissertation
  Sec. 4, "CPose" and "viewpoint"): `canonicalize` splits a pose into a rotation-free, scale-free,
  left-handed canonical pose and the rotation that brings it back.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from handjax.hand import pose as pose_lib
from handjax.hand import skeleton
from handjax.hand.kinematics import safe_normalize

# Joints that fix the canonical frame (Zimmermann & Brox 2017, hand3d `canonical_trafo`):
# root at the origin, the middle-finger MCP on the negative y axis, the pinky MCP in the z = 0
# plane with x > 0.
CANONICAL_ROOT = skeleton.WRIST
CANONICAL_ALIGN = skeleton.MIDDLE_MCP
CANONICAL_ROT = skeleton.JOINT_INDEX["pinky_mcp"]

# Smallest |z| (metres) used as a projection divisor: keeps `project` finite at z = 0.
MIN_DEPTH = 1e-6


# --- Pinhole projection -----------------------------------------------------------------------


def _check_K(K: jax.Array) -> None:
  if K.shape[-2:] != (3, 3):
    raise ValueError(f"K must have shape (..., 3, 3), got {tuple(K.shape)}")


def project(points: jax.Array, K: jax.Array) -> jax.Array:
  """Pinhole projection uv = (K X)_{1,2} / (K X)_3 of camera-frame points.

  Points must lie in front of the camera (z > 0); to keep values and gradients finite anyway, the
  divisor z is replaced by +-MIN_DEPTH where |z| < MIN_DEPTH (the result there is meaningless).

  Args:
    points: (..., N, 3) camera-frame points.
    K: (..., 3, 3) intrinsics, broadcast over N.

  Returns:
    (..., N, 2) pixel coordinates (u = column, v = row).
  """
  _check_K(K)
  if points.shape[-1] != 3:
    raise ValueError(f"points must have shape (..., N, 3), got {tuple(points.shape)}")
  uvw = jnp.einsum("...ij,...nj->...ni", K, points)
  z = uvw[..., 2:3]
  small = jnp.abs(z) < MIN_DEPTH
  z = jnp.where(small, jnp.where(z < 0, -MIN_DEPTH, MIN_DEPTH), z)
  return uvw[..., :2] / z


def _homogeneous(uv: jax.Array) -> jax.Array:
  return jnp.concatenate([uv, jnp.ones_like(uv[..., :1])], axis=-1)


def backproject(uv: jax.Array, depth: jax.Array, K: jax.Array) -> jax.Array:
  """Inverse of `project` given depth: X = depth * K^-1 [u, v, 1]^T.

  Args:
    uv: (..., N, 2) pixel coordinates.
    depth: (..., N) z coordinate of each point (not the distance along the ray).
    K: (..., 3, 3) intrinsics.

  Returns:
    (..., N, 3) camera-frame points with z == depth.
  """
  _check_K(K)
  if uv.shape[-1] != 2:
    raise ValueError(f"uv must have shape (..., N, 2), got {tuple(uv.shape)}")
  rays = jnp.einsum("...ij,...nj->...ni", jnp.linalg.inv(K), _homogeneous(uv))
  return rays * depth[..., None]


# --- Rotations --------------------------------------------------------------------------------


def rotate_points(points: jax.Array, rotation: jax.Array) -> jax.Array:
  """x' = R x for every point: (..., N, 3) @ R^T. Works for poses and point clouds alike."""
  return jnp.einsum("...ij,...nj->...ni", rotation, points)


def unrotate_points(points: jax.Array, rotation: jax.Array) -> jax.Array:
  """x = R^T x' for every point (the inverse of `rotate_points` for a rotation R)."""
  return jnp.einsum("...ji,...nj->...ni", rotation, points)


def _skew(a: jax.Array) -> jax.Array:
  """[a]_x, the matrix with [a]_x b = a x b; (..., 3) -> (..., 3, 3)."""
  zero = jnp.zeros_like(a[..., 0])
  x, y, z = a[..., 0], a[..., 1], a[..., 2]
  return jnp.stack(
      [
          jnp.stack([zero, -z, y], -1),
          jnp.stack([z, zero, -x], -1),
          jnp.stack([-y, x, zero], -1),
      ],
      -2,
  )


# --- View correction --------------------------------------------------------------------------


def view_correction_rotation(center_uv: jax.Array, K: jax.Array) -> jax.Array:
  """Rotation R that maps the ray through the crop centre onto the optical axis (0, 0, 1).

  Yang et al. ICCV 2019, Sec. 4.1 ("Viewpoint correction", details deferred to Li & Lee CVPR 2019):
  the crop centre c = (u, v) back-projects to the ray d = K^-1 [u, v, 1]^T; with f = d / ||d||,
  t = (0, 0, 1), a = f x t and cos = f . t = f_z, the rotation is (Rodrigues, minimal angle)

      R = I + [a]_x + [a]_x^2 / (1 + cos),    R f = t.

  The papers fix only R f = t; the remaining freedom (a twist about the optical axis) is pinned here
  by the minimal rotation, whose axis a lies in the image plane (z = 0): a crop centred on the
  principal point gives R = I exactly, and the corrected hand is not rolled. The formula is exact
  and smooth for every ray in front of the camera (cos > 0, so 1 + cos > 1).

  Apply it with `rotate_points(points, R)` to poses and point clouds (the camera rotates about its
  centre, so distances to the camera and between points are preserved) and undo it with
  `unrotate_points` (R^-1 = R^T). For images the corresponding warp is the homography
  H = K R K^-1 (`view_correction_homography`).

  Args:
    center_uv: (..., 2) crop centre in pixels of the image K belongs to.
    K: (..., 3, 3) intrinsics.

  Returns:
    (..., 3, 3) proper rotation matrices.
  """
  _check_K(K)
  if center_uv.shape[-1] != 2:
    raise ValueError(f"center_uv must have shape (..., 2), got {tuple(center_uv.shape)}")
  ray = jnp.einsum("...ij,...j->...i", jnp.linalg.inv(K), _homogeneous(center_uv))
  f = ray / jnp.linalg.norm(ray, axis=-1, keepdims=True)  # ||ray|| >= 1 since ray_z = 1.
  axis = jnp.stack([f[..., 1], -f[..., 0], jnp.zeros_like(f[..., 0])], -1)  # f x (0, 0, 1)
  cos = f[..., 2]
  skew = _skew(axis)
  eye = jnp.eye(3, dtype=f.dtype)
  return eye + skew + (skew @ skew) / (1.0 + cos)[..., None, None]


def view_correction_homography(rotation: jax.Array, K: jax.Array) -> jax.Array:
  """Image warp of a pure camera rotation: H = K R K^-1 (Hartley & Zisserman, Sec. 8.4.2).

  A pixel [u, v, 1] of the original image lands at H [u, v, 1] (up to scale) in the view-corrected
  image; the crop centre lands on the principal point (cx, cy). To resample with an inverse map,
  use H^-1 = K R^T K^-1.

  Args:
    rotation: (..., 3, 3) from `view_correction_rotation`.
    K: (..., 3, 3) intrinsics.

  Returns:
    (..., 3, 3) homographies.
  """
  _check_K(K)
  return K @ rotation @ jnp.linalg.inv(K)


# --- Canonical pose + viewpoint ---------------------------------------------------------------


def _hand_side_sign(hand_side: int | jax.Array, dtype) -> jax.Array:
  """+1 for LEFT, -1 for RIGHT; accepts Python ints or (...,) integer arrays."""
  if isinstance(hand_side, (int, np.integer)) and hand_side not in (skeleton.LEFT, skeleton.RIGHT):
    raise ValueError(
        f"hand_side must be skeleton.LEFT ({skeleton.LEFT}) or skeleton.RIGHT ({skeleton.RIGHT}), "
        f"got {hand_side!r}"
    )
  return jnp.where(jnp.asarray(hand_side) == skeleton.RIGHT, -1.0, 1.0).astype(dtype)


def _mirror_z(points: jax.Array, sign: jax.Array) -> jax.Array:
  # Canonical-frame mirror for right hands (hand3d `flip_right_hand`): z -> -z.
  flip = jnp.stack([jnp.ones_like(sign), jnp.ones_like(sign), sign], -1)  # (..., 3)
  return points * flip[..., None, :]


def _orthogonal_unit(v: jax.Array, axis: jax.Array) -> jax.Array:
  """Unit vector along v's component orthogonal to the unit vector `axis`, never degenerate.

  If v is (numerically) parallel to `axis`, the camera x axis and then the camera z axis are used
  instead, so the result is always a unit vector orthogonal to `axis`.
  """
  def perp(w):
    return w - jnp.sum(w * axis, -1, keepdims=True) * axis

  ex = jnp.broadcast_to(jnp.array([1.0, 0.0, 0.0], v.dtype), v.shape)
  ez = jnp.broadcast_to(jnp.array([0.0, 0.0, 1.0], v.dtype), v.shape)
  # Fallbacks are checked with a loose threshold: they only run for degenerate poses.
  fallback = jnp.where(
      jnp.sum(perp(ex) ** 2, -1, keepdims=True) > 0.01, perp(ex), perp(ez)
  )
  fallback = fallback / jnp.linalg.norm(fallback, axis=-1, keepdims=True)
  return safe_normalize(perp(v), fallback)


def viewpoint_rotation(pose: jax.Array) -> jax.Array:
  """The viewpoint R = [e_x, e_y, e_z] (columns) of a pose's canonical frame.

  Zimmermann & Brox ICCV 2017 (hand3d `canonical_trafo`) with the handjax joints: with p the
  root-relative pose,
    e_y = -p[middle_mcp] / ||p[middle_mcp]||   (the middle MCP lies on the negative y axis),
    e_x = unit part of p[pinky_mcp] orthogonal to e_y  (the pinky MCP has z = 0, x > 0),
    e_z = e_x x e_y                                     (a right-handed frame, det R = +1).
  The frame is built by Gram-Schmidt rather than hand3d's three Euler rotations (same frame,
  no branch cuts). Degenerate poses (middle MCP at the root, pinky MCP on the y axis) fall back to
  camera axes so that R is always a rotation; values and gradients stay finite.

  Args:
    pose: (..., 21, 3).

  Returns:
    (..., 3, 3) rotation matrices, invariant to translation and scale of `pose`.
  """
  rel = pose_lib.root_relative(pose, CANONICAL_ROOT)
  down = jnp.broadcast_to(jnp.array([0.0, 1.0, 0.0], pose.dtype), rel[..., 0, :].shape)
  e_y = safe_normalize(-rel[..., CANONICAL_ALIGN, :], down)
  e_x = _orthogonal_unit(rel[..., CANONICAL_ROT, :], e_y)
  e_z = jnp.cross(e_x, e_y)
  return jnp.stack([e_x, e_y, e_z], axis=-1)


def canonicalize(
    pose: jax.Array, hand_side: int | jax.Array, *, normalize_scale: bool = True
) -> tuple[jax.Array, jax.Array]:
  """Splits a pose into a canonical pose and a viewpoint rotation (Zimmermann & Brox 2017).

      canonical = M_s R^T (pose - pose[root]) / scale,
      pose      = pose[root] + scale * R M_s canonical          (`decanonicalize`),

  where R = `viewpoint_rotation(pose)` (a proper rotation, det +1), root = joint 0 and
  scale = `pose.bone_scale(pose)` clamped at `pose.SCALE_EPS` (the middle-finger MCP -> PIP bone
  of the RHD/STB protocol; 1 if `normalize_scale=False`), and M_s = diag(1, 1, -1) for right hands,
  the identity for left hands. As in hand3d (`flip_right_hand`), **right hands are mirrored to
  left** in the canonical frame; the mirror is a z flip in that frame (the frame is built from the
  palm's in-plane joints, so mirroring the input pose across any plane flips exactly the canonical
  z). Hence `rotation @ canonical == (pose - root) / scale` holds exactly for left hands and after
  un-mirroring (z -> -z) for right hands; `rotation` itself never contains the mirror.

  The canonical pose is invariant to rotation, translation and (with `normalize_scale`) scale of
  the input; its root is at the origin, the middle MCP at (0, -||p_mcp - p_root|| / scale, 0) and
  the pinky MCP in the z = 0 plane with x > 0.

  Args:
    pose: (..., 21, 3) in the handjax order (joint 0 may be the wrist or a palm centre).
    hand_side: `skeleton.LEFT` / `skeleton.RIGHT` or an integer array (...,) of them.
    normalize_scale: divide by the reference bone length (default, as in hand3d) or not.

  Returns:
    (canonical (..., 21, 3), rotation (..., 3, 3)).
  """
  if pose.ndim < 2 or pose.shape[-2:] != (skeleton.NUM_JOINTS, 3):
    raise ValueError(f"pose must have shape (..., 21, 3), got {tuple(pose.shape)}")
  rotation = viewpoint_rotation(pose)
  rel = pose_lib.root_relative(pose, CANONICAL_ROOT)
  if normalize_scale:
    rel = rel / jnp.maximum(pose_lib.bone_scale(pose), pose_lib.SCALE_EPS)[..., None, None]
  canonical = unrotate_points(rel, rotation)
  return _mirror_z(canonical, _hand_side_sign(hand_side, pose.dtype)), rotation


def decanonicalize(
    canonical: jax.Array,
    rotation: jax.Array,
    hand_side: int | jax.Array,
    root: jax.Array | None = None,
    scale: jax.Array | None = None,
) -> jax.Array:
  """Inverse of `canonicalize`: root + scale * R M_s canonical.

  Args:
    canonical: (..., 21, 3) canonical pose (left-handed).
    rotation: (..., 3, 3) viewpoint.
    hand_side: `skeleton.LEFT` / `skeleton.RIGHT` or an integer array (...,).
    root: (..., 3) root position; default the origin (a root-relative pose).
    scale: (...,) scale, e.g. `pose.bone_scale(gt)`; default 1.

  Returns:
    (..., 21, 3) pose.
  """
  unmirrored = _mirror_z(canonical, _hand_side_sign(hand_side, canonical.dtype))
  out = rotate_points(unmirrored, rotation)
  if scale is not None:
    out = out * jnp.asarray(scale)[..., None, None]
  if root is not None:
    out = out + root[..., None, :]
  return out


__all__ = [
    "MIN_DEPTH",
    "backproject",
    "canonicalize",
    "decanonicalize",
    "project",
    "rotate_points",
    "unrotate_points",
    "view_correction_homography",
    "view_correction_rotation",
    "viewpoint_rotation",
]
