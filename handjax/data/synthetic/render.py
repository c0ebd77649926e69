"""JAX ray caster for the procedural hand: RGB, depth, part mask, keypoints, visibility, points.

One example is a pure function of (seed, split, index): its key is
fold_in(fold_in(key(seed), crc32(split)), index), so it does not depend on the batch it is rendered
in. Everything runs under one `jax.jit`, vmapped over the batch, on CPU or an accelerator. XLA's CPU
and GPU backends round transcendental functions differently, so a pixel or a point may differ by
float rounding (and, rarely, a uint8 level or an edge pixel) between backends; within one backend
the output is bit-identical across runs and machines of the same kind.

Geometry. Every pixel casts rays through its centre (the "geometry sample": depth, mask, points,
visibility) and through an s x s grid (the colour samples, averaged for anti-aliasing). Rays are
intersected analytically with 24 round cones (Quilez, "Rounded cone - intersection"), i.e.
capsules with linearly tapering radius. To avoid testing every cone at every ray, the image is cut
into tiles; each cone's exact screen-space bounding box (tangent planes of its end spheres) selects
at most `max_per_tile` candidate cones per tile, nearest first. On CPU, tiles that no cone touches
are skipped (`lax.map` + `lax.cond`); on accelerators all tiles run vmapped.

Shading (linear RGB, then gamma 2.2): albedo = skin tone x (1 + low-frequency 3D sinusoid texture),
lighter on the palmar side, nails on the distal segments; light = ambient + wrap-Lambert diffuse
((n.l + w)/(1 + w), w = 0.35, a cheap stand-in for subsurface scattering) + Blinn-Phong specular.
Backgrounds come from `backgrounds.py`; then Gaussian blur, white-balance jitter and pixel noise.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from handjax.data.synthetic import backgrounds
from handjax.data.synthetic import hand_model
from handjax.data.synthetic import poses
from handjax.data.synthetic.draws import Draws
from handjax.hand import skeleton
from handjax.hand import viewpoint

NUM_POINTS = 1024
# Visibility: a joint is visible when the first surface on its pixel is at most this many joint
# radii in front of the joint centre (the joint's own skin is one radius in front).
VISIBILITY_RADII = 1.5

# sRGB skin tones, light to dark (roughly Fitzpatrick I-VI).
_SKIN_DEFAULT = ((0.96, 0.80, 0.70), (0.92, 0.74, 0.62), (0.86, 0.66, 0.52), (0.76, 0.55, 0.41),
                 (0.62, 0.43, 0.31), (0.45, 0.30, 0.21), (0.33, 0.22, 0.16))
_SKIN_SHIFTED = ((0.98, 0.76, 0.72), (0.88, 0.62, 0.55), (0.70, 0.48, 0.40), (0.52, 0.35, 0.28),
                 (0.38, 0.25, 0.20))


@dataclasses.dataclass(frozen=True)
class Style:
  """Appearance and sampling parameters. Ranges are (min, max) of uniform draws."""
  fov_deg: tuple[float, float] = (40.0, 60.0)
  distance: tuple[float, float] = (0.25, 0.7)  # Depth of the joint centroid, metres.
  p_facing: float = 0.5  # Palm or back towards the camera (else uniform SO(3)).
  facing_cone_deg: float = 25.0
  # None: uniform in-plane rotation; sigma: fingers up the image +- N(0, sigma) (`random_rotation`).
  upright_sigma_deg: float | None = None
  # None: depth ~ U(distance); (a, b): the hand's bounding sphere spans U(a, b) of the image side.
  hand_span: tuple[float, float] | None = None
  p_truncate: float = 0.1
  p_gesture: float = 0.7  # Named gesture (else uniform within joint limits).
  p_left: float = 0.5
  skin_palette: tuple[tuple[float, float, float], ...] = _SKIN_DEFAULT
  skin_jitter: float = 0.04
  texture_amplitude: float = 0.08
  light_towards_camera: float = 1.2  # Larger = light nearer the camera axis.
  light_tint: float = 0.08
  ambient: tuple[float, float] = (0.2, 0.45)
  diffuse: tuple[float, float] = (0.6, 1.0)
  specular: tuple[float, float] = (0.03, 0.15)
  bg_saturation: float = 0.7
  bg_brightness: tuple[float, float] = (0.1, 0.9)
  blur_sigma_px: tuple[float, float] = (0.0, 0.7)
  noise_sigma: tuple[float, float] = (0.0, 0.02)
  supersample: int = 2


STYLES: dict[str, Style] = {
    "default": Style(),
    # Domain shift: wider lenses, side/coloured light, darker palette, saturated busy backgrounds,
    # stronger blur and noise.
    "shifted": Style(fov_deg=(65.0, 85.0), distance=(0.2, 0.55), p_facing=0.3,
                     skin_palette=_SKIN_SHIFTED, texture_amplitude=0.14,
                     light_towards_camera=0.3, light_tint=0.35, ambient=(0.1, 0.3),
                     diffuse=(0.7, 1.2), specular=(0.1, 0.3), bg_saturation=1.2,
                     bg_brightness=(0.05, 0.7), blur_sigma_px=(0.3, 1.2),
                     noise_sigma=(0.02, 0.05)),
}



def natural_view(style: Style, **overrides) -> Style:
  """`style` seen as the public datasets' crops see hands (BUILD_NOTES.md, "synthetic_hands").

  A hand held up in front of the camera: palm or back towards it (tilt ~ a 40 degree Rayleigh
  cone), fingers up the image +- N(0, 45 deg), and a hand whose bounding sphere spans 60-95% of the image side, so
  its size in pixels follows the resolution. `overrides` replace any other field (diagnostics).
  """
  fields = dict(p_facing=1.0, facing_cone_deg=40.0, upright_sigma_deg=45.0, hand_span=(0.6, 0.95))
  fields.update(overrides)
  return dataclasses.replace(style, **fields)


STYLES.update({
    "natural": natural_view(STYLES["default"]),
    "natural_shifted": natural_view(STYLES["shifted"]),
    # Diagnostics (`experiments.table_suites`, suite "diagnostics"): one factor of "natural" at a
    # time back to the "default" (uniform-view) value, or to a simpler scene.
    "natural_uniform_view": natural_view(STYLES["default"], p_facing=0.5, facing_cone_deg=25.0,
                                         upright_sigma_deg=None),
    "natural_any_roll": natural_view(STYLES["default"], upright_sigma_deg=None),
    "natural_small_hand": natural_view(STYLES["default"], hand_span=None),
    "natural_clean": natural_view(STYLES["default"], blur_sigma_px=(0.0, 0.0),
                                  noise_sigma=(0.0, 0.0), bg_saturation=0.0,
                                  bg_brightness=(0.5, 0.5), ambient=(0.35, 0.35),
                                  diffuse=(0.8, 0.8), light_tint=0.0),
})


def split_id(split: str) -> int:
  """Stable integer for a split name (crc32, 31 bits): part of every example's key."""
  return zlib.crc32(split.encode()) & 0x7FFFFFFF


