"""The dual-modality network (Yang dissertation ch. 7) as a trainer method.

Network (Fig. 7.2): `models.DualBranchResNet` (RGB, depth-map (DM) and fusion branches with the
attention fusion of Eq. 7.2 and the stop-gradient of Fig. 7.3(c)), global pooling, and one shared
`models.DeconvDecoder` whose 2K + 2 output channels are K latent heat maps, K latent depth maps
(2.5D read-out, `models.hourglass.latent_25d_readout`), one mask logit map and one depth map, i.e.
y = (p, m, d) of Eq. 7.1. Per-branch 2-layer projection heads give 128-d features z.

    M(y, y_gt) = l(p, p_gt) + lambda_m ||m - m_gt||_1 + lambda_d ||d - d_gt||_1      (Eq. 7.1)
    L_s = M(y_RGB, y_gt) + M(y_DM, y_gt) + M(y_F, y_gt)                              (Eq. 7.6)
    L_c = eta(z_RGB, z_RGB+) + eta(z_DM, z_DM+) + eta(z_RGB, z_F) + eta(z_RGB+, z_F+)  (Eq. 7.4-7.5)
    L_pretrain = L_s + lambda_c L_c                                                  (Eq. 7.7)
                 (L_c's eta: mean over anchors x 140, the paper's pre-training batch; see below)
    L_l = 1(C(r) <= eps) l(p_strong, r)                                              (Eq. 7.8)
    L_f = M(y_RGB, stop(y_F)),  fusion branch fed the RGB branch's predicted depth    (Eq. 7.9)
    L_finetune = L_s + lambda_f L_f + lambda_l L_l                                   (Eq. 7.10)

with lambda_m = 100, lambda_d = 50, lambda_c = 0.1, lambda_f = 0.2, lambda_l = 1, eps = 1.5,
tau = 0.5 (Sec. 7.4). Two phases on all parameters: ``pretrain`` (Eq. 7.7 on labelled rows,
steps [0, pretrain_steps)) and ``finetune`` (Eq. 7.10, L_s on labelled rows, L_l and L_f on the
unlabelled rows, ``has_pose3d`` False). Inference (`predict`) runs the RGB branch only.

Choices where the text is silent or that depart from it (for BUILD_NOTES):
* Positive pairs (Sec. 7.3.4.1): the geometric augmentation G is the data pipeline's (crop
  jitter, rotation), so the batch view is G(x) and the method draws the texture augmentation T
  (RGB: brightness/contrast jitter + Gaussian noise; depth map: a small global scale + noise).
  Eq. 7.6 supervises the G(x) view.
* Pseudo-labels (Sec. 7.3.5.1): the weak view is the batch view (the pipeline's small
  perturbations); the strong view is a random similarity warp of it (rotation, translation,
  scaling). r averages the RGB and fusion poses on the weak view before and after correction
  (`correct_pose_25d(..., clamp_angles=True)`, bone lengths + joint angles), mapped into the strong
  view; C(r) = mean_i l(p_i, r) over those candidates (the "variance"; the text gives no formula).
  L_l supervises the RGB and fusion branches on the strong view (the DM branch has no real depth
  map to run on). Without self-distillation the fusion branch is not run on real data and r uses
  the RGB branch only.
* Self-distillation: y_F is the teacher (stop-gradient), y_RGB the student.
* Eq. 7.3 sums eta over the B anchors while L_s is a mean over rows, so lambda_c's weight would
  depend on the batch (4.4x weaker at 32 than at the paper's 140). eta enters as its mean over the
  valid anchors times ``contrastive_batch`` = 140: exactly the paper's term at batch 140, and an
  anchor weighs the same against L_s at any batch. The logged ``contrastive`` is the mean form.
* uv enters l in pixels of a 64 x 64 output map (`semihand.LOSS_MAP_SIZE`, the dissertation's
  output resolution, whatever `map_size` the decoder runs at; `map_to_loss_uv`), as in SemiHand;
  depth is root-relative / reference-bone length; the depth map is in metres (0 = background,
  ignored) and the DM input is the raw metric depth map.
* The decoder, its BatchNorm statistics included, is shared by the three branches (Fig. 7.2).
* ``attention=False`` (Table 7.2 ablation "w/o attention"): no attention anywhere; the fusion
  branch is the RGB kernels with their own BatchNorm plus stop(DM pooled features).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from handjax.hand import correction
from handjax.hand import lifting
from handjax.hand import skeleton
from handjax.hand.lifting import Pose25D
from handjax.losses import consistency
from handjax.losses import image as image_losses
from handjax.losses.contrastive import nt_xent
from handjax.losses.pose import pose_25d_distance
from handjax.methods.semihand import TEMPLATE_SCALE
from handjax.methods.semihand import image_to_map_uv
from handjax.methods.semihand import loss_to_map_uv
from handjax.methods.semihand import map_to_image_uv
from handjax.methods.semihand import map_to_loss_uv
from handjax.methods.semihand import random_affine
from handjax.methods.semihand import rescale_affine
from handjax.models.decoders import DeconvDecoder
from handjax.models.fusion import DualBranchResNet
from handjax.models.hourglass import latent_25d_readout
from handjax.train import method as method_lib

BRANCHES = ("rgb", "depth", "fusion")


class DualModalityNet(nn.Module):
  """Encoder (`DualBranchResNet`) + shared decoder + projection heads (module docstring).

  Attributes:
    depth, width, stage_sizes: ResNet settings.
    stop_gradient: the stop-gradient of Fig. 7.3(c).
    attention: attention fusion (Eq. 7.2) or the additive ablation.
    map_size: output side of the decoder.
    decoder_channels: hidden widths of the decoder.
    base_channels: channels after the decoder's reshape.
    proj_dim: contrastive feature size (128).
    num_keypoints: K.
  """

  depth: int = 18
  width: float = 1.0
  stage_sizes: tuple[int, int, int, int] | None = None
  stop_gradient: bool = True
  attention: bool = True
  map_size: int = 64
  decoder_channels: Sequence[int] = (128, 64, 32, 16)
  base_channels: int = 256
  proj_dim: int = 128
  num_keypoints: int = 21

  def setup(self):
    self.encoder = DualBranchResNet(self.depth, self.width, self.stop_gradient, self.stage_sizes)
    self.decoder = DeconvDecoder(self.map_size, 2 * self.num_keypoints + 2,
                                 tuple(self.decoder_channels), 4, self.base_channels)
    self.proj_hidden = {b: nn.Dense(self.proj_dim, name=f"proj_{b}_0") for b in BRANCHES}
    self.proj_out = {b: nn.Dense(self.proj_dim, name=f"proj_{b}_1") for b in BRANCHES}

  def encode(self, image: jax.Array, depth_map: jax.Array, train: bool) -> dict[str, jax.Array]:
    """Pooled features of the three branches, {"rgb", "depth", "fusion"}: (B, C)."""
    if self.attention:
      maps = self.encoder(image, depth_map, train)
      return {k: jnp.mean(v, axis=(1, 2)) for k, v in maps.items()}
    rgb = self.encoder.rgb_net(image, train, "rgb")
    dm = self.encoder.depth_net(depth_map, train, "dm")
    fusion = self.encoder.rgb_net(image, train, "fusion") + jax.lax.stop_gradient(dm)
    return {"rgb": rgb, "depth": dm, "fusion": fusion}

  def encode_rgb(self, image: jax.Array, train: bool) -> jax.Array:
    """The RGB branch alone (inference path): it never touches the depth-map branch."""
    return self.encoder.rgb_net(image, train, "rgb")

  def decode(self, features: jax.Array, train: bool) -> dict[str, jax.Array]:
    """(B, C) -> "uv" (B, K, 2) map pixels, "depth" (B, K), "mask_logits", "depth_map" (B, s, s, 1).
    """
    out = self.decoder(features, train)
    k = self.num_keypoints
    heat, dmaps = out[..., :k], out[..., k:2 * k]
    uv, z = latent_25d_readout(heat, dmaps)
    return {"uv": uv, "depth": z, "mask_logits": out[..., 2 * k:2 * k + 1],
            "depth_map": out[..., 2 * k + 1:]}

  def project(self, features: jax.Array, branch: str) -> jax.Array:
    """Two fully connected layers -> (B, proj_dim) (normalised inside NT-Xent)."""
    return self.proj_out[branch](nn.relu(self.proj_hidden[branch](features)))

  def predict_rgb(self, image: jax.Array) -> dict[str, jax.Array]:
    """Inference: RGB branch + decoder, running BatchNorm statistics."""
    return self.decode(self.encode_rgb(image, False), False)

  def __call__(self, image: jax.Array, depth_map: jax.Array, train: bool) -> dict[str, Any]:
    """Every output (used for init): {branch: decoded outputs}, plus "z_<branch>"."""
    feats = self.encode(image, depth_map, train)
    out: dict[str, Any] = {b: self.decode(f, train) for b, f in feats.items()}
    out.update({f"z_{b}": self.project(f, b) for b, f in feats.items()})
    return out


# ------------------------------------------------------------------------------------------------
# Loss terms.


def _pose(out: dict[str, jax.Array], map_size: int) -> Pose25D:
  return Pose25D(map_to_loss_uv(out["uv"], map_size), out["depth"])


def _resize(x: jax.Array, size: int, method: str) -> jax.Array:
  x = jnp.asarray(x, jnp.float32)
  if x.shape[1] == size:
    return x
  return jax.image.resize(x, x.shape[:1] + (size, size, x.shape[-1]), method)


def multimodal_loss(out: dict[str, jax.Array], target: dict[str, jax.Array], map_size: int,
                    lambda_pose_depth: float, lambda_m: float, lambda_d: float) -> jax.Array:
  """M(y, y_gt) of Eq. 7.1 per example; `target` holds "uv" (map pixels), "depth", "mask"
  (probabilities) and "depth_map" (metres, 0 ignored), at the output resolution."""
  p = _pose(out, map_size)
  pose = pose_25d_distance(p.uv, p.depth, map_to_loss_uv(target["uv"], map_size), target["depth"],
                           lambda_pose_depth)
  mask = image_losses.mask_l1(jax.nn.sigmoid(out["mask_logits"]), target["mask"])
  depth = image_losses.depth_l1(out["depth_map"], target["depth_map"])
  return pose + lambda_m * mask + lambda_d * depth


def ground_truth(batch, map_size: int) -> dict[str, jax.Array]:
  """y_gt at the output resolution (uv in map pixels, normalised root-relative depth)."""
  image_size = batch["image"].shape[1]
  return {"uv": image_to_map_uv(batch["uv"], image_size, map_size),
          "depth": batch["pose3d_normalized"][..., 2],
          "mask": jnp.minimum(_resize(batch["mask"], map_size, "linear"), 1.0),
          "depth_map": _resize(batch["depth"], map_size, "nearest")}


def as_target(out: dict[str, jax.Array]) -> dict[str, jax.Array]:
  """A prediction as a stop-gradient M target (Eq. 7.9): mask probabilities, depth map kept."""
  out = jax.lax.stop_gradient(out)
  return {"uv": out["uv"], "depth": out["depth"], "mask": jax.nn.sigmoid(out["mask_logits"]),
          "depth_map": out["depth_map"]}


# T_RGB / T_DM settings (Sec. 7.4 lists the operations, not their parameters; ours, after
# SimCLR's grey-scale probability and Zhong et al.'s random erasing).
GREY_PROB = 0.2
ERASE_PROB = 0.5
ERASE_AREA = (0.02, 0.25)  # fraction of the image
ERASE_ASPECT = (0.3, 3.3)
SALT_PEPPER_FRACTION = 0.05  # of the known depth pixels, at strength 1


def jitter_colour(image: jax.Array, gain: jax.Array, bias: jax.Array) -> jax.Array:
  """Colour jitter: per-example, per-channel gain (B, 1, 1, 3) and brightness bias (B, 1, 1, 1)."""
  return gain * image + bias


def to_grey(image: jax.Array, grey: jax.Array) -> jax.Array:
  """Rows with grey (B,) True become their ITU-R 601 luma in all three channels."""
  luma = image @ jnp.array([0.299, 0.587, 0.114], image.dtype)
  return jnp.where(grey[:, None, None, None], luma[..., None], image)


def box_mask(height: int, width: int, top: jax.Array, left: jax.Array, box_h: jax.Array,
             box_w: jax.Array) -> jax.Array:
  """(B, H, W, 1) True inside each row's box [top, top + box_h) x [left, left + box_w)."""
  rows = jnp.arange(height)[None, :, None]
  cols = jnp.arange(width)[None, None, :]
  t, l = top[:, None, None], left[:, None, None]
  inside = (rows >= t) & (rows < t + box_h[:, None, None]) & (cols >= l) & (
      cols < l + box_w[:, None, None])
  return inside[..., None]


