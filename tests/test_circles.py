"""Tests for handjax.hand.circles (SemiHand's 55-circle hand model, dissertation Sec. 6.3.3).

`python tests/test_circles.py --fit` refits `circles.RADII` against the renderer's capsules (the
procedure of the circles.py docstring) and prints the table and the silhouette IoU.
"""

from __future__ import annotations

import math
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.hand import circles
from handjax.hand import lifting
from handjax.hand import skeleton


def fit_radii(count: int = 400) -> tuple[np.ndarray, float]:
  """Least-squares radii (units of the reference bone) and the IoU on subject 0 (docstring)."""
  from handjax.data.synthetic import hand_model
  from handjax.data.synthetic import render
  from handjax.data.synthetic.draws import Draws

  group = np.zeros((circles.NUM_CIRCLES, 24), bool)  # primitives each circle stands for
  for f in range(5):
    for k in range(3):
      group[9 * f + 3 * k: 9 * f + 3 * k + 3, 3 * f + k] = True
  group[45:, 15:22] = True  # 4 metacarpals, wrist bar, knuckle bar, thenar

  def subject(key):
    rand = Draws(key, 64)
    shape = hand_model.sample_shape(rand)
    joints, frames = hand_model.forward_kinematics(shape, jnp.zeros((5, 4)))
    prims = hand_model.build_primitives(shape, joints, frames, jnp.zeros(2))
    a, b = prims.a.at[:, 2].set(0.0), prims.b.at[:, 2].set(0.0)  # palm-on orthographic view
    centres = jnp.asarray(circles.CENTRE_WEIGHTS) @ joints[:, :2]
    points = jnp.concatenate([centres, jnp.zeros((55, 1))], -1)[:, None, :]
    sdf = render.round_cone_sdf(points, a[None], b[None], prims.ra[None], prims.rb[None])
    target = -jnp.min(jnp.where(group, sdf, jnp.inf), axis=1)  # largest inscribed disk
    return target, lifting.reference_bone_length(joints), joints, a, b, prims.ra, prims.rb

  out = jax.jit(jax.vmap(subject))(jax.random.split(jax.random.key(0), count))
  target, s = np.asarray(out[0], np.float64), np.asarray(out[1], np.float64)
  rho = (target * s[:, None]).sum(0) / (s**2).sum()
  # IoU of the circle union with the capsule silhouette (forearm excluded) of subject 0.
  joints, a, b, ra, rb = (np.asarray(x[0]) for x in out[2:])
  xs, ys = np.meshgrid(np.arange(-0.12, 0.12, 2.5e-4), np.arange(-0.02, 0.22, 2.5e-4))
  grid = jnp.asarray(np.stack([xs, ys, 0 * xs], -1).reshape(-1, 3))
  sil = jnp.min(jax.vmap(lambda *c: render.round_cone_sdf(grid, *c))(
      a[:22], b[:22], ra[:22], rb[:22]), 0) <= 0
  model = circles.circle_model(jnp.asarray(joints[:, :2]), float(s[0]), jnp.asarray(rho))
  inside = jnp.min(jnp.linalg.norm(grid[:, None, :2] - model.centres, axis=-1) - model.radii,
                   1) <= 0
  sil, inside = np.asarray(sil), np.asarray(inside)
  return rho, float((sil & inside).sum() / (sil | inside).sum())


def _straight_finger_pose() -> np.ndarray:
  """All joints far away except the index finger along +u: MCP (10, 40) ... tip (130, 40)."""
  uv = np.full((21, 2), -1000.0, np.float32)
  for k, joint in enumerate(skeleton.FINGERS["index"]):
    uv[joint] = (10.0 + 40.0 * k, 40.0)
  return uv


def _index_only_radii(value: float) -> np.ndarray:
  radii = np.zeros(circles.NUM_CIRCLES, np.float32)
  radii[9:18] = value  # the index finger's 9 circles
  return radii


def test_centres_of_a_straight_finger():
  model = circles.circle_model(jnp.asarray(_straight_finger_pose()), 1.0)
  expected_u = 10.0 + 40.0 * np.array([k + f for k in range(3) for f in circles.FINGER_FRACTIONS])
  np.testing.assert_allclose(model.centres[9:18, 0], expected_u, rtol=1e-6)
  np.testing.assert_allclose(model.centres[9:18, 1], 40.0)
  np.testing.assert_allclose(circles.CENTRE_WEIGHTS.sum(1), 1.0, rtol=1e-6)  # affine combos


