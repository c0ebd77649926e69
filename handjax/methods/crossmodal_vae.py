"""Cross-modal VAE, Spurr, Song, Park & Hilliges CVPR 2018 (seed 002): one latent, many modalities.

Encoders q(z|x_k) for RGB images (`image`), 2D keypoints (`uv`), 3D joints (`pose3d`) and depth
maps (`depth`); decoders p(x_l|z) for the same modalities; one shared latent space. Each
(encoder, decoder) pair (k, l) is a cross-modal VAE trained on the bound of Eq. 5,

  -ELBO_{k->l} = ||x_l - p_l(z)||^2 + beta KL(q(z|x_k) || N(0, I)),  z ~ q(z|x_k),

(`handjax.losses.elbo.cross_modal_elbo`, beta = 1 in Alg. 1). Algorithm 1 trains the pairs in turn,
each step updating only the active pair's encoder and decoder: here one `Phase` per pair with
``every = len(pairs)``, ``offset = i`` and a ``subtree_mask`` of that pair's two networks, so the
others stay bit-identical (parameters and BatchNorm statistics).

Variants of Sec. 4 (input modality i, target t = pose3d):
  Var. 1: (i->t);  Var. 2: (i->t, t->t);  Var. 3: (i->t, i->i);  Var. 4: (i->t, i->i, t->t).
``config.pairs`` (e.g. "image>pose3d,image>image") overrides the variant.

Invariances of Sec. 4.5 (``config.invariances``): translation (root-relative pose), scale (pose
divided by the ground-truth middle-finger MCP->PIP bone; else by ``pose_unit`` metres) and
handedness (a one-hot of ``hand_side`` concatenated to every encoder's features).

Semi-supervision (Sec. 4.6): a pair is trained on the examples that have both its input and its
target (``has_<key>`` masks, `cross_modal_elbo`'s ``example_mask``), so with ``labelled_fraction``
m < 1 the pairs into ``pose3d`` see the labelled m% of each batch while the i->i pair of Var. 3/4
also trains on the unlabelled images.

``predict`` encodes the input modality (posterior mean, no sampling), decodes the 3D pose and
returns it root-relative in metres: scale-invariant models are multiplied by the *ground-truth*
``batch["scale"]``, which the RHD/STB protocol provides at test time (Sec. 4.5); a batch without it
(a photo) gets ``fallback_scale`` metres, and one without ``hand_side`` is taken as right hands.

Architectures (supp. Tables 3-4): 2D/3D encoders and decoders are MLPs of ``model.mlp_hidden``
(6 x Linear(512) in the paper), image/depth encoders a ResNet-18 with a linear Gaussian head, the
image/depth decoders the DCGAN-style `DeconvDecoder`; ``model.resnet_width`` etc. give narrow
versions for CPUs.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from handjax.hand import skeleton
from handjax.losses import elbo
from handjax.methods import common
from handjax.models.decoders import DeconvDecoder
from handjax.models.resnet import ResNetEncoder
from handjax.train import method as method_lib

MODALITIES = ("image", "uv", "pose3d", "depth")
TARGET = "pose3d"
NUM_JOINTS = skeleton.NUM_JOINTS


def variant_pairs(input_modality: str, variant: int) -> list[tuple[str, str]]:
  """The (encoder, decoder) pairs of Var. 1-4 (Spurr et al. CVPR 2018, Sec. 4) into ``pose3d``."""
  if input_modality not in MODALITIES or input_modality == TARGET:
    raise ValueError(f"input_modality must be one of {[m for m in MODALITIES if m != TARGET]}, "
                     f"got {input_modality!r}.")
  i, t = input_modality, TARGET
  table = {1: [(i, t)], 2: [(i, t), (t, t)], 3: [(i, t), (i, i)], 4: [(i, t), (i, i), (t, t)]}
  if variant not in table:
    raise ValueError(f"variant must be 1, 2, 3 or 4 (Spurr et al. Sec. 4), got {variant!r}.")
  return table[variant]


def parse_pairs(spec: str) -> list[tuple[str, str]]:
  """"a>b,c>d" -> [(a, b), (c, d)], checking the modality names."""
  pairs = []
  for item in spec.split(","):
    parts = [p.strip() for p in item.split(">")]
    if len(parts) != 2 or any(p not in MODALITIES for p in parts):
      raise ValueError(f"config.pairs entries must be '<encoder>><decoder>' with modalities in "
                       f"{MODALITIES}, got {item!r} in {spec!r}.")
    pairs.append((parts[0], parts[1]))
  if len(set(pairs)) != len(pairs):
    raise ValueError(f"config.pairs repeats a pair: {spec!r}.")
  return pairs


def config_pairs(config: ml_collections.ConfigDict) -> list[tuple[str, str]]:
  """``config.pairs`` if set, else the pairs of ``config.variant`` for ``config.input_modality``."""
  spec = config.get("pairs", "") or ""
  pairs = parse_pairs(spec) if spec else variant_pairs(config.input_modality, int(config.variant))
  # predict decodes the 3D pose from the input modality's code. That pair need not be trained:
  # Fig. 8(b)'s "each modality trained separately" model (e.g. image>image,pose3d>pose3d) has
  # both networks, and its RGB->3D error measures what the missing cross-training costs.
  encoders = {enc for enc, _ in pairs}
  decoders = {dec for _, dec in pairs}
  if config.input_modality not in encoders or TARGET not in decoders:
    raise ValueError(f"the pairs {pairs} must include an encoder of {config.input_modality!r} and "
                     f"a decoder of {TARGET!r}: predict decodes the 3D pose from the input "
                     "modality.")
  return pairs


def encoder_name(modality: str) -> str:
  return f"encoder_{modality}"


def decoder_name(modality: str) -> str:
  return f"decoder_{modality}"


def _stage_sizes(model: ml_collections.ConfigDict) -> tuple[int, int, int, int] | None:
  sizes = tuple(model.get("resnet_stage_sizes", ()) or ())
  return sizes or None  # type: ignore[return-value]


def build_encoder(modality: str, config: ml_collections.ConfigDict) -> nn.Module:
  """q(z|x_modality): ResNet for image/depth (supp. Table 4), MLP for uv/pose3d (Table 3)."""
  m = config.model
  if modality in ("image", "depth"):
    return ResNetEncoder(config.latent_dim, depth=m.resnet_depth, width=m.resnet_width,
                         in_channels=3 if modality == "image" else 1,
                         stage_sizes=_stage_sizes(m))
  return common.MLPEncoder(config.latent_dim, tuple(m.mlp_hidden))


def build_decoder(modality: str, config: ml_collections.ConfigDict) -> nn.Module:
  """p(x_modality|z): DeconvDecoder for image/depth (supp. Table 4), MLP for uv/pose3d (Table 3)."""
  m = config.model
  if modality in ("image", "depth"):
    return DeconvDecoder(output_size=config.data.image_size,
                         out_channels=3 if modality == "image" else 1,
                         channels=tuple(m.deconv_channels), base_size=m.deconv_base_size,
                         base_channels=m.deconv_base_channels)
  dims = 3 if modality == "pose3d" else 2
  return common.MLPDecoder((NUM_JOINTS, dims), tuple(m.mlp_hidden))


def modality_value(modality: str, batch: common.Batch,
                   config: ml_collections.ConfigDict) -> jax.Array:
  """The normalised array of a modality, used both as encoder input and as decoder target."""
  inv = config.invariances
  if modality == "image":
    return jnp.asarray(batch["image"], jnp.float32)
  if modality == "uv":
    return common.normalized_uv(batch["uv"], config.data.image_size)
  if modality == "depth":
    return common.normalized_depth(batch["depth"], config.depth_unit)
  return common.pose_target(batch, root_joint=config.data.root_joint, translation=inv.translation,
                            scale=inv.scale, pose_unit=config.pose_unit)


def modality_present(modality: str, batch: common.Batch,
                     config: ml_collections.ConfigDict) -> jax.Array:
  """(B,) bool: the example has this modality (a pose needs its scale under scale invariance)."""
  if modality == "image":
    return common.has(batch, "image")
  present = common.has(batch, modality)
  if modality == "pose3d" and config.invariances.scale and "has_scale" in batch:
    present = present & common.has(batch, "scale")
  return present


def recon_fn(modality: str):
  """-log p(x_l|z) up to constants: the sum of squared errors (Alg. 1's "MSE" term)."""
  del modality  # Every modality uses the Gaussian likelihood with unit variance.
  return common.sum_of_squares


def _input_spec(config: ml_collections.ConfigDict, modalities: Sequence[str]) -> dict:
  s = config.data.image_size
  shapes = {"image": (s, s, 3), "uv": (NUM_JOINTS, 2), "pose3d": (NUM_JOINTS, 3),
            "depth": (s, s, 1)}
  spec = {m: jax.ShapeDtypeStruct(shapes[m], jnp.float32) for m in modalities}
  if config.invariances.scale:
    spec["scale"] = jax.ShapeDtypeStruct((), jnp.float32)
  if config.invariances.handedness:
    spec["hand_side"] = jax.ShapeDtypeStruct((), jnp.int32)
  return spec


def _extra(batch: common.Batch, config: ml_collections.ConfigDict) -> jax.Array | None:
  return common.hand_side_one_hot(batch) if config.invariances.handedness else None


def kl_weight(config: ml_collections.ConfigDict, step: jax.Array | int) -> jax.Array:
  """beta at ``step``: ``config.beta``, ramped linearly from 0 over ``beta_warmup_steps`` if > 0.

  KL warm-up (Bowman et al. 2016; Sonderby et al. 2016) is not in Spurr et al.: with beta fixed
  from step 0 a short run first pulls every posterior to the prior and predicts the mean pose
  for hundreds of steps (the quickstart's plateau, BUILD_NOTES.md); ramping beta lets the
  reconstruction shape the latent first.
  """
  beta = float(config.beta)
  warmup = int(config.get("beta_warmup_steps", 0))
  if warmup <= 0:
    return jnp.float32(beta)
  return jnp.float32(beta) * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup)