def random_erase_mask(rng: jax.Array, batch: int, height: int, width: int,
                      prob: float = ERASE_PROB) -> jax.Array:
  """Random erasing (Zhong et al.): with probability `prob` a box of ERASE_AREA of the image with
  aspect ratio in ERASE_ASPECT (log-uniform), placed uniformly; (B, H, W, 1)."""
  k = jax.random.split(rng, 5)
  area = jax.random.uniform(k[0], (batch,), minval=ERASE_AREA[0], maxval=ERASE_AREA[1])
  log_aspect = jax.random.uniform(k[1], (batch,), minval=jnp.log(ERASE_ASPECT[0]),
                                  maxval=jnp.log(ERASE_ASPECT[1]))
  box_h = jnp.clip(jnp.round(jnp.sqrt(area * jnp.exp(log_aspect)) * height), 1, height)
  box_w = jnp.clip(jnp.round(jnp.sqrt(area / jnp.exp(log_aspect)) * width), 1, width)
  top = jnp.floor(jax.random.uniform(k[2], (batch,)) * (height - box_h + 1))
  left = jnp.floor(jax.random.uniform(k[3], (batch,)) * (width - box_w + 1))
  on = jax.random.uniform(k[4], (batch,)) < prob
  return box_mask(height, width, top, left, box_h, box_w) & on[:, None, None, None]


