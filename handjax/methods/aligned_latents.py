"""Aligned latent spaces, Yang, Li, Lee & Yao ICCV 2019 (seed 003; Yang dissertation ch. 5).

Modalities: RGB images (R, encoder), point clouds (C, encoder and FoldingNet decoder), heat maps
(H, DCGAN decoder) and 3D poses (P, MLP decoder). All decoders are shared by every latent. The
reconstruction loss is Eq. 11,

  L_recon = L_pose + lambda_heat L_heat + lambda_cloud (L_Chamfer + L_EMD),

with L_pose = ||y_hat - y||^2 (Eq. 10, `pose_l2`), L_heat the pixel-wise L2 of Eq. 7
(`heatmap_l2`), L_Chamfer and L_EMD of Eq. 8-9 (`chamfer_distance`, `earth_movers_distance`),
lambda_heat = 0.01, lambda_cloud = 1.

Strategies of Table 1 (config fields ``encoders`` / ``decoders`` / ``alignment``):
  S1  R2P      ("R", "P", "none"): `cross_modal_elbo`, Eq. 1.
  S2  R2HP, R2CP, R2CHP ("R", "HP" | "CP" | "CHP", "none"): Eq. 2 with one encoder (Alg. 1).
  S3  RC2CHP   ("RC", "CHP", "kl"): joint encoder q(z|x, w) of R and C plus the RGB encoder,
      `kl_alignment_objective` (Eq. 3, Alg. 2, beta' = ``beta_align`` = 1).
  S4  RC2CHP   ("RC", "CHP", "experts"): RGB and point-cloud experts fused by ``fusion``:
      "poe" is the product of Gaussian experts of Eq. 4-6 (`poe_alignment_objective`, Alg. 3);
      "moe" / "mopoe" replace the product by the mixture of experts (MMVAE) or the mixture of
      products of experts (MoPoE) - beyond the paper, for a side-by-side row.

The KL weight beta follows `log_linear_beta` from ``beta_init`` to ``beta_final`` over
``beta_steps`` (ICCV Sec. 5: 1e-5 -> 1e-3).

Targets: the pose is root-relative and divided by the ground-truth reference scale (the protocol of
Sec. 5.1 gives root and scale at test time); point clouds are centred on their centroid and divided
by ``cloud_unit`` metres (no pose label needed, so unlabelled clouds are normalised the same way).

Weak supervision (Sec. 5.3): the pipeline's ``labelled_fraction`` keeps the pose of the first m% of
the training set; the others have ``has_pose3d = False``. Each target enters every ELBO through its
mask (`target_masks`), so in one batch labelled examples train everything and unlabelled examples
train only the "RC2C" parts (point-cloud reconstructions and the KL terms). With
``heatmaps_need_pose_label`` the heat maps of unlabelled examples are dropped as well (the paper's
unlabelled data are "RGB, point clouds" only).

At test time only RGB goes in: ``predict`` applies the RGB encoder (posterior mean) and the pose
decoder, never the point-cloud or joint encoder, and returns the root-relative pose in metres
(times the ground-truth ``batch["scale"]``, or ``fallback_scale`` metres without one).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from handjax.hand import skeleton
from handjax.losses import elbo
from handjax.losses import gaussian
from handjax.losses.heatmap import heatmap_l2
from handjax.losses.pointcloud import chamfer_distance
from handjax.losses.pointcloud import earth_movers_distance
from handjax.losses.pose import pose_l2
from handjax.losses.schedules import log_linear_beta
from handjax.methods import common
from handjax.models.decoders import DeconvDecoder
from handjax.models.decoders import FoldingNet
from handjax.models.mlp import JointEncoder
from handjax.models.pointset import PointSetEncoder
from handjax.models.pointset import PointSetFeatures
from handjax.models.resnet import GaussianHead
from handjax.models.resnet import ResNet
from handjax.models.resnet import ResNetEncoder
from handjax.train import method as method_lib

NUM_JOINTS = skeleton.NUM_JOINTS
DECODER_LETTERS = {"P": "pose3d", "H": "heatmaps", "C": "points"}
ALIGNMENTS = ("none", "kl", "experts")
FUSIONS = ("poe", "moe", "mopoe")
# Expert names, in the sorted order the objectives process them.
RGB, CLOUD = "image", "points"


def strategy(config: ml_collections.ConfigDict) -> tuple[list[str], str, str]:
  """(decoded targets, alignment, fusion) of ``config``, validated against Table 1."""
  encoders, alignment = config.encoders, config.alignment
  fusion = config.get("fusion", "poe")
  unknown = set(config.decoders) - set(DECODER_LETTERS)
  if not config.decoders or unknown:
    raise ValueError(f"config.decoders must be letters of {sorted(DECODER_LETTERS)} (P: pose, "
                     f"H: heat maps, C: point cloud), got {config.decoders!r}.")
  if "P" not in config.decoders:
    raise ValueError(f"config.decoders must contain 'P' (the pose decoder predict uses), got "
                     f"{config.decoders!r}.")
  if alignment not in ALIGNMENTS:
    raise ValueError(f"config.alignment must be one of {ALIGNMENTS}, got {alignment!r}.")
  if fusion not in FUSIONS:
    raise ValueError(f"config.fusion must be one of {FUSIONS}, got {fusion!r}.")
  if encoders == "R" and alignment != "none":
    raise ValueError(f"alignment {alignment!r} needs encoders 'RC' (S3/S4), got 'R'.")
  if encoders == "RC" and alignment == "none":
    raise ValueError("encoders 'RC' need alignment 'kl' (S3) or 'experts' (S4), got 'none'.")
  if encoders not in ("R", "RC"):
    raise ValueError(f"config.encoders must be 'R' or 'RC', got {encoders!r}.")
  targets = [DECODER_LETTERS[c] for c in sorted(set(config.decoders), key="PHC".index)]
  return targets, alignment, fusion


def _stage_sizes(model: ml_collections.ConfigDict) -> tuple[int, int, int, int] | None:
  sizes = tuple(model.get("resnet_stage_sizes", ()) or ())
  return sizes or None  # type: ignore[return-value]


def build_networks(config: ml_collections.ConfigDict) -> dict[str, nn.Module]:
  """The networks of the configured strategy, by parameter-tree name."""
  m = config.model
  targets, alignment, _ = strategy(config)
  head_hidden = tuple(m.head_hidden)
  nets: dict[str, nn.Module] = {
      "encoder_image": ResNetEncoder(config.latent_dim, depth=m.resnet_depth,
                                     width=m.resnet_width, head_hidden=head_hidden,
                                     stage_sizes=_stage_sizes(m)),
  }
  cloud_kwargs = dict(kind=m.pointset_kind, width=m.pointset_width, num_blocks=m.pointset_blocks)
  if alignment == "experts":
    nets["encoder_points"] = PointSetEncoder(config.latent_dim, head_hidden=head_hidden,
                                             **cloud_kwargs)
  elif alignment == "kl":
    # q(z|x, w) of Eq. 3: its own RGB and point-cloud feature extractors (phi_{x,w} is not phi_x).
    nets["encoder_joint"] = JointEncoder(
        encoders=(ResNet(m.resnet_depth, m.resnet_width, stage_sizes=_stage_sizes(m)),
                  PointSetFeatures(**cloud_kwargs)),
        head=GaussianHead(config.latent_dim, head_hidden))
  for target in targets:
    if target == "pose3d":
      nets["decoder_pose3d"] = common.MLPDecoder((NUM_JOINTS, 3), tuple(m.pose_hidden))
    elif target == "heatmaps":
      nets["decoder_heatmaps"] = DeconvDecoder(
          output_size=config.data.heatmap_size, out_channels=NUM_JOINTS,
          channels=tuple(m.deconv_channels), base_size=m.deconv_base_size,
          base_channels=m.deconv_base_channels)
    else:
      nets["decoder_points"] = FoldingNet(num_points=config.data.num_points,
                                          hidden=m.folding_hidden)
  return nets


def cloud_loss(config: ml_collections.ConfigDict) -> Callable[[jax.Array, jax.Array], jax.Array]:
  """L_Chamfer + L_EMD per example (Eq. 8 + Eq. 9; Eq. 11 weighs the sum by lambda_cloud)."""
  e = config.emd
  emd = functools.partial(earth_movers_distance, relative_epsilon=e.relative_epsilon,
                          relative_epsilon_start=e.relative_epsilon_start,
                          epsilon_decay=e.epsilon_decay, num_iterations=e.num_iterations)

  def loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    return chamfer_distance(pred, target) + emd(pred, target)

  return loss


def recon_fns(config: ml_collections.ConfigDict, targets: list[str]) -> dict[str, Callable]:
  """Per-example reconstruction losses of Eq. 7, 8 + 9 and 10."""
  fns = {"pose3d": pose_l2, "heatmaps": heatmap_l2, "points": cloud_loss(config)}
  return {t: fns[t] for t in targets}


def loss_weights(config: ml_collections.ConfigDict, targets: list[str]) -> dict[str, float]:
  """lambda of Eq. 11: 1 for the pose, lambda_heat, lambda_cloud."""
  w = {"pose3d": 1.0, "heatmaps": float(config.lambda_heat), "points": float(config.lambda_cloud)}
  return {t: w[t] for t in targets}


def batch_targets(batch: common.Batch, config: ml_collections.ConfigDict,
                  targets: list[str]) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """(targets, target masks) of the decoded modalities (see the module docstring: Targets)."""
  values, masks = {}, {}
  pose_mask = common.has(batch, "pose3d")
  if "has_scale" in batch:
    pose_mask = pose_mask & common.has(batch, "scale")
  for t in targets:
    if t == "pose3d":
      values[t] = common.pose_target(batch, root_joint=config.data.root_joint, translation=True,
                                     scale=True, pose_unit=1.0)
      masks[t] = pose_mask
    elif t == "heatmaps":
      values[t] = jnp.asarray(batch["heatmaps"], jnp.float32)
      masks[t] = common.has(batch, "heatmaps")
      if config.heatmaps_need_pose_label:
        masks[t] = masks[t] & pose_mask
    else:
      values[t] = common.normalized_points(batch["points"], config.cloud_unit)
      masks[t] = common.has(batch, "points")
  return values, masks


def mixture_alignment_objective(
    rng: jax.Array,
    experts: Mapping[str, gaussian.Gaussian],
    decode: elbo.Decode,
    targets: Mapping[str, jax.Array],
    recon: Mapping[str, elbo.ReconFn],
    weights: Mapping[str, float],
    beta: elbo.Scalar,
    *,
    fusion: str,
    expert_masks: Mapping[str, jax.Array],
    target_masks: Mapping[str, jax.Array],
    prior_expert: bool = True,
    beta_joint: elbo.Scalar = 0.0,
) -> tuple[jax.Array, elbo.Terms]:
  """Eq. 4 with GProd replaced by a mixture: MoE (Shi et al. 2019) or MoPoE (Sutter et al. 2021).

  L = sum_m ELBO(q(z|x_m)) + sum_k w_k E_{z~q_k}[log p(y|z)] - beta_joint sum_k w_k KL(q_k || p):
  the unimodal ELBOs of Eq. 4 unchanged, and the joint reconstruction taken over the mixture
  components q_k with the stratified estimator (one reparameterised sample per component,
  weighted by its mixture weight w_k; MMVAE / MoPoE), the KL by its convexity upper bound
  (`kl_mixture_upper_bound`). Returns -L. Beyond the paper.

  Keys: modalities in sorted name order; keys = split(rng, N + 1), unimodal ELBO i uses keys[i],
  component k of the joint term split(keys[N], K)[k] (as in `poe_alignment_objective`).

  Returns:
    (loss, terms): "<modality>/..." unimodal terms, "joint/recon/<target>", "joint/kl",
    "joint/loss" and "loss".
  """
  names = sorted(experts)
  keys = jax.random.split(rng, len(names) + 1)
  batch_shape = jnp.shape(experts[names[0]].mean)[:-1]
  present = jnp.stack([jnp.asarray(expert_masks.get(n, jnp.ones(batch_shape, bool))).astype(bool)
                       for n in names], axis=-1)
  loss = jnp.zeros(())
  terms: elbo.Terms = {}
  for i, name in enumerate(names):
    loss_m, terms_m = elbo.cross_modal_elbo(keys[i], experts[name], decode, targets, recon,
                                            weights, beta, target_masks=target_masks,
                                            example_mask=expert_masks.get(name))
    loss = loss + loss_m
    terms |= {f"{name}/{k}": v for k, v in terms_m.items()}
  stack = [experts[n] for n in names]
  if fusion == "moe":
    mixture = gaussian.mixture_of_experts(stack, present)
  elif fusion == "mopoe":
    mixture = gaussian.mixture_of_products_of_experts(stack, present, prior_expert=prior_expert)
  else:
    raise ValueError(f"fusion must be 'moe' or 'mopoe' here, got {fusion!r}.")
  weights_bk = jnp.exp(mixture.log_weights)  # (B, K); exactly 0 for absent components
  num_components = weights_bk.shape[-1]
  component_keys = jax.random.split(keys[-1], num_components)
  per_target = {t: jnp.zeros(batch_shape) for t in recon}
  for k in range(num_components):
    component = gaussian.Gaussian(mixture.components.mean[..., k, :],
                                  mixture.components.logvar[..., k, :])
    predictions = decode(gaussian.sample(component_keys[k], component))
    for t in recon:
      mask = target_masks.get(t)
      target = targets[t] if mask is None else jnp.where(
          jnp.reshape(mask, mask.shape + (1,) * (targets[t].ndim - 1)), targets[t], 0.0)
      per_target[t] = per_target[t] + weights_bk[..., k] * recon[t](predictions[t], target)
  any_present = jnp.any(present, axis=-1)
  joint_recon = jnp.zeros(())
  for t in sorted(recon):
    mask = any_present if target_masks.get(t) is None else any_present & target_masks[t]
    terms[f"joint/recon/{t}"] = elbo.masked_mean(per_target[t], mask)
    joint_recon = joint_recon + weights.get(t, 1.0) * terms[f"joint/recon/{t}"]
  terms["joint/kl"] = elbo.masked_mean(gaussian.kl_mixture_upper_bound(mixture), any_present)
  terms["joint/loss"] = joint_recon + beta_joint * terms["joint/kl"]
  loss = loss + terms["joint/loss"]
  terms["loss"] = loss
  return loss, terms


def _input_spec(config: ml_collections.ConfigDict, alignment: str) -> dict:
  s = config.data.image_size
  spec = {"image": jax.ShapeDtypeStruct((s, s, 3), jnp.float32),
          "scale": jax.ShapeDtypeStruct((), jnp.float32)}
  if alignment != "none":
    spec["points"] = jax.ShapeDtypeStruct((config.data.num_points, 3), jnp.float32)
  return spec


@method_lib.register_method("aligned_latents")
def aligned_latents(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Builds the strategy of ``config`` (see the module docstring for the fields)."""
  targets, alignment, fusion = strategy(config)
  nets = build_networks(config)
  recon = recon_fns(config, targets)
  weights = loss_weights(config, targets)
  beta_schedule = log_linear_beta(config.beta_init, config.beta_final, config.beta_steps)

  def init(rng, batch):
    image = jnp.asarray(batch["image"], jnp.float32)
    z = jnp.zeros((image.shape[0], config.latent_dim), jnp.float32)
    inputs = {}
    for name in nets:
      if name == "encoder_image":
        inputs[name] = (image,)
      elif name == "encoder_points":
        inputs[name] = (common.normalized_points(batch["points"], config.cloud_unit),)
      elif name == "encoder_joint":
        inputs[name] = ([image, common.normalized_points(batch["points"], config.cloud_unit)],)
      else:
        inputs[name] = (z,)
    return common.init_modules(rng, nets, inputs)

  def loss_fn(params, model_state, batch, rng, step):
    stats: dict = {}

    def run(name, *args):
      out, new = common.apply_module(nets[name], name, params, model_state, *args, train=True)
      stats[name] = new
      return out

    def decode(z):
      return {t: run(f"decoder_{t}", z) for t in targets}

    values, masks = batch_targets(batch, config, targets)
    beta = beta_schedule(step)
    image = jnp.asarray(batch["image"], jnp.float32)
    q_image = run("encoder_image", image)
    if alignment == "none":
      # An example with no target left (an unlabelled one in S1/S2) contributes nothing.
      any_target = functools.reduce(jnp.logical_or, masks.values())
      loss, terms = elbo.cross_modal_elbo(rng, q_image, decode, values, recon, weights, beta,
                                          target_masks=masks, example_mask=any_target)
    else:
      has_points = common.has(batch, "points")
      cloud = common.normalized_points(batch["points"], config.cloud_unit)
      if alignment == "kl":
        q_joint = run("encoder_joint", [image, cloud])
        loss, terms = elbo.kl_alignment_objective(
            rng, q_joint, q_image, decode, values, recon, weights, beta, config.beta_align,
            target_masks=masks, joint_mask=has_points)
      else:
        experts = {RGB: q_image, CLOUD: run("encoder_points", cloud)}
        if fusion == "poe":
          loss, terms = elbo.poe_alignment_objective(
              rng, experts, decode, values, recon, weights, beta,
              expert_masks={CLOUD: has_points}, target_masks=masks,
              prior_expert=config.prior_expert, beta_joint=config.beta_joint)
        else:
          loss, terms = mixture_alignment_objective(
              rng, experts, decode, values, recon, weights, beta, fusion=fusion,
              expert_masks={CLOUD: has_points}, target_masks=masks,
              prior_expert=config.prior_expert, beta_joint=config.beta_joint)
    terms = dict(terms)
    terms["beta"] = beta
    return loss, (terms, common.merge_stats(model_state, stats))

  def predict(params, model_state, batch):
    # RGB only (Sec. 3.3 "the test settings use RGB images as the source modality").
    q_image, _ = common.apply_module(nets["encoder_image"], "encoder_image", params, model_state,
                                     jnp.asarray(batch["image"], jnp.float32), train=False)
    pred, _ = common.apply_module(nets["decoder_pose3d"], "decoder_pose3d", params, model_state,
                                  q_image.mean, train=False)
    pose = common.pose_from_prediction(pred, batch, root_joint=config.data.root_joint, scale=True,
                                       pose_unit=1.0, fallback_scale=config.fallback_scale)
    return {"pose3d": pose, "latent_mean": q_image.mean}

  optimizer = common.make_optimizer(config.optimizer, config.num_steps)
  name = f"aligned_latents[{config.encoders}2{config.decoders}/{alignment}]"
  return method_lib.Method(name=name, init=init,
                           phases=method_lib.single_phase(loss_fn, optimizer),
                           predict=predict, input_spec=_input_spec(config, alignment))


