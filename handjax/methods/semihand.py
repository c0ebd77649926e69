"""SemiHand (Yang dissertation ch. 6; Yang et al. ICCV 2021) as a trainer method.

A two-stack hourglass (`models.Hourglass`) predicts a 2.5D pose p = (uv, d) and a hand mask w.
Rows of a batch with ``has_pose3d`` are labelled (source domain); the other rows are unlabelled
(target domain). The objective (Eq. 6.1) is

    L = L_sup(labelled) + L_unsup(unlabelled) + lambda_c (L_vc + L_cc)(all rows),

* L_sup (Eq. 6.3) = l(p, p_gt) + lambda_w ||w - w_gt||_1 on every stack (intermediate supervision),
  l the 2.5D distance of Eq. 6.2 (lambda_d = 50), lambda_w = 100;
* L_unsup (Eq. 6.6) = 1(C(p_hat) <= tau) l(p, p_hat) + l(r, p) with r = P(p_hat) the correction
  (`hand.correction.correct_pose_25d`), C the confidence of Eq. 6.8, tau = 1.5;
* L_vc (Eq. 6.10) and L_cc (Eq. 6.11-6.14) from `losses.consistency`, lambda_c = 0.1, on X_L and
  X_U ("for both X_L and X_U", Sec. 6.3.3; ``consistency_on_labelled=False``: X_U only).

Two phases on all parameters: ``pretrain`` (L_sup only, steps [0, pretrain_steps)) and ``adapt``
(the full objective, from pretrain_steps on).

Units: uv enters l in pixels of a 64 x 64 output map (`LOSS_MAP_SIZE`, the dissertation's output
resolution, whatever the network's map size; it does not state the unit, and this is the one where
lambda_d = 50 balances the terms), depth is the root-relative depth divided by the reference-bone
length s (Iqbal et al. ECCV 2018), i.e. ``pose3d_normalized[..., 2]``.

Pseudo-labels in rounds (Algorithm 6.1, Sec. 6.3.2, Eq. 6.6-6.8). The adaptation phase is split into
``pseudo_label_rounds`` = K rounds of equal length (`round_starts`; K = 10 in Sec. 6.4, where a
round is an epoch over X_U). At the start of each round the trainer (`Method.label_rounds`,
`handjax.train.label_store`) runs `make_label_fn` over the unlabelled target training set once, in
order, unaugmented, with the current model in inference mode (running BatchNorm statistics, so a
label does not depend on the other rows of its batch):

* p' = f(x) on the original view, r' its correction;
* the label: round 1 p_hat = p' (Alg. 6.1 l. 1-2), later rounds p_hat = (p' + r') / 2, the exact
  minimiser of Eq. 6.7 (`pseudo_labels.update_pseudo_labels`) with r' the previous round's stored
  correction ("the previous correction", ``pseudo_label_update = "algorithm"``); with
  ``"current"`` every round uses r' = P(p'); then r = P(p_hat);
* C(p_hat) of Eq. 6.8 with its own perturbed view T(x) (Sec. 6.3.4's T, drawn from the round key
  and the example index).

p_hat, r and C are stored per example, keyed by its source index, and are constants for the round.
Training reads them from the batch (``stored_*`` keys) and minimises Eq. 6.6,
1(C <= tau) l(p, p_hat) + l(r, p), on the current prediction p of the training view. The pipeline
augments that view geometrically (crop jitter, rotation, flip); the stored uv are moved into it by
the batch's ``reference_to_view`` map (exact for these similarity maps, which leave depth
unchanged; view correction is refused). The correction needs metric depth: the unknown target
scale is replaced by the template's reference-bone length (the correction imposes the template's
bone lengths anyway).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from handjax.hand import circles as circles_lib
from handjax.hand import correction
from handjax.hand import lifting
from handjax.hand import skeleton
from handjax.hand.lifting import Pose25D
from handjax.losses import consistency
from handjax.losses import image as image_losses
from handjax.losses import pseudo_labels
from handjax.losses.pose import pose_25d_distance
from handjax.models.hourglass import Hourglass
from handjax.train import label_store
from handjax.train import method as method_lib

LAMBDA_W = 100.0  # mask weight of Eq. 6.3 (Sec. 6.4.1).
TEMPLATE_SCALE = float(lifting.reference_bone_length(jnp.asarray(correction.TEMPLATE_POSE)))


# ------------------------------------------------------------------------------------------------
# Coordinates.


def image_to_map_uv(uv: jax.Array, image_size: int, map_size: int) -> jax.Array:
  """Image pixels -> heat-map pixels with pixel centres at integers: u' = (u + 0.5) f - 0.5."""
  f = map_size / image_size
  return (uv + 0.5) * f - 0.5