def make_pair_loss(encoder: str, decoder: str, enc: nn.Module, dec: nn.Module,
                   config: ml_collections.ConfigDict) -> method_lib.LossFn:
  """The negative cross-modal ELBO of one pair (Spurr et al. CVPR 2018 Eq. 5, Alg. 1 lines 6-11).

  Terms: ``recon/<decoder>``, ``kl``, ``loss`` (masked means over the examples having both the
  input and the target).
  """
  weight = float(config.weights.get(decoder, 1.0))

  def loss_fn(params, model_state, batch, rng, step):
    beta = kl_weight(config, step)
    x = modality_value(encoder, batch, config)
    posterior, enc_stats = common.apply_module(enc, encoder_name(encoder), params, model_state, x,
                                               train=True, extra=_extra(batch, config))
    dec_stats = []

    def decode(z):
      out, stats = common.apply_module(dec, decoder_name(decoder), params, model_state, z,
                                       train=True)
      dec_stats.append(stats)
      return {decoder: out}

    mask = modality_present(encoder, batch, config) & modality_present(decoder, batch, config)
    loss, terms = elbo.cross_modal_elbo(
        rng, posterior, decode, {decoder: modality_value(decoder, batch, config)},
        {decoder: recon_fn(decoder)}, {decoder: weight}, beta, example_mask=mask)
    new_state = common.merge_stats(model_state, {encoder_name(encoder): enc_stats,
                                                 decoder_name(decoder): dec_stats[-1]})
    return loss, (terms, new_state)

  return loss_fn