def salt_and_pepper(depth_map: jax.Array, u: jax.Array, fraction: float) -> jax.Array:
  """Known depth pixels with u < fraction/2 read 0 (pepper: no reading) and with u > 1 -
  fraction/2 the map's farthest depth (salt); the background (0) stays 0."""
  known = depth_map != 0
  far = jnp.max(depth_map, axis=(1, 2, 3), keepdims=True)
  out = jnp.where(u < fraction / 2, 0.0, depth_map)
  out = jnp.where(u > 1 - fraction / 2, far, out)
  return jnp.where(known, out, 0.0)


def texture_augment(rng: jax.Array, image: jax.Array, depth_map: jax.Array,
                    strength: float) -> tuple[jax.Array, jax.Array]:
  """T_RGB and T_DM of Sec. 7.3.4.1 / 7.4 (labels unchanged).

  T_RGB: colour jitter (per-channel gain 1 +- strength, brightness +- 0.2 strength), grey-scale
  with probability GREY_PROB, random erasure (filled with 0, mid-grey of the normalised image).
  T_DM: random erasure (filled with 0, "no reading") and salt-and-pepper noise on
  strength x SALT_PEPPER_FRACTION of the known pixels.
  """
  b, h, w, _ = image.shape
  k = jax.random.split(rng, 6)
  gain = 1 + strength * jax.random.uniform(k[0], (b, 1, 1, 3), minval=-1, maxval=1)
  bias = 0.2 * strength * jax.random.uniform(k[1], (b, 1, 1, 1), minval=-1, maxval=1)
  image = jitter_colour(image, gain, bias)
  image = to_grey(image, jax.random.uniform(k[2], (b,)) < GREY_PROB)
  image = jnp.where(random_erase_mask(k[3], b, h, w), 0.0, image)
  dh, dw = depth_map.shape[1:3]
  depth_map = jnp.where(random_erase_mask(k[4], b, dh, dw), 0.0, depth_map)
  depth_map = salt_and_pepper(depth_map, jax.random.uniform(k[5], depth_map.shape),
                              strength * SALT_PEPPER_FRACTION)
  return image, depth_map