def map_to_image_uv(uv: jax.Array, image_size: int, map_size: int) -> jax.Array:
  """Inverse of `image_to_map_uv`."""
  f = map_size / image_size
  return (uv + 0.5) / f - 0.5


# Eq. 6.2 leaves the unit of uv unstated. uv enters it in pixels of the papers' 64 x 64 output maps
# (Sec. 6.4, 7.4) whatever map size the network runs at: in that unit lambda_d = 50 weighs the two
# terms alike (on synthetic_hands the per-joint variances of uv sum to ~4700 px^2, of the normalised
# depth to ~30, x 50 = 1500). With uv / map_size in [0, 1] the uv term was ~1/1300 of the loss, and
# 1000-step rows never moved it from predicting the mean (BUILD_NOTES, Methods III).
LOSS_MAP_SIZE = 64


def map_to_loss_uv(uv: jax.Array, map_size: int) -> jax.Array:
  """Heat-map pixels (or a translation in them) -> loss units, pixels of a LOSS_MAP_SIZE map."""
  return uv * (LOSS_MAP_SIZE / map_size)


def loss_to_map_uv(uv: jax.Array, map_size: int) -> jax.Array:
  """Inverse of `map_to_loss_uv`."""
  return uv * (map_size / LOSS_MAP_SIZE)


def random_affine(rng: jax.Array, batch: int, size: int, max_rotation_deg: float,
                  max_translate: float, max_scale: float) -> jax.Array:
  """(B, 2, 3) random similarity maps about the image centre (the dual-modality strong view).

  uv' = s R(theta) (uv - c) + c + t, theta ~ U(+-max_rotation), s ~ U(1 +- max_scale),
  t ~ U(+-max_translate * size)^2, c = ((size - 1) / 2, (size - 1) / 2).
  """
  k1, k2, k3 = jax.random.split(rng, 3)
  theta = jnp.deg2rad(jax.random.uniform(k1, (batch,), minval=-max_rotation_deg,
                                         maxval=max_rotation_deg))
  scale = jax.random.uniform(k2, (batch,), minval=1 - max_scale, maxval=1 + max_scale)
  shift = jax.random.uniform(k3, (batch, 2), minval=-max_translate, maxval=max_translate) * size
  cos, sin = scale * jnp.cos(theta), scale * jnp.sin(theta)
  linear = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)  # (B, 2, 2)
  centre = jnp.full((2,), (size - 1) / 2.0)
  offset = centre + shift - jnp.einsum("bij,j->bi", linear, centre)
  return jnp.concatenate([linear, offset[..., None]], -1)


def perturbation_affine(rng: jax.Array, batch: int, size: int, translate_px: float,
                        rotation_deg: float, right_angles: bool = True) -> jax.Array:
  """(B, 2, 3) perturbations of unlabelled images, Yang dissertation Sec. 6.3.4 (and Eq. 6.8).

  "For unlabelled data, we simply perturb with translations of [-5, 5] pixels or rotations of either
  [-2, 2] degrees or 90, 180 and 270 degrees": each example gets one of three maps, with
  probabilities 1/2, 1/4, 1/4 (the text gives none):

  * a translation t ~ U(+-translate_px * size / 64)^2 (pixels of the dissertation's 64-px input,
    so the same fraction of the image at any size);
  * a rotation about the image centre by theta ~ U(+-rotation_deg);
  * a rotation by 90, 180 or 270 degrees (uniform; with ``right_angles=False``, the small rotation).

  No scaling. c = ((size - 1) / 2, (size - 1) / 2): a right-angle turn maps the pixel grid onto
  itself.
  """
  k_kind, k_t, k_small, k_right = jax.random.split(rng, 4)
  kind = jax.random.choice(k_kind, 4, (batch,))  # 0, 1: translation; 2: small; 3: right angle
  shift = jax.random.uniform(k_t, (batch, 2), minval=-1.0, maxval=1.0) * (
      translate_px * size / LOSS_MAP_SIZE)
  small = jnp.deg2rad(jax.random.uniform(k_small, (batch,), minval=-rotation_deg,
                                         maxval=rotation_deg))
  right = (jnp.pi / 2) * jax.random.randint(k_right, (batch,), 1, 4).astype(jnp.float32)
  if not right_angles:
    right = small
  theta = jnp.where(kind == 2, small, jnp.where(kind == 3, right, 0.0))
  shift = jnp.where((kind < 2)[:, None], shift, 0.0)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  linear = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)  # (B, 2, 2)
  centre = jnp.full((2,), (size - 1) / 2.0)
  offset = centre + shift - jnp.einsum("bij,j->bi", linear, centre)
  return jnp.concatenate([linear, offset[..., None]], -1)