def default_config() -> ml_collections.ConfigDict:
  """Every field the method reads, at the paper's values (ICCV 2019 Sec. 4-5); S4 (RC2CHP, PoE).

  The ``data`` block is ``handjax.data.pipeline.default_data_config()`` with view correction on.
  """
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict()
  c.method = "aligned_latents"
  c.seed = 0
  c.batch_size = 32  # Sec. 5
  c.num_steps = 300_000
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 20_000
  c.keep_checkpoints = 2

  c.encoders = "RC"
  c.decoders = "CHP"
  c.alignment = "experts"  # none (S1/S2) | kl (S3) | experts (S4)
  c.fusion = "poe"  # poe (Eq. 4) | moe | mopoe (beyond the paper)
  c.prior_expert = True  # N(0, I) joins the product (Wu & Goodman; Sec. 3.2)
  c.beta_joint = 0.0  # Eq. 4 has no KL on the joint posterior
  c.beta_align = 1.0  # beta' of Eq. 3
  c.latent_dim = 64  # Sec. 5
  c.beta_init = 1e-5  # Sec. 5: beta annealed 1e-5 -> 1e-3
  c.beta_final = 1e-3
  c.beta_steps = 100_000
  c.lambda_heat = 0.01  # Sec. 5
  c.lambda_cloud = 1.0  # Sec. 5
  c.cloud_unit = 0.035  # metres; clouds are centred and divided by it
  c.fallback_scale = 0.035  # metres; predict's scale for inputs without batch["scale"] (photos)
  c.heatmaps_need_pose_label = True
  # Entropic EMD (`earth_movers_distance` defaults: within ~1% of the exact EMD at 256 points).
  c.emd = ml_collections.ConfigDict({"relative_epsilon": 1e-2, "relative_epsilon_start": 1.0,
                                     "epsilon_decay": 0.9, "num_iterations": 100})

  c.model = ml_collections.ConfigDict()
  c.model.resnet_depth = 18  # Sec. 4.2
  c.model.resnet_width = 1.0
  c.model.resnet_stage_sizes = ()
  c.model.head_hidden = (512,)  # "two additional fully connected layers"
  c.model.pointset_kind = "respel"  # Sec. 4.2 (Li & Lee, hidden units halved)
  c.model.pointset_width = 512
  c.model.pointset_blocks = 3
  c.model.pose_hidden = (128, 128, 128)  # 4 FC layers of 128 units with the output layer
  c.model.deconv_channels = (128, 64, 32, 16, 8)
  c.model.deconv_base_size = 4
  c.model.deconv_base_channels = 256
  c.model.folding_hidden = 512

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4  # Sec. 5
  c.optimizer.warmup_steps = 0
  c.optimizer.decay = "constant"
  c.optimizer.grad_clip = 0.0
  c.optimizer.lr_drop_steps = (200_000, 260_000)  # two x0.1 drops (Sec. 5, "after convergence")
  c.optimizer.lr_drop_factor = 0.1

  c.data = pipeline.default_data_config()
  c.data.image_size = 256  # Sec. 4.1
  c.data.num_points = 256  # Sec. 4.2
  c.data.heatmap_size = 64
  c.data.heatmap_sigma = 2.0
  c.data.view_correction = True  # Sec. 4.1
  c.data.root_joint = skeleton.MIDDLE_MCP  # Sec. 5.1: the middle finger's base is the root
  c.data.augment.rotation_deg = 180.0  # Sec. 4.1: rotations in [-pi, pi]
  c.data.augment.scale = 0.1
  c.data.augment.hue_deg = 18.0  # hue +-0.1 of the full circle
  return c