def pseudo_label(candidates: Sequence[Pose25D], lambda_d: float) -> tuple[Pose25D, jax.Array]:
  """r = mean of the candidate poses and C(r) = mean_i l(p_i, r) (their variance under Eq. 6.2)."""
  r = jax.tree.map(lambda *xs: sum(xs) / len(xs), *candidates)
  conf = sum(pose_25d_distance(c.uv, c.depth, r.uv, r.depth, lambda_d) for c in candidates)
  return r, conf / len(candidates)


def _row_mean(values: jax.Array, rows: jax.Array) -> jax.Array:
  rows = rows.astype(values.dtype)
  return jnp.sum(rows * values) / jnp.maximum(jnp.sum(rows), 1.0)


def _labelled(batch) -> jax.Array:
  flag = batch.get("has_pose3d")
  return (jnp.ones(batch["image"].shape[:1], bool) if flag is None
          else jnp.asarray(flag).astype(bool))


# ------------------------------------------------------------------------------------------------
# The method.


def network(config: ml_collections.ConfigDict) -> DualModalityNet:
  """The network of ``config.model`` (see `DualModalityNet`)."""
  m = config.model
  stage_sizes = None if m.get("stage_sizes") is None else tuple(m.stage_sizes)
  return DualModalityNet(depth=m.depth, width=m.width, stage_sizes=stage_sizes,
                         stop_gradient=config.dualmod.stop_gradient,
                         attention=config.dualmod.attention, map_size=m.map_size,
                         decoder_channels=tuple(m.decoder_channels),
                         base_channels=m.base_channels, proj_dim=m.proj_dim)


