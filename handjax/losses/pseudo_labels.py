"""SemiHand pseudo-labels: confidence, sample selection, the unsupervised loss and the label update.

Yang dissertation Sec. 6.3.2 and Algorithm 6.1 (SemiHand, ICCV 2021). Poses are 2.5D,
p = (uv, d) (`handjax.hand.lifting.Pose25D`), compared with the distance l of Eq. 6.2
(`losses.pose.pose_25d_distance`, lambda_d = 50). The pose registration P (Sec. 6.3.2, "Label
Correction") is `handjax.hand.correction.correct_pose_25d`; the functions here take the corrected
labels r = P(p_hat), or a `correct` callable, so that any correction can be plugged in.

* confidence C(p_hat) = l(T(p_hat), f(T(x))) + l(p_hat, P(p_hat))   (Eq. 6.8): a distance, so
  *small* C means a stable, plausible pseudo-label;
* selection 1(C(p_hat) <= tau), tau = 1.5                            (Eq. 6.4-6.6): keep C <= tau;
* network update  L_unsup = 1(C <= tau) l(p, p_hat) + l(r, p)        (Eq. 6.6);
* label update  p_hat = argmin l(p', p_hat) + l(r', p_hat), r = P(p_hat)  (Eq. 6.7).

Note that Sec. 7.3.5.1 words the dual-modality network's selection as keeping samples with a
confidence "larger than epsilon" while its Eq. 7.8 again reads 1(C(r) <= epsilon); here the
equations (C is a distance, keep the small ones) are followed.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from handjax.hand.lifting import Pose25D
from handjax.losses.consistency import affine_pose
from handjax.losses.pose import pose_25d_distance

TAU = 1.5  # confidence threshold tau (Sec. 6.4.1).
LAMBDA_D = 50.0  # depth weight of Eq. 6.2.


def pose_distance(a: Pose25D, b: Pose25D, lambda_d: float = LAMBDA_D) -> jax.Array:
  """l(a, b) = ||uv_a - uv_b||^2 + lambda_d ||d_a - d_b||^2 (Eq. 6.2) on `Pose25D`s, per example."""
  return pose_25d_distance(a.uv, a.depth, b.uv, b.depth, lambda_d)


def confidence(
    pseudo: Pose25D,
    perturbed_pred: Pose25D,
    corrected: Pose25D,
    transform: jax.Array | None = None,
    lambda_d: float = LAMBDA_D,
) -> jax.Array:
  """Pseudo-label confidence, Yang dissertation Eq. 6.8:

      C(p_hat) = l(T(p_hat), f(p | theta; T(x))) + l(p_hat, P(p_hat)),

  the disagreement between the pseudo-label moved by a random perturbation T and the prediction on
  the perturbed image (stability), plus the distance to its correction (plausibility). T is a 2D
  affine map on uv (`consistency.affine_pose`; depth unchanged); None is the identity.

  Args:
    pseudo: pseudo-label p_hat, uv (..., J, 2), depth (..., J).
    perturbed_pred: prediction f(T(x)) on the perturbed image.
    corrected: P(p_hat), e.g. from `correction.correct_pose_25d`.
    transform: optional (..., 2, 3) affine map of the perturbation.
    lambda_d: depth weight of Eq. 6.2.

  Returns:
    (...) confidences; smaller is more confident.
  """
  moved = pseudo if transform is None else affine_pose(pseudo, transform)
  return pose_distance(moved, perturbed_pred, lambda_d) + pose_distance(pseudo, corrected, lambda_d)


def select_confident(confidence_value: jax.Array, tau: float = TAU) -> jax.Array:
  """The indicator 1(C(p_hat) <= tau) of Eq. 6.4-6.6: True for the samples that are kept.

  Args:
    confidence_value: (...) confidences from `confidence`.
    tau: threshold (1.5 in the dissertation).

  Returns:
    (...) boolean mask, True where confidence <= tau (a tie is kept, as the equation reads).
  """
  return jnp.asarray(confidence_value) <= tau


def unsupervised_loss(
    pred: Pose25D,
    pseudo: Pose25D,
    corrected: Pose25D,
    confidence_value: jax.Array,
    tau: float = TAU,
    lambda_d: float = LAMBDA_D,
) -> jax.Array:
  """Network objective on unlabelled data, Yang dissertation Eq. 6.6:

      L_unsup = 1(C(p_hat) <= tau) l(p, p_hat) + l(r, p),

  with p the current prediction, p_hat the pseudo-label and r = P(p_hat) its correction. The labels
  are constants for this step (stop-gradient): Algorithm 6.1 updates theta with them fixed and
  updates the labels separately (`update_pseudo_labels`). The regulariser l(r, p_hat) of Eq. 6.5
  does not depend on theta and enters only the label update.

  Args:
    pred: prediction p, uv (..., J, 2), depth (..., J).
    pseudo: pseudo-label p_hat.
    corrected: corrected pseudo-label r.
    confidence_value: (...) C(p_hat).
    tau: threshold.
    lambda_d: depth weight of Eq. 6.2.

  Returns:
    (...) per-example losses.
  """
  pseudo, corrected = jax.lax.stop_gradient((pseudo, corrected))
  keep = select_confident(confidence_value, tau).astype(pred.uv.dtype)
  return keep * pose_distance(pred, pseudo, lambda_d) + pose_distance(corrected, pred, lambda_d)


def update_pseudo_labels(
    previous_pred: Pose25D,
    previous_corrected: Pose25D,
    correct: Callable[[Pose25D], Pose25D],
) -> tuple[Pose25D, Pose25D]:
  """Label update of Algorithm 6.1, line 6 (Yang dissertation Eq. 6.7):

      p_hat = argmin_{p_hat} l(p', p_hat) + l(r', p_hat),    r = P(p_hat).

  l is a weighted sum of squares with the same weights (1 for uv, lambda_d for depth) in both
  terms, so the minimiser is exact and per coordinate: p_hat = (p' + r') / 2, whatever lambda_d.

  Args:
    previous_pred: the previous prediction p' (uv (..., J, 2), depth (..., J)).
    previous_corrected: the previous correction r'.
    correct: the registration P, e.g. `lambda p: Pose25D(*correction.correct_pose_25d(p.uv,
      p.depth, K))`.

  Returns:
    (p_hat, r) as `Pose25D`s.
  """
  pseudo = jax.tree.map(lambda a, b: 0.5 * (a + b), previous_pred, previous_corrected)
  return pseudo, correct(pseudo)


def initialize_pseudo_labels(
    pred: Pose25D, correct: Callable[[Pose25D], Pose25D]
) -> tuple[Pose25D, Pose25D]:
  """Algorithm 6.1, lines 1-2: p_hat = the pre-trained model's prediction, r = P(p_hat)."""
  return pred, correct(pred)


__all__ = [
    "TAU",
    "confidence",
    "initialize_pseudo_labels",
    "pose_distance",
    "select_confident",
    "unsupervised_loss",
    "update_pseudo_labels",
]
