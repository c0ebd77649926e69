"""Numbers checks of the procedural hand renderer (handjax/data/synthetic)."""

import functools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.data import synthetic
from handjax.data.synthetic import hand_model
from handjax.data.synthetic import poses
from handjax.data.synthetic import render
from handjax.data.synthetic.draws import Draws
from handjax.hand import skeleton

RES = 32
BATCH = 8


@pytest.fixture(scope="module")
def batch():
  return synthetic.render_batch(0, 0, BATCH, RES)


def test_keys_shapes_and_dtypes(batch):
  expected = {"image": ((RES, RES, 3), np.uint8), "depth": ((RES, RES, 1), np.float32),
              "mask": ((RES, RES, 1), np.uint8), "pose3d": ((21, 3), np.float32),
              "uv": ((21, 2), np.float32), "visible": ((21,), np.bool_), "K": ((3, 3), np.float32),
              "hand_side": ((), np.int32), "points": ((render.NUM_POINTS, 3), np.float32),
              "canonical_pose": ((21, 3), np.float32), "viewpoint": ((3, 3), np.float32)}
  assert set(batch) == set(expected)
  for key, (shape, dtype) in expected.items():
    assert batch[key].shape == (BATCH, *shape) and batch[key].dtype == dtype, key


def test_projection_of_pose3d_is_uv(batch):
  for pose, K, uv in zip(batch["pose3d"], batch["K"], batch["uv"]):
    xyz = pose.astype(np.float64) @ K.astype(np.float64).T
    np.testing.assert_allclose(uv, xyz[:, :2] / xyz[:, 2:], atol=1e-3)
    assert np.all(pose[:, 2] > 0.1)


def test_visibility_agrees_with_depth_map(batch):
  # Joint radii lie in [r_min, r_max] for every subject (hand_model constants).
  r_min = 0.76 * 0.043 * hand_model.HAND_LENGTH_RANGE[0] * hand_model.THICKNESS_RANGE[0]
  r_max = 0.075 * hand_model.HAND_LENGTH_RANGE[1] * hand_model.THICKNESS_RANGE[1]
  checked, on_surface, visible_hits = 0, 0, 0
  for depth, pose, uv, vis in zip(batch["depth"], batch["pose3d"], batch["uv"], batch["visible"]):
    pix = np.round(uv).astype(int)
    inside = np.all((pix >= 0) & (pix < RES), axis=1)
    assert not np.any(vis & ~inside)
    for j in np.flatnonzero(inside):
      d = depth[pix[j, 1], pix[j, 0], 0]
      if d == 0:
        assert vis[j]  # Nothing in front of it.
        continue
      checked += 1
      if vis[j]:  # Nothing lies more than the joint's own thickness in front of it ...
        assert d >= pose[j, 2] - render.VISIBILITY_RADII * r_max
        visible_hits += 1
        # ... and usually the surface seen is its own skin (at 32 px a pixel-centre ray can pass
        # beside a thin finger and hit the palm behind it).
        on_surface += d <= pose[j, 2] + r_max
      else:  # Something lies well in front of it.
        assert d < pose[j, 2] - render.VISIBILITY_RADII * r_min
  assert checked > 20
  assert on_surface >= 0.8 * visible_hits


def test_points_lie_on_depth_surface(batch):
  for points, depth, mask, K in zip(batch["points"], batch["depth"], batch["mask"], batch["K"]):
    hand = (mask[..., 0] > 0) & (mask[..., 0] < hand_model.PART_FOREARM)
    n = int(hand.sum())
    if n == 0:
      np.testing.assert_array_equal(points, 0.0)
      continue
    uvw = points.astype(np.float64) @ K.astype(np.float64).T
    uv = uvw[:, :2] / uvw[:, 2:]
    pix = np.round(uv).astype(int)
    np.testing.assert_allclose(uv, pix, atol=1e-3)  # Pixel centres.
    assert np.all(hand[pix[:, 1], pix[:, 0]])
    np.testing.assert_allclose(points[:, 2], depth[pix[:, 1], pix[:, 0], 0], rtol=1e-6)
    distinct = len({tuple(p) for p in pix})
    assert distinct == min(n, render.NUM_POINTS)
    if n < render.NUM_POINTS:  # Documented padding rule: point i = point (i mod n).
      np.testing.assert_array_equal(points[n:], points[np.arange(n, render.NUM_POINTS) % n])


def test_mask_labels_follow_the_table(batch):
  mask, depth = batch["mask"][..., 0], batch["depth"][..., 0]
  assert set(np.unique(mask)) <= set(range(hand_model.NUM_PARTS))
  assert hand_model.PART_NAMES[hand_model.PART_PALM] == "palm"
  assert hand_model.PART_NAMES[hand_model.PART_FOREARM] == "forearm"
  np.testing.assert_array_equal(mask > 0, depth > 0)
  assert np.all(depth[depth > 0] > 0.1)
  # Labels come from the cone table: fingers, palm and forearm all occur somewhere in the batch.
  present = set(np.unique(mask))
  assert hand_model.PART_PALM in present and hand_model.PART_FOREARM in present
  assert present & set(range(1, 16))


