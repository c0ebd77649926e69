"""Tests of handjax.data.transforms against closed forms and the jnp originals.

The fixture is a geometric toy example (not a render): a random pose, an off-centre K, uv = its
projection, a depth map of a tilted plane inside a disk, points back-projected from that depth map,
a mask of disks and a linear-ramp image, so every relation between modalities is known exactly.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from handjax.data import transforms as T
from handjax.hand import pose as pose_lib
from handjax.hand import skeleton
from handjax.hand import viewpoint as vp
from handjax.losses import heatmap as heatmap_lib

PLANE_NORMAL = np.array([0.1, -0.2, 1.0])  # depth plane n . X = PLANE_OFFSET
PLANE_OFFSET = 0.5


def plane_depth(uv: np.ndarray, K: np.ndarray) -> np.ndarray:
  """z of the plane n . X = d along the ray of each pixel: z = d / (n . K^-1 [u, v, 1])."""
  rays = np.concatenate([uv, np.ones_like(uv[..., :1])], -1) @ np.linalg.inv(K).T
  return PLANE_OFFSET / (rays @ PLANE_NORMAL)


def make_example(seed: int = 0, height: int = 96, width: int = 128, num_points: int = 300,
                 hand_side: int = skeleton.RIGHT) -> dict[str, np.ndarray]:
  """A geometrically consistent toy example (see the module docstring)."""
  rs = np.random.default_rng(seed)
  f = 1.17 * width  # off-centre principal point, scaled with the image
  K = np.array([[f, 0.0, 0.55 * width], [0.0, f, 0.43 * height], [0.0, 0.0, 1.0]])
  center = np.array([0.03, 0.02, 0.5]) + rs.normal(0, 0.01, 3)
  pose3d = center + rs.normal(0.0, 0.03, (21, 3))
  uv = (pose3d @ K.T)[:, :2] / pose3d[:, 2:]
  v, u = np.mgrid[0:height, 0:width].astype(np.float64)
  pix = np.stack([u, v], -1)
  disk_center, radius = uv[skeleton.MIDDLE_MCP], 0.2 * width
  dist = np.linalg.norm(pix - disk_center, axis=-1)
  depth = np.where(dist <= radius, plane_depth(pix, K), 0.0).astype(np.float32)
  inner = np.argwhere(dist <= radius - 3.0)  # (row, col) well inside the disk
  pick = inner[rs.choice(len(inner), num_points, replace=False)]
  pix_pick = pick[:, ::-1].astype(np.float64)
  z = plane_depth(pix_pick, K)
  rays = np.concatenate([pix_pick, np.ones((num_points, 1))], -1) @ np.linalg.inv(K).T
  points = rays * z[:, None]
  mask = np.zeros((height, width), np.uint8)
  for label, joint in enumerate((0, 4, 8, 12), start=1):
    mask[np.linalg.norm(pix - uv[joint], axis=-1) <= 6.0] = label
  image = np.stack([u * 255 / (width - 1), v * 255 / (height - 1), 0.5 * (u + v) % 256], -1)
  canonical, viewpoint = vp.canonicalize(jnp.asarray(pose3d, jnp.float32), hand_side)
  return {
      "image": np.rint(image).astype(np.uint8), "depth": depth, "mask": mask,
      "pose3d": pose3d.astype(np.float32), "uv": uv.astype(np.float32),
      "visible": rs.random(21) < 0.9, "K": K.astype(np.float32),
      "hand_side": np.int32(hand_side), "points": points.astype(np.float32),
      "canonical_pose": np.asarray(canonical), "viewpoint": np.asarray(viewpoint),
  }


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
  q = np.asarray(points, np.float64) @ np.asarray(K, np.float64).T
  return q[:, :2] / q[:, 2:]


def chain(example, ops):
  view = T.identity_view(example)
  for op in ops:
    view = op(view)
  return T.warp(example, view)


def _crop(example, size=64):
  center, side = T.reference_crop_box(example["uv"], example["visible"], min_side=20, max_side=500)
  return lambda view: T.crop_view(view, center, side, size)


CHAINS = {
    "crop": lambda ex: [_crop(ex)],
    "crop_rotate": lambda ex: [_crop(ex), lambda v: T.rotate_view(v, 0.7)],
    "crop_rotate_flip": lambda ex: [_crop(ex), lambda v: T.rotate_view(v, -1.1), T.flip_view],
    "crop_scale_translate_rotate_flip_vc": lambda ex: [
        _crop(ex), lambda v: T.scale_view(v, 1.3), lambda v: T.translate_view(v, 3.0, -2.5),
        lambda v: T.rotate_view(v, 2.0), T.flip_view, T.view_correct_view],
    "resize_vc": lambda ex: [lambda v: T.resize_view(v, (48, 64)), T.view_correct_view],
}


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_keeps_uv_and_pose_consistent(name):
  ex = make_example(1)
  out = chain(ex, CHAINS[name](ex))
  np.testing.assert_allclose(project(out["pose3d"], out["K"]), out["uv"], atol=1e-3)
  # 3D distances are preserved (M is orthogonal): bone lengths unchanged.
  np.testing.assert_allclose(np.linalg.norm(out["pose3d"], axis=-1),
                             np.linalg.norm(ex["pose3d"], axis=-1), rtol=1e-5)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_chain_points_land_on_matching_depth(name):
  ex = make_example(2)
  out = chain(ex, CHAINS[name](ex))
  height, width = out["depth"].shape[:2]
  uv = project(out["points"], out["K"])
  iu, iv = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
  inside = (iu >= 0) & (iu < width) & (iv >= 0) & (iv < height)
  assert inside.sum() > 50
  depth = out["depth"][iv[inside], iu[inside]]
  assert np.all(depth > 0)
  # Nearest-neighbour depth: off by at most the plane's depth change over ~1 source pixel plus
  # half an output pixel (|grad z| ~ z |n_xy| / (f n_z) ~ 7e-4 m per source pixel here).
  source_px_per_output_px = max(1.0, ex["K"][0, 0] / out["K"][0, 0])
  np.testing.assert_allclose(depth, out["points"][inside, 2], atol=1e-3 * source_px_per_output_px)


def test_rotation_keeps_depth_values_exactly():
  """A camera roll keeps z: every warped depth pixel equals the source depth it came from."""
  ex = make_example(3)
  out = T.rotate(ex, 0.4)
  src = set(np.round(ex["depth"][ex["depth"] > 0], 6))
  dst = np.round(out["depth"][out["depth"] > 0], 6)
  assert len(dst) > 100 and all(d in src for d in dst)
  np.testing.assert_allclose(out["points"][:, 2], ex["points"][:, 2], atol=1e-6)


def test_reference_crop_hand_computed():
  uv = np.tile([100.0, 80.0], (21, 1))
  uv[1] = [130.0, 85.0]  # largest extent: |du| = 30 -> side 60
  uv[2] = [90.0, 60.0]
  uv[3] = [0.0, 0.0]  # invisible: ignored
  visible = np.ones(21, bool)
  visible[3] = False
  center, side = T.reference_crop_box(uv, visible, min_side=50, max_side=500)
  np.testing.assert_allclose(center, [100.0, 80.0])
  assert side == 60.0
  assert T.reference_crop_box(uv, visible, min_side=80, max_side=500)[1] == 80.0
  assert T.reference_crop_box(uv, visible, min_side=10, max_side=40)[1] == 40.0
  assert T.reference_crop_box(uv, np.zeros(21, bool), min_side=50, max_side=500)[1] == 50.0
  K = np.array([[200.0, 0.0, 64.0], [0.0, 210.0, 48.0], [0.0, 0.0, 1.0]])
  view = T.crop_view(T.View(np.eye(3), K, (96, 128)), center, side, 30)
  # s = 30 / 60 = 0.5; t = (30 - 1) / 2 - 0.5 * c = (14.5 - 50, 14.5 - 40).
  expected = np.array([[100.0, 0.0, 32.0 - 35.5], [0.0, 105.0, 24.0 - 25.5], [0.0, 0.0, 1.0]])
  np.testing.assert_allclose(view.K, expected)
  assert view.size == (30, 30)


def test_crop_resamples_a_linear_ramp_exactly():
  """Bilinear sampling of a ramp is exact: output pixel u' holds source column (u' - t) / s."""
  ex = make_example(4)
  ex["image"] = np.broadcast_to(np.arange(128, dtype=np.uint8)[None, :, None], (96, 128, 3)).copy()
  view = T.crop_view(T.identity_view(ex), np.array([60.0, 40.0]), 40.0, 20)
  out = T.warp(ex, view)
  u_src = (np.arange(20) - (9.5 - 0.5 * 60.0)) / 0.5
  np.testing.assert_allclose(out["image"][5, :, 0], np.rint(u_src), atol=1)


def test_scale_and_translate_move_uv_by_closed_forms():
  ex = make_example(12)
  c = np.array([127 / 2, 95 / 2])
  np.testing.assert_allclose(T.scale(ex, 1.5)["uv"], c + 1.5 * (ex["uv"] - c), atol=1e-4)
  moved = T.translate(ex, 3.0, -2.0)
  np.testing.assert_allclose(moved["uv"], ex["uv"] + [3.0, -2.0], atol=1e-4)
  # Content moves 3 px right and 2 px up: out[v, u] = in[v + 2, u - 3].
  np.testing.assert_array_equal(moved["image"][:-2, 3:], ex["image"][2:, :-3])
  np.testing.assert_array_equal(moved["mask"][:-2, 3:], ex["mask"][2:, :-3])


def test_rotation_by_90_degrees_is_a_pixel_permutation():
  ex = make_example(5, height=64, width=64)
  ex["K"] = np.array([[120.0, 0.0, 20.0], [0.0, 120.0, 40.0], [0.0, 0.0, 1.0]], np.float32)
  out = T.rotate(ex, np.pi / 2)
  # Positive angles turn content clockwise on screen: (du, dv) -> (-dv, du) about the centre.
  np.testing.assert_array_equal(out["image"], np.rot90(ex["image"], k=-1))
  np.testing.assert_array_equal(out["mask"], np.rot90(ex["mask"], k=-1))


def test_flip_convention_and_involution():
  ex = make_example(6)
  out = T.flip(ex)
  np.testing.assert_array_equal(out["image"], ex["image"][:, ::-1])
  np.testing.assert_array_equal(out["mask"], ex["mask"][:, ::-1])
  np.testing.assert_array_equal(out["depth"], ex["depth"][:, ::-1])
  np.testing.assert_allclose(out["pose3d"], ex["pose3d"] * [-1, 1, 1])
  np.testing.assert_allclose(out["uv"][:, 0], 127 - ex["uv"][:, 0], atol=1e-4)
  assert out["K"][0, 2] == pytest.approx(127 - ex["K"][0, 2])
  assert out["hand_side"] == skeleton.LEFT
  twice = T.flip(out)
  for key in ("image", "mask", "depth", "hand_side"):
    np.testing.assert_array_equal(twice[key], ex[key])
  for key in ("pose3d", "points", "uv", "K", "viewpoint", "canonical_pose"):
    np.testing.assert_allclose(twice[key], ex[key], atol=1e-5)


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_viewpoint_follows_canonicalize(name):
  """The closed-form update of `viewpoint` (M V, mirrored: M V diag(1, 1, -1)) and the unchanged
  canonical pose equal `canonicalize` recomputed on the transformed pose and hand side."""
  ex = make_example(7)
  ops = CHAINS[name](ex) + ([T.flip_view] if "flip" not in name else [])
  out = chain(ex, ops)
  canonical, rotation = vp.canonicalize(jnp.asarray(out["pose3d"]), int(out["hand_side"]))
  np.testing.assert_allclose(out["viewpoint"], rotation, atol=1e-4)
  np.testing.assert_allclose(out["canonical_pose"], canonical, atol=1e-3)


def test_view_correction_twin_and_centre_ray():
  ex = make_example(8)
  view = T.crop_view(T.identity_view(ex), ex["uv"][skeleton.MIDDLE_MCP], 60.0, 32)
  center = np.array([15.5, 15.5])
  np.testing.assert_allclose(T._view_correction_rotation(center, view.K),
                             vp.view_correction_rotation(jnp.asarray(center), jnp.asarray(view.K)),
                             atol=1e-6)
  out = T.warp(ex, T.view_correct_view(view))
  # The middle MCP sat at the crop centre, so after correction it lies on the optical axis
  # and projects onto the image centre.
  mcp = out["pose3d"][skeleton.MIDDLE_MCP]
  np.testing.assert_allclose(mcp[:2] / mcp[2], 0.0, atol=1e-6)
  np.testing.assert_allclose(out["uv"][skeleton.MIDDLE_MCP], center, atol=1e-3)


def test_heatmaps_peak_at_uv_and_match_jnp():
  uv = np.random.default_rng(0).uniform(5, 25, (21, 2))
  hm = T.heatmaps(uv, (32, 32), (32, 32), sigma=1.5)
  ref = heatmap_lib.gaussian_heatmaps(jnp.asarray(uv), (32, 32), 1.5)
  np.testing.assert_allclose(hm, ref, atol=1e-6)
  peaks = np.array([np.unravel_index(np.argmax(hm[..., k]), (32, 32)) for k in range(21)])
  np.testing.assert_array_equal(peaks[:, ::-1], np.rint(uv))
  # Half resolution: J + 0.5 = (uv + 0.5) / 2, so uv = (9.5, 3.5) is heat-map pixel (4.5, 1.5).
  half = T.heatmaps(np.tile([9.5, 3.5], (21, 1)), (32, 32), (16, 16), sigma=1.0)
  assert half[1, 4, 0] == pytest.approx(np.exp(-0.5 / 2.0), rel=1e-6)
  assert half[1, 4, 0] == pytest.approx(half[2, 5, 0], rel=1e-6)


def test_normalize_pose_twin():
  pose = make_example(9)["pose3d"]
  rel, root, scale = T.normalize_pose(pose)
  ref = pose_lib.normalize_pose(jnp.asarray(pose))
  for a, b in zip((rel, root, scale), ref):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  assert np.all(np.isfinite(T.normalize_pose(np.zeros((21, 3)))[0]))


def test_sample_points_fixed_size_and_deterministic():
  points = make_example(10)["points"]
  points[:50] = 0.0  # padding rows are never chosen
  a, ok = T.sample_points(points, 128, np.random.default_rng(3))
  b, _ = T.sample_points(points, 128, np.random.default_rng(3))
  c, _ = T.sample_points(points, 128, np.random.default_rng(4))
  assert ok and a.shape == (128, 3)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)
  assert len(np.unique(a, axis=0)) == 128 and np.all(a[:, 2] > 0)
  few, _ = T.sample_points(points[:60], 128, np.random.default_rng(0))  # 10 valid: with replacement
  assert few.shape == (128, 3) and len(np.unique(few, axis=0)) == 10
  none, ok = T.sample_points(np.zeros((5, 3)), 16, np.random.default_rng(0))
  assert not ok and np.all(none == 0)


def test_photometric():
  image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
  np.testing.assert_array_equal(T.color_jitter(image, 0.0, 1.0), image)
  gray = np.full((2, 2, 3), 100, np.uint8)
  np.testing.assert_array_equal(T.color_jitter(gray, 1.0, 1.2), 120)  # hue keeps gray gray
  # A hue rotation keeps luma (Y of YIQ).
  luma = np.array([0.299, 0.587, 0.114])
  jittered = image.astype(float) @ T.hue_rotation_matrix(0.8).T
  np.testing.assert_allclose(jittered @ luma, image.astype(float) @ luma, atol=1e-9)
  norm = T.normalize_image(np.array([0, 255, 51], np.uint8))
  np.testing.assert_allclose(norm, [-0.5, 0.5, -0.3], atol=1e-7)
  assert norm.dtype == np.float32


def test_bad_inputs_raise_clear_errors():
  ex = make_example(11)
  with pytest.raises(ValueError, match="uv must be"):
    T.reference_crop_box(np.zeros((5, 2)))
  with pytest.raises(ValueError, match="min_side"):
    T.reference_crop_box(ex["uv"], min_side=10, max_side=5)
  with pytest.raises(ValueError, match="K must be"):
    T.identity_view({**ex, "K": np.eye(2)})
  with pytest.raises(ValueError, match="key 'image'"):
    T.identity_view({"K": ex["K"]})
  with pytest.raises(ValueError, match="points must be"):
    T.sample_points(np.zeros((4, 2)), 3, np.random.default_rng(0))