def perturbation(rng: jax.Array, batch: int, size: int,
                 s: ml_collections.ConfigDict) -> jax.Array:
  """The ``config.semihand`` perturbation T of the adaptation phase (`perturbation_affine`)."""
  return perturbation_affine(rng, batch, size, s.perturb_translate_px, s.perturb_rotation_deg,
                             s.perturb_right_angles)


def rescale_affine(transform: jax.Array, factor: float) -> jax.Array:
  """The same map in coordinates x' = (x + 0.5) factor - 0.5 (image -> heat-map pixels)."""
  linear, shift = transform[..., :2], transform[..., 2]
  c = 0.5 * factor - 0.5
  # x'_out = f (A x + b + 0.5) - 0.5 with x = (x' - c) / f.
  new_shift = factor * shift + c - jnp.einsum("...ij,j->...i", linear, jnp.full((2,), c))
  return jnp.concatenate([linear, new_shift[..., None]], -1)


def _row_mean(values: jax.Array, rows: jax.Array) -> jax.Array:
  """sum(rows * values) / max(sum(rows), 1): the mean over the selected rows (0 if none)."""
  rows = rows.astype(values.dtype)
  return jnp.sum(rows * values) / jnp.maximum(jnp.sum(rows), 1.0)


def _flag(batch, key: str) -> jax.Array:
  flag = batch.get(f"has_{key}")
  if flag is None:
    return jnp.ones(batch["image"].shape[:1], bool)
  return jnp.asarray(flag).astype(bool)


def _resize_mask(mask: jax.Array, size: int) -> jax.Array:
  mask = jnp.minimum(jnp.asarray(mask, jnp.float32), 1.0)
  if mask.shape[1] == size:
    return mask
  return jax.image.resize(mask, mask.shape[:1] + (size, size, 1), "linear")


# ------------------------------------------------------------------------------------------------
# Loss terms (pure functions of network outputs; the tests recompute them from handjax.losses).


def stack_pose(out: dict[str, jax.Array], map_size: int) -> Pose25D:
  """A stack's 2.5D pose in loss units: uv in `LOSS_MAP_SIZE` pixels, depth / s."""
  return Pose25D(map_to_loss_uv(out["uv"], map_size), out["depth"])


def supervised_terms(outputs: list[dict[str, jax.Array]], batch, map_size: int, lambda_d: float,
                     lambda_w: float) -> tuple[jax.Array, jax.Array]:
  """Per-example Eq. 6.3 summed over stacks: (pose term l(p, p_gt), lambda_w * mask L1)."""
  image_size = batch["image"].shape[1]
  target_uv = map_to_loss_uv(image_to_map_uv(batch["uv"], image_size, map_size), map_size)
  target_depth = batch["pose3d_normalized"][..., 2]
  target_mask = _resize_mask(batch["mask"], map_size)
  pose = mask = 0.0
  for out in outputs:
    p = stack_pose(out, map_size)
    pose = pose + pose_25d_distance(p.uv, p.depth, target_uv, target_depth, lambda_d)
    mask = mask + lambda_w * image_losses.mask_l1(jax.nn.sigmoid(out["mask_logits"]), target_mask)
  return pose, mask