def _supervised(net, variables, batch, map_size, d) -> tuple[jax.Array, dict, Any, dict]:
  """Eq. 7.6 per example on the batch view, plus the contrastive features and BN updates."""
  out, updates = net.apply(variables, batch["image"], batch["depth"], True,
                           mutable=["batch_stats"])
  gt = ground_truth(batch, map_size)
  terms = {b: multimodal_loss(out[b], gt, map_size, d.lambda_pose_depth, d.lambda_m, d.lambda_d)
           for b in BRANCHES}
  return sum(terms.values()), terms, out, updates


def make_pretrain_loss(config: ml_collections.ConfigDict) -> method_lib.LossFn:
  """L_pretrain = L_s + lambda_c L_c (Eq. 7.7) on the labelled rows."""
  net, d, map_size = network(config), config.dualmod, config.model.map_size

  def loss_fn(params, model_state, batch, rng, step):
    del step
    variables = {**params, **model_state}
    labelled = _labelled(batch)
    sup, terms, out, updates = _supervised(net, variables, batch, map_size, d)
    metrics = {f"sup_{b}": _row_mean(v, labelled) for b, v in terms.items()}
    total = _row_mean(sup, labelled)
    if d.use_contrastive:
      image_p, depth_p = texture_augment(rng, batch["image"], batch["depth"], d.texture_strength)
      out_p, _ = net.apply(variables, image_p, depth_p, True, mutable=["batch_stats"])

      # Eq. 7.3 sums over the B anchors, L_s is a mean over rows: with the sum lambda_c would be
      # 140 / B times weaker than at the paper's pre-training batch. The mean over anchors times
      # `contrastive_batch` (140) equals the paper's term at batch 140 and keeps an anchor's
      # weight against L_s independent of the batch size.
      def eta(a, b):
        return nt_xent(a, b, d.temperature, labelled, reduction="mean")

      contrastive = (eta(out["z_rgb"], out_p["z_rgb"]) + eta(out["z_depth"], out_p["z_depth"])
                     + eta(out["z_rgb"], out["z_fusion"]) + eta(out_p["z_rgb"], out_p["z_fusion"]))
      total = total + d.lambda_c * d.contrastive_batch * contrastive
      metrics["contrastive"] = contrastive
    metrics["loss"] = total
    return total, (metrics, dict(updates))

  return loss_fn