def test_deterministic_and_independent_of_batching(batch):
  again = synthetic.render_batch(0, 0, BATCH, RES)
  shifted = synthetic.render_batch(0, BATCH // 2, BATCH, RES)
  for key in batch:
    np.testing.assert_array_equal(again[key], batch[key])
    np.testing.assert_array_equal(shifted[key][:BATCH // 2], batch[key][BATCH // 2:])
  # Different indices, seeds and splits give different examples.
  assert not np.array_equal(batch["pose3d"][0], batch["pose3d"][1])
  other_split = synthetic.render_batch(0, 0, BATCH, RES, split="test")
  other_seed = synthetic.render_batch(1, 0, BATCH, RES)
  assert not np.allclose(other_split["pose3d"], batch["pose3d"])
  assert not np.allclose(other_seed["pose3d"], batch["pose3d"])
  assert np.abs(batch["image"][0].astype(int) - batch["image"][1].astype(int)).mean() > 5


def _sample_local(n):
  def one(key):
    rand = Draws(key, 128)
    shape = hand_model.sample_shape(rand)
    angles, _ = poses.sample_angles(rand, 0.5)
    joints, _ = hand_model.forward_kinematics(shape, angles)
    return joints, angles
  return jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(3), n))


def _bone_lengths(pose):
  return np.stack([np.linalg.norm(pose[..., c, :] - pose[..., p, :], axis=-1)
                   for p, c in skeleton.BONES], axis=-1)


def test_bone_lengths_and_angles_within_limits(batch):
  joints, angles = map(np.asarray, _sample_local(512))
  limits = hand_model.bone_length_limits()
  for pose in (joints, batch["pose3d"]):
    lengths = _bone_lengths(pose.astype(np.float64))
    assert np.all(lengths >= limits[:, 0] - 1e-5) and np.all(lengths <= limits[:, 1] + 1e-5)
  lo, hi = hand_model.ANGLE_LIMITS[..., 0], hand_model.ANGLE_LIMITS[..., 1]
  assert np.all(angles >= lo - 1e-4) and np.all(angles <= hi + 1e-4)
  # The angle between consecutive finger bones at PIP and DIP is the sampled flexion (hinge joints).
  for f in range(1, 5):
    base = 1 + 4 * f
    for k, col in ((1, 2), (2, 3)):
      b0 = joints[:, base + k] - joints[:, base + k - 1]
      b1 = joints[:, base + k + 1] - joints[:, base + k]
      cos = np.sum(b0 * b1, -1) / np.linalg.norm(b0, axis=-1) / np.linalg.norm(b1, axis=-1)
      measured = np.degrees(np.arccos(np.clip(cos, -1, 1)))
      np.testing.assert_allclose(measured, np.abs(angles[:, f, col]), atol=0.1)
  # Both uniform draws and gestures occur, and flexed fingers are really curled (fist-like poses).
  assert angles[:, 1:, 2].max() > 90 and angles[:, 1:, 2].min() < 10


def test_round_cone_intersection_matches_sdf_marching():
  rng = np.random.default_rng(0)
  n = 400
  a = rng.normal(size=(n, 3)) * 0.03 + np.array([0, 0, 0.4])
  b = a + rng.normal(size=(n, 3)) * 0.03
  ra = rng.uniform(0.004, 0.02, n)
  rb = rng.uniform(0.004, 0.02, n)
  target = 0.5 * (a + b) + rng.normal(size=(n, 3)) * 0.02
  rd = target / np.linalg.norm(target, axis=-1, keepdims=True)
  args = [jnp.asarray(x, jnp.float32) for x in (rd, a, b, ra, rb)]
  t = np.asarray(render.intersect_round_cone(*args))
  steps = np.linspace(0.0, 1.0, 4001)[:, None]
  # Brute force: SDF along each ray on a 0.15 mm grid from the camera to 0.6 m.
  ts = 0.6 * steps  # (S, 1)
  p = ts[..., None] * rd[None]  # (S, n, 3)
  sdf = np.asarray(render.round_cone_sdf(jnp.asarray(p, jnp.float32), *args[1:]))
  first = np.where(np.any(sdf < 0, axis=0), ts[np.argmax(sdf < 0, axis=0), 0], np.inf)
  hit = np.isfinite(first)
  assert 50 < hit.sum() < n - 50  # Both cases are exercised.
  np.testing.assert_array_equal(np.isfinite(t), hit)
  np.testing.assert_allclose(t[hit], first[hit], atol=2e-4)
  at_hit = np.asarray(render.round_cone_sdf(jnp.asarray(t[hit, None] * rd[hit], jnp.float32),
                                            *[x[hit] for x in args[1:]]))
  np.testing.assert_allclose(at_hit, 0.0, atol=2e-5)


def test_tile_culling_matches_brute_force():
  keys = jax.random.split(jax.random.key(7), 4)
  style = render.STYLES["default"]
  grid = jnp.stack(jnp.meshgrid(jnp.arange(64.0), jnp.arange(64.0), indexing="xy"), -1)

  @jax.jit
  def both(key):
    scene = render.sample_scene(key, 64, style)
    prims, K = scene["prims"], scene["K"]
    culled, _ = render.cast_rays(prims, K, 64, 1, 12, True)
    # Brute force without tiles: every ray against every cone.
    t = render.intersect_round_cone(render._ray_dirs(grid, K)[..., None, :], prims.a, prims.b,
                                    prims.ra, prims.rb)
    return culled[..., 0], jnp.min(t, axis=-1)

  culled, exact = map(np.asarray, jax.vmap(both)(keys))
  agree = np.isclose(culled, exact, rtol=1e-6) | (np.isinf(culled) & np.isinf(exact))
  assert np.isfinite(exact).mean() > 0.01
  assert agree.mean() > 0.995


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="style"):
    synthetic.render_batch(0, 0, 1, RES, style="cartoon")
  with pytest.raises(ValueError, match="multiple of"):
    synthetic.render_batch(0, 0, 1, 36)
  with pytest.raises(ValueError, match="batch_size"):
    synthetic.render_batch(0, 0, 0, RES)


