"""Pose sampler: named gestures with perturbation, uniform joint angles, global placement in view.

Angles follow `hand_model.ANGLE_LIMITS` (5 fingers x [flexion/abduction terms], degrees). DIP flexion
is coupled to PIP flexion, DIP = 2/3 PIP + N(0, 8 deg) (the classic tendon coupling), then clipped.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handjax.data.synthetic import hand_model
from handjax.data.synthetic.draws import Draws

# Finger rows: (MCP flexion, MCP abduction, PIP flexion); DIP comes from the coupling.
# Thumb row: (CMC flexion, CMC abduction, MCP flexion, IP flexion).
_OPEN = (0.0, 0.0, 5.0)
_CURL = (85.0, 0.0, 100.0)
_THUMB_OUT = (0.0, 10.0, 5.0, 5.0)
_THUMB_IN = (40.0, 25.0, 50.0, 45.0)  # folded over the curled fingers.


def _g(thumb, index, middle, ring, pinky, spread=0.0):
  fingers = [index, middle, ring, pinky]
  rows = [list(thumb)]
  for i, (mcp, abd, pip) in enumerate(fingers):
    rows.append([mcp, abd + spread * (1.5 - i) / 1.5, pip, 0.0])
  return rows


GESTURES: dict[str, list[list[float]]] = {
    "open_palm": _g(_THUMB_OUT, _OPEN, _OPEN, _OPEN, _OPEN, spread=10.0),
    "flat": _g((10.0, 5.0, 5.0, 5.0), _OPEN, _OPEN, _OPEN, _OPEN),
    "relaxed": _g((15.0, 20.0, 15.0, 20.0), (20.0, 0.0, 25.0), (25.0, 0.0, 30.0),
                  (30.0, 0.0, 35.0), (35.0, 0.0, 40.0), spread=4.0),
    "fist": _g(_THUMB_IN, _CURL, _CURL, _CURL, _CURL),
    "point": _g(_THUMB_IN, _OPEN, _CURL, _CURL, _CURL),
    "pinch": _g((30.0, 40.0, 20.0, 25.0), (45.0, 0.0, 45.0), (20.0, 0.0, 25.0),
                (25.0, 0.0, 30.0), (30.0, 0.0, 35.0)),
    "ok": _g((35.0, 40.0, 25.0, 30.0), (55.0, 5.0, 65.0), (5.0, 0.0, 10.0), (5.0, 0.0, 10.0),
             (5.0, 0.0, 10.0), spread=8.0),
    "victory": _g(_THUMB_IN, (0.0, 8.0, 5.0), (0.0, -8.0, 5.0), _CURL, _CURL),
    "three": _g(_THUMB_IN, _OPEN, _OPEN, _OPEN, _CURL, spread=8.0),
    "four": _g((45.0, 20.0, 35.0, 30.0), _OPEN, _OPEN, _OPEN, _OPEN, spread=8.0),
    "claw": _g((15.0, 30.0, 30.0, 45.0), (15.0, 0.0, 80.0), (15.0, 0.0, 80.0),
               (15.0, 0.0, 80.0), (15.0, 0.0, 80.0), spread=8.0),
    "thumbs_up": _g((-10.0, 5.0, 0.0, 0.0), _CURL, _CURL, _CURL, _CURL),
    "horns": _g(_THUMB_IN, _OPEN, _CURL, _CURL, _OPEN),
    "call": _g((-5.0, 15.0, 0.0, 0.0), _CURL, _CURL, _CURL, _OPEN),
    "grasp": _g((25.0, 45.0, 20.0, 20.0), (40.0, 0.0, 50.0), (40.0, 0.0, 50.0),
                (40.0, 0.0, 50.0), (40.0, 0.0, 50.0)),
}
# Counting 1-5 are point, victory, three, four, open_palm.
GESTURE_NAMES: tuple[str, ...] = tuple(GESTURES)
_GESTURE_TABLE = np.asarray([GESTURES[n] for n in GESTURE_NAMES], np.float32)  # (G, 5, 4)
GESTURE_NOISE_DEG = 8.0
DIP_COUPLING = 2.0 / 3.0
DIP_NOISE_DEG = 8.0


def sample_angles(rand: Draws, p_gesture: float) -> tuple[jax.Array, jax.Array]:
  """(5, 4) joint angles (degrees) within ANGLE_LIMITS, and the gesture index (-1 = uniform).

  With probability `p_gesture` a named gesture plus N(0, 8 deg) per angle, else uniform within the
  limits; then DIP = 2/3 PIP + N(0, 8 deg) for the four fingers and everything is clipped.
  """
  lo, hi = hand_model.ANGLE_LIMITS[..., 0], hand_model.ANGLE_LIMITS[..., 1]
  g = rand.randint(0, len(GESTURE_NAMES))
  gesture = jnp.asarray(_GESTURE_TABLE)[g] + GESTURE_NOISE_DEG * rand.normal((5, 4))
  uniform = rand.uniform((5, 4), lo, hi)
  use_gesture = rand.bernoulli(p_gesture)
  angles = jnp.where(use_gesture, gesture, uniform)
  dip = DIP_COUPLING * angles[1:, 2] + DIP_NOISE_DEG * rand.normal((4,))
  angles = angles.at[1:, 3].set(dip)
  return jnp.clip(angles, lo, hi), jnp.where(use_gesture, g, -1)


def random_rotation(rand: Draws, p_facing: float, facing_cone_deg: float,
                    upright_sigma_deg: float | None = None) -> jax.Array:
  """Hand-to-camera rotation: uniform on SO(3), or (prob. `p_facing`) palm or back towards camera.

  Uniform: a normalised 4D Gaussian quaternion. Facing: the palm normal (local +z) is -z_cam or
  +z_cam (equal odds) tilted away from the optical axis by the angle atan(tan(cone) |g|), g a
  standard 2D normal, so P(tilt <= a) = 1 - exp(-(tan a / tan cone)^2 / 2). The fingers' direction
  (local +y) is then the in-plane direction `up` made orthogonal to the normal: uniform when
  `upright_sigma_deg` is None; otherwise up = (sin t, -cos t, 0) with t ~ N(0, sigma), i.e. the
  fingers point up the image (camera -y) give or take t, as for a hand held up in front of a
  camera (the wrist and forearm below it). The draws are the same in every case (t is sigma times
  the first of the three normals `up` is drawn from), so the other parameters keep their values.
  """
  q = rand.normal((4,))
  w, x, y, z = q / jnp.linalg.norm(q)
  uniform = jnp.array([
      [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
      [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
      [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
  ])
  sign = jnp.where(rand.bernoulli(0.5), 1.0, -1.0)
  tilt = jnp.tan(jnp.deg2rad(facing_cone_deg)) * rand.normal((2,))
  normal = jnp.array([tilt[0], tilt[1], sign])
  normal = normal / jnp.linalg.norm(normal)
  up = rand.normal((3,))
  if upright_sigma_deg is not None:
    t = jnp.deg2rad(upright_sigma_deg) * up[0]
    up = jnp.stack([jnp.sin(t), -jnp.cos(t), jnp.zeros_like(t)])
  y_axis = up - jnp.dot(up, normal) * normal
  y_axis = y_axis / (jnp.linalg.norm(y_axis) + 1e-9)
  facing = jnp.stack([jnp.cross(y_axis, normal), y_axis, normal], axis=1)
  return jnp.where(rand.bernoulli(p_facing), facing, uniform)


class Camera(NamedTuple):
  K: jax.Array  # (3, 3)
  rotation: jax.Array  # (3, 3) hand-local -> camera
  translation: jax.Array  # (3,)


def place_hand(rand: Draws, local_joints: jax.Array, resolution: int,
               fov_deg: tuple[float, float], distance: tuple[float, float], p_facing: float,
               facing_cone_deg: float, p_truncate: float,
               upright_sigma_deg: float | None = None,
               hand_span: tuple[float, float] | None = None) -> Camera:
  """Intrinsics and a pose that puts the hand in view.

  The focal length follows a horizontal field of view ~ U(fov_deg); the joint centroid sits at depth
  ~ U(distance) and projects to a pixel drawn so that a sphere around all joints stays inside the
  image, except with probability `p_truncate`, when the centroid may be anywhere in the image
  (partial truncation). With `hand_span` = (a, b) the depth is instead chosen so that the sphere's
  apparent diameter, 2 extent focal / depth, is U(a, b) times the image side (same draw): the hand's
  size in pixels then follows the resolution, as in the public datasets' crops, where the hand
  fills the crop whatever its distance. `upright_sigma_deg`: see `random_rotation`.
  """
  fov = jnp.deg2rad(rand.uniform((), fov_deg[0], fov_deg[1]))
  focal = 0.5 * resolution / jnp.tan(0.5 * fov)
  centre_px = 0.5 * (resolution - 1)
  K = jnp.array([[focal, 0.0, centre_px], [0.0, focal, centre_px], [0.0, 0.0, 1.0]])
  rotation = random_rotation(rand, p_facing, facing_cone_deg, upright_sigma_deg)
  centroid = jnp.mean(local_joints, axis=0)
  extent = jnp.max(jnp.linalg.norm(local_joints - centroid, axis=-1)) + 0.012
  if hand_span is None:
    depth = rand.uniform((), distance[0], distance[1])
  else:
    span = rand.uniform((), hand_span[0], hand_span[1])
    depth = 2.0 * extent * focal / (span * resolution)
  margin = focal * extent / jnp.maximum(depth - extent, 0.05)
  truncate = rand.bernoulli(p_truncate)
  margin = jnp.where(truncate, 0.0, jnp.minimum(margin, centre_px))
  uv = rand.uniform((2,), margin, resolution - 1 - margin)
  xyz = jnp.array([(uv[0] - centre_px) / focal * depth, (uv[1] - centre_px) / focal * depth, depth])
  translation = xyz - rotation @ centroid
  return Camera(K, rotation, translation)
