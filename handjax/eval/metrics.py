"""Hand pose metrics: EPE, PCK curves and their AUC, 2D PCK, Procrustes and scale-given alignment.

Host-side numpy code for evaluation time; every function accepts numpy or jax arrays (converted
with `np.asarray`) with any leading batch axes. Inputs are metres (3D) or pixels (2D);
`PoseMetrics.in_mm` converts 3D results to millimetres for tables.

Two averaging protocols (../shared/specs/datasets.md, "Evaluation protocols"):

* ``"plain"`` - Yang dissertation Eq. 2.7-2.8: every (sample, joint) error counts once, i.e. the
  mean over all joints of all samples (over the visible ones when `visible` is given).
* ``"reference"`` - the evaluation utility of Zimmermann & Brox (ICCV 2017), widely reused for
  RHD/STB tables (specs/datasets.md, "reference tooling"): each keypoint is first averaged over
  the samples where it is visible, then the per-keypoint values are averaged over keypoints
  (keypoints never visible are skipped). The median EPE is likewise the mean over keypoints of
  per-keypoint medians.

PCK(t) counts errors <= t (specs/datasets.md; Eq. 2.8 writes <, which differs only on a set of
measure zero). AUC is the trapezoidal integral of PCK over the thresholds divided by
(t_max - t_min).
"AUC 20-50 mm" exists in two versions, both provided and named in every result:
`THRESHOLDS_AUC_20_50` (exactly 20..50 mm, 1 mm steps) and `THRESHOLDS_AUC_20_50_REFERENCE`
(linspace(0, 50, 20) mm from index 8 on, i.e. 21.05..50 mm, as the reference script does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from handjax.hand import skeleton

Protocol = Literal["plain", "reference"]
PROTOCOLS: tuple[str, ...] = ("plain", "reference")

# Threshold sets, metres (3D) or pixels (2D).
THRESHOLDS_0_50_REFERENCE = np.linspace(0.0, 0.050, 20)
THRESHOLDS_AUC_20_50 = np.linspace(0.020, 0.050, 31)
THRESHOLDS_AUC_20_50_REFERENCE = THRESHOLDS_0_50_REFERENCE[8:]
THRESHOLDS_FREIHAND = np.linspace(0.0, 0.050, 100)
THRESHOLDS_2D_PX = np.linspace(0.0, 30.0, 20)

THRESHOLD_SETS: dict[str, np.ndarray] = {
    "auc_20_50": THRESHOLDS_AUC_20_50,
    "auc_20_50_reference": THRESHOLDS_AUC_20_50_REFERENCE,
    "0_50_reference": THRESHOLDS_0_50_REFERENCE,
    "freihand_0_50": THRESHOLDS_FREIHAND,
    "2d_0_30px": THRESHOLDS_2D_PX,
}
THRESHOLD_DESCRIPTIONS: dict[str, str] = {
    "auc_20_50": "20..50 mm, 31 thresholds (1 mm steps)",
    "auc_20_50_reference":
        "linspace(0, 50, 20)[8:] mm = 21.05..50 mm, 12 thresholds (reference script)",
    "0_50_reference": "linspace(0, 50, 20) mm",
    "freihand_0_50": "linspace(0, 50, 100) mm (FreiHAND)",
    "2d_0_30px": "linspace(0, 30, 20) px",
}


def _as_float(x: ArrayLike) -> np.ndarray:
  return np.asarray(x, dtype=np.float64)


def _check_protocol(protocol: str) -> None:
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


def _check_points(pred: np.ndarray, gt: np.ndarray) -> None:
  if pred.shape != gt.shape or pred.ndim < 2:
    raise ValueError(
        "pred and gt must have the same shape (..., joints, dims); got "
        f"{tuple(pred.shape)} and {tuple(gt.shape)}")


def joint_errors(pred: ArrayLike, gt: ArrayLike) -> np.ndarray:
  """Euclidean error of every joint, ||pred_j - gt_j||_2 (Yang dissertation Eq. 2.7, per term).

  Args:
    pred: (..., J, D) predicted keypoints (D = 3 metres, or D = 2 pixels).
    gt: (..., J, D) ground truth, same shape.

  Returns:
    (..., J) float64 errors in the input unit.
  """
  pred, gt = _as_float(pred), _as_float(gt)
  _check_points(pred, gt)
  return np.linalg.norm(pred - gt, axis=-1)


def _flat_errors(errors: ArrayLike, visible: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
  """(N, J) errors and boolean visibility from (..., J) inputs."""
  errors = _as_float(errors)
  if errors.ndim < 1:
    raise ValueError(f"errors must have shape (..., joints), got {errors.shape}")
  if visible is None:
    visible = np.ones(errors.shape, dtype=bool)
  else:
    visible = np.asarray(visible).astype(bool)
    if visible.shape != errors.shape:
      raise ValueError(
          f"visible must match errors' shape {errors.shape} (one flag per joint), "
          f"got {visible.shape}")
  num_joints = errors.shape[-1]
  return errors.reshape(-1, num_joints), visible.reshape(-1, num_joints)


def _reduce(
    errors: ArrayLike, visible: ArrayLike | None, protocol: str, statistic: Callable
) -> float:
  """`statistic` of visible errors: pooled ("plain"), or per keypoint then mean ("reference")."""
  _check_protocol(protocol)
  errors, visible = _flat_errors(errors, visible)
  if protocol == "plain":
    values = errors[visible]
    return float(statistic(values)) if values.size else float("nan")
  per_joint = [
      statistic(errors[visible[:, j], j]) for j in range(errors.shape[1]) if visible[:, j].any()
  ]
  return float(np.mean(per_joint)) if per_joint else float("nan")


def mean_epe(
    errors: ArrayLike, visible: ArrayLike | None = None, protocol: Protocol = "plain"
) -> float:
  """Mean end-point error, Yang dissertation Eq. 2.7 ("plain") or the reference per-keypoint mean.

  Args:
    errors: (..., J) per-joint errors from `joint_errors`.
    visible: optional (..., J) booleans; invisible joints are ignored.
    protocol: "plain" or "reference" (module docstring).

  Returns:
    The mean error in the unit of `errors`; NaN when no joint is visible.
  """
  return _reduce(errors, visible, protocol, np.mean)


def median_epe(
    errors: ArrayLike, visible: ArrayLike | None = None, protocol: Protocol = "plain"
) -> float:
  """Median end-point error; "reference" = mean over keypoints of the per-keypoint medians."""
  return _reduce(errors, visible, protocol, np.median)


def pck_curve(
    errors: ArrayLike,
    thresholds: ArrayLike,
    visible: ArrayLike | None = None,
    protocol: Protocol = "plain",
) -> np.ndarray:
  """Percentage of correct keypoints, PCK(t) = fraction of errors <= t (dissertation Eq. 2.8).

  Args:
    errors: (..., J) per-joint errors.
    thresholds: (T,) thresholds in the unit of `errors`.
    visible: optional (..., J) booleans; invisible joints are ignored.
    protocol: "plain" pools every visible (sample, joint); "reference" computes PCK per keypoint
      over its visible samples and averages the curves over keypoints that are ever visible.

  Returns:
    (T,) PCK values in [0, 1] (NaN when nothing is visible).
  """
  _check_protocol(protocol)
  thresholds = _as_float(thresholds)
  if thresholds.ndim != 1:
    raise ValueError(f"thresholds must be 1-D, got shape {thresholds.shape}")
  errors, visible = _flat_errors(errors, visible)
  correct = errors[..., None] <= thresholds  # (N, J, T)
  if protocol == "plain":
    count = visible.sum()
    if count == 0:
      return np.full(thresholds.shape, np.nan)
    return (correct & visible[..., None]).sum(axis=(0, 1)) / count
  per_joint_count = visible.sum(axis=0)  # (J,)
  ever = per_joint_count > 0
  if not ever.any():
    return np.full(thresholds.shape, np.nan)
  per_joint = (correct & visible[..., None]).sum(axis=0)[ever] / per_joint_count[ever, None]
  return per_joint.mean(axis=0)


def auc(thresholds: ArrayLike, pck: ArrayLike) -> float:
  """Normalised area under a PCK curve: trapz(pck, thresholds) / (t_max - t_min).

  Args:
    thresholds: (T,) increasing thresholds, T >= 2.
    pck: (T,) PCK values.

  Returns:
    The AUC in [0, 1].
  """
  thresholds, pck = _as_float(thresholds), _as_float(pck)
  if thresholds.ndim != 1 or thresholds.shape != pck.shape or thresholds.size < 2:
    raise ValueError(
        "thresholds and pck must be 1-D of the same length >= 2, got "
        f"{thresholds.shape} and {pck.shape}")
  span = thresholds[-1] - thresholds[0]
  if not span > 0:
    raise ValueError(
        f"thresholds must increase, got first {thresholds[0]} and last {thresholds[-1]}")
  return float(np.trapezoid(pck, thresholds) / span)


@dataclasses.dataclass(frozen=True)
class PoseMetrics:
  """A summary that names how it was computed.

  Attributes:
    protocol: "plain" or "reference".
    thresholds_name: key of `THRESHOLD_SETS`, or "custom".
    thresholds_description: human-readable threshold range.
    unit: "m" (3D) or "px" (2D).
    mean_epe: mean error, in `unit`.
    median_epe: median error, in `unit`.
    thresholds: (T,) thresholds, in `unit`.
    pck: (T,) PCK curve.
    auc: normalised AUC over `thresholds`.
    num_visible: number of (sample, joint) errors that entered.
  """

  protocol: str
  thresholds_name: str
  thresholds_description: str
  unit: str
  mean_epe: float
  median_epe: float
  thresholds: np.ndarray
  pck: np.ndarray
  auc: float
  num_visible: int

  def in_mm(self) -> dict[str, float | str]:
    """Table row in millimetres (3D) or pixels (2D): EPE values converted, AUC unitless."""
    factor = 1000.0 if self.unit == "m" else 1.0
    unit = "mm" if self.unit == "m" else self.unit
    return {
        f"mean_epe_{unit}": self.mean_epe * factor,
        f"median_epe_{unit}": self.median_epe * factor,
        "auc": self.auc,
        "protocol": self.protocol,
        "thresholds": self.thresholds_description,
    }


def _resolve_thresholds(thresholds: str | ArrayLike) -> tuple[str, str, np.ndarray]:
  if isinstance(thresholds, str):
    if thresholds not in THRESHOLD_SETS:
      raise ValueError(
          f"thresholds must be one of {tuple(THRESHOLD_SETS)} or an array, got {thresholds!r}")
    return thresholds, THRESHOLD_DESCRIPTIONS[thresholds], THRESHOLD_SETS[thresholds]
  values = _as_float(thresholds)
  return "custom", f"{values.size} thresholds from {values[0]:g} to {values[-1]:g}", values


def summarize_errors(
    errors: ArrayLike,
    visible: ArrayLike | None = None,
    protocol: Protocol = "plain",
    thresholds: str | ArrayLike = "auc_20_50",
    unit: str = "m",
) -> PoseMetrics:
  """Mean/median EPE, PCK curve and AUC of per-joint errors under one protocol and threshold set."""
  if unit not in ("m", "px"):
    raise ValueError(f"unit must be 'm' (3D, metres) or 'px' (2D, pixels), got {unit!r}")
  name, description, values = _resolve_thresholds(thresholds)
  pck = pck_curve(errors, values, visible, protocol)
  _, vis = _flat_errors(errors, visible)
  return PoseMetrics(
      protocol=protocol,
      thresholds_name=name,
      thresholds_description=description,
      unit=unit,
      mean_epe=mean_epe(errors, visible, protocol),
      median_epe=median_epe(errors, visible, protocol),
      thresholds=values,
      pck=pck,
      auc=auc(values, pck),
      num_visible=int(vis.sum()),
  )


def pose_metrics(
    pred: ArrayLike,
    gt: ArrayLike,
    visible: ArrayLike | None = None,
    protocol: Protocol = "plain",
    thresholds: str | ArrayLike = "auc_20_50",
) -> PoseMetrics:
  """3D metrics of (..., 21, 3) poses in metres (EPE, PCK, AUC); see `summarize_errors`."""
  return summarize_errors(joint_errors(pred, gt), visible, protocol, thresholds, unit="m")


def pck_2d(
    uv_pred: ArrayLike,
    uv_gt: ArrayLike,
    visible: ArrayLike | None = None,
    protocol: Protocol = "plain",
) -> PoseMetrics:
  """2D PCK in pixels over linspace(0, 30, 20) px (specs/datasets.md), with 2D EPE and AUC."""
  uv_pred, uv_gt = _as_float(uv_pred), _as_float(uv_gt)
  if uv_pred.shape[-1:] != (2,):
    raise ValueError(f"uv must have shape (..., joints, 2), got {uv_pred.shape}")
  return summarize_errors(joint_errors(uv_pred, uv_gt), visible, protocol, "2d_0_30px", unit="px")


def procrustes_align(pred: ArrayLike, gt: ArrayLike, allow_reflection: bool = False) -> np.ndarray:
  """Similarity-aligns `pred` to `gt` (FreiHAND protocol, Zimmermann et al. ICCV 2019).

  Both point sets are centred and divided by their Frobenius norms; the orthogonal Procrustes
  problem min_R ||P R - G||_F is solved by the SVD P^T G = U S V^T, R = U diag(1, 1, d) V^T with
  d = sign(det(U V^T)) so R is a proper rotation, and the optimal scale is s = S_1 + S_2 + d S_3.
  The result is s P R rescaled by ||G|| and moved to G's centroid. `allow_reflection=True` drops the
  sign fix (d = 1), which is what the FreiHAND script's scipy.linalg.orthogonal_procrustes does.

  Args:
    pred: (..., J, D) predicted points.
    gt: (..., J, D) ground truth points.
    allow_reflection: permit an improper orthogonal matrix (det -1).

  Returns:
    (..., J, D) float64 aligned prediction. Degenerate inputs (all points equal) stay finite: the
    norms are floored at 1e-8 (the FreiHAND script adds 1e-8 instead: a relative difference of
    ~1e-7, which would spoil the exact recovery of a similarity transform).
  """
  pred, gt = _as_float(pred), _as_float(gt)
  _check_points(pred, gt)
  pred_mean = pred.mean(axis=-2, keepdims=True)
  gt_mean = gt.mean(axis=-2, keepdims=True)
  pred_c, gt_c = pred - pred_mean, gt - gt_mean
  # max(., 1e-8) instead of the script's + 1e-8: same guard, but exact for non-degenerate inputs.
  pred_norm = np.maximum(np.linalg.norm(pred_c, axis=(-2, -1), keepdims=True), 1e-8)
  gt_norm = np.maximum(np.linalg.norm(gt_c, axis=(-2, -1), keepdims=True), 1e-8)
  pred_n, gt_n = pred_c / pred_norm, gt_c / gt_norm
  u, s, vt = np.linalg.svd(np.swapaxes(pred_n, -1, -2) @ gt_n)
  sign = np.ones_like(s)
  if not allow_reflection:
    sign[..., -1] = np.sign(np.linalg.det(u @ vt))
    sign[sign == 0] = 1.0
  rotation = (u * sign[..., None, :]) @ vt
  scale = np.sum(s * sign, axis=-1)[..., None, None]
  return scale * (pred_n @ rotation) * gt_norm + gt_mean


def procrustes_pose_metrics(
    pred: ArrayLike,
    gt: ArrayLike,
    visible: ArrayLike | None = None,
    protocol: Protocol = "plain",
    thresholds: str | ArrayLike = "freihand_0_50",
) -> PoseMetrics:
  """Metrics after `procrustes_align` (FreiHAND protocol: thresholds linspace(0, 50, 100) mm)."""
  return pose_metrics(procrustes_align(pred, gt), gt, visible, protocol, thresholds)


def reference_scale(pose: ArrayLike) -> np.ndarray:
  """(...,) length of the middle-finger MCP->PIP bone (skeleton.REFERENCE_SCALE_BONE)."""
  pose = _as_float(pose)
  a, b = skeleton.REFERENCE_SCALE_BONE
  return np.linalg.norm(pose[..., b, :] - pose[..., a, :], axis=-1)


def scale_given_alignment(
    pred_normalized: ArrayLike, gt: ArrayLike, root: int = skeleton.WRIST
) -> tuple[np.ndarray, np.ndarray]:
  """The RHD/STB protocol: root and global scale are given at test time (specs/datasets.md).

  Ground truth becomes root-relative, gt - gt[root]; the prediction, a root-relative pose in units
  of the reference bone, is multiplied by the ground-truth scale
  ||gt[middle PIP] - gt[middle MCP]||.
  The prediction is not re-rooted, as in the reference scripts (its root error, if any, counts).

  Args:
    pred_normalized: (..., 21, 3) root-relative, scale-normalised prediction.
    gt: (..., 21, 3) ground truth in metres.
    root: root joint (the wrist; STB's palm centre sits at index 0 too).

  Returns:
    (pred_metres, gt_root_relative), both (..., 21, 3) float64, ready for `pose_metrics`.
  """
  pred_normalized, gt = _as_float(pred_normalized), _as_float(gt)
  _check_points(pred_normalized, gt)
  if gt.shape[-2] != skeleton.NUM_JOINTS:
    raise ValueError(f"expected {skeleton.NUM_JOINTS} joints on axis -2, got shape {gt.shape}")
  gt_rel = gt - gt[..., root : root + 1, :]
  return pred_normalized * reference_scale(gt)[..., None, None], gt_rel