def _rgb_and_fusion(net, variables, image, self_distill: bool) -> tuple[dict, dict | None, Any]:
  """RGB outputs and, with self-distillation, fusion outputs fed stop(RGB depth map) (Eq. 7.9)."""
  rgb, updates = net.apply(variables, image, True, method=lambda m, x, t: m.decode(
      m.encode_rgb(x, t), t), mutable=["batch_stats"])
  if not self_distill:
    return rgb, None, updates
  depth_in = jax.lax.stop_gradient(rgb["depth_map"])
  depth_in = jax.image.resize(depth_in, image.shape[:3] + (1,), "linear")
  fusion, _ = net.apply(variables, image, depth_in, True, method=lambda m, x, dm, t: m.decode(
      m.encode(x, dm, t)["fusion"], t), mutable=["batch_stats"])
  return rgb, fusion, updates


def make_finetune_loss(config: ml_collections.ConfigDict) -> method_lib.LossFn:
  """L_finetune = L_s + lambda_f L_f + lambda_l L_l (Eq. 7.10); see the module docstring."""
  net, d, map_size = network(config), config.dualmod, config.model.map_size

  def loss_fn(params, model_state, batch, rng, step):
    del step
    variables = {**params, **model_state}
    labelled = _labelled(batch)
    unlabelled = ~labelled
    sup, terms, _, updates = _supervised(net, variables, batch, map_size, d)
    metrics = {f"sup_{b}": _row_mean(v, labelled) for b, v in terms.items()}
    total = _row_mean(sup, labelled)
    image = batch["image"]
    image_size = image.shape[1]
    sd = bool(d.use_self_distillation)
    # Weak view = the batch view; its predictions are constants (pseudo-labels).
    weak_rgb, weak_fusion, _ = _rgb_and_fusion(net, variables, image, sd)
    transform = random_affine(rng, image.shape[0], image_size, d.strong_rotation_deg,
                              d.strong_translate, d.strong_scale)
    strong_image, _ = consistency.warp_affine(image, transform)
    strong_rgb, strong_fusion, _ = _rgb_and_fusion(net, variables, strong_image, sd)
    t_map = rescale_affine(transform, map_size / image_size)
    t_unit = jnp.concatenate([t_map[..., :2], map_to_loss_uv(t_map[..., 2:], map_size)], -1)
    weak = [_pose(o, map_size) for o in (weak_rgb, weak_fusion) if o is not None]
    weak = jax.lax.stop_gradient(weak)
    candidates = list(weak)
    if d.use_correction:
      for p in weak:
        uv = map_to_image_uv(loss_to_map_uv(p.uv, map_size), image_size, map_size)
        uv_c, depth_c = correction.correct_pose_25d(uv, p.depth * TEMPLATE_SCALE, batch["K"],
                                                    batch["hand_side"], clamp_angles=True)
        candidates.append(Pose25D(map_to_loss_uv(image_to_map_uv(uv_c, image_size, map_size),
                                                 map_size),
                                  depth_c / TEMPLATE_SCALE))
    r, conf = pseudo_label([consistency.affine_pose(c, t_unit) for c in candidates],
                           d.lambda_pose_depth)
    keep = (conf <= d.epsilon).astype(jnp.float32)
    students = [o for o in (strong_rgb, strong_fusion) if o is not None]
    pseudo = sum(keep * pose_25d_distance(_pose(o, map_size).uv, o["depth"], r.uv, r.depth,
                                          d.lambda_pose_depth) for o in students)
    total = total + d.lambda_l * _row_mean(pseudo, unlabelled)
    metrics.update(pseudo=_row_mean(pseudo, unlabelled), confidence=_row_mean(conf, unlabelled),
                   kept_fraction=_row_mean(keep, unlabelled))
    if sd:
      distill = multimodal_loss(strong_rgb, as_target(strong_fusion), map_size,
                                d.lambda_pose_depth, d.lambda_m, d.lambda_d)
      total = total + d.lambda_f * _row_mean(distill, unlabelled)
      metrics["distill"] = _row_mean(distill, unlabelled)
    metrics["loss"] = total
    return total, (metrics, dict(updates))

  return loss_fn