def example_key(seed: jax.Array, split: jax.Array, index: jax.Array) -> jax.Array:
  return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), split), index)


# --- Round cones ------------------------------------------------------------------------------


def _dot(x: jax.Array, y: jax.Array) -> jax.Array:
  return jnp.sum(x * y, axis=-1)


def _safe_sqrt(x: jax.Array) -> jax.Array:
  """sqrt with a finite gradient at 0 (the argument is floored at 1e-30)."""
  return jnp.sqrt(jnp.maximum(x, 1e-30))


def round_cone_sdf(p: jax.Array, a: jax.Array, b: jax.Array, ra: jax.Array,
                   rb: jax.Array) -> jax.Array:
  """Signed distance from p (..., 3) to a round cone (Quilez, "Round cone - exact" SDF).

  The round cone is the convex hull of the spheres (a, ra) and (b, rb); negative inside.
  """
  ba = b - a
  # A zero-length cone is a sphere; its formula branch gets a dummy axis so that neither branch
  # (jnp.where differentiates both) produces NaN.
  degenerate = _dot(ba, ba) < 1e-12
  ba = jnp.where(degenerate[..., None], jnp.array([0.0, 0.0, 1e-3]), ba)
  l2 = _dot(ba, ba)
  rr = ra - rb
  a2 = l2 - rr * rr
  il2 = 1.0 / l2
  pa = p - a
  y = _dot(pa, ba)
  z = y - l2
  q = pa * l2[..., None] - ba * y[..., None]
  x2 = _dot(q, q)
  y2 = y * y * l2
  z2 = z * z * l2
  k = jnp.sign(rr) * rr * rr * x2
  d_b = _safe_sqrt(x2 + z2) * il2 - rb
  d_a = _safe_sqrt(x2 + y2) * il2 - ra
  d_side = (_safe_sqrt(x2 * a2 * il2) + y * rr) * il2 - ra
  sphere = _safe_sqrt(_dot(pa, pa)) - jnp.maximum(ra, rb)
  return jnp.where(degenerate, sphere, jnp.where(jnp.sign(z) * a2 * z2 > k, d_b,
                                                 jnp.where(jnp.sign(y) * a2 * y2 < k, d_a, d_side)))


