"""handjax.eval.metrics against hand-computed fixtures, brute-force loops and scipy."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from handjax.eval import metrics
from handjax.hand import skeleton

# Two samples, three joints; joint 2 never visible, joint 1 visible only in sample 0.
ERRORS = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
VISIBLE = np.array([[1, 1, 0], [1, 0, 0]], bool)


def test_joint_errors_match_loop_and_accept_jax():
  rng = np.random.default_rng(0)
  pred, gt = rng.normal(size=(2, 3, 21, 3)), rng.normal(size=(2, 3, 21, 3))
  expected = np.zeros((2, 3, 21))
  for a in range(2):
    for b in range(3):
      for j in range(21):
        expected[a, b, j] = np.sqrt(sum((pred[a, b, j, c] - gt[a, b, j, c]) ** 2 for c in range(3)))
  np.testing.assert_allclose(metrics.joint_errors(pred, gt), expected, rtol=1e-12)
  np.testing.assert_allclose(
      metrics.joint_errors(jnp.asarray(pred), jnp.asarray(gt)), expected, rtol=1e-5)


def test_mean_and_median_epe_both_protocols():
  assert metrics.mean_epe(ERRORS) == pytest.approx(3.5)
  assert metrics.median_epe(ERRORS) == pytest.approx(3.5)
  # Plain: pooled visible errors {1, 2, 4}.
  assert metrics.mean_epe(ERRORS, VISIBLE) == pytest.approx(7.0 / 3.0)
  assert metrics.median_epe(ERRORS, VISIBLE) == pytest.approx(2.0)
  # Reference: joint 0 -> mean(1, 4) = 2.5, joint 1 -> 2, joint 2 skipped; then averaged.
  assert metrics.mean_epe(ERRORS, VISIBLE, "reference") == pytest.approx(2.25)
  assert metrics.median_epe(ERRORS, VISIBLE, "reference") == pytest.approx(2.25)
  # Without visibility and with equal counts per joint the two means agree.
  assert metrics.mean_epe(ERRORS, protocol="reference") == pytest.approx(3.5)
  assert np.isnan(metrics.mean_epe(ERRORS, np.zeros_like(VISIBLE)))


def test_pck_curve_and_auc_hand_computed():
  thresholds = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
  plain = metrics.pck_curve(ERRORS, thresholds, VISIBLE)
  np.testing.assert_allclose(plain, [0.0, 1 / 3, 2 / 3, 2 / 3, 1.0])
  reference = metrics.pck_curve(ERRORS, thresholds, VISIBLE, "reference")
  np.testing.assert_allclose(reference, [0.0, 0.25, 0.75, 0.75, 1.0])
  # Trapezoids: (0 + 1/3)/2 + (1/3 + 2/3)/2 + (2/3 + 2/3)/2 + (2/3 + 1)/2 = 13/6, over a span of 4.
  assert metrics.auc(thresholds, plain) == pytest.approx(13.0 / 24.0)
  # Reference: 0.125 + 0.5 + 0.75 + 0.875 = 2.25, over 4.
  assert metrics.auc(thresholds, reference) == pytest.approx(2.25 / 4.0)
  # An error exactly on a threshold counts as correct (<=).
  np.testing.assert_allclose(metrics.pck_curve(np.array([[1.0]]), np.array([0.5, 1.0])), [0.0, 1.0])


def test_both_auc_20_50_threshold_sets_hand_computed():
  errors = np.array([[0.010, 0.0249, 0.0299, 0.060]])  # metres
  # Exact 20..50 mm, 1 mm grid: PCK 0.25 up to 24, 0.5 from 25, 0.75 from 30; integral in mm:
  # 4 * 0.25 + 0.375 + 4 * 0.5 + 0.625 + 20 * 0.75 = 19, over 30 mm.
  exact = metrics.summarize_errors(errors, thresholds="auc_20_50")
  assert exact.auc == pytest.approx(19.0 / 30.0)
  np.testing.assert_allclose(exact.thresholds[[0, -1]], [0.020, 0.050])
  # Reference 50 k / 19 mm, k = 8..19: PCK 0.25, 0.25, 0.5, 0.5, then 0.75 eight times; step h:
  # h (0.25 + 0.375 + 0.5 + 0.625 + 7 * 0.75) = 7 h, over 11 h.
  ref = metrics.summarize_errors(errors, thresholds="auc_20_50_reference")
  assert ref.auc == pytest.approx(7.0 / 11.0)
  assert ref.thresholds[0] == pytest.approx(0.050 * 8 / 19)  # 21.05 mm
  assert ref.thresholds.size == 12
  assert "21.05" in ref.thresholds_description and ref.thresholds_name == "auc_20_50_reference"
  assert exact.thresholds_name == "auc_20_50" and exact.protocol == "plain"


def test_pose_metrics_reports_protocol_and_mm():
  rng = np.random.default_rng(1)
  gt = rng.normal(size=(4, 21, 3)) * 0.05
  pred = gt + rng.normal(size=gt.shape) * 0.01
  visible = rng.random((4, 21)) > 0.3
  result = metrics.pose_metrics(jnp.asarray(pred), gt, visible, protocol="reference",
                                thresholds="auc_20_50_reference")
  errors = np.linalg.norm(pred - gt, axis=-1)
  per_joint = [errors[visible[:, j], j].mean() for j in range(21) if visible[:, j].any()]
  assert result.mean_epe == pytest.approx(np.mean(per_joint), rel=1e-6)
  assert result.protocol == "reference" and result.unit == "m"
  assert result.num_visible == visible.sum()
  row = result.in_mm()
  assert row["mean_epe_mm"] == pytest.approx(1000.0 * result.mean_epe)
  assert row["protocol"] == "reference" and "21.05" in row["thresholds"]


def test_pck_2d_pixels():
  uv_gt = np.zeros((1, 21, 2))
  uv_pred = uv_gt.copy()
  uv_pred[0, :, 0] = np.arange(21) * 2.0  # errors 0, 2, ..., 40 px
  result = metrics.pck_2d(uv_pred, uv_gt)
  assert result.unit == "px" and result.thresholds_name == "2d_0_30px"
  expected = [np.mean(np.arange(21) * 2.0 <= t) for t in np.linspace(0, 30, 20)]
  np.testing.assert_allclose(result.pck, expected)
  assert result.mean_epe == pytest.approx(20.0)
  assert result.in_mm()["mean_epe_px"] == pytest.approx(20.0)


def _random_hand(rng: np.random.Generator, batch: int) -> np.ndarray:
  return rng.normal(size=(batch, 21, 3)) * np.array([0.04, 0.05, 0.02]) + np.array([0.0, 0.0, 0.5])


def test_procrustes_recovers_similarity_transform_exactly():
  rng = np.random.default_rng(2)
  gt = _random_hand(rng, 3)
  rotations = Rotation.random(3, random_state=3).as_matrix()
  scales = np.array([0.5, 1.7, 3.0])[:, None, None]
  pred = scales * gt @ np.swapaxes(rotations, -1, -2) + rng.normal(size=(3, 1, 3))
  aligned = metrics.procrustes_align(pred, gt)
  np.testing.assert_allclose(aligned, gt, atol=1e-10)
  np.testing.assert_allclose(
      metrics.procrustes_align(jnp.asarray(pred, jnp.float32), gt), gt, atol=1e-5)


def test_procrustes_matches_scipy_reference_script():
  # The FreiHAND script: centre, Frobenius-normalise, scipy orthogonal_procrustes, rescale to gt.
  rng = np.random.default_rng(4)
  gt, pred = _random_hand(rng, 1)[0], _random_hand(rng, 1)[0]
  gt_c, pred_c = gt - gt.mean(0), pred - pred.mean(0)
  gt_n, pred_n = gt_c / np.linalg.norm(gt_c), pred_c / np.linalg.norm(pred_c)
  rotation, scale = orthogonal_procrustes(pred_n, gt_n)
  expected = scale * pred_n @ rotation * np.linalg.norm(gt_c) + gt.mean(0)
  aligned = metrics.procrustes_align(pred, gt, allow_reflection=True)
  np.testing.assert_allclose(aligned, expected, atol=1e-9)
  if np.linalg.det(rotation) > 0:
    np.testing.assert_allclose(metrics.procrustes_align(pred, gt), expected, atol=1e-9)


def _residual(pred, gt):
  return np.sum((pred - gt) ** 2)


def test_procrustes_handles_reflections():
  rng = np.random.default_rng(5)
  gt = _random_hand(rng, 1)[0]
  mirrored = skeleton.mirror_pose(gt).astype(np.float64)  # a reflection: no rotation undoes it
  aligned = metrics.procrustes_align(mirrored, gt)
  # The map from the prediction to its alignment is a proper similarity (det > 0) ...
  src, dst = mirrored - mirrored.mean(0), aligned - aligned.mean(0)
  linear, *_ = np.linalg.lstsq(src, dst, rcond=None)
  scale = np.cbrt(np.linalg.det(linear))
  assert scale > 0
  np.testing.assert_allclose(linear.T @ linear / scale**2, np.eye(3), atol=1e-9)
  assert _residual(aligned, gt) > 1e-4  # so the mirror image is not undone,
  # ... and it is optimal among proper rotations: perturbing it only increases the residual.
  base = _residual(aligned, gt)
  centre = aligned.mean(0)
  for rotvec in Rotation.random(20, random_state=6).as_rotvec() * 0.05:
    turned = (aligned - centre) @ Rotation.from_rotvec(rotvec).as_matrix().T + centre
    assert _residual(turned, gt) >= base - 1e-12
  # Allowing reflections recovers the ground truth exactly.
  np.testing.assert_allclose(
      metrics.procrustes_align(mirrored, gt, allow_reflection=True), gt, atol=1e-10)


def test_procrustes_degenerate_inputs_are_finite():
  gt = _random_hand(np.random.default_rng(7), 1)[0]
  collapsed = np.ones_like(gt)
  aligned = metrics.procrustes_align(collapsed, gt)
  assert np.all(np.isfinite(aligned))
  np.testing.assert_allclose(aligned, np.broadcast_to(gt.mean(0), gt.shape), atol=1e-12)
  assert np.all(np.isfinite(metrics.procrustes_align(gt, gt)))
  np.testing.assert_allclose(metrics.procrustes_align(gt, gt), gt, atol=1e-12)


def test_procrustes_pose_metrics_uses_freihand_thresholds():
  rng = np.random.default_rng(8)
  gt = _random_hand(rng, 2)
  result = metrics.procrustes_pose_metrics(2.0 * gt + 0.1, gt)
  assert result.thresholds.size == 100 and result.thresholds_name == "freihand_0_50"
  assert result.mean_epe == pytest.approx(0.0, abs=1e-10)
  np.testing.assert_allclose(result.pck[1:], 1.0)  # PCK(0) counts only errors of exactly 0.


def test_scale_given_alignment_rhd_stb_protocol():
  rng = np.random.default_rng(9)
  gt = _random_hand(rng, 2)
  a, b = skeleton.MIDDLE_MCP, skeleton.MIDDLE_PIP
  bone = np.linalg.norm(gt[:, b] - gt[:, a], axis=-1)
  np.testing.assert_allclose(metrics.reference_scale(gt), bone)
  normalized = (gt - gt[:, :1]) / bone[:, None, None]
  pred_m, gt_rel = metrics.scale_given_alignment(normalized, gt)
  np.testing.assert_allclose(gt_rel, gt - gt[:, :1])
  np.testing.assert_allclose(pred_m, gt_rel, atol=1e-12)
  # The prediction's root offset is not removed: it counts as error.
  pred_m, _ = metrics.scale_given_alignment(normalized + 1.0, gt)
  np.testing.assert_allclose(
      pred_m - gt_rel, np.broadcast_to(bone[:, None, None], gt.shape), atol=1e-12)


def test_bad_inputs_name_what_was_expected():
  with pytest.raises(ValueError, match="same shape"):
    metrics.joint_errors(np.zeros((21, 3)), np.zeros((20, 3)))
  with pytest.raises(ValueError, match="protocol"):
    metrics.mean_epe(ERRORS, protocol="zimmermann")
  with pytest.raises(ValueError, match="visible"):
    metrics.pck_curve(ERRORS, [0.0, 1.0], visible=np.ones((2, 2), bool))
  with pytest.raises(ValueError, match="increase"):
    metrics.auc([1.0, 1.0], [0.0, 1.0])
  with pytest.raises(ValueError, match="thresholds must be one of"):
    metrics.summarize_errors(ERRORS, thresholds="20-50")