@method_lib.register_method("crossmodal_vae")
def crossmodal_vae(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Builds the cross-modal VAE of ``config`` (see the module docstring for the fields)."""
  pairs = config_pairs(config)
  enc_modalities = sorted({e for e, _ in pairs})
  dec_modalities = sorted({d for _, d in pairs})
  encoders = {m: build_encoder(m, config) for m in enc_modalities}
  decoders = {m: build_decoder(m, config) for m in dec_modalities}
  spec = _input_spec(config, enc_modalities)

  def init(rng, batch):
    modules, inputs, kwargs = {}, {}, {}
    extra = _extra(batch, config)
    z = jnp.zeros((jnp.shape(batch[enc_modalities[0]])[0], config.latent_dim), jnp.float32)
    for m in enc_modalities:
      modules[encoder_name(m)] = encoders[m]
      inputs[encoder_name(m)] = (modality_value(m, batch, config),)
      kwargs[encoder_name(m)] = {"extra": extra}
    for m in dec_modalities:
      modules[decoder_name(m)] = decoders[m]
      inputs[decoder_name(m)] = (z,)
    return common.init_modules(rng, modules, inputs, kwargs)

  def predict(params, model_state, batch):
    inp = config.input_modality
    x = modality_value(inp, batch, config)
    posterior, _ = common.apply_module(encoders[inp], encoder_name(inp), params, model_state, x,
                                       train=False, extra=_extra(batch, config))
    pred, _ = common.apply_module(decoders[TARGET], decoder_name(TARGET), params, model_state,
                                  posterior.mean, train=False)
    pose = common.pose_from_prediction(pred, batch, root_joint=config.data.root_joint,
                                       scale=config.invariances.scale, pose_unit=config.pose_unit,
                                       fallback_scale=config.fallback_scale)
    return {"pose3d": pose, "latent_mean": posterior.mean}

  optimizer = common.make_optimizer(config.optimizer, config.num_steps)
  phases = [
      method_lib.Phase(
          name=f"{enc}_to_{dec}",
          loss=make_pair_loss(enc, dec, encoders[enc], decoders[dec], config),
          optimizer=optimizer,
          trainable=method_lib.subtree_mask(f"params/{encoder_name(enc)}",
                                            f"params/{decoder_name(dec)}"),
          every=len(pairs), offset=i)
      for i, (enc, dec) in enumerate(pairs)
  ]
  return method_lib.Method(name="crossmodal_vae", init=init, phases=phases, predict=predict,
                           input_spec=spec)


def default_config() -> ml_collections.ConfigDict:
  """Every field the method reads, at the paper's sizes (supp. Sec. 7.1); configs override them.

  The ``data`` block is ``handjax.data.pipeline.default_data_config()``.
  """
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict()
  c.method = "crossmodal_vae"
  c.seed = 0
  c.batch_size = 64  # supp. Sec. 7.1
  c.num_steps = 100_000
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 10_000
  c.keep_checkpoints = 2

  c.input_modality = "image"  # image | uv | depth
  c.variant = 1  # Sec. 4, Var. 1-4
  c.pairs = ""  # e.g. "image>pose3d,image>image"; overrides `variant` when set
  c.latent_dim = 64
  c.beta = 1.0  # Alg. 1: MSE + KL
  c.beta_warmup_steps = 0  # 0: beta from step 0 (Alg. 1); N: beta ramps from 0 over N steps
  c.pose_unit = 0.035  # metres; the pose unit when scale invariance is off
  c.depth_unit = 0.035  # metres
  c.fallback_scale = 0.035  # metres; predict's scale for inputs without batch["scale"] (photos)
  c.invariances = ml_collections.ConfigDict(
      {"translation": True, "scale": True, "handedness": True})
  c.weights = ml_collections.ConfigDict(
      {"image": 1.0, "uv": 1.0, "pose3d": 1.0, "depth": 1.0})

  c.model = ml_collections.ConfigDict()
  c.model.resnet_depth = 18
  c.model.resnet_width = 1.0
  c.model.resnet_stage_sizes = ()  # () = ResNet-<depth>
  c.model.mlp_hidden = (512,) * 5  # supp. Table 3
  c.model.deconv_channels = (128, 64, 32, 16, 8)  # supp. Table 4
  c.model.deconv_base_size = 4
  c.model.deconv_base_channels = 256

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4  # supp. Sec. 7.1
  c.optimizer.warmup_steps = 0
  c.optimizer.decay = "constant"
  c.optimizer.grad_clip = 0.0
  c.optimizer.lr_drop_steps = ()
  c.optimizer.lr_drop_factor = 0.1

  c.data = pipeline.default_data_config()
  c.data.image_size = 256  # supp. Sec. 7.1
  c.data.augment.rotation_deg = 45.0  # supp. Sec. 7.1
  c.data.root_joint = skeleton.WRIST
  return c