def intersect_round_cone(rd: jax.Array, a: jax.Array, b: jax.Array, ra: jax.Array,
                         rb: jax.Array) -> jax.Array:
  """Ray parameter t of the first hit of the ray 0 + t rd (|rd| = 1) with a round cone; inf if none.

  Quilez's closed form ("Rounded cone - intersection"): a quadratic for the conical body,
  accepted when the hit's axial coordinate is inside the body, else the nearer end-sphere hit.
  The ray origin is first moved to just before the cone's bounding sphere, which keeps the
  quadratic's coefficients O(size of the cone) and so float32-accurate at 0.7 m.
  """
  mid = 0.5 * (a + b)
  bound = 0.5 * jnp.sqrt(_dot(b - a, b - a)) + jnp.maximum(ra, rb)
  t0 = jnp.maximum(_dot(mid, rd) - bound - 1e-3, 0.0)
  ro = t0[..., None] * rd
  ba = b - a
  oa = ro - a
  ob = ro - b
  rr = ra - rb
  m0 = _dot(ba, ba)
  m1 = _dot(ba, oa)
  m2 = _dot(ba, rd)
  m3 = _dot(rd, oa)
  m5 = _dot(oa, oa)
  m6 = _dot(ob, rd)
  m7 = _dot(ob, ob)
  d2 = m0 - rr * rr
  k2 = d2 - m2 * m2
  k1 = d2 * m3 - m1 * m2 + m2 * rr * ra
  k0 = d2 * m5 - m1 * m1 + m1 * rr * ra * 2.0 - m0 * ra * ra
  h = k1 * k1 - k0 * k2
  safe_k2 = jnp.where(jnp.abs(k2) > 1e-12, k2, 1e-12)
  t_body = (-jnp.sqrt(jnp.maximum(h, 0.0)) - k1) / safe_k2
  y = m1 - ra * rr + t_body * m2
  body = (y > 0.0) & (y < d2)
  h1 = m3 * m3 - m5 + ra * ra
  h2 = m6 * m6 - m7 + rb * rb
  t1 = jnp.where(h1 > 0.0, -m3 - jnp.sqrt(jnp.maximum(h1, 0.0)), jnp.inf)
  t2 = jnp.where(h2 > 0.0, -m6 - jnp.sqrt(jnp.maximum(h2, 0.0)), jnp.inf)
  t = jnp.where(h < 0.0, jnp.inf, jnp.where(body, t_body, jnp.minimum(t1, t2)))
  return jnp.where(t > 0.0, t + t0, jnp.inf)


def _sphere_bounds(c: jax.Array, r: jax.Array, K: jax.Array) -> jax.Array:
  """Exact pixel bounding box (umin, umax, vmin, vmax) of a sphere's image (tangent planes)."""
  out = []
  for axis, f, cc in ((0, K[0, 0], K[0, 2]), (1, K[1, 1], K[1, 2])):
    x, z = c[..., axis], c[..., 2]
    den = jnp.maximum(z * z - r * r, 1e-9)
    sq = r * jnp.sqrt(jnp.maximum(x * x + z * z - r * r, 0.0))
    out += [f * (x * z - sq) / den + cc, f * (x * z + sq) / den + cc]
  box = jnp.stack(out, axis=-1)
  behind = c[..., 2] < r + 1e-3  # Touches the camera plane: treat as covering everything.
  return jnp.where(behind[..., None], jnp.array([-1e9, 1e9, -1e9, 1e9]), box)


