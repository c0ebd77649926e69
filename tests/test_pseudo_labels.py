"""Tests for handjax.losses.pseudo_labels (SemiHand Eq. 6.4-6.8, Algorithm 6.1)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from handjax.hand import correction
from handjax.hand import kinematics
from handjax.hand import lifting
from handjax.hand.lifting import Pose25D
from handjax.losses import pseudo_labels

K = jnp.array([[200.0, 0.0, 32.0], [0.0, 200.0, 32.0], [0.0, 0.0, 1.0]])


def _pose(key, batch=4) -> Pose25D:
  k1, k2 = jax.random.split(key)
  return Pose25D(32.0 + 5.0 * jax.random.normal(k1, (batch, 21, 2)),
                 0.02 * jax.random.normal(k2, (batch, 21)))


def _l(a: Pose25D, b: Pose25D) -> np.ndarray:
  a_uv, b_uv = np.asarray(a.uv, np.float64), np.asarray(b.uv, np.float64)
  a_d, b_d = np.asarray(a.depth, np.float64), np.asarray(b.depth, np.float64)
  return ((a_uv - b_uv) ** 2).sum((-1, -2)) + 50.0 * ((a_d - b_d) ** 2).sum(-1)


def test_confidence_hand_computed(rng):
  k1, k2, k3 = jax.random.split(rng, 3)
  pseudo, perturbed, corrected = _pose(k1), _pose(k2), _pose(k3)
  A = jnp.array([[0.0, -1.0, 64.0], [1.0, 0.0, 0.0]])  # 90 deg rotation of a 64 px crop
  c = pseudo_labels.confidence(pseudo, perturbed, corrected, A)
  moved_uv = np.asarray(pseudo.uv) @ np.array([[0.0, 1.0], [-1.0, 0.0]]) + np.array([64.0, 0.0])
  expected = _l(Pose25D(moved_uv, pseudo.depth), perturbed) + _l(pseudo, corrected)
  np.testing.assert_allclose(c, expected, rtol=1e-5)
  # Identity transform, consistent perturbed prediction and a feasible label: C = 0.
  np.testing.assert_allclose(pseudo_labels.confidence(pseudo, pseudo, pseudo), 0.0, atol=0)


def test_selection_keeps_exactly_c_at_most_tau():
  c = jnp.array([0.0, 1.2, 1.5, 1.5000001, 3.0, jnp.inf])
  np.testing.assert_array_equal(pseudo_labels.select_confident(c),
                                [True, True, True, False, False, False])
  assert pseudo_labels.TAU == 1.5


def test_unsupervised_loss_eq_6_6(rng):
  k1, k2, k3 = jax.random.split(rng, 3)
  pred, pseudo, corrected = _pose(k1), _pose(k2), _pose(k3)
  conf = jnp.array([0.5, 1.5, 2.0, 10.0])
  loss = pseudo_labels.unsupervised_loss(pred, pseudo, corrected, conf)
  keep = np.array([1.0, 1.0, 0.0, 0.0])
  np.testing.assert_allclose(loss, keep * _l(pred, pseudo) + _l(corrected, pred), rtol=1e-5)
  # Labels are constants: no gradient reaches them, the prediction gets one.
  g_labels = jax.grad(
      lambda p, r: jnp.sum(pseudo_labels.unsupervised_loss(pred, p, r, conf)), argnums=(0, 1))(
          pseudo, corrected)
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(g_labels))
  g_pred = jax.grad(lambda p: jnp.sum(pseudo_labels.unsupervised_loss(p, pseudo, corrected,
                                                                       conf)))(pred)
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(g_pred))


def test_update_is_the_argmin_of_eq_6_7(rng):
  k1, k2 = jax.random.split(rng)
  prev_pred, prev_corr = _pose(k1, 1), _pose(k2, 1)
  calls = []

  def correct(p):
    calls.append(p)
    return Pose25D(p.uv + 1.0, p.depth)

  pseudo, corrected = pseudo_labels.update_pseudo_labels(prev_pred, prev_corr, correct)
  np.testing.assert_allclose(pseudo.uv, 0.5 * (prev_pred.uv + prev_corr.uv), rtol=1e-6)
  np.testing.assert_allclose(corrected.uv, pseudo.uv + 1.0)
  assert len(calls) == 1
  # Numerical check of the argmin: the objective's gradient vanishes at p_hat, and any
  # perturbation increases it.
  def objective(p):
    return jnp.sum(pseudo_labels.pose_distance(prev_pred, p) + pseudo_labels.pose_distance(
        prev_corr, p))

  grads = jax.grad(objective)(pseudo)
  assert all(np.allclose(x, 0.0, atol=1e-4) for x in jax.tree.leaves(grads))
  bumped = Pose25D(pseudo.uv.at[0, 3, 0].add(0.1), pseudo.depth.at[0, 7].add(0.01))
  assert objective(bumped) > objective(pseudo)


def test_algorithm_with_pose_registration(rng):
  # One round of Algorithm 6.1 on 2.5D poses with the real registration P.
  template = jnp.asarray(correction.TEMPLATE_POSE)
  clean = template + jnp.array([0.0, 0.0, 0.5])
  noise = jax.random.normal(rng, (2, 21, 3)) * jnp.array([0.002, 0.008])[:, None, None]
  uv, depth = lifting.pose_to_25d(clean + noise, K)

  def correct(p):
    return Pose25D(*correction.correct_pose_25d(p.uv, p.depth, K))

  pseudo, corrected = pseudo_labels.initialize_pseudo_labels(Pose25D(uv, depth), correct)
  # Corrected labels lift to a pose with the template's bone lengths.
  scale = lifting.reference_bone_length(template)
  prior = kinematics.bone_lengths(template) / scale
  lifted = lifting.lift_25d(corrected.uv, corrected.depth / scale, K, scale, prior_lengths=prior)
  np.testing.assert_allclose(kinematics.bone_lengths(lifted),
                             np.broadcast_to(correction.template_bone_lengths(), (2, 20)),
                             rtol=1e-3)
  # A clean, template-shaped label is its own correction (C = 0 with a consistent view) ...
  uv0, depth0 = lifting.pose_to_25d(clean, K)
  fixed = correct(Pose25D(uv0, depth0))
  np.testing.assert_allclose(fixed.uv, uv0, atol=1e-3)
  # ... and the noisier label is the less confident one.
  conf = np.asarray(pseudo_labels.confidence(pseudo, pseudo, corrected))
  np.testing.assert_allclose(conf, _l(pseudo, corrected), rtol=1e-5)
  assert conf[1] > conf[0] > 0.0
  pseudo2, corrected2 = pseudo_labels.update_pseudo_labels(pseudo, corrected, correct)
  np.testing.assert_allclose(pseudo2.uv, 0.5 * (pseudo.uv + corrected.uv), rtol=1e-6)
  assert np.all(np.isfinite(np.asarray(corrected2.uv)))