def test_rendered_coverage_matches_analytic_union():
  # Nine disks of radius 12 px at u = 16.67, 30, 43.33, ..., 123.33 (spacing d = 40/3 < 2 r:
  # neighbours overlap, others do not). Union area = 9 pi r^2 - 8 lens(d) with the lens of two
  # disks at distance d: 2 r^2 acos(d / 2r) - d/2 sqrt(4 r^2 - d^2).
  r, d = 12.0, 40.0 / 3.0
  lens = 2 * r * r * math.acos(d / (2 * r)) - 0.5 * d * math.sqrt(4 * r * r - d * d)
  area = 9 * math.pi * r * r - 8 * lens  # 2356.8 px^2
  # pixels_per_unit = 4 and radii 3 units: 12 px; every other circle has radius 0, far away.
  model = circles.circle_model(jnp.asarray(_straight_finger_pose()), 4.0, _index_only_radii(3.0))
  np.testing.assert_allclose(model.radii[9:18], r)
  size = (80, 150)
  soft = circles.render_circles(model, size, softness=0.5)
  # The soft mask integrates to the union's area (antisymmetric boundary transition) ...
  np.testing.assert_allclose(float(jnp.sum(soft)), area, rtol=5e-3)
  # ... and thresholded at 1/2 it is exactly the brute-force pixel set of the union.
  vv, uu = np.mgrid[0:size[0], 0:size[1]]
  hard = np.zeros(size, bool)
  for cu, cv in np.asarray(model.centres[9:18], np.float64):
    hard |= (uu - cu) ** 2 + (vv - cv) ** 2 <= r * r
  np.testing.assert_array_equal(np.asarray(soft[..., 0]) >= 0.5, hard)
  np.testing.assert_allclose(hard.sum(), area, rtol=1e-2)


def test_circle_distances_brute_force(rng):
  uv = 30.0 + 8.0 * jax.random.normal(rng, (21, 2))
  model = circles.circle_model(uv, 4.0)
  dist = np.asarray(circles.circle_distances(model, (6, 7)))
  centres, radii = np.asarray(model.centres, np.float64), np.asarray(model.radii, np.float64)
  for v in range(6):
    for u in range(7):
      for i in range(circles.NUM_CIRCLES):
        ref = math.hypot(u - centres[i, 0], v - centres[i, 1]) - radii[i]
        assert abs(dist[v, u, i] - ref) < 1e-4


def test_gradients_finite_at_degenerate_pose():
  uv = jnp.zeros((2, 21, 2))  # every joint (and circle centre) on pixel (0, 0)

  def total(uv):
    return jnp.sum(circles.render_circles(circles.circle_model(uv, 3.0), (4, 4)))

  grad = jax.grad(total)(uv)
  assert np.all(np.isfinite(grad))
  with pytest.raises(ValueError, match="21, 2"):
    circles.circle_model(jnp.zeros((20, 2)), 1.0)
  with pytest.raises(ValueError, match="softness"):
    circles.render_circles(circles.circle_model(uv, 1.0), (4, 4), softness=0.0)


def test_pixels_per_reference_bone():
  from handjax.hand import correction

  pose = jnp.asarray(correction.TEMPLATE_POSE) + jnp.array([0.0, 0.0, 0.6])
  K = jnp.array([[500.0, 0.0, 32.0], [0.0, 500.0, 32.0], [0.0, 0.0, 1.0]])
  uv, depth = lifting.pose_to_25d(pose, K)
  s = lifting.reference_bone_length(pose)
  np.testing.assert_allclose(circles.pixels_per_reference_bone(uv, depth / s, K),
                             500.0 * s / 0.6, rtol=1e-4)


def test_radii_table_plausible():
  # Radii taper from base to tip along every finger, and the thumb is the thickest digit.
  fingers = circles.RADII[:45].reshape(5, 9)
  assert np.all(np.diff(fingers, axis=1) < 0)
  assert np.all(fingers[0, 0] > fingers[1:, 0])
  assert np.all((circles.RADII > 0.05) & (circles.RADII < 0.3))


@pytest.mark.slow
def test_stored_radii_match_fit():
  rho, iou = fit_radii()
  np.testing.assert_allclose(circles.RADII, rho, atol=6e-4)
  assert iou > 0.7


if __name__ == "__main__":
  if "--fit" in sys.argv:
    rho, iou = fit_radii()
    for f in range(5):
      print("    " + ", ".join("%.3f" % r for r in rho[9 * f: 9 * f + 9]) + ",")
    print("    " + ", ".join("%.3f" % r for r in rho[45:]) + ",")
    print("IoU of the circle union with the capsule silhouette (subject 0): %.3f" % iou)