def primitive_bounds(prims: hand_model.Primitives, K: jax.Array) -> jax.Array:
  """(N, 4) pixel boxes of the round cones: the union of their end spheres' boxes (convex hull)."""
  box_a = _sphere_bounds(prims.a, prims.ra, K)
  box_b = _sphere_bounds(prims.b, prims.rb, K)
  return jnp.stack([jnp.minimum(box_a[:, 0], box_b[:, 0]), jnp.maximum(box_a[:, 1], box_b[:, 1]),
                    jnp.minimum(box_a[:, 2], box_b[:, 2]), jnp.maximum(box_a[:, 3], box_b[:, 3])],
                   axis=-1)


# --- Scene ------------------------------------------------------------------------------------


def sample_offsets(supersample: int) -> np.ndarray:
  """(S, 2) sub-pixel offsets: the pixel centre first, then an s x s grid (s > 1)."""
  offsets = [(0.0, 0.0)]
  if supersample > 1:
    g = (np.arange(supersample) + 0.5) / supersample - 0.5
    offsets += [(du, dv) for dv in g for du in g]
  return np.asarray(offsets, np.float32)


def sample_scene(key: jax.Array, resolution: int, style: Style) -> dict[str, jax.Array]:
  """Hand, camera and appearance parameters of one example (everything but the pixels)."""
  k_scene, k_app = jax.random.split(key)
  rand = Draws(k_scene, 128)
  shape = hand_model.sample_shape(rand)
  angles, gesture = poses.sample_angles(rand, style.p_gesture)
  joints, frames = hand_model.forward_kinematics(shape, angles)
  wrist = rand.uniform((2,), hand_model.WRIST_LIMITS[:, 0], hand_model.WRIST_LIMITS[:, 1])
  prims = hand_model.build_primitives(shape, joints, frames, wrist)
  is_left = rand.bernoulli(style.p_left)
  joints = hand_model.mirror_x(joints, is_left)
  cam = poses.place_hand(rand, joints, resolution, style.fov_deg, style.distance,
                         style.p_facing, style.facing_cone_deg, style.p_truncate,
                         style.upright_sigma_deg, style.hand_span)

  def to_camera(x):
    return hand_model.mirror_x(x, is_left) @ cam.rotation.T + cam.translation

  dorsal = hand_model.mirror_x(prims.dorsal, is_left) @ cam.rotation.T
  prims = prims._replace(a=to_camera(prims.a), b=to_camera(prims.b), dorsal=dorsal)
  return {
      "prims": prims,
      "pose3d": joints @ cam.rotation.T + cam.translation,
      "K": cam.K,
      "hand_side": jnp.where(is_left, skeleton.LEFT, skeleton.RIGHT).astype(jnp.int32),
      "palm_normal": cam.rotation[:, 2],
      "joint_radii": hand_model.joint_radii(shape),
      "angles": angles,
      "gesture": gesture,
      "appearance_key": k_app,
  }


# --- Ray casting ------------------------------------------------------------------------------


def _tile_size(resolution: int) -> int:
  tile = 8 if resolution <= 64 else 16
  if resolution % tile:
    raise ValueError(f"resolution must be a multiple of {tile}, got {resolution}")
  return tile


def _tile_candidates(prims: hand_model.Primitives, K: jax.Array, resolution: int, tile: int,
                     max_per_tile: int) -> tuple[jax.Array, jax.Array]:
  """Per tile, up to `max_per_tile` cones whose box overlaps it, nearest (smallest z) first.

  Returns candidate indices (T, M) and validity (T, M), T = number of tiles.
  """
  box = primitive_bounds(prims, K)
  n = resolution // tile
  start = jnp.arange(n, dtype=jnp.float32) * tile - 0.5
  u0, v0 = jnp.meshgrid(start, start, indexing="xy")  # (n, n): row = tile row.
  u0, v0 = u0.reshape(-1, 1), v0.reshape(-1, 1)
  overlap = ((box[None, :, 0] <= u0 + tile) & (box[None, :, 1] >= u0)
             & (box[None, :, 2] <= v0 + tile) & (box[None, :, 3] >= v0))
  near = jnp.minimum(prims.a[:, 2] - prims.ra, prims.b[:, 2] - prims.rb)
  score = jnp.where(overlap, -near[None, :], -jnp.inf)
  values, cand = jax.lax.top_k(score, max_per_tile)
  return cand, jnp.isfinite(values)


def _ray_dirs(uv: jax.Array, K: jax.Array) -> jax.Array:
  """Unit ray directions through pixel positions (..., 2)."""
  x = (uv[..., 0] - K[0, 2]) / K[0, 0]
  y = (uv[..., 1] - K[1, 2]) / K[1, 1]
  d = jnp.stack([x, y, jnp.ones_like(x)], axis=-1)
  return d / jnp.sqrt(_dot(d, d))[..., None]


