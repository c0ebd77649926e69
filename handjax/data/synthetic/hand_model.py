"""Articulated procedural hand: anthropometric bone lengths, joint limits, forward kinematics, surface.

Hand-local frame of a RIGHT hand: wrist at the origin, fingers along +y, thumb towards +x, palm normal
+z (a right-handed frame, so the palm faces +z). A left hand is the mirror image (x -> -x), which keeps
the palm normal at +z. Flexion rotates a bone's +y towards the palm (+z); abduction (positive) turns a
finger towards the thumb.

Lengths are fractions of the hand length L (wrist to middle fingertip, 16-21 cm), taken from average
adult proportions (metacarpal/phalanx ratios as in Buryanov & Kotiuk, Acta Biol. Anthropol. 2010,
rounded); every subject scales them by exp(N(0, 0.04)) clipped to +-10 %.

The surface is 24 "round cones" (capsules whose radius tapers linearly from one end to the other):
3 per finger and thumb segment, 4 metacarpals, a wrist bar, a knuckle bar, a thenar cone and two
forearm cones. `PART_NAMES` is the mask label table.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from handjax.data.synthetic.draws import Draws

# --- Mask labels -------------------------------------------------------------------------------
# mask value -> part. Fingers: 3 segments base -> tip (thumb: metacarpal, proximal, distal).
PART_NAMES: tuple[str, ...] = (
    "background",
    "thumb_metacarpal", "thumb_proximal", "thumb_distal",
    "index_proximal", "index_middle", "index_distal",
    "middle_proximal", "middle_middle", "middle_distal",
    "ring_proximal", "ring_middle", "ring_distal",
    "pinky_proximal", "pinky_middle", "pinky_distal",
    "palm",
    "forearm",
)
PART_BACKGROUND = 0
PART_PALM = 16
PART_FOREARM = 17
NUM_PARTS = len(PART_NAMES)
NUM_PRIMITIVES = 24

# --- Anthropometry (fractions of hand length L) ------------------------------------------------
HAND_LENGTH_RANGE = (0.16, 0.21)  # metres, wrist to middle fingertip.
PROPORTION_SIGMA = 0.04  # log-normal per-subject variation of every length ...
PROPORTION_CLIP = 0.10  # ... clipped to +-10 %.
THICKNESS_RANGE = (0.88, 1.12)  # per-subject factor on all radii.

# Finger MCP joints (index, middle, ring, pinky) in the palm plane, (x, y) / L.
MCP_OFFSETS = np.array([[0.105, 0.455], [0.0, 0.475], [-0.095, 0.45], [-0.18, 0.40]], np.float32)
# Rest direction of each finger in the palm plane, degrees towards the thumb.
FINGER_SPLAY_DEG = np.array([5.0, 0.0, -6.0, -13.0], np.float32)
# Thumb CMC position / L (radial side of the carpus, slightly palmar).
THUMB_CMC_OFFSET = np.array([0.11, 0.12, 0.035], np.float32)
# Phalanx lengths / L: rows thumb, index, middle, ring, pinky; columns base -> tip segment
# (thumb: metacarpal, proximal, distal). Finger tips are the joint at the skin surface.
PHALANX_FRACTIONS = np.array([
    [0.245, 0.165, 0.135],
    [0.215, 0.130, 0.110],
    [0.245, 0.150, 0.120],
    [0.230, 0.145, 0.115],
    [0.180, 0.105, 0.100],
], np.float32)
# Radius / L at the base of each finger's first segment, tapering by TAPER along the finger.
FINGER_RADIUS = np.array([0.062, 0.050, 0.052, 0.049, 0.043], np.float32)
TAPER = np.array([1.15, 1.0, 0.90, 0.82], np.float32)  # thumb CMC bulge, then base -> tip.
FINGER_TAPER = np.array([1.0, 0.91, 0.84, 0.76], np.float32)

# --- Joint limits (degrees) ---------------------------------------------------------------------
# ANGLE_LIMITS[f, k] = (min, max) of angle k of finger f. Fingers (index..pinky):
#   k = 0 MCP flexion, 1 MCP abduction (towards the thumb), 2 PIP flexion, 3 DIP flexion.
# Thumb: 0 CMC flexion (across the palm), 1 CMC palmar abduction, 2 MCP flexion, 3 IP flexion.
ANGLE_LIMITS = np.array([
    [[-15.0, 55.0], [-10.0, 60.0], [-10.0, 65.0], [-20.0, 85.0]],
    [[-20.0, 90.0], [-20.0, 20.0], [0.0, 110.0], [-5.0, 80.0]],
    [[-20.0, 90.0], [-15.0, 15.0], [0.0, 110.0], [-5.0, 80.0]],
    [[-20.0, 90.0], [-15.0, 15.0], [0.0, 110.0], [-5.0, 80.0]],
    [[-25.0, 90.0], [-20.0, 25.0], [0.0, 110.0], [-5.0, 80.0]],
], np.float32)
# Thumb rest direction: angle in the palm plane from +x towards +y, and elevation towards +z.
THUMB_REST_DEG = (45.0, 15.0)
# Wrist: forearm flexion / radial-ulnar deviation ranges (degrees).
WRIST_LIMITS = np.array([[-40.0, 40.0], [-15.0, 20.0]], np.float32)


class HandShape(NamedTuple):
  """Per-subject shape: hand length (m), scaled fractions, radius factor."""
  hand_length: jax.Array  # ()
  phalanx: jax.Array  # (5, 3) metres
  mcp: jax.Array  # (4, 2) metres
  thumb_cmc: jax.Array  # (3,) metres
  thickness: jax.Array  # ()


class Primitives(NamedTuple):
  """Round cones: centres `a`, `b` (N, 3), radii `ra`, `rb` (N,), mask label `part` (N,) int32,
  `dorsal` (N, 3): nail direction on distal segments, zero elsewhere."""
  a: jax.Array
  b: jax.Array
  ra: jax.Array
  rb: jax.Array
  part: jax.Array
  dorsal: jax.Array


def bone_length_limits() -> np.ndarray:
  """(20, 2) declared (min, max) length in metres of each skeleton bone (skeleton.BONES order)."""
  lo = HAND_LENGTH_RANGE[0] * np.exp(-PROPORTION_CLIP)
  hi = HAND_LENGTH_RANGE[1] * np.exp(PROPORTION_CLIP)
  rows = []
  for f in range(5):
    base = (np.linalg.norm(THUMB_CMC_OFFSET) if f == 0
            else np.linalg.norm(MCP_OFFSETS[f - 1]))
    for frac in (base, *PHALANX_FRACTIONS[f]):
      rows.append((lo * frac, hi * frac))
  return np.asarray(rows, np.float32)


def sample_shape(rand: Draws) -> HandShape:
  """Draws a subject: L ~ U(16, 21) cm, every proportion * exp(clip(N(0, 0.04), +-0.1))."""

  def factor(shape):
    return jnp.exp(jnp.clip(PROPORTION_SIGMA * rand.normal(shape), -PROPORTION_CLIP,
                            PROPORTION_CLIP))

  hand_length = rand.uniform((), HAND_LENGTH_RANGE[0], HAND_LENGTH_RANGE[1])
  return HandShape(
      hand_length=hand_length,
      phalanx=hand_length * PHALANX_FRACTIONS * factor((5, 3)),
      mcp=hand_length * MCP_OFFSETS * factor((4, 1)),
      thumb_cmc=hand_length * THUMB_CMC_OFFSET * factor(()),
      thickness=rand.uniform((), THICKNESS_RANGE[0], THICKNESS_RANGE[1]),
  )


def rot_x(deg: jax.Array) -> jax.Array:
  """Rotation about x by `deg` degrees: maps +y towards +z (flexion)."""
  t = jnp.deg2rad(deg)
  c, s = jnp.cos(t), jnp.sin(t)
  z, o = jnp.zeros_like(t), jnp.ones_like(t)
  return jnp.array([[o, z, z], [z, c, -s], [z, s, c]])


def rot_z(deg: jax.Array) -> jax.Array:
  """Rotation about z by `deg` degrees, sign chosen so that positive turns +y towards +x (thumb)."""
  t = -jnp.deg2rad(deg)
  c, s = jnp.cos(t), jnp.sin(t)
  z, o = jnp.zeros_like(t), jnp.ones_like(t)
  return jnp.array([[c, -s, z], [s, c, z], [z, z, o]])


def _normalize(v: jax.Array) -> jax.Array:
  return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + 1e-12)


def thumb_base_frame(cmc_flex: jax.Array, cmc_abd: jax.Array) -> jax.Array:
  """Thumb metacarpal frame (columns x, y = bone direction, z = pad direction).

  The direction leaves the palm plane at (45 deg + CMC flexion) from +x towards the fingers and
  (15 deg + palmar abduction) towards the palm normal; the pad faces the palm centre, so that
  flexing MCP/IP (rotation about the frame's x) curls the thumb across the palm.
  """
  az = jnp.deg2rad(THUMB_REST_DEG[0] + cmc_flex)
  el = jnp.deg2rad(THUMB_REST_DEG[1] + cmc_abd)
  y = jnp.array([jnp.cos(el) * jnp.cos(az), jnp.cos(el) * jnp.sin(az), jnp.sin(el)])
  q = jnp.array([-0.6, -0.1, 0.8])
  z = _normalize(q - jnp.dot(q, y) * y)
  x = jnp.cross(y, z)
  return jnp.stack([x, y, z], axis=1)


def forward_kinematics(shape: HandShape, angles: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Joint positions of a right hand in its local frame.

  Each finger chains p_{k+1} = p_k + R_k (0, l_k, 0) with R_0 = Rz(splay) Rz(abduction) Rx(MCP) and
  R_k = R_{k-1} Rx(flexion_k); the thumb starts from `thumb_base_frame` at the CMC joint.

  Args:
    shape: subject shape.
    angles: (5, 4) degrees, see ANGLE_LIMITS.

  Returns:
    joints (21, 3) metres in handjax order, and bone frames (5, 3, 3, 3) [finger, segment] whose
    third column is the palmar direction of that segment.
  """
  joints = [jnp.zeros(3)]
  frames = []
  # Thumb.
  cmc = shape.thumb_cmc
  r = thumb_base_frame(angles[0, 0], angles[0, 1])
  thumb = [cmc]
  thumb_frames = [r]
  p = cmc + r @ jnp.array([0.0, shape.phalanx[0, 0], 0.0])
  thumb.append(p)
  for k, flex in ((1, angles[0, 2]), (2, angles[0, 3])):
    r = r @ rot_x(flex)
    thumb_frames.append(r)
    p = p + r @ jnp.array([0.0, shape.phalanx[0, k], 0.0])
    thumb.append(p)
  joints += thumb
  frames.append(jnp.stack(thumb_frames))
  # Fingers.
  for f in range(1, 5):
    mcp = jnp.array([shape.mcp[f - 1, 0], shape.mcp[f - 1, 1], 0.0])
    r = rot_z(FINGER_SPLAY_DEG[f - 1] + angles[f, 1]) @ rot_x(angles[f, 0])
    finger = [mcp]
    finger_frames = [r]
    p = mcp
    for k, flex in ((0, None), (1, angles[f, 2]), (2, angles[f, 3])):
      if flex is not None:
        r = r @ rot_x(flex)
        finger_frames.append(r)
      p = p + r @ jnp.array([0.0, shape.phalanx[f, k], 0.0])
      finger.append(p)
    joints += finger
    frames.append(jnp.stack(finger_frames))
  return jnp.stack(joints), jnp.stack(frames)


def joint_radii(shape: HandShape) -> jax.Array:
  """(21,) surface radius (m) around each joint: the local thickness used by the visibility test."""
  length = shape.hand_length * shape.thickness
  wrist = 0.075 * length
  radii = [wrist]
  for f in range(5):
    taper = TAPER if f == 0 else FINGER_TAPER
    radii += [FINGER_RADIUS[f] * length * t for t in taper]
  return jnp.stack([jnp.asarray(r, jnp.float32) for r in radii])


def build_primitives(shape: HandShape, joints: jax.Array, frames: jax.Array,
                     wrist_angles: jax.Array) -> Primitives:
  """The 24 round cones of a right hand in its local frame (see module docstring).

  Distal segments stop one tip radius short of the tip joint, so the tip joint lies on the skin.
  `wrist_angles` (2,) degrees: forearm flexion and deviation relative to the hand.
  """
  length = shape.hand_length * shape.thickness
  radii = joint_radii(shape)
  a, b, ra, rb, part, dorsal = [], [], [], [], [], []

  def add(p0, p1, r0, r1, label, nail=None):
    a.append(p0)
    b.append(p1)
    ra.append(r0)
    rb.append(r1)
    part.append(label)
    dorsal.append(jnp.zeros(3) if nail is None else nail)

  for f in range(5):
    idx = [1 + 4 * f + k for k in range(4)]
    for k in range(3):
      p0, p1 = joints[idx[k]], joints[idx[k + 1]]
      r0, r1 = radii[idx[k]], radii[idx[k + 1]]
      nail = None
      if k == 2:
        direction = _normalize(p1 - p0)
        p1 = p1 - r1 * direction
        nail = -frames[f, 2][:, 2]  # Dorsal = minus the palmar column of the distal frame.
      add(p0, p1, r0, r1, 1 + 3 * f + k, nail)
  # Palm: metacarpals from carpal points to the MCPs, a wrist bar and a knuckle bar.
  carpal_x = np.array([0.07, 0.023, -0.023, -0.07], np.float32)
  carpals = [jnp.array([carpal_x[i] * shape.hand_length, 0.09 * shape.hand_length, 0.0])
             for i in range(4)]
  for i in range(4):
    add(carpals[i], joints[5 + 4 * i], 0.068 * length, 0.058 * length, PART_PALM)
  add(carpals[0] - jnp.array([0.0, 0.04, 0.0]) * shape.hand_length,
      carpals[3] - jnp.array([0.0, 0.04, 0.0]) * shape.hand_length,
      0.07 * length, 0.07 * length, PART_PALM)
  add(joints[5], joints[17], 0.056 * length, 0.05 * length, PART_PALM)
  # Thenar eminence: carpus to the middle of the thumb metacarpal.
  add(carpals[0], 0.55 * joints[1] + 0.45 * joints[2], 0.07 * length, 0.068 * length, PART_PALM)
  # Forearm: two cones (radius and ulna) make an elliptic cross-section, bent at the wrist.
  direction = rot_z(wrist_angles[1]) @ rot_x(-wrist_angles[0]) @ jnp.array([0.0, -1.0, 0.0])
  for side in (1.0, -1.0):
    offset = jnp.array([0.045 * side, 0.0, 0.0]) * shape.hand_length
    start = offset + jnp.array([0.0, 0.03, 0.0]) * shape.hand_length
    add(start, start + 0.55 * shape.hand_length * direction, 0.075 * length, 0.085 * length,
        PART_FOREARM)
  return Primitives(jnp.stack(a), jnp.stack(b), jnp.stack(ra), jnp.stack(rb),
                    jnp.asarray(part, jnp.int32), jnp.stack(dorsal))


def mirror_x(x: jax.Array, is_left: jax.Array) -> jax.Array:
  """Mirrors points (..., 3) across x = 0 when `is_left` (left hands are mirrored right hands)."""
  sign = jnp.where(is_left, -1.0, 1.0)
  return x * jnp.array([1.0, 1.0, 1.0]).at[0].set(sign)
