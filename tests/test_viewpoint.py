"""Tests for handjax.hand.viewpoint: projection, view correction, canonical pose + viewpoint."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handjax.hand import pose as pose_lib
from handjax.hand import skeleton
from handjax.hand import viewpoint as vp

K = np.array([[500.0, 0.0, 160.0], [0.0, 480.0, 120.0], [0.0, 0.0, 1.0]], np.float32)


def _poses(seed=0, n=4):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, 21, 3)) * 0.04 + np.array([0.05, -0.02, 0.6])


# --- projection -------------------------------------------------------------------------------


def test_project_hand_computed():
  points = np.array([[0.1, -0.05, 0.5], [0.0, 0.0, 2.0]], np.float32)
  # u = 500 * 0.1 / 0.5 + 160 = 260, v = 480 * (-0.05) / 0.5 + 120 = 72; the axis hits (cx, cy).
  np.testing.assert_allclose(vp.project(points, K), [[260.0, 72.0], [160.0, 120.0]], rtol=1e-6)


def test_backproject_inverts_project_batched():
  points = _poses(1).astype(np.float32)
  # (4, 3, 3): two different focal lengths.
  Ks = np.stack([K, K * np.float32([[1.1], [0.9], [1.0]])] * 2)
  uv = vp.project(points, Ks)
  back = vp.backproject(uv, points[..., 2], Ks)
  np.testing.assert_allclose(back, points, rtol=1e-5, atol=1e-6)


def test_project_finite_at_zero_depth():
  points = jnp.zeros((1, 3))
  assert np.all(np.isfinite(vp.project(points, K)))
  assert np.all(np.isfinite(jax.grad(lambda p: jnp.sum(vp.project(p, K)))(points)))


# --- view correction --------------------------------------------------------------------------


CENTERS = np.array([[30.0, 200.0], [160.0, 120.0], [310.0, 5.0], [-40.0, 400.0]], np.float32)


def test_view_correction_maps_crop_ray_to_optical_axis():
  R = np.asarray(vp.view_correction_rotation(CENTERS, K), np.float64)
  rays = np.concatenate([CENTERS, np.ones((4, 1))], -1) @ np.linalg.inv(K).T
  rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
  np.testing.assert_allclose(np.einsum("bij,bj->bi", R, rays), [[0, 0, 1]] * 4, atol=1e-6)
  # Proper rotations.
  eye = np.broadcast_to(np.eye(3), R.shape)
  np.testing.assert_allclose(R @ np.swapaxes(R, -1, -2), eye, atol=1e-6)
  np.testing.assert_allclose(np.linalg.det(R), 1.0, rtol=1e-6)
  # The crop centred on the principal point needs no correction.
  np.testing.assert_allclose(R[1], np.eye(3), atol=1e-7)
  # Minimal rotation: its axis lies in the image plane (no twist about the optical axis).
  rotvec = Rotation.from_matrix(R).as_rotvec()
  np.testing.assert_allclose(rotvec[:, 2], 0.0, atol=1e-6)
  # ... and its angle is the angle between the ray and the optical axis.
  np.testing.assert_allclose(np.linalg.norm(rotvec, axis=-1), np.arccos(rays[:, 2]), atol=1e-5)


def test_view_correction_projects_hand_to_principal_point_and_inverts():
  points = _poses(2).astype(np.float32)  # (4, 21, 3) hands and their middle MCPs as crop centres
  centers = vp.project(points[:, 9:10], K)[:, 0]
  R = vp.view_correction_rotation(centers, K)
  corrected = vp.rotate_points(points, R)
  np.testing.assert_allclose(
      vp.project(corrected[:, 9:10], K)[:, 0], np.broadcast_to(K[:2, 2], (4, 2)), atol=1e-3
  )
  # Rotating about the camera centre preserves all distances (to the camera and between points).
  np.testing.assert_allclose(
      np.linalg.norm(corrected, axis=-1), np.linalg.norm(points, axis=-1), rtol=1e-5
  )
  d = lambda p: np.linalg.norm(p[:, :, None] - p[:, None], axis=-1)  # noqa: E731
  np.testing.assert_allclose(d(np.asarray(corrected)), d(points), atol=1e-6)
  np.testing.assert_allclose(vp.unrotate_points(corrected, R), points, atol=1e-6)


def test_view_correction_homography_matches_rotated_projection():
  points = _poses(3).astype(np.float32)
  centers = CENTERS
  R = vp.view_correction_rotation(centers, K)
  H = np.asarray(vp.view_correction_homography(R, K), np.float64)
  uv = np.asarray(vp.project(points, K), np.float64)
  mapped = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], -1) @ np.swapaxes(H, -1, -2)
  mapped = mapped[..., :2] / mapped[..., 2:]
  np.testing.assert_allclose(mapped, vp.project(vp.rotate_points(points, R), K), atol=2e-2)
  # The crop centre lands on the principal point.
  c = np.einsum("bij,bj->bi", H, np.concatenate([centers, np.ones((4, 1))], -1))
  np.testing.assert_allclose(c[:, :2] / c[:, 2:], np.broadcast_to(K[:2, 2], (4, 2)), atol=1e-3)


def test_view_correction_shape_errors():
  with pytest.raises(ValueError, match="K must have shape"):
    vp.view_correction_rotation(CENTERS, K[:2])
  with pytest.raises(ValueError, match="center_uv"):
    vp.view_correction_rotation(CENTERS[:, :1], K)


# --- canonical pose + viewpoint ---------------------------------------------------------------


def test_canonical_frame_definition():
  pose = _poses(4).astype(np.float32)
  canonical, R = vp.canonicalize(pose, skeleton.LEFT)
  canonical = np.asarray(canonical)
  np.testing.assert_allclose(canonical[:, 0], 0.0, atol=1e-7)
  mcp, pinky = canonical[:, skeleton.MIDDLE_MCP], canonical[:, skeleton.JOINT_INDEX["pinky_mcp"]]
  np.testing.assert_allclose(mcp[:, [0, 2]], 0.0, atol=1e-5)
  assert np.all(mcp[:, 1] < 0)
  length = np.linalg.norm(pose[:, 9] - pose[:, 0], axis=-1) / np.linalg.norm(
      pose[:, 10] - pose[:, 9], axis=-1
  )
  np.testing.assert_allclose(-mcp[:, 1], length, rtol=1e-5)
  np.testing.assert_allclose(pinky[:, 2], 0.0, atol=1e-5)
  assert np.all(pinky[:, 0] > 0)
  np.testing.assert_allclose(pose_lib.bone_scale(canonical), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.det(np.asarray(R)), 1.0, rtol=1e-5)


def test_canonical_decomposition_reconstructs_pose_float64():
  pose = _poses(5)
  sides = np.array([0, 1, 0, 1])
  with jax.enable_x64(True):
    canonical, R = jax.jit(vp.canonicalize)(jnp.asarray(pose), jnp.asarray(sides))
    scale = pose_lib.bone_scale(jnp.asarray(pose))
    rec = vp.decanonicalize(canonical, R, sides, jnp.asarray(pose[:, 0]), scale)
    rec = np.asarray(rec)
    # rotation @ canonical == (pose - root) / scale, left hands as is, right hands un-mirrored.
    rel = (pose - pose[:, :1]) / np.asarray(scale)[:, None, None]
    flip = np.ones((4, 1, 3))
    flip[sides == skeleton.RIGHT, :, 2] = -1.0  # right hands: canonical z -> -z
    unmirrored = np.asarray(canonical) * flip
    rotated = np.einsum("bij,bnj->bni", np.asarray(R), unmirrored)
    np.testing.assert_allclose(rotated, rel, atol=1e-12)
  np.testing.assert_allclose(rec, pose, atol=1e-12)


def test_canonical_decomposition_float32_tolerance():
  pose = _poses(6).astype(np.float32)
  canonical, R = vp.canonicalize(pose, skeleton.RIGHT, normalize_scale=False)
  rec = vp.decanonicalize(canonical, R, skeleton.RIGHT, pose[:, 0])
  np.testing.assert_allclose(rec, pose, atol=1e-6)  # float32 on 0.6 m coordinates: ~1e-7 relative


def test_canonical_pose_invariant_to_rotation_translation_scale():
  pose = _poses(7, n=3)
  Q = Rotation.random(3, random_state=8).as_matrix()
  moved = 1.7 * np.einsum("bij,bnj->bni", Q, pose) + np.array([0.3, -0.2, 0.1])
  with jax.enable_x64(True):
    c0, R0 = vp.canonicalize(jnp.asarray(pose), skeleton.LEFT)
    c1, R1 = vp.canonicalize(jnp.asarray(moved), skeleton.LEFT)
    np.testing.assert_allclose(np.asarray(c1), np.asarray(c0), atol=1e-12)
    # The viewpoint absorbs the rotation: R1 = Q R0.
    np.testing.assert_allclose(np.asarray(R1), Q @ np.asarray(R0), atol=1e-12)


def test_right_hand_is_mirrored_to_left():
  pose = _poses(9).astype(np.float32)
  right, _ = vp.canonicalize(pose, skeleton.RIGHT)
  left, _ = vp.canonicalize(skeleton.mirror_pose(pose), skeleton.LEFT)
  np.testing.assert_allclose(right, left, atol=1e-5)
  same, _ = vp.canonicalize(pose, skeleton.LEFT)
  np.testing.assert_allclose(np.asarray(right)[..., 2], -np.asarray(same)[..., 2], atol=1e-6)
  with pytest.raises(ValueError, match="hand_side"):
    vp.canonicalize(pose, 2)


def test_canonicalize_degenerate_poses_finite():
  poses = jnp.stack([
      jnp.zeros((21, 3)),
      jnp.zeros((21, 3)).at[9].set(jnp.array([0.0, -0.1, 0.0])),  # only the pinky MCP at the root
      jnp.zeros((21, 3)).at[17].set(jnp.array([0.0, -0.1, 0.0])),  # only the middle MCP at the root
  ])
  canonical, R = vp.canonicalize(poses, skeleton.LEFT)
  assert np.all(np.isfinite(canonical))
  eye = np.broadcast_to(np.eye(3), (3, 3, 3))
  np.testing.assert_allclose(R @ jnp.swapaxes(R, -1, -2), eye, atol=1e-6)

  def f(p):
    c, r = vp.canonicalize(p, skeleton.LEFT)
    return jnp.sum(c) + jnp.sum(r)

  assert np.all(np.isfinite(jax.jit(jax.grad(f))(poses)))
