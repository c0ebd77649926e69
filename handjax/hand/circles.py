"""The 55-circle 2D hand model of SemiHand (Yang dissertation Sec. 6.3.3, Fig. 6.4 middle).

The hand mask is approximated by 55 circles m^i = (c^i, r^i): 9 per finger and 10 for the palm.
G(uv) places the centres as fixed linear combinations of the 2D joints (the dissertation: "manually
defined based on the 2D pose"), here `CENTRE_WEIGHTS` (55, 21), c = W uv:

* finger f (thumb, index, middle, ring, pinky), circle 9 f + 3 k + t: on bone k of the finger
  (base -> 2nd joint, 2nd -> 3rd, 3rd -> tip; for the thumb CMC -> MCP -> IP -> tip) at the
  fraction (2 t + 1) / 6 of the bone, t = 0, 1, 2;
* palm, circles 45-54: 45-48 the knuckle row 0.85 MCP_f + 0.15 wrist and 49-52 the mid-palm row
  0.5 MCP_f + 0.5 wrist (f = index .. pinky), 53 above the wrist (0.85 wrist + 0.15 middle MCP),
  54 the thenar eminence (0.35 wrist + 0.1 index MCP + 0.3 thumb CMC + 0.25 thumb MCP).

The radii are "pre-trained from synthetic data": `RADII` (55,) are in units of the hand's
reference-bone length s (middle MCP -> PIP, `skeleton.REFERENCE_SCALE_BONE`), so in pixels
r^i = RADII[i] * pixels_per_unit, with pixels_per_unit the image length of s (for a hand at root
depth Z: f s / Z; `pixels_per_reference_bone` gets it from a 2.5D pose). They were fitted by least
squares against the procedural renderer's capsule radii (`handjax.data.synthetic.hand_model`): for
400 random subjects in the flat rest pose, the target radius of circle i is the radius of the
largest disk centred at c^i inside the 2D silhouette (palm-on orthographic view) of the capsules
it stands for (the finger segment's round cone; for palm circles the palm and thenar cones), i.e.
minus the 2D signed distance; RADII[i] = argmin_rho sum_n (rho s_n - r_in)^2 = sum r s / sum s^2.
Command: `/work/venv/bin/python tests/test_circles.py --fit` (prints the table and the IoU of the
circle mask with the capsule silhouette). Inscribed disks leave gaps between neighbouring circles
and at the palm's edges: the union of the 55 circles covers the flat hand's silhouette (forearm
excluded) with IoU 0.72 (subject 0 of the fit, 0.25 mm grid); the residual of the one-constant-per-
circle fit is at most 14 % RMS of the target radius (subjects' proportions vary).

`render_circles` is R(G(uv)) of Eq. 6.12 (a soft union of disks) and `circle_distances` the
data-to-model distance of Eq. 6.14; the losses built on them live in `handjax.losses.consistency`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handjax.hand import lifting
from handjax.hand import skeleton
from handjax.hand.kinematics import safe_norm

NUM_CIRCLES = 55
NUM_FINGER_CIRCLES = 45
FINGER_FRACTIONS = (1.0 / 6.0, 0.5, 5.0 / 6.0)


def _centre_weights() -> np.ndarray:
  w = np.zeros((NUM_CIRCLES, skeleton.NUM_JOINTS), np.float32)
  for f, finger in enumerate(skeleton.FINGER_NAMES):
    joints = skeleton.FINGERS[finger]
    for k in range(3):
      for t, frac in enumerate(FINGER_FRACTIONS):
        row = 9 * f + 3 * k + t
        w[row, joints[k]] = 1.0 - frac
        w[row, joints[k + 1]] = frac
  wrist, mid = skeleton.WRIST, skeleton.MIDDLE_MCP
  for i, finger in enumerate(("index", "middle", "ring", "pinky")):
    base = skeleton.FINGERS[finger][0]
    w[45 + i, [base, wrist]] = (0.85, 0.15)
    w[49 + i, [base, wrist]] = (0.5, 0.5)
  w[53, [wrist, mid]] = (0.85, 0.15)
  thumb_cmc, thumb_mcp = skeleton.FINGERS["thumb"][:2]
  w[54, [wrist, skeleton.FINGERS["index"][0], thumb_cmc, thumb_mcp]] = (0.35, 0.1, 0.3, 0.25)
  return w


CENTRE_WEIGHTS = _centre_weights()

# Fitted radii, units of the reference-bone length (see the module docstring for the procedure).
RADII = np.array([
    # thumb: metacarpal, proximal, distal (3 circles each, base -> tip)
    0.283, 0.270, 0.257, 0.247, 0.239, 0.230, 0.221, 0.210, 0.095,
    # index
    0.200, 0.193, 0.187, 0.182, 0.177, 0.173, 0.166, 0.158, 0.075,
    # middle
    0.208, 0.201, 0.195, 0.189, 0.184, 0.179, 0.173, 0.164, 0.081,
    # ring
    0.196, 0.190, 0.184, 0.178, 0.174, 0.169, 0.163, 0.155, 0.078,
    # pinky
    0.172, 0.166, 0.161, 0.157, 0.152, 0.148, 0.143, 0.136, 0.068,
    # palm: knuckle row (index..pinky), mid-palm row (index..pinky), wrist, thenar
    0.205, 0.225, 0.240, 0.221, 0.137, 0.202, 0.250, 0.189, 0.197, 0.207,
], np.float32)


class Circles(NamedTuple):
  """Circle hand model m = {(c^i, r^i)}: centres (..., 55, 2) and radii (..., 55), pixels."""

  centres: jax.Array
  radii: jax.Array


def circle_model(
    uv: jax.Array,
    pixels_per_unit: float | jax.Array,
    radii: jax.Array | np.ndarray = RADII,
) -> Circles:
  """G(uv) of Yang dissertation Eq. 6.12-6.14: the 55 circles of a 2D hand pose.

  c = W uv with W = `CENTRE_WEIGHTS`, r = radii * pixels_per_unit.

  Args:
    uv: (..., 21, 2) joints in pixels (u = column, v = row).
    pixels_per_unit: (...,) or scalar image length (pixels) of the reference bone.
    radii: (55,) radii in units of the reference bone, default the fitted `RADII`.

  Returns:
    `Circles` in pixels.
  """
  if uv.ndim < 2 or uv.shape[-2:] != (skeleton.NUM_JOINTS, 2):
    raise ValueError(f"uv must have shape (..., {skeleton.NUM_JOINTS}, 2), got {tuple(uv.shape)}")
  radii = jnp.asarray(radii, uv.dtype)
  if radii.shape != (NUM_CIRCLES,):
    raise ValueError(f"radii must have shape ({NUM_CIRCLES},), got {tuple(radii.shape)}")
  centres = jnp.einsum("cj,...jd->...cd", jnp.asarray(CENTRE_WEIGHTS, uv.dtype), uv)
  scale = jnp.asarray(pixels_per_unit, uv.dtype)[..., None]
  return Circles(centres, radii * scale)


def pixels_per_reference_bone(uv: jax.Array, depth_normalized: jax.Array, K: jax.Array) -> jax.Array:
  """Image length of the reference bone from a scale-normalised 2.5D pose: f_x s / Z_root.

  Z_root / s comes from Iqbal et al.'s quadratic (`lifting.root_depth_from_scale`, larger root).

  Args:
    uv: (..., 21, 2) pixels.
    depth_normalized: (..., 21) root-relative depth / s.
    K: (..., 3, 3) intrinsics.

  Returns:
    (...,) pixels per reference-bone length.
  """
  root = lifting.root_depth_from_scale(uv, depth_normalized, K)
  return K[..., 0, 0] / jnp.maximum(root, 1e-6)


def _pixel_grid(size: tuple[int, int], dtype) -> jax.Array:
  height, width = size
  v, u = jnp.meshgrid(jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype),
                      indexing="ij")
  return jnp.stack([u, v], -1)  # (h, w, 2), (u, v) per pixel centre


def circle_distances(circles: Circles, size: tuple[int, int]) -> jax.Array:
  """Signed distance of every pixel centre g to every circle, ||g - c^i|| - r^i (Eq. 6.14).

  Args:
    circles: `Circles` with centres (..., 55, 2), radii (..., 55), pixels.
    size: (height, width) of the image grid.

  Returns:
    (..., h, w, 55) signed distances (negative inside a circle); the norm has a finite
    (zero) gradient where a pixel centre coincides with a circle centre.
  """
  grid = _pixel_grid(size, circles.centres.dtype)
  offsets = grid[..., :, :, None, :] - circles.centres[..., None, None, :, :]
  return safe_norm(offsets) - circles.radii[..., None, None, :]


def render_circles(circles: Circles, size: tuple[int, int], softness: float = 0.5) -> jax.Array:
  """R(G(uv)) of Eq. 6.12: a soft mask of the union of the circles.

  mask(g) = sigmoid(-min_i (||g - c^i|| - r^i) / softness): 1/2 on the union's boundary, -> 1
  inside and -> 0 outside over a band of a few `softness` pixels; `softness` -> 0 gives the hard
  indicator of the union (then no gradient). The sum of the mask approximates the union's area
  (the sigmoid's transition is antisymmetric about the boundary). The dissertation renders "like
  [Wan et al. CVPR 2019]" without giving the kernel; the sigmoid of the signed distance is that
  standard choice.

  Args:
    circles: `Circles` in pixels.
    size: (height, width).
    softness: width (pixels) of the boundary transition, > 0.

  Returns:
    (..., h, w, 1) mask in (0, 1).
  """
  if softness <= 0:
    raise ValueError(f"softness must be > 0 pixels, got {softness}")
  nearest = jnp.min(circle_distances(circles, size), axis=-1)
  return jax.nn.sigmoid(-nearest / softness)[..., None]


__all__ = [
    "CENTRE_WEIGHTS",
    "Circles",
    "NUM_CIRCLES",
    "RADII",
    "circle_distances",
    "circle_model",
    "pixels_per_reference_bone",
    "render_circles",
]
