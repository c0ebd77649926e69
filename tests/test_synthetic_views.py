"""The scene distributions of synthetic_hands against the laws they declare (poses.place_hand).

Each test samples a few thousand cameras and compares a histogram / empirical CDF with the
closed form the docstring states (Kolmogorov-Smirnov), so a change of sampler that still "looks
plausible" but draws from another distribution fails.
"""

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

from handjax.data.synthetic import hand_model
from handjax.data.synthetic import poses
from handjax.data.synthetic import render
from handjax.data.synthetic.draws import Draws

N = 2000
RES = 64


def _cameras(style: render.Style, n: int = N):
  """n (rotation, translation, K, local joints) of `style`'s placement, on a fixed local hand."""

  def one(key):
    rand = Draws(key, 128)
    shape = hand_model.sample_shape(rand)
    angles, _ = poses.sample_angles(rand, style.p_gesture)
    joints, _ = hand_model.forward_kinematics(shape, angles)
    cam = poses.place_hand(Draws(jax.random.fold_in(key, 1), 64), joints, RES, style.fov_deg,
                           style.distance, style.p_facing, style.facing_cone_deg, 0.0,
                           style.upright_sigma_deg, style.hand_span)
    return cam.rotation, cam.translation, cam.K, joints

  return jax.tree.map(np.asarray, jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(7), n)))


def _ks_pvalue(samples: np.ndarray, cdf) -> float:
  return float(stats.kstest(samples, cdf).pvalue)


def test_natural_tilt_follows_the_rayleigh_cone_law():
  style = render.STYLES["natural"]
  rotation, *_ = _cameras(style)
  normal = rotation[:, :, 2]  # palm normal in the camera frame
  tilt = np.arccos(np.clip(np.abs(normal[:, 2]), 0.0, 1.0))
  c = np.tan(np.deg2rad(style.facing_cone_deg))
  cdf = lambda a: 1.0 - np.exp(-0.5 * (np.tan(np.clip(a, 0, np.pi / 2 - 1e-9)) / c) ** 2)
  assert _ks_pvalue(tilt, cdf) > 1e-3
  # Palm and back towards the camera equally often.
  assert abs(np.mean(normal[:, 2] > 0) - 0.5) < 0.03


def test_natural_fingers_point_up_the_image_with_the_declared_spread():
  # With no tilt the fingers' direction in the image is exactly (sin t, -cos t), t ~ N(0, sigma).
  style = render.natural_view(render.STYLES["default"], facing_cone_deg=0.0)
  rotation, *_ = _cameras(style)
  fingers = rotation[:, :, 1]  # local +y in the camera frame
  np.testing.assert_allclose(fingers[:, 2], 0.0, atol=1e-5)
  t = np.arctan2(fingers[:, 0], -fingers[:, 1])
  sigma = np.deg2rad(style.upright_sigma_deg)
  assert _ks_pvalue(t, stats.norm(0.0, sigma).cdf) > 1e-3
  # The default style's facing views roll uniformly instead.
  default = render.natural_view(render.STYLES["default"], facing_cone_deg=0.0,
                                upright_sigma_deg=None)
  rotation, *_ = _cameras(default)
  t = np.arctan2(rotation[:, 0, 1], -rotation[:, 1, 1])
  assert _ks_pvalue(t, stats.uniform(-np.pi, 2 * np.pi).cdf) > 1e-3


def test_hand_span_is_uniform_in_image_units():
  style = render.STYLES["natural"]
  rotation, translation, K, joints = _cameras(style)
  centroid = joints.mean(axis=1)
  extent = np.max(np.linalg.norm(joints - centroid[:, None], axis=-1), axis=-1) + 0.012
  depth = np.einsum("nij,nj->ni", rotation, centroid)[:, 2] + translation[:, 2]
  span = 2 * extent * K[:, 0, 0] / depth / RES
  lo, hi = style.hand_span
  assert span.min() >= lo - 1e-4 and span.max() <= hi + 1e-4
  assert _ks_pvalue(span, stats.uniform(lo, hi - lo).cdf) > 1e-3
  # The whole bounding sphere projects inside the image (no truncation was asked for).
  centre_uv = np.einsum("nij,nj->ni", K, np.einsum("nij,nj->ni", rotation, centroid) + translation)
  centre_uv = centre_uv[:, :2] / centre_uv[:, 2:]
  radius_px = extent * K[:, 0, 0] / depth
  assert np.all(centre_uv - radius_px[:, None] >= -0.5)
  assert np.all(centre_uv + radius_px[:, None] <= RES - 0.5)


def test_styles_without_the_new_fields_draw_what_they_drew_before():
  # The new options reuse existing draws: today's "default" placement is unchanged, draw for draw
  # (a hand-written copy of the placement before the options existed).
  style = render.STYLES["default"]

  def old(key, joints):
    rand = Draws(key, 64)
    fov = jnp.deg2rad(rand.uniform((), *style.fov_deg))
    rotation = poses.random_rotation(rand, style.p_facing, style.facing_cone_deg)
    depth = rand.uniform((), *style.distance)
    return fov, rotation, depth

  key = jax.random.key(11)
  joints = jnp.zeros((21, 3)).at[:, 1].set(jnp.linspace(0, 0.18, 21))
  fov, rotation, depth = old(key, joints)
  cam = poses.place_hand(Draws(key, 64), joints, RES, style.fov_deg, style.distance,
                         style.p_facing, style.facing_cone_deg, style.p_truncate)
  np.testing.assert_allclose(cam.rotation, rotation, atol=1e-6)
  np.testing.assert_allclose(cam.K[0, 0], 0.5 * RES / np.tan(0.5 * fov), rtol=1e-6)
  centroid = joints.mean(0)
  np.testing.assert_allclose((cam.rotation @ centroid + cam.translation)[2], depth, rtol=1e-6)


def test_scene_stats_on_hand_computed_examples():
  from experiments import scene_stats
  uv = np.full((2, 21, 2), 30.0)  # every joint on the middle MCP (joint 9) ...
  uv[0, 12] = [30.0, 10.0]  # ... but one 20 px above it: side 40
  uv[1, 4] = [45.0, 32.0]  # 15 px right: side 30, but the joint is hidden
  uv[1, 8] = [28.0, 36.0]  # 6 px below: side 12
  visible = np.ones((2, 21), bool)
  visible[1, 4] = False
  np.testing.assert_allclose(scene_stats.crop_side_px(uv, visible), [40.0, 12.0])
  pose = np.zeros((2, 21, 3))
  pose[0, 9] = [0.0, -0.08, 0.0]  # straight up the image
  pose[1, 9] = [0.08, 0.08, 0.02]  # down and to the right: 135 degrees
  np.testing.assert_allclose(scene_stats.roll_deg(pose), [0.0, 135.0])
  s = scene_stats.summarize([{"uv": u, "visible": v, "pose3d": p}
                             for u, v, p in zip(uv, visible, pose)])
  assert s["below_50px"] == 1.0 and s["roll_within_45"] == 0.5 and s["roll_within_90"] == 0.5