def make_predict(config: ml_collections.ConfigDict) -> method_lib.PredictFn:
  """RGB branch only: uv (image pixels) and pose3d = s lift(uv, d / s, K), root-relative, with s
  the ground-truth reference-bone length (RHD/STB protocol; the template's without ``scale``)."""
  net, map_size = network(config), config.model.map_size

  def predict(params, model_state, batch):
    image = batch["image"]
    out = net.apply({**params, **model_state}, image, method=DualModalityNet.predict_rgb)
    uv = map_to_image_uv(out["uv"], image.shape[1], map_size)
    scale = batch.get("scale")
    scale = (jnp.full(image.shape[:1], TEMPLATE_SCALE) if scale is None
             else jnp.where(scale > 0, scale, TEMPLATE_SCALE))
    pose = lifting.lift_25d(uv, out["depth"], batch["K"], scale)
    return {"pose3d": pose - pose[:, skeleton.WRIST:skeleton.WRIST + 1], "uv": uv,
            "depth": out["depth"], "mask": jax.nn.sigmoid(out["mask_logits"]),
            "depth_map": out["depth_map"]}

  return predict


def default_dualmod_config() -> ml_collections.ConfigDict:
  """The ``config.dualmod`` block (Sec. 7.4 values) and the ablation switches of Table 7.2."""
  c = ml_collections.ConfigDict()
  c.lambda_pose_depth = 50.0  # lambda_d of l, Eq. 6.2.
  c.lambda_m = 100.0
  c.lambda_d = 50.0  # depth-map weight of Eq. 7.1.
  c.lambda_c = 0.1
  # The batch at which lambda_c weighs Eq. 7.3's sum over anchors (Sec. 7.4 pre-trains at 140): L_c
  # enters as lambda_c * contrastive_batch * (mean over anchors), the same at any batch size.
  c.contrastive_batch = 140
  c.lambda_f = 0.2
  c.lambda_l = 1.0
  c.epsilon = 1.5
  c.temperature = 0.5
  c.texture_strength = 0.3
  c.strong_rotation_deg = 30.0
  c.strong_translate = 0.1
  c.strong_scale = 0.2
  c.pretrain_steps = 0
  c.attention = True
  c.stop_gradient = True
  c.use_contrastive = True
  c.use_correction = True
  c.use_self_distillation = True
  return c


@method_lib.register_method("dual_modality")
def dual_modality_method(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Phases ``pretrain`` (Eq. 7.7) then ``finetune`` (Eq. 7.10); see the module docstring."""
  net = network(config)
  size = config.data.image_size

  def init(rng, batch):
    variables = net.init(rng, batch["image"], batch["depth"], False)
    return {"params": variables["params"]}, {"batch_stats": variables["batch_stats"]}

  pre = int(config.dualmod.pretrain_steps)
  phases = []
  if pre > 0:
    pre_opt = method_lib.make_optimizer(config.optimizer, min(pre, config.num_steps))
    phases.append(method_lib.Phase("pretrain", make_pretrain_loss(config), pre_opt, stop=pre))
  if pre < config.num_steps:
    # Sec. 7.4 fine-tunes with a 10x smaller learning rate (2.5e-5): `config.finetune_optimizer`
    # when given, else `config.optimizer`. Each schedule spans its own phase's steps.
    fine_config = config.get("finetune_optimizer") or config.optimizer
    fine_opt = method_lib.make_optimizer(fine_config, config.num_steps - pre)
    phases.append(method_lib.Phase("finetune", make_finetune_loss(config), fine_opt, start=pre))
  j = skeleton.NUM_JOINTS
  spec = {"image": jax.ShapeDtypeStruct((size, size, 3), jnp.float32),
          "depth": jax.ShapeDtypeStruct((size, size, 1), jnp.float32),
          "uv": jax.ShapeDtypeStruct((j, 2), jnp.float32),
          "pose3d_normalized": jax.ShapeDtypeStruct((j, 3), jnp.float32),
          "K": jax.ShapeDtypeStruct((3, 3), jnp.float32)}
  return method_lib.Method(name="dual_modality", init=init, phases=phases,
                           predict=make_predict(config), input_spec=spec)


__all__ = ["BRANCHES", "DualModalityNet", "default_dualmod_config", "dual_modality_method",
           "ground_truth", "make_finetune_loss", "make_pretrain_loss", "multimodal_loss",
           "network", "pseudo_label", "texture_augment"]
