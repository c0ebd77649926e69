"""Multi-stage aligned model, injection decoders, kinematic losses: Stergioulas et al. (seed 004).

Networks (parameter sub-trees): ``encoder_rgb`` (E_RGB, ResNet-18 -> Gaussian over
[z_pose, z_cont]), ``encoder_pose`` (E_pose, MLP -> z_pose^true), ``decoder_rgb`` (ID_RGB),
``decoder_pose`` (ID_pose), ``discriminator`` (Dis), ``mapper_rgb`` / ``mapper_pose`` (T_RGB,
T_pose). Decoders are injection decoders (Sec. 3.3, Eq. 18-19) or, for the ablations, plain fully
connected stacks.

One method runs the whole schedule as trainer phases with start/stop steps (steps s1 < s2 < s3 < s4
are the cumulative stage lengths of ``config.stages``):

* Stage 1, disentanglement (Sec. 3.1.1), steps [0, s1): phase ``discriminator`` updates Dis on
  L_Dis (Eq. 1) with the encoders' samples held fixed; then phase ``generator`` updates E_RGB,
  E_pose, ID_RGB, ID_pose on L_VAE^cross + L_VAE^uni (Eq. 2-3) plus the non-saturating generator
  term (`elbo.disentanglement_objective`). ID_RGB decodes z_pose^RGB, or [z_pose^RGB, z_cont^RGB]
  with ``decode_subspace = "concat"`` (Table 2). Without disentanglement (Table 1 Baseline, A, C)
  the RGB latent is one block, there is no discriminator, and the stage is the cross-modal VAE (plus
  the uni-modal VAE when an alignment stage follows, which needs a trained E_pose).
* Stage 2, variational alignment (Sec. 3.1.2): phase ``align_frozen`` (steps [s1, s2)) trains T_RGB,
  T_pose and the shared ID_RGB on L_align = L^cross + w L^uni (Eq. 5-7,
  `elbo.variational_alignment_objective`) with the encoders frozen (parameters masked, BatchNorm in
  eval mode so their statistics stay bit-identical too); phase ``align_finetune`` ([s2, s3)) also
  trains E_RGB and E_pose ("the entire network").
* Stage 3, refinement (Sec. 3.2), steps [s3, s4): phase ``refine`` trains the RGB path (E_RGB,
  T_RGB, ID_RGB) on Eq. 17, L = MSE + q r_kcs L_KCS + q' r_geo L_GEO (poses in metres, l1 as sums
  over entries: ``refine.unit``, ``refine.reduction``), with q' = 1 - q and
  q in {0, 1} chosen by ``refine.mode``: "kcs" (q = 1, Table 1 D1), "geo" (q = 0, D2) or
  "alternate" (D3: q = 1 on the first ``alternate_every`` refinement steps, 0 on the next, ...).

``predict``: E_RGB posterior mean -> (T_RGB mean if aligned) -> ID_RGB, root-relative pose in metres
(`common.pose_from_prediction`; the paper gives scale and handedness at test time, Sec. 4.2).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from handjax.hand import skeleton
from handjax.losses import adversarial
from handjax.losses import elbo
from handjax.losses import kinematic
from handjax.losses.gaussian import Gaussian
from handjax.losses.gaussian import sample
from handjax.methods import common
from handjax.models.mlp import MLP
from handjax.models.mlp import InjectionDecoder
from handjax.models.mlp import LatentDiscriminator
from handjax.models.mlp import VariationalMapper
from handjax.models.resnet import ResNetEncoder
from handjax.train import method as method_lib

NUM_JOINTS = skeleton.NUM_JOINTS
ENC_RGB, ENC_POSE = "encoder_rgb", "encoder_pose"
DEC_RGB, DEC_POSE = "decoder_rgb", "decoder_pose"
DIS, MAP_RGB, MAP_POSE = "discriminator", "mapper_rgb", "mapper_pose"


class PoseDecoder(nn.Module):
  """z (B, D) -> pose (B, 21, 3): injection decoder (Eq. 18-19), fully connected stack or linear.

  ``kind``: "injection" (`InjectionDecoder`), "mlp" (the same layers without the injection path:
  relu(BN(W y)) hidden layers and a linear output; the "decoders as stacks of fully connected
  layers" the paper compares against) or "linear" (one Dense layer).
  """

  kind: str
  hidden: tuple[int, ...]

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    out_dim = NUM_JOINTS * 3
    if self.kind == "injection":
      y = InjectionDecoder(self.hidden, out_dim, name="net")(z, train=train)
    elif self.kind == "mlp":
      y = MLP(self.hidden + (out_dim,), batch_norm=True, name="net")(z, train=train)
    elif self.kind == "linear":
      y = nn.Dense(out_dim, name="net")(z)
    else:
      raise ValueError(f"model.decoder must be 'injection', 'mlp' or 'linear', got {self.kind!r}.")
    return y.reshape(z.shape[:-1] + (NUM_JOINTS, 3))


# ----------------------------------------------------------------------------------------------
# Configuration -> structure.


def stage_bounds(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
  """Cumulative ends (s1, s2, s3, s4) of the four phases' step ranges; s4 must equal num_steps."""
  st = config.stages
  lengths = [int(st.disentangle), int(st.align_frozen), int(st.align_finetune), int(st.refine)]
  if min(lengths) < 0 or (lengths[0] == 0 and not config.get("init_from")):
    raise ValueError(f"config.stages needs non-negative lengths and disentangle > 0 (0 only with "
                     f"config.init_from, a stage-1 checkpoint), got {lengths}.")
  bounds = tuple(int(sum(lengths[:i + 1])) for i in range(4))
  if bounds[-1] != int(config.num_steps):
    raise ValueError(f"config.num_steps ({config.num_steps}) must equal the sum of the stage "
                     f"lengths {lengths} = {bounds[-1]}.")
  return bounds  # type: ignore[return-value]


def aligned(config: ml_collections.ConfigDict) -> bool:
  return int(config.stages.align_frozen) + int(config.stages.align_finetune) > 0


def uses_pose_vae(config: ml_collections.ConfigDict) -> bool:
  return bool(config.disentangle) or aligned(config)


def latent_sizes(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(pose block, context block) sizes of the RGB latent (context 0 without disentanglement).

  The discriminator compares z_pose^RGB with z_pose^true, so with disentanglement the RGB latent
  (128) is split into a pose block of the pose latent's size (64) and a context block (the rest).
  """
  rgb, pose = int(config.rgb_latent_dim), int(config.pose_latent_dim)
  if not config.disentangle:
    return rgb, 0
  if rgb <= pose:
    raise ValueError(f"rgb_latent_dim ({rgb}) must exceed pose_latent_dim ({pose}): the RGB latent "
                     "holds the pose block and the context block.")
  return pose, rgb - pose


def decoder_input_dim(config: ml_collections.ConfigDict) -> int:
  pose_dim, ctx_dim = latent_sizes(config)
  if config.decode_subspace not in ("pose", "concat"):
    raise ValueError(f"decode_subspace must be 'pose' or 'concat', got {config.decode_subspace!r}.")
  return pose_dim + ctx_dim if config.decode_subspace == "concat" else pose_dim


def build_networks(config: ml_collections.ConfigDict) -> dict[str, nn.Module]:
  m = config.model
  pose_dim, ctx_dim = latent_sizes(config)
  dec_hidden = tuple(m.decoder_hidden)
  nets: dict[str, nn.Module] = {
      ENC_RGB: ResNetEncoder(pose_dim + ctx_dim, depth=m.resnet_depth, width=m.resnet_width,
                             stage_sizes=tuple(m.resnet_stage_sizes) or None),
      DEC_RGB: PoseDecoder(m.decoder, dec_hidden),
  }
  if uses_pose_vae(config):
    nets[ENC_POSE] = common.MLPEncoder(int(config.pose_latent_dim), tuple(m.pose_encoder_hidden))
    nets[DEC_POSE] = PoseDecoder(m.decoder, dec_hidden)
  if config.disentangle:
    nets[DIS] = LatentDiscriminator(tuple(m.discriminator_hidden))
  if aligned(config):
    dim = decoder_input_dim(config)
    nets[MAP_RGB] = VariationalMapper(tuple(m.mapper_hidden), dim)
    nets[MAP_POSE] = VariationalMapper(tuple(m.mapper_hidden), dim)
  return nets


# ----------------------------------------------------------------------------------------------
# Forward pieces.


def _slice(q: Gaussian, start: int, stop: int) -> Gaussian:
  return Gaussian(q.mean[..., start:stop], q.logvar[..., start:stop])


def _target(batch, config) -> jax.Array:
  inv = config.invariances
  return common.pose_target(batch, root_joint=config.data.root_joint, translation=inv.translation,
                            scale=inv.scale, pose_unit=config.pose_unit)


def _labelled(batch, config) -> jax.Array:
  present = common.has(batch, "pose3d")
  if config.invariances.scale and "has_scale" in batch:
    present = present & common.has(batch, "scale")
  return present


def _extra(batch, config):
  return common.hand_side_one_hot(batch) if config.invariances.handedness else None


def encode_rgb(nets, params, model_state, batch, config, *, train: bool
               ) -> tuple[Gaussian, Gaussian, Any]:
  """E_RGB: (q(z_pose^RGB|X), q(z_cont^RGB|X), batch statistics); z = [z_pose, z_cont]."""
  q, stats = common.apply_module(nets[ENC_RGB], ENC_RGB, params, model_state,
                                 jnp.asarray(batch["image"], jnp.float32), train=train,
                                 extra=_extra(batch, config))
  pose_dim, ctx_dim = latent_sizes(config)
  return _slice(q, 0, pose_dim), _slice(q, pose_dim, pose_dim + ctx_dim), stats


def encode_pose(nets, params, model_state, batch, config, *, train: bool) -> tuple[Gaussian, Any]:
  """E_pose: q(z_pose^true|J) on the normalised 3D pose."""
  return common.apply_module(nets[ENC_POSE], ENC_POSE, params, model_state, _target(batch, config),
                             train=train, extra=_extra(batch, config))


def decoded_rgb_posterior(q_pose: Gaussian, q_ctx: Gaussian, config) -> Gaussian:
  """The Gaussian ID_RGB decodes: q(z_pose^RGB), or its concatenation with q(z_cont^RGB) (Tab 2)."""
  if config.decode_subspace == "concat" and q_ctx.mean.shape[-1] > 0:
    return Gaussian(jnp.concatenate([q_pose.mean, q_ctx.mean], -1),
                    jnp.concatenate([q_pose.logvar, q_ctx.logvar], -1))
  return q_pose


def _decoder_fn(nets, name, params, model_state, stats_out: dict, *, train: bool,
                first_call_stats: bool = False):
  """z -> {"pose3d": decoder ``name``(z)}, its new BatchNorm statistics put in ``stats_out``.

  ``first_call_stats``: a decoder called several times in one step keeps the statistics of its
  first call (by default each call overwrites the previous one's).
  """
  def decode(z):
    out, stats = common.apply_module(nets[name], name, params, model_state, z, train=train)
    if not (first_call_stats and name in stats_out):
      stats_out[name] = stats
    return {"pose3d": out}
  return decode


def _discriminate(nets, params, z_pose):
  return nets[DIS].apply({"params": params["params"][DIS]}, z_pose)


# ----------------------------------------------------------------------------------------------
# Losses of the phases.


def make_discriminator_loss(config, nets) -> method_lib.LossFn:
  """Eq. 1: L_Dis = 1/2 BCE(Dis(z_pose^RGB), 0) + 1/2 BCE(Dis(z_pose^true), 1).

  Samples as in the generator phase (rng split 0: z_pose^RGB, split 1: z_pose^true), under
  stop_gradient. The encoders run in train mode, as in the generator step, so Dis learns the
  latent distribution the generator is pushed to change (with running statistics it saw another
  one early in training); their BatchNorm statistics update is discarded (the discriminator step
  changes no other variable, and the generator step updates the statistics once per step). Each
  half is a mean over its own examples (the real half over the labelled ones), which equals the
  batch mean of `adversarial.discriminator_loss` when every example is labelled.
  """

  def loss_fn(params, model_state, batch, rng, step):
    del step
    rng_cross, rng_uni = jax.random.split(rng)
    q_pose, _, _ = encode_rgb(nets, params, model_state, batch, config, train=True)
    q_true, _ = encode_pose(nets, params, model_state, batch, config, train=True)
    z_fake = jax.lax.stop_gradient(sample(rng_cross, q_pose))
    z_real = jax.lax.stop_gradient(sample(rng_uni, q_true))
    fake = elbo.masked_mean(adversarial.bce_with_logits(_discriminate(nets, params, z_fake), 0.0))
    real = elbo.masked_mean(adversarial.bce_with_logits(_discriminate(nets, params, z_real), 1.0),
                            _labelled(batch, config))
    loss = 0.5 * fake + 0.5 * real
    return loss, ({"bce_fake": fake, "bce_real": real, "loss": loss}, model_state)

  return loss_fn


def make_generator_loss(config, nets) -> method_lib.LossFn:
  """Stage-1 encoder/decoder loss: Eq. 2-4 without the discriminator's own term.

  With disentanglement: `elbo.disentanglement_objective` (cross + uni VAE losses, beta_VAE^cross on
  both RGB blocks' KLs) plus ``adversarial_weight`` x mean non-saturating generator loss of
  Dis(z_pose^RGB) (`adversarial.generator_loss`). In concat mode the decoded Gaussian is the
  concatenation, whose KL is the sum of the two blocks' KLs, so Eq. 2 is unchanged. Without it:
  the cross-modal negative ELBO (`elbo.cross_modal_elbo`), plus the uni-modal one when E_pose is
  needed later; terms "cross/..." and "uni/...".
  """
  weights = {"pose3d": 1.0}
  recon = {"pose3d": common.sum_of_squares}
  b_cross, b_uni = float(config.beta_vae_cross), float(config.beta_vae_uni)
  pose_dim, _ = latent_sizes(config)

  def loss_fn(params, model_state, batch, rng, step):
    del step
    stats: dict[str, Any] = {}
    q_pose, q_ctx, stats[ENC_RGB] = encode_rgb(nets, params, model_state, batch, config,
                                               train=True)
    labelled = _labelled(batch, config)
    targets, masks = {"pose3d": _target(batch, config)}, {"pose3d": labelled}
    decode_rgb = _decoder_fn(nets, DEC_RGB, params, model_state, stats, train=True)
    if config.disentangle:
      q_true, stats[ENC_POSE] = encode_pose(nets, params, model_state, batch, config, train=True)
      decode_pose = _decoder_fn(nets, DEC_POSE, params, model_state, stats, train=True)
      q_dec = decoded_rgb_posterior(q_pose, q_ctx, config)
      concat = q_dec is not q_pose
      q_ctx_kl = Gaussian(q_ctx.mean[..., :0], q_ctx.logvar[..., :0]) if concat else q_ctx
      weight = float(config.adversarial_weight)
      gen = lambda zc, zu: weight * jnp.mean(adversarial.generator_loss(
          _discriminate(nets, params, zc[..., :pose_dim])))
      loss, terms = elbo.disentanglement_objective(
          rng, q_dec, q_ctx_kl, q_true, decode_rgb, decode_pose, targets, recon, weights,
          b_cross, b_uni, generator_fn=gen, target_masks=masks, uni_mask=labelled)
    else:
      rng_cross, rng_uni = jax.random.split(rng)
      loss, cross = elbo.cross_modal_elbo(rng_cross, q_pose, decode_rgb, targets, recon, weights,
                                          b_cross, target_masks=masks)
      terms = {f"cross/{k}": v for k, v in cross.items()}
      if uses_pose_vae(config):
        q_true, stats[ENC_POSE] = encode_pose(nets, params, model_state, batch, config, train=True)
        decode_pose = _decoder_fn(nets, DEC_POSE, params, model_state, stats, train=True)
        loss_uni, uni = elbo.cross_modal_elbo(rng_uni, q_true, decode_pose, targets, recon,
                                              weights, b_uni, target_masks=masks,
                                              example_mask=labelled)
        loss = loss + loss_uni
        terms |= {f"uni/{k}": v for k, v in uni.items()}
      terms["loss"] = loss
    return loss, (terms, common.merge_stats(model_state, stats))

  return loss_fn


def aligned_posteriors(nets, params, model_state, batch, config, *, train: bool,
                       train_encoders: bool, stats: dict) -> tuple[Gaussian, Gaussian]:
  """(T_RGB(q(z^RGB|X)), T_pose(q(z_pose^true|J))): the aligned Gaussians of Sec. 3.1.2."""
  q_pose, q_ctx, s_rgb = encode_rgb(nets, params, model_state, batch, config, train=train_encoders)
  q_true, s_pose = encode_pose(nets, params, model_state, batch, config, train=train_encoders)
  if train_encoders:
    stats[ENC_RGB], stats[ENC_POSE] = s_rgb, s_pose
  q_rgb = decoded_rgb_posterior(q_pose, q_ctx, config)
  t_rgb, stats[MAP_RGB] = common.apply_module(nets[MAP_RGB], MAP_RGB, params, model_state, q_rgb,
                                              train=train)
  t_pose, stats[MAP_POSE] = common.apply_module(nets[MAP_POSE], MAP_POSE, params, model_state,
                                                q_true, train=train)
  return t_rgb, t_pose


def make_align_loss(config, nets, *, train_encoders: bool) -> method_lib.LossFn:
  """Eq. 5-7, `elbo.variational_alignment_objective` with the shared ID_RGB; frozen encoders run
  in eval mode (``train_encoders=False``)."""
  recon = {"pose3d": common.sum_of_squares}

  def loss_fn(params, model_state, batch, rng, step):
    del step
    stats: dict[str, Any] = {}
    t_rgb, t_pose = aligned_posteriors(nets, params, model_state, batch, config, train=True,
                                       train_encoders=train_encoders, stats=stats)
    labelled = _labelled(batch, config)
    # The shared ID_RGB decodes T_RGB's samples first (the L^cross term), then T_pose's (L^uni).
    # Its running BatchNorm statistics serve inference, which decodes T_RGB only: they follow the
    # first call. (Kept from the last call they described T_pose's outputs, and a model ending
    # with alignment was scored with another input distribution's statistics.)
    decode = _decoder_fn(nets, DEC_RGB, params, model_state, stats, train=True,
                         first_call_stats=True)
    loss, terms = elbo.variational_alignment_objective(
        rng, t_rgb, t_pose, decode, {"pose3d": _target(batch, config)}, recon, {"pose3d": 1.0},
        float(config.beta_align_cross), float(config.beta_align_uni), float(config.align_w),
        target_masks={"pose3d": labelled}, uni_mask=labelled)
    return loss, (terms, common.merge_stats(model_state, stats))

  return loss_fn


def kcs_weight_q(step: jax.Array, config) -> jax.Array:
  """q of Eq. 17 at loop step ``step`` (q' = 1 - q): 1 for "kcs", 0 for "geo"; for "alternate",
  1 during the first ``alternate_every`` refinement steps, 0 during the next, and so on."""
  mode = config.refine.mode
  if mode == "kcs":
    return jnp.float32(1.0)
  if mode == "geo":
    return jnp.float32(0.0)
  if mode != "alternate":
    raise ValueError(f"refine.mode must be 'kcs', 'geo' or 'alternate', got {mode!r}.")
  start = stage_bounds(config)[2]
  period = int(config.refine.alternate_every)
  if period < 1:
    raise ValueError(f"refine.alternate_every must be >= 1, got {period}.")
  return jnp.where(((step - start) // period) % 2 == 0, 1.0, 0.0).astype(jnp.float32)


_NUM_KCS_ENTRIES = 400  # 20 x 20 (Eq. 12)
_NUM_GEO_ENTRIES = 3610  # joint-line pairs with the joint off the line (Eq. 14-16)
_UNIT_FACTORS = {"metres": 1.0, "millimetres": 1000.0}


def refinement_loss(pred: jax.Array, target: jax.Array, q: jax.Array, r_kcs: float, r_geo: float,
                    mask: jax.Array | None = None, unit_scale: jax.Array | None = None,
                    reduction: str = "sum") -> tuple[jax.Array, dict[str, jax.Array]]:
  """Stergioulas et al. Eq. 17: L = MSE + q r_kcs L_KCS + (1 - q) r_geo L_GEO, masked batch means.

  The poses are first multiplied by ``unit_scale`` ((B,) or scalar; None: 1), which puts them in
  the unit the weights r_kcs = 1e-2, r_geo = 1e-6 refer to (`make_refine_loss`: metres). MSE is the
  per-example sum of squared joint errors (`common.sum_of_squares`); L_KCS and L_GEO are the l1
  distances of Eq. 13 and 16: with ``reduction="sum"`` (default) the sum over the 400 KCS and 3610
  joint-line entries (the l1 norm), with "mean" `kinematic.kcs_loss` / `geometric_loss` as they
  are (the mean over entries). KCS scales with the unit squared like MSE, GEO linearly, so the
  unit sets GEO's share (BUILD_NOTES, issue 20 finding 2).
  """
  if reduction not in ("sum", "mean"):
    raise ValueError(f"refine.reduction must be 'sum' or 'mean', got {reduction!r}.")
  if unit_scale is not None:
    unit_scale = jnp.asarray(unit_scale, pred.dtype)
    unit_scale = unit_scale[..., None, None] if unit_scale.ndim else unit_scale
    pred, target = pred * unit_scale, target * unit_scale
  kcs_n, geo_n = (_NUM_KCS_ENTRIES, _NUM_GEO_ENTRIES) if reduction == "sum" else (1, 1)
  mse = elbo.masked_mean(common.sum_of_squares(pred, target), mask)
  kcs = elbo.masked_mean(kcs_n * kinematic.kcs_loss(pred, target), mask)
  geo = elbo.masked_mean(geo_n * kinematic.geometric_loss(pred, target), mask)
  loss = mse + q * r_kcs * kcs + (1.0 - q) * r_geo * geo
  return loss, {"mse": mse, "kcs": kcs, "geo": geo, "q": q, "loss": loss}


def refinement_unit_scale(batch, config) -> jax.Array | None:
  """(B,) factor from the decoder's units to ``config.refine.unit`` ("metres", "millimetres"), or
  None for "target" (the decoder's own, scale-normalised units)."""
  unit = config.refine.unit
  if unit == "target":
    return None
  if unit not in _UNIT_FACTORS:
    raise ValueError(f"refine.unit must be 'metres', 'millimetres' or 'target', got {unit!r}.")
  if config.invariances.scale:
    divisor = common.safe_scale(batch)
  else:
    divisor = jnp.full(jnp.shape(batch["image"])[:1], float(config.pose_unit), jnp.float32)
  return divisor * _UNIT_FACTORS[unit]


def make_refine_loss(config, nets) -> method_lib.LossFn:
  """Eq. 17 on J^predicted = ID_RGB(z), z ~ T_RGB(q(z^RGB|X)) (or q(z^RGB|X) without alignment),
  one reparameterised sample as in the earlier stages; no KL term (Eq. 17 has none)."""

  def loss_fn(params, model_state, batch, rng, step):
    stats: dict[str, Any] = {}
    q_pose, q_ctx, stats[ENC_RGB] = encode_rgb(nets, params, model_state, batch, config,
                                               train=True)
    q = decoded_rgb_posterior(q_pose, q_ctx, config)
    if aligned(config):
      q, stats[MAP_RGB] = common.apply_module(nets[MAP_RGB], MAP_RGB, params, model_state, q,
                                              train=True)
    pred = _decoder_fn(nets, DEC_RGB, params, model_state, stats, train=True)(sample(rng, q))
    loss, terms = refinement_loss(pred["pose3d"], _target(batch, config),
                                  kcs_weight_q(step, config),
                                  float(config.refine.r_kcs), float(config.refine.r_geo),
                                  _labelled(batch, config), refinement_unit_scale(batch, config),
                                  config.refine.reduction)
    return loss, (terms, common.merge_stats(model_state, stats))

  return loss_fn


# ----------------------------------------------------------------------------------------------
# The method.


def _mask(*names: str):
  return method_lib.subtree_mask(*[f"params/{n}" for n in names])


def make_phases(config, nets) -> list[method_lib.Phase]:
  s1, s2, s3, s4 = stage_bounds(config)
  opt = common.make_optimizer(config.optimizer, config.num_steps)
  phases = []
  gen_nets = [ENC_RGB, DEC_RGB] + ([ENC_POSE, DEC_POSE] if uses_pose_vae(config) else [])
  if config.disentangle:
    phases.append(method_lib.Phase("discriminator", make_discriminator_loss(config, nets),
                                   common.make_optimizer(config.discriminator_optimizer,
                                                         config.num_steps),
                                   _mask(DIS), stop=s1))
  phases.append(method_lib.Phase("generator", make_generator_loss(config, nets), opt,
                                 _mask(*gen_nets), stop=s1))
  if s2 > s1:
    phases.append(method_lib.Phase("align_frozen", make_align_loss(config, nets,
                                                                   train_encoders=False),
                                   opt, _mask(MAP_RGB, MAP_POSE, DEC_RGB), start=s1, stop=s2))
  if s3 > s2:
    phases.append(method_lib.Phase("align_finetune", make_align_loss(config, nets,
                                                                     train_encoders=True),
                                   opt, _mask(ENC_RGB, ENC_POSE, MAP_RGB, MAP_POSE, DEC_RGB),
                                   start=s2, stop=s3))
  if s4 > s3:
    path = [ENC_RGB, DEC_RGB] + ([MAP_RGB] if aligned(config) else [])
    phases.append(method_lib.Phase("refine", make_refine_loss(config, nets), opt, _mask(*path),
                                   start=s3, stop=s4))
  return phases


@method_lib.register_method("multistage")
def multistage(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Builds the multi-stage model of ``config`` (module docstring; fields in `default_config`)."""
  nets = build_networks(config)
  pose_dim, ctx_dim = latent_sizes(config)
  dec_dim = decoder_input_dim(config)

  def init(rng, batch):
    b = jnp.shape(batch["image"])[0]
    extra = _extra(batch, config)
    inputs: dict[str, tuple] = {ENC_RGB: (jnp.asarray(batch["image"], jnp.float32),),
                                DEC_RGB: (jnp.zeros((b, dec_dim)),)}
    kwargs = {ENC_RGB: {"extra": extra}}
    if ENC_POSE in nets:
      inputs[ENC_POSE] = (_target(batch, config),)
      kwargs[ENC_POSE] = {"extra": extra}
      inputs[DEC_POSE] = (jnp.zeros((b, int(config.pose_latent_dim))),)
    if DIS in nets:
      inputs[DIS] = (jnp.zeros((b, pose_dim)),)
    if MAP_RGB in nets:
      rgb_in = pose_dim + ctx_dim if config.decode_subspace == "concat" else pose_dim
      g = lambda d: Gaussian(jnp.zeros((b, d)), jnp.zeros((b, d)))
      inputs[MAP_RGB] = (g(rgb_in),)
      inputs[MAP_POSE] = (g(int(config.pose_latent_dim)),)
    return common.init_modules(rng, nets, inputs, kwargs)

  def predict(params, model_state, batch):
    q_pose, q_ctx, _ = encode_rgb(nets, params, model_state, batch, config, train=False)
    q = decoded_rgb_posterior(q_pose, q_ctx, config)
    if aligned(config):
      q, _ = common.apply_module(nets[MAP_RGB], MAP_RGB, params, model_state, q, train=False)
    pred, _ = common.apply_module(nets[DEC_RGB], DEC_RGB, params, model_state, q.mean, train=False)
    inv = config.invariances
    pose = common.pose_from_prediction(pred, batch, root_joint=config.data.root_joint,
                                       scale=inv.scale, pose_unit=config.pose_unit)
    return {"pose3d": pose, "latent_mean": q.mean}

  s = config.data.image_size
  spec = {"image": jax.ShapeDtypeStruct((s, s, 3), jnp.float32),
          "pose3d": jax.ShapeDtypeStruct((NUM_JOINTS, 3), jnp.float32)}
  if config.invariances.scale:
    spec["scale"] = jax.ShapeDtypeStruct((), jnp.float32)
  if config.invariances.handedness:
    spec["hand_side"] = jax.ShapeDtypeStruct((), jnp.int32)
  return method_lib.Method(name="multistage", init=init, phases=make_phases(config, nets),
                           predict=predict, input_spec=spec)


def default_config() -> ml_collections.ConfigDict:
  """The full model (Table 1 D3) at the paper's settings (Sec. 4.2); ablation configs edit it."""
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict()
  c.method = "multistage"
  c.seed = 0
  c.batch_size = 64  # Sec. 4.2
  # Stage lengths are not in the paper ("after convergence"); these are handjax choices.
  c.stages = ml_collections.ConfigDict({"disentangle": 100_000, "align_frozen": 50_000,
                                        "align_finetune": 50_000, "refine": 50_000})
  c.num_steps = 250_000  # = sum of the stage lengths (checked)
  # A stage run alone: the workdir of the run that trained the stages before it (whose lengths are
  # then set to 0 here); parameters load from its latest checkpoint (handjax.train.warm_start).
  c.init_from = ""
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 10_000
  c.keep_checkpoints = 2

  c.disentangle = True
  c.decode_subspace = "pose"  # Table 2: "pose" (pose-specific) or "concat"
  c.rgb_latent_dim = 128  # Sec. 4.2
  c.pose_latent_dim = 64
  c.beta_vae_cross = 1e-5  # Sec. 4.2: all four betas 1e-5
  c.beta_vae_uni = 1e-5
  c.beta_align_cross = 1e-5
  c.beta_align_uni = 1e-5
  c.align_w = 1e-2  # w of Eq. 5
  c.adversarial_weight = 1.0  # weight of the generator's side of Eq. 4 (not given)
  # Eq. 17's terms in metres, l1 distances as sums over entries: the units where r_kcs = 1e-2 and
  # r_geo = 1e-6 let both terms act (BUILD_NOTES, issue 20 finding 2; the paper states none).
  c.refine = ml_collections.ConfigDict({"mode": "alternate", "alternate_every": 1,
                                        "r_kcs": 1e-2, "r_geo": 1e-6, "unit": "metres",
                                        "reduction": "sum"})
  c.pose_unit = 0.035
  c.invariances = ml_collections.ConfigDict(
      {"translation": True, "scale": True, "handedness": True})  # Sec. 4.2: given at test time

  c.model = ml_collections.ConfigDict()
  c.model.resnet_depth = 18
  c.model.resnet_width = 1.0
  c.model.resnet_stage_sizes = ()
  c.model.decoder = "injection"  # injection | mlp | linear
  c.model.decoder_hidden = (512,) * 5  # not given in the paper
  c.model.pose_encoder_hidden = (512,) * 5  # "similar to [36]" (Spurr-style 512-unit MLP)
  c.model.mapper_hidden = (512, 512)
  c.model.discriminator_hidden = (256, 256)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4  # Sec. 4.2, all stages
  c.optimizer.warmup_steps = 0
  c.optimizer.decay = "constant"
  c.optimizer.grad_clip = 0.0
  c.optimizer.lr_drop_steps = ()
  c.optimizer.lr_drop_factor = 0.1
  c.discriminator_optimizer = ml_collections.ConfigDict(c.optimizer.to_dict())

  c.data = pipeline.default_data_config()
  c.data.image_size = 256  # Sec. 4.2
  c.data.augment.rotation_deg = 45.0  # Sec. 4.2
  c.data.root_joint = skeleton.WRIST
  return c