def make_corrector(K: jax.Array, hand_side: jax.Array, image_size: int,
                   map_size: int) -> Callable[[Pose25D], Pose25D]:
  """P on loss-unit poses: to image pixels and metric depth (template scale), correct, and back."""

  def correct(p: Pose25D) -> Pose25D:
    uv = map_to_image_uv(loss_to_map_uv(p.uv, map_size), image_size, map_size)
    uv_c, depth_c = correction.correct_pose_25d(uv, p.depth * TEMPLATE_SCALE, K, hand_side)
    return Pose25D(map_to_loss_uv(image_to_map_uv(uv_c, image_size, map_size), map_size),
                   depth_c / TEMPLATE_SCALE)

  return correct


def loss_unit_transforms(transform: jax.Array, image_size: int,
                         map_size: int) -> tuple[jax.Array, jax.Array]:
  """An image-pixel map T as (t_map, t_unit): in heat-map pixels and in loss units.

  Loss units scale map pixels, so T is conjugated by that scaling: uv are compared in loss units
  (t_unit), masks at the network's map size (t_map).
  """
  t_map = rescale_affine(transform, map_size / image_size)
  t_unit = jnp.concatenate([t_map[..., :2], map_to_loss_uv(t_map[..., 2:], map_size)], -1)
  return t_map, t_unit


# Per-example values of a round's label store (image pixels of the unaugmented view; depth / s).
LABEL_SPEC = {
    "pseudo_uv": jax.ShapeDtypeStruct((skeleton.NUM_JOINTS, 2), jnp.float32),
    "pseudo_depth": jax.ShapeDtypeStruct((skeleton.NUM_JOINTS,), jnp.float32),
    "corrected_uv": jax.ShapeDtypeStruct((skeleton.NUM_JOINTS, 2), jnp.float32),
    "corrected_depth": jax.ShapeDtypeStruct((skeleton.NUM_JOINTS,), jnp.float32),
    "confidence": jax.ShapeDtypeStruct((), jnp.float32),
}
LABEL_UPDATES = ("algorithm", "current")