@pytest.mark.slow
def test_shifted_style_changes_appearance_not_labels_layout():
  default = synthetic.render_batch(0, 0, BATCH, RES)
  shifted = synthetic.render_batch(0, 0, BATCH, RES, style="shifted")
  # Wider field of view -> shorter focal length.
  assert np.all(shifted["K"][:, 0, 0] < default["K"][:, 0, 0].min())
  assert set(shifted) == set(default)


def test_degenerate_cones_stay_finite():
  # A zero-length cone is a sphere: t and the SDF normal must be finite and match the sphere's.
  a = jnp.array([[0.0, 0.0, 0.5]])
  rd = jnp.array([[0.0, 0.0, 1.0]])
  r = jnp.array([0.02])
  t = render.intersect_round_cone(rd, a, a, r, r)
  np.testing.assert_allclose(t, [0.48], atol=1e-5)
  grad = jax.grad(lambda p: render.round_cone_sdf(p, a[0], a[0], r[0], r[0]))(t[0] * rd[0])
  assert np.all(np.isfinite(grad))
  # Equal radii (a plain capsule), ray along the axis: hits the near cap.
  b = a + jnp.array([[0.0, 0.0, 0.05]])
  np.testing.assert_allclose(render.intersect_round_cone(rd, a, b, r, r), [0.48], atol=1e-5)


def test_sparse_bucketed_caster_equals_dense():
  # Not under vmap, so the per-tile switch really runs only the branch of each tile's candidate
  # count (2, 4, 8 or all 12); the dense caster traces every tile against all 12.
  style = render.STYLES["default"]
  for seed in range(3):
    scene = render.sample_scene(jax.random.key(seed), 64, style)
    cast = jax.jit(functools.partial(render.cast_rays, resolution=64, supersample=2,
                                     max_per_tile=12), static_argnames="sparse")
    t_sparse, i_sparse = cast(scene["prims"], scene["K"], sparse=True)
    t_dense, i_dense = cast(scene["prims"], scene["K"], sparse=False)
    assert np.isfinite(np.asarray(t_dense)).mean() > 0.01
    np.testing.assert_allclose(np.asarray(t_sparse), np.asarray(t_dense), rtol=1e-5,
                               atol=5e-5)  # Grazing rays: the quadratic is ill-conditioned.
    # Cones meet at shared joint spheres, where two cones give the same t up to rounding: the
    # index may flip there (0.2% of rays), nowhere else.
    assert np.mean(np.asarray(i_sparse) != np.asarray(i_dense)) < 0.005


def test_same_scenes_at_every_resolution():
  """Examples are keyed by (seed, split, index): the diagnostics' 128 px rows (builder config
  diag_natural_128) see quickstart's 64 px scenes. Same hand (poses within 2 mm: `poses.place_hand`
  frames it in pixels at each resolution), same camera up to the pixel grid (K scales by 2, uv = 2 uv + 0.5
  within a pixel), and the 128 px image box-filtered to 64 px is the 64 px image."""
  low = synthetic.render_batch(0, 0, 4, 64, "natural")
  high = synthetic.render_batch(0, 0, 4, 128, "natural")
  np.testing.assert_allclose(high["pose3d"], low["pose3d"], atol=2e-3)
  np.testing.assert_allclose(high["K"][:, :2, :2], 2 * low["K"][:, :2, :2], rtol=1e-5)
  np.testing.assert_allclose(high["uv"], 2 * low["uv"] + 0.5, atol=1.0)
  np.testing.assert_array_equal(high["hand_side"], low["hand_side"])
  pooled = high["image"].reshape(4, 64, 2, 64, 2, 3).astype(np.float64).mean((2, 4))
  assert np.abs(pooled - low["image"]).mean() < 8.0  # of 255; other examples differ by ~60
  assert np.abs(pooled - np.roll(low["image"], 1, axis=0)).mean() > 20.0