def _trace(dirs: jax.Array, prims: hand_model.Primitives, cand: jax.Array,
           valid: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Nearest hit among candidate cones: t (R,) (inf = miss) and cone index (R,) (-1 = miss)."""
  t = intersect_round_cone(dirs[:, None, :], prims.a[cand][None], prims.b[cand][None],
                           prims.ra[cand][None], prims.rb[cand][None])
  t = jnp.where(valid[None, :], t, jnp.inf)
  best = jnp.argmin(t, axis=-1)
  t_min = jnp.min(t, axis=-1)
  return t_min, jnp.where(jnp.isfinite(t_min), cand[best], -1)


# Candidate-count buckets of the sparse (CPU) ray caster.
_CANDIDATE_BUCKETS = (2, 4, 8)


def cast_rays(prims: hand_model.Primitives, K: jax.Array, resolution: int, supersample: int,
              max_per_tile: int, sparse: bool) -> tuple[jax.Array, jax.Array]:
  """Ray parameter t (H, W, S) and cone index (H, W, S) (-1 = miss) of every sample ray."""
  tile = _tile_size(resolution)
  n = resolution // tile
  offsets = jnp.asarray(sample_offsets(supersample))
  cand, valid = _tile_candidates(prims, K, resolution, tile, max_per_tile)
  local = jnp.stack(jnp.meshgrid(jnp.arange(tile, dtype=jnp.float32),
                                 jnp.arange(tile, dtype=jnp.float32), indexing="xy"), -1)
  local = (local[:, :, None, :] + offsets).reshape(-1, 2)  # (tile*tile*S, 2) as (u, v).
  tile_ids = jnp.arange(n * n)

  def one_tile(tile_id, cand_t, valid_t):
    origin = jnp.stack([tile_id % n, tile_id // n]).astype(jnp.float32) * tile
    dirs = _ray_dirs(local + origin, K)
    return _trace(dirs, prims, cand_t, valid_t)

  if sparse:
    # Tiles one at a time, each traced against only as many candidates as it has, rounded up to a
    # bucket (most hand tiles overlap 2-8 cones). Candidates are sorted valid-first, so dropping
    # the invalid tail changes no result; empty tiles trace nothing.
    buckets = [m for m in _CANDIDATE_BUCKETS if m < max_per_tile] + [max_per_tile]
    empty = (jnp.full(local.shape[0], jnp.inf), jnp.full(local.shape[0], -1, jnp.int32))
    branches = [lambda tile_id, cand_t, valid_t: empty] + [
        functools.partial(lambda m, tile_id, cand_t, valid_t: one_tile(
            tile_id, cand_t[:m], valid_t[:m]), m) for m in buckets]

    def body(x):
      tile_id, cand_t, valid_t = x
      count = jnp.sum(valid_t)
      branch = jnp.where(count > 0, 1 + jnp.searchsorted(jnp.asarray(buckets), count), 0)
      return jax.lax.switch(branch, branches, tile_id, cand_t, valid_t)
    t, idx = jax.lax.map(body, (tile_ids, cand, valid))
  else:
    t, idx = jax.vmap(one_tile)(tile_ids, cand, valid)
  s = offsets.shape[0]

  def untile(x):  # (n*n, tile*tile*S) -> (H, W, S)
    x = x.reshape(n, n, tile, tile, s).transpose(0, 2, 1, 3, 4)
    return x.reshape(resolution, resolution, s)

  return untile(t), untile(idx)


# --- Shading ----------------------------------------------------------------------------------


def _srgb_to_linear(x: jax.Array) -> jax.Array:
  return jnp.power(jnp.clip(x, 0.0, 1.0), 2.2)


def _linear_to_srgb(x: jax.Array) -> jax.Array:
  return jnp.power(jnp.clip(x, 1e-8, 1.0), 1.0 / 2.2)


def _shade(key: jax.Array, style: Style, prims: hand_model.Primitives, palm_normal: jax.Array,
           points: jax.Array, dirs: jax.Array, idx: jax.Array) -> jax.Array:
  """Linear RGB of hit samples (..., 3); `idx` >= 0 are the hit cones."""
  rand = Draws(key, 64)
  palette = _srgb_to_linear(jnp.asarray(style.skin_palette))
  i = rand.randint(0, palette.shape[0] - 1)
  skin = palette[i] + rand.uniform() * (palette[i + 1] - palette[i])
  skin = skin * jnp.exp(style.skin_jitter * rand.normal((3,)))

  safe = jnp.maximum(idx, 0)
  a, b, ra, rb = prims.a[safe], prims.b[safe], prims.ra[safe], prims.rb[safe]
  normal = jax.grad(lambda p: jnp.sum(round_cone_sdf(p, a, b, ra, rb)))(points)
  normal = normal / jnp.sqrt(_dot(normal, normal) + 1e-12)[..., None]

  # Low-frequency texture: four 3D sinusoids with 1.5-5 cm wavelength.
  waves = rand.normal((4, 3))
  waves = waves / jnp.linalg.norm(waves, axis=-1, keepdims=True)
  waves = waves * (2 * jnp.pi / rand.uniform((4, 1), 0.015, 0.05))
  phase = rand.uniform((4,), 0.0, 2 * jnp.pi)
  texture = jnp.mean(jnp.sin(points @ waves.T + phase), axis=-1)
  albedo = skin * (1.0 + style.texture_amplitude * texture[..., None])
  palmar = jnp.clip(_dot(normal, palm_normal), 0.0, 1.0)
  albedo = albedo * (1.0 + palmar[..., None] * jnp.array([0.06, -0.02, -0.04]))
  # Nails: dorsal side of the distal 60 % of each distal segment.
  dorsal = prims.dorsal[safe]
  ba = b - a
  along = _dot(points - a, ba) / _dot(ba, ba)
  nail = (jnp.clip((_dot(normal, dorsal) - 0.55) * 8.0, 0.0, 1.0)
          * jnp.clip((along - 0.35) * 8.0, 0.0, 1.0))
  nail_colour = 0.55 * albedo + 0.45 * _srgb_to_linear(jnp.array([0.95, 0.8, 0.78]))
  albedo = albedo + nail[..., None] * (nail_colour - albedo)

  light = rand.normal((3,)) * jnp.array([1.0, 1.0, 0.3])
  light = light + jnp.array([0.0, 0.0, -style.light_towards_camera])
  light = light / jnp.linalg.norm(light)
  tint = jnp.exp(style.light_tint * rand.normal((3,)))
  ambient = rand.uniform((), style.ambient[0], style.ambient[1])
  kd = rand.uniform((), style.diffuse[0], style.diffuse[1])
  ks = rand.uniform((), style.specular[0], style.specular[1])
  wrap = 0.35
  diffuse = jnp.clip((_dot(normal, light) + wrap) / (1.0 + wrap), 0.0, 1.0)
  view = -dirs
  half = light + view
  half = half / jnp.sqrt(_dot(half, half) + 1e-12)[..., None]
  spec = (ks * (1.0 + nail)) * jnp.clip(_dot(normal, half), 0.0, 1.0) ** 20
  facing = 0.8 + 0.2 * jnp.clip(_dot(normal, view), 0.0, 1.0)  # Darker grazing silhouettes.
  colour = albedo * (facing * (ambient + kd * diffuse))[..., None] * tint + spec[..., None] * tint
  return colour


def _blur(image: jax.Array, sigma: jax.Array) -> jax.Array:
  """Separable Gaussian blur (7 taps, edge padding) of an (H, W, 3) image."""
  x = jnp.arange(-3, 4, dtype=jnp.float32)
  w = jnp.exp(-0.5 * x * x / jnp.maximum(sigma, 1e-3) ** 2)
  w = w / jnp.sum(w)
  pad = jnp.pad(image, ((3, 3), (0, 0), (0, 0)), mode="edge")
  image = sum(w[i] * pad[i:i + image.shape[0]] for i in range(7))
  pad = jnp.pad(image, ((0, 0), (3, 3), (0, 0)), mode="edge")
  return sum(w[i] * pad[:, i:i + image.shape[1]] for i in range(7))


def _sample_points(key: jax.Array, depth: jax.Array, mask: jax.Array, K: jax.Array,
                   num_points: int) -> jax.Array:
  """(P, 3) visible hand surface points back-projected from pixel centres of the depth map.

  Hand pixels = mask labels 1..16 (the forearm is excluded). They are taken in a random order;
  with n < P hand pixels, point i is hand pixel (i mod n), i.e. the cloud cycles through all n
  pixels; with none, all points are zero.
  """
  res = depth.shape[0]
  hand = ((mask > hand_model.PART_BACKGROUND) & (mask < hand_model.PART_FOREARM)).reshape(-1)
  score = jax.random.uniform(key, hand.shape) + jnp.where(hand, 0.0, 2.0)
  order = jnp.argsort(score)
  n = jnp.sum(hand)
  pick = order[jnp.arange(num_points) % jnp.maximum(n, 1)]
  uv = jnp.stack([pick % res, pick // res], axis=-1).astype(jnp.float32)
  z = depth.reshape(-1)[pick]
  points = viewpoint.backproject(uv, z, K)
  return jnp.where(n > 0, points, 0.0)


def render_example(key: jax.Array, resolution: int, style: Style, max_per_tile: int,
                   num_points: int, sparse: bool,
                   appearance_key: jax.Array | None = None) -> dict[str, jax.Array]:
  """Renders one example from its key; see `render_batch` for the outputs.

  `appearance_key`, when given, replaces the example's own appearance stream (background, skin,
  lighting, camera noise, point sampling) while the hand, its pose and the camera still come from
  `key`: examples sharing it share their "content" (`groups.render_groups`).
  """
  scene = sample_scene(key, resolution, style)
  if appearance_key is not None:
    scene["appearance_key"] = appearance_key
  prims, K = scene["prims"], scene["K"]
  k_bg, k_shade, k_post, k_points = jax.random.split(scene["appearance_key"], 4)
  t, idx = cast_rays(prims, K, resolution, style.supersample, max_per_tile, sparse)
  hit = idx >= 0
  offsets = jnp.asarray(sample_offsets(style.supersample))
  grid = jnp.stack(jnp.meshgrid(jnp.arange(resolution, dtype=jnp.float32),
                                jnp.arange(resolution, dtype=jnp.float32), indexing="xy"), -1)
  centre_dirs = _ray_dirs(grid, K)
  depth = jnp.where(hit[..., 0], t[..., 0], 0.0) * centre_dirs[..., 2]
  mask = jnp.where(hit[..., 0], prims.part[jnp.maximum(idx[..., 0], 0)], 0).astype(jnp.uint8)

  # Anti-aliasing by coverage: each pixel is shaded once, at a representative hit (the centre
  # sample, else the first colour sample that hit), and blended with the background by the
  # fraction of colour samples that hit. Silhouettes are smooth; boundaries between two skin
  # surfaces stay aliased, which is invisible at skin-on-skin contrast.
  if style.supersample > 1:
    coverage = jnp.mean(hit[..., 1:], axis=-1)
    rep = jnp.where(hit[..., 0], 0, 1 + jnp.argmax(hit[..., 1:], axis=-1))
  else:
    coverage = hit[..., 0].astype(jnp.float32)
    rep = jnp.zeros(hit.shape[:2], jnp.int32)
  rep_t = jnp.take_along_axis(t, rep[..., None], axis=-1)[..., 0]
  rep_idx = jnp.take_along_axis(idx, rep[..., None], axis=-1)[..., 0]
  rep_dirs = _ray_dirs(grid + offsets[rep], K)
  rep_points = jnp.where(rep_idx >= 0, rep_t, 0.0)[..., None] * rep_dirs
  skin = _shade(k_shade, style, prims, scene["palm_normal"], rep_points, rep_dirs, rep_idx)
  background = _srgb_to_linear(backgrounds.procedural_background(
      k_bg, resolution, style.bg_saturation, style.bg_brightness))
  colour = background + coverage[..., None] * (skin - background)
  image = _linear_to_srgb(colour)

  k_camera, k_noise = jax.random.split(k_post)
  rand = Draws(k_camera, 8)
  image = _blur(image, rand.uniform((), style.blur_sigma_px[0], style.blur_sigma_px[1]))
  image = image * jnp.exp(0.05 * rand.normal((3,)))
  noise = rand.uniform((), style.noise_sigma[0], style.noise_sigma[1])
  image = image + noise * jax.random.normal(k_noise, image.shape)
  image = jnp.round(jnp.clip(image, 0.0, 1.0) * 255.0).astype(jnp.uint8)

  pose3d = scene["pose3d"]
  uv = viewpoint.project(pose3d[None], K)[0]
  pix = jnp.round(uv).astype(jnp.int32)
  inside = jnp.all((pix >= 0) & (pix < resolution), axis=-1)
  pix = jnp.clip(pix, 0, resolution - 1)
  surface = depth[pix[:, 1], pix[:, 0]]
  unoccluded = (surface == 0.0) | (surface >= pose3d[:, 2] - VISIBILITY_RADII * scene["joint_radii"])
  canonical, view = viewpoint.canonicalize(pose3d, scene["hand_side"])
  return {
      "image": image,
      "depth": depth[..., None].astype(jnp.float32),
      "mask": mask[..., None],
      "pose3d": pose3d.astype(jnp.float32),
      "uv": uv.astype(jnp.float32),
      "visible": inside & unoccluded,
      "K": K.astype(jnp.float32),
      "hand_side": scene["hand_side"],
      "points": _sample_points(k_points, depth, mask, K, num_points).astype(jnp.float32),
      "canonical_pose": canonical.astype(jnp.float32),
      "viewpoint": view.astype(jnp.float32),
  }


@functools.lru_cache(maxsize=None)
def _compiled(resolution: int, style_name: str, supersample: int | None, max_per_tile: int,
              num_points: int, sparse: bool):
  style = STYLES[style_name]
  if supersample is not None:
    style = dataclasses.replace(style, supersample=supersample)

  @jax.jit
  def render(seed, split, indices):
    keys = jax.vmap(lambda i: example_key(seed, split, i))(indices)
    return map_examples(lambda k: render_example(k, resolution, style, max_per_tile, num_points,
                                                 sparse), keys, sparse)
  return render


def map_examples(fn, xs, sparse: bool):
  """`fn` over the leading axis: one after another when `sparse` (CPU), else vmapped.

  Under vmap the per-tile branch of the sparse `cast_rays` would become a select that evaluates
  every branch; `lax.map` keeps it a real branch.
  """
  return jax.lax.map(fn, xs) if sparse else jax.vmap(fn)(xs)


def render_batch(seed: int, start: int, batch_size: int, resolution: int, style: str = "default",
                 split: str = "train", *, supersample: int | None = None, max_per_tile: int = 12,
                 num_points: int = NUM_POINTS, sparse: bool | None = None) -> dict[str, np.ndarray]:
  """Renders examples start .. start + batch_size - 1 of (seed, split).

  Args:
    seed: dataset seed.
    start: index of the first example.
    batch_size: number of examples.
    resolution: image side in pixels (a multiple of 8; 16 above 64 px).
    style: "default" or "shifted" (`STYLES`).
    split: split name; examples are keyed by crc32(split).
    supersample: colour samples per pixel side (default: the style's, 2).
    max_per_tile: candidate cones per tile (24 = no culling, exact).
    num_points: points in the `points` cloud.
    sparse: skip empty tiles sequentially (default: on CPU only).

  Returns:
    `image` (B, H, W, 3) uint8; `depth` (B, H, W, 1) float32 metres, 0 = background; `mask`
    (B, H, W, 1) uint8 labels of `hand_model.PART_NAMES`; `pose3d` (B, 21, 3) metres, camera frame;
    `uv` (B, 21, 2) pixels; `visible` (B, 21) bool; `K` (B, 3, 3); `hand_side` (B,) int32
    (skeleton.LEFT / RIGHT); `points` (B, P, 3) metres; `canonical_pose` (B, 21, 3) and
    `viewpoint` (B, 3, 3) from `handjax.hand.viewpoint.canonicalize`.
  """
  if style not in STYLES:
    raise ValueError(f"style must be one of {sorted(STYLES)}, got {style!r}")
  if batch_size < 1 or start < 0:
    raise ValueError(f"need start >= 0 and batch_size >= 1, got {start}, {batch_size}")
  _tile_size(resolution)
  if sparse is None:
    sparse = jax.default_backend() == "cpu"
  max_per_tile = min(max_per_tile, hand_model.NUM_PRIMITIVES)
  fn = _compiled(resolution, style, supersample, max_per_tile, num_points, sparse)
  indices = jnp.arange(start, start + batch_size, dtype=jnp.uint32)
  out = fn(jnp.uint32(seed), jnp.uint32(split_id(split)), indices)
  return {k: np.asarray(v) for k, v in out.items()}