def round_starts(pretrain_steps: int, num_steps: int, rounds: int) -> list[int]:
  """The first steps of ``rounds`` equal rounds of the adaptation phase [pretrain, num_steps)."""
  adapt = num_steps - pretrain_steps
  return sorted({pretrain_steps + (k * adapt) // rounds for k in range(rounds)})


def round_labels(pred: Pose25D, correct: Callable[[Pose25D], Pose25D], previous_corrected: Pose25D,
                 has_previous: jax.Array, update: str) -> tuple[Pose25D, Pose25D]:
  """(p_hat, r = P(p_hat)) of a round from the model's prediction p' (module docstring).

  Args:
    pred: p' in loss units.
    correct: P on loss-unit poses.
    previous_corrected: the previous round's stored r (loss units; any value where not
      ``has_previous``).
    has_previous: (B,) bool: the row has a label from the previous round.
    update: ``"algorithm"``: p_hat = p' without a previous label (Alg. 6.1 l. 1-2), else
      (p' + r_prev) / 2 (l. 6, Eq. 6.7); ``"current"``: p_hat = (p' + P(p')) / 2 every round.
  """
  if update == "current":
    return pseudo_labels.update_pseudo_labels(pred, correct(pred), correct)
  updated = jax.tree.map(lambda a, b: 0.5 * (a + b), pred, previous_corrected)

  def pick(a, b):
    return jnp.where(has_previous.reshape(has_previous.shape + (1,) * (a.ndim - 1)), a, b)

  pseudo = jax.tree.map(pick, updated, pred)
  return pseudo, correct(pseudo)


def make_label_fn(config: ml_collections.ConfigDict) -> method_lib.LabelFn:
  """The labelling pass of a round: ``label(params, model_state, batch, rng) -> LABEL_SPEC``."""
  net = _network(config)
  s = config.semihand
  map_size = _map_size(config)

  def label(params, model_state, batch, rng):
    image = batch["image"]
    image_size = image.shape[1]
    variables = {**params, **model_state}
    out = net.apply(variables, image, train=False)[-1]
    keys = jax.vmap(lambda i: jax.random.fold_in(rng, i))(batch["index"].astype(jnp.int32))
    transform = jax.vmap(lambda key: perturbation(key, 1, image_size, s)[0])(keys)
    image_t, _ = consistency.warp_affine(image, transform)
    out_t = net.apply(variables, image_t, train=False)[-1]
    _, t_unit = loss_unit_transforms(transform, image_size, map_size)
    pred, pred_t = stack_pose(out, map_size), stack_pose(out_t, map_size)
    correct = make_corrector(batch["K"], batch["hand_side"], image_size, map_size)

    def to_loss(uv):
      return map_to_loss_uv(image_to_map_uv(uv, image_size, map_size), map_size)

    def to_image(uv):
      return map_to_image_uv(loss_to_map_uv(uv, map_size), image_size, map_size)

    previous = Pose25D(to_loss(batch[label_store.stored_key("corrected_uv")]),
                       batch[label_store.stored_key("corrected_depth")])
    pseudo, corrected = round_labels(pred, correct, previous,
                                     batch[label_store.HAS_STORED].astype(bool),
                                     s.pseudo_label_update)
    conf = pseudo_labels.confidence(pseudo, pred_t, corrected, t_unit, s.lambda_d)
    return {"pseudo_uv": to_image(pseudo.uv), "pseudo_depth": pseudo.depth,
            "corrected_uv": to_image(corrected.uv), "corrected_depth": corrected.depth,
            "confidence": conf}

  return label


def stored_pseudo_labels(batch, map_size: int) -> tuple[Pose25D, Pose25D, jax.Array]:
  """The round's stored (p_hat, r, C) of each row, moved into the training view, in loss units.

  Raises:
    ValueError: the batch has no stored labels (the trainer attaches them; `Method.label_rounds`).
  """
  if label_store.stored_key("confidence") not in batch:
    raise ValueError("the semihand adaptation loss with use_pseudo_labels reads the round's stored "
                     "pseudo-labels (batch keys stored_*), which the trainer attaches "
                     "(Method.label_rounds); this batch has none.")
  image = batch["image"]
  image_size = image.shape[1]
  h = batch.get("reference_to_view")

  def to_loss(uv):
    if h is not None:
      uv = consistency.affine_uv(uv, h[..., :2, :])
    return map_to_loss_uv(image_to_map_uv(uv, image_size, map_size), map_size)

  def get(name: str) -> jax.Array:
    return batch[label_store.stored_key(name)]

  pseudo = Pose25D(to_loss(get("pseudo_uv")), get("pseudo_depth"))
  corrected = Pose25D(to_loss(get("corrected_uv")), get("corrected_depth"))
  return pseudo, corrected, get("confidence")


def cross_modal_term(out: dict[str, jax.Array], batch, map_size: int) -> jax.Array:
  """Per-example L_cc (Eq. 6.11) in heat-map pixels; circle radii from the predicted pose's size."""
  image_size = batch["image"].shape[1]
  uv_image = map_to_image_uv(out["uv"], image_size, map_size)
  ppu = circles_lib.pixels_per_reference_bone(uv_image, out["depth"], batch["K"])
  # The radii follow the hand's size but are not a way for the pose to lower the loss. An
  # implausible prediction can put the lifted root at the camera (Z_root -> 0, ppu -> f / 1e-6): the
  # disks then covered the map many times over and L_cc reached 1e5 (session-4 rows). A reference
  # bone longer than half the map is no visible hand, so the radii stop there.
  ppu = jnp.minimum(jax.lax.stop_gradient(ppu) * (map_size / image_size), 0.5 * map_size)
  return consistency.cross_modal_consistency(out["uv"], jax.nn.sigmoid(out["mask_logits"]), ppu)


# ------------------------------------------------------------------------------------------------
# The method.


def _network(config: ml_collections.ConfigDict) -> Hourglass:
  m = config.model
  return Hourglass(features=m.features, num_stacks=m.num_stacks, levels=m.levels,
                   stem_stride=m.stem_stride)


def _map_size(config: ml_collections.ConfigDict) -> int:
  return config.data.image_size // config.model.stem_stride


def make_loss(config: ml_collections.ConfigDict, adapt: bool) -> method_lib.LossFn:
  """Eq. 6.1 (``adapt``) or Eq. 6.3 alone (pre-training); see the module docstring."""
  net = _network(config)
  s = config.semihand
  map_size = _map_size(config)

  def loss_fn(params, model_state, batch, rng, step):
    del step
    variables = {**params, **model_state}
    outputs, updates = net.apply(variables, batch["image"], train=True, mutable=["batch_stats"])
    labelled = _flag(batch, "pose3d")
    pose_sup, mask_sup = supervised_terms(outputs, batch, map_size, s.lambda_d, s.lambda_w)
    sup = _row_mean(pose_sup + mask_sup, labelled)
    metrics = {"sup_pose": _row_mean(pose_sup, labelled), "sup_mask": _row_mean(mask_sup, labelled)}
    total = sup
    if adapt:
      unlabelled = ~labelled
      # Sec. 6.3.3: "for both X_L and X_U" (Eq. 6.1's L_cons(X_L, X_U)): every row.
      cons_rows = jnp.ones_like(labelled) if s.consistency_on_labelled else unlabelled
      image_size = batch["image"].shape[1]
      transform = perturbation(rng, batch["image"].shape[0], image_size, s)
      image_t, _ = consistency.warp_affine(batch["image"], transform)
      outputs_t, _ = net.apply(variables, image_t, train=True, mutable=["batch_stats"])
      last, last_t = outputs[-1], outputs_t[-1]
      t_map, t_unit = loss_unit_transforms(transform, image_size, map_size)
      pred, pred_t = stack_pose(last, map_size), stack_pose(last_t, map_size)
      if s.use_pseudo_labels:
        # Eq. 6.6 with the round's stored labels (constants; module docstring).
        pseudo, corrected, conf = stored_pseudo_labels(batch, map_size)
        unsup = pseudo_labels.unsupervised_loss(pred, pseudo, corrected, conf, s.tau, s.lambda_d)
        rows = unlabelled & batch[label_store.HAS_STORED].astype(bool)
        kept = pseudo_labels.select_confident(conf, s.tau).astype(jnp.float32)
        total = total + s.lambda_l * _row_mean(unsup, rows)
        metrics.update(unsup=_row_mean(unsup, rows), confidence=_row_mean(conf, rows),
                       kept_fraction=_row_mean(kept, rows))
      if s.use_vc:
        vc_pose, vc_mask = consistency.view_consistency(
            pred_t, jax.nn.sigmoid(last_t["mask_logits"]), pred,
            jax.nn.sigmoid(last["mask_logits"]), t_unit, s.lambda_d, mask_transform=t_map,
            return_terms=True)
        vc = vc_pose + vc_mask
        total = total + s.lambda_c * _row_mean(vc, cons_rows)
        metrics.update(vc=_row_mean(vc, cons_rows), vc_mask=_row_mean(vc_mask, cons_rows))
      if s.use_cc:
        cc = cross_modal_term(last, batch, map_size)
        total = total + s.lambda_c * _row_mean(cc, cons_rows)
        metrics["cc"] = _row_mean(cc, cons_rows)
    metrics["loss"] = total
    return total, (metrics, dict(updates))

  return loss_fn


def make_predict(config: ml_collections.ConfigDict) -> method_lib.PredictFn:
  """Final stack -> uv (image pixels) and pose3d lifted with K and the ground-truth scale.

  The RHD/STB protocol gives the reference-bone length s at test time: P = s * lift(uv, d / s, K)
  (Iqbal et al. ECCV 2018), made root-relative. Without ``batch["scale"]`` s = the template's.
  """
  net = _network(config)
  map_size = _map_size(config)

  def predict(params, model_state, batch):
    image = batch["image"]
    out = net.apply({**params, **model_state}, image, train=False)[-1]
    uv = map_to_image_uv(out["uv"], image.shape[1], map_size)
    scale = batch.get("scale")
    scale = (jnp.full(image.shape[:1], TEMPLATE_SCALE) if scale is None
             else jnp.where(scale > 0, scale, TEMPLATE_SCALE))
    pose = lifting.lift_25d(uv, out["depth"], batch["K"], scale)
    return {"pose3d": pose - pose[:, skeleton.WRIST:skeleton.WRIST + 1], "uv": uv,
            "depth": out["depth"], "mask": jax.nn.sigmoid(out["mask_logits"])}

  return predict


def default_semihand_config() -> ml_collections.ConfigDict:
  """The ``config.semihand`` block: loss weights, threshold, perturbation, ablation switches."""
  c = ml_collections.ConfigDict()
  c.lambda_d = 50.0  # Eq. 6.2.
  c.lambda_w = LAMBDA_W  # Eq. 6.3.
  c.lambda_c = consistency.LAMBDA_C  # Eq. 6.1.
  c.lambda_l = 1.0  # weight of L_unsup (1 in Eq. 6.1).
  c.tau = pseudo_labels.TAU
  c.pretrain_steps = 0
  c.use_pseudo_labels = True
  # Algorithm 6.1: K rounds over the adaptation phase, labels made at each round's start and fixed
  # for it (Sec. 6.4: K = 10 epochs). "algorithm": Eq. 6.7 with the previous round's correction;
  # "current": r' = P(p') of the current model every round (module docstring).
  c.pseudo_label_rounds = 10
  c.pseudo_label_update = "algorithm"
  c.use_vc = True
  c.use_cc = True
  # L_cons on labelled and unlabelled rows (Sec. 6.3.3); False: unlabelled rows only.
  c.consistency_on_labelled = True
  # Perturbation T of the unlabelled rows (Sec. 6.3.4, `perturbation_affine`): a translation of
  # +-5 px (of a 64-px input), or a rotation of +-2 degrees, or of 90 / 180 / 270 degrees.
  c.perturb_translate_px = 5.0
  c.perturb_rotation_deg = 2.0
  c.perturb_right_angles = True
  return c


@method_lib.register_method("semihand")
def semihand_method(config: ml_collections.ConfigDict) -> method_lib.Method:
  """SemiHand: phases ``pretrain`` (Eq. 6.3) then ``adapt`` (Eq. 6.1); see the module docstring."""
  net = _network(config)
  size = config.data.image_size
  if size % (config.model.stem_stride * 2**config.model.levels):
    raise ValueError(f"config.data.image_size {size} must be divisible by stem_stride * 2^levels.")

  def init(rng, batch):
    variables = net.init(rng, batch["image"], train=False)
    return {"params": variables["params"]}, {"batch_stats": variables["batch_stats"]}

  opt = method_lib.make_optimizer(config.optimizer, config.num_steps)
  pre = int(config.semihand.pretrain_steps)
  phases = []
  if pre > 0:
    phases.append(method_lib.Phase("pretrain", make_loss(config, adapt=False), opt, stop=pre))
  if pre < config.num_steps:
    phases.append(method_lib.Phase("adapt", make_loss(config, adapt=True), opt, start=pre))
  label_rounds = None
  s = config.semihand
  if s.use_pseudo_labels and pre < config.num_steps:
    k = int(s.get("pseudo_label_rounds", 10))
    if k < 1:
      raise ValueError(f"config.semihand.pseudo_label_rounds must be >= 1 with use_pseudo_labels "
                       f"(Algorithm 6.1's K), got {k}.")
    if s.get("pseudo_label_update", "algorithm") not in LABEL_UPDATES:
      raise ValueError(f"config.semihand.pseudo_label_update must be one of {LABEL_UPDATES}, got "
                       f"{s.pseudo_label_update!r}.")
    if config.data.get("view_correction", False):
      raise ValueError("config.data.view_correction with semihand pseudo-labels: stored labels "
                       "move into the augmented view by an affine map, which view correction is "
                       "not.")
    label_rounds = method_lib.LabelRounds(
        starts=round_starts(pre, int(config.num_steps), k), label=make_label_fn(config),
        spec=LABEL_SPEC, rows=_unlabelled_rows)
  j = skeleton.NUM_JOINTS
  spec = {"image": jax.ShapeDtypeStruct((size, size, 3), jnp.float32),
          "uv": jax.ShapeDtypeStruct((j, 2), jnp.float32),
          "pose3d_normalized": jax.ShapeDtypeStruct((j, 3), jnp.float32),
          "K": jax.ShapeDtypeStruct((3, 3), jnp.float32)}
  return method_lib.Method(name="semihand", init=init, phases=phases, predict=make_predict(config),
                           input_spec=spec, label_rounds=label_rounds)


def _unlabelled_rows(batch) -> np.ndarray:
  """Rows without a 3D label (X_U): the rows that are pseudo-labelled."""
  flag = batch.get("has_pose3d")
  n = len(np.asarray(batch["image"]))
  return np.zeros(n, bool) if flag is None else ~np.asarray(flag).astype(bool)


__all__ = ["LABEL_SPEC", "default_semihand_config", "image_to_map_uv", "loss_unit_transforms",
           "make_label_fn", "make_loss", "map_to_image_uv", "perturbation", "perturbation_affine",
           "random_affine", "rescale_affine", "round_labels", "round_starts", "semihand_method",
           "stored_pseudo_labels"]
