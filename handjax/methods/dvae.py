"""Disentangled VAE (dVAE), Yang dissertation ch. 4 (Yang & Yao CVPR 2019; seed 001).

The latent z = [z_y1, z_y2] (Fig. 4.2a) or [z_y1, z_u] (Fig. 4.2b) is a concatenation of named
factor blocks. Each labelled factor y_i has an encoder q(z_yi|y_i) and a decoder p(y_i|z_yi) that
reads *its block only*; the "whole" target x has a decoder p(x|z) on the concatenation; an
embedding encoder q(z|x_hat) maps the input (an RGB image) to the whole latent.

Training (one `Phase` per step kind, scheduled with start/stop):

* Alg. 4.1 (fully specified z). Disentangling step, steps [0, T1): the factor encoders and all
  decoders maximise Eq. 4.2,
    ELBO_dis = lambda_x E log p(x|z) + sum_i lambda_yi E log p(y_i|z_yi) - beta KL(q(z|y) || p(z)),
  (`handjax.losses.elbo.disentangled_elbo`). Embedding step, steps [T1, T1 + T2): only the
  embedding encoder maximises Eq. 4.4 / 4.8 (`elbo.embedding_elbo`) with the decoders fixed: their
  parameters are masked *and* they run with their stored BatchNorm statistics (eval mode), so the
  step leaves every decoder variable bit-identical.
* Alg. 4.2 (unexplained factor z_u encoded from x by q(z_u|x)). The disentangling phase (Eq. 4.6)
  runs every ``inner_steps`` steps; after it, at every step of [0, T1), the factor-pair phase
  updates (phi_y1, theta_y1) only, decoding y_1 from [z_y1, z_noise] with z_noise ~ q(z_u|x)
  (lines 7-12). The embedding step follows as in Alg. 4.1.

Applications (Sec. 4.3):

* ``application = "pose"`` (Fig. 4.2c, Fig. 4.3 right): y1 = canonical pose ("CPose"), y2 =
  viewpoint (3 x 3 rotation), x = 3D pose decoded from the whole z, x_hat = RGB image; ``predict``
  returns ``pose3d`` (root-relative, metres), ``canonical_pose`` and ``viewpoint`` (projected to the
  nearest rotation); `factor_errors` gives the EPE of each.
* ``application = "synthesis"`` (Fig. 4.2a/b, Fig. 4.3 left): y1 = 3D pose, y2 = a content tag
  image (``content_image``; Fig. 4.2a) or z_u (Fig. 4.2b), x = the RGB image. `synthesize`,
  `encode_factors`, `decode_blocks` and `latent_walk` are the pure functions a synthesis binary
  calls.

Semi- and weakly-supervised training (Fig. 4.9) needs no code path: every factor and target is
masked by ``has_<key>``. The disentangling step uses the examples having every factor label (the
pose application needs no image there, so pose labels without images train it); the embedding
step reconstructs each target on the examples having it, so viewpoint-only (weak) labels train
q(z|x_hat) through p(y2|z_y2) alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from handjax.hand import skeleton
from handjax.losses import elbo
from handjax.losses.gaussian import Gaussian
from handjax.methods import common
from handjax.models.decoders import DeconvDecoder
from handjax.models.resnet import ResNetEncoder
from handjax.train import method as method_lib

NUM_JOINTS = skeleton.NUM_JOINTS
UNEXPLAINED = "u"
VECTOR_SHAPES = {"pose3d": (NUM_JOINTS, 3), "canonical_pose": (NUM_JOINTS, 3),
                 "viewpoint": (3, 3)}
IMAGE_KEYS = ("image", "content_image")
EMBED = "embed"


# ----------------------------------------------------------------------------------------------
# Structure read from the config.


def factor_blocks(config: ml_collections.ConfigDict) -> list[tuple[str, int]]:
  """Ordered (block name, size) pairs: the labelled factors, then ``u`` for Fig. 4.2b."""
  keys, dims = tuple(config.factor_keys), tuple(config.factor_dims)
  expected = len(keys) + (1 if config.unexplained else 0)
  if len(dims) != expected:
    raise ValueError(f"config.factor_dims must have {expected} entries (one per factor key "
                     f"{keys}{' plus z_u' if config.unexplained else ''}), got {dims}.")
  for key in keys + (config.whole_target, config.embed_input):
    if key not in VECTOR_SHAPES and key not in IMAGE_KEYS:
      raise ValueError(f"unknown dVAE modality {key!r}; use one of "
                       f"{sorted(VECTOR_SHAPES) + list(IMAGE_KEYS)}.")
  names = keys + ((UNEXPLAINED,) if config.unexplained else ())
  return list(zip(names, (int(d) for d in dims)))


def labelled_factors(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  return tuple(config.factor_keys)


def targets_of(config: ml_collections.ConfigDict) -> tuple[str, ...]:
  """Every decoded target: the factors and the whole target x (sorted, as the ELBOs iterate)."""
  return tuple(sorted(set(labelled_factors(config)) | {config.whole_target}))


def encoder_name(block: str) -> str:
  return f"encoder_{block}"


def decoder_name(key: str) -> str:
  return f"decoder_{key}"


def _stage_sizes(model: ml_collections.ConfigDict):
  sizes = tuple(model.get("resnet_stage_sizes", ()) or ())
  return sizes or None


def _image_encoder(config: ml_collections.ConfigDict, latent_dim: int) -> nn.Module:
  m = config.model
  return ResNetEncoder(latent_dim, depth=m.resnet_depth, width=m.resnet_width,
                       stage_sizes=_stage_sizes(m))


def _decoder(key: str, config: ml_collections.ConfigDict) -> nn.Module:
  m = config.model
  if key in IMAGE_KEYS:
    return DeconvDecoder(output_size=config.data.image_size, out_channels=3,
                         channels=tuple(m.deconv_channels), base_size=m.deconv_base_size,
                         base_channels=m.deconv_base_channels)
  return common.MLPDecoder(VECTOR_SHAPES[key], tuple(m.mlp_hidden))


def build_networks(config: ml_collections.ConfigDict) -> dict[str, nn.Module]:
  """Every network by parameter sub-tree name (Sec. 4.4.1: ResNet-18, DCGAN, 6 x 512 MLPs)."""
  blocks = factor_blocks(config)
  nets: dict[str, nn.Module] = {}
  for name, size in blocks:
    source = config.whole_target if name == UNEXPLAINED else name
    nets[encoder_name(name)] = (_image_encoder(config, size) if source in IMAGE_KEYS else
                                common.MLPEncoder(size, tuple(config.model.mlp_hidden)))
  for key in targets_of(config):
    nets[decoder_name(key)] = _decoder(key, config)
  total = sum(size for _, size in blocks)
  if config.embed_input not in IMAGE_KEYS:
    raise ValueError(f"config.embed_input must be an image key {IMAGE_KEYS}, got "
                     f"{config.embed_input!r}.")
  nets[encoder_name(EMBED)] = _image_encoder(config, total)
  return nets


# ----------------------------------------------------------------------------------------------
# Batch -> values.


def modality_value(key: str, batch: common.Batch, config: ml_collections.ConfigDict) -> jax.Array:
  """Encoder input and decoder target of ``key``: images as given, the 3D pose normalised
  (`common.pose_target`), canonical pose (already scale-free) and viewpoint matrix as given."""
  if key == "pose3d":
    inv = config.invariances
    return common.pose_target(batch, root_joint=config.data.root_joint,
                              translation=inv.translation, scale=inv.scale,
                              pose_unit=config.pose_unit)
  if key not in batch:
    raise KeyError(f"the dVAE needs batch[{key!r}]; the batch has {sorted(batch)}.")
  return jnp.asarray(batch[key], jnp.float32)


def modality_present(key: str, batch: common.Batch, config: ml_collections.ConfigDict) -> jax.Array:
  present = common.has(batch, key)
  if key == "pose3d" and config.invariances.scale and "has_scale" in batch:
    present = present & common.has(batch, "scale")
  return present


def _input_spec(config: ml_collections.ConfigDict) -> dict[str, jax.ShapeDtypeStruct]:
  s = config.data.image_size
  spec = {}
  for key in set(labelled_factors(config)) | {config.whole_target, config.embed_input}:
    shape = (s, s, 3) if key in IMAGE_KEYS else VECTOR_SHAPES[key]
    spec[key] = jax.ShapeDtypeStruct(shape, jnp.float32)
  if config.invariances.scale and "pose3d" in spec:
    spec["scale"] = jax.ShapeDtypeStruct((), jnp.float32)
  return spec


# ----------------------------------------------------------------------------------------------
# Encoding and decoding on parameters (pure functions; also the synthesis API).


def _apply(nets, name, params, model_state, *args, train: bool):
  return common.apply_module(nets[name], name, params, model_state, *args, train=train)


def encode_factors(config: ml_collections.ConfigDict, params: Any, model_state: Any,
                   batch: common.Batch, *, train: bool = False,
                   nets: Mapping[str, nn.Module] | None = None
                   ) -> tuple[dict[str, Gaussian], dict[str, Any]]:
  """q(z_yi|y_i) for every labelled factor and q(z_u|x) (Fig. 4.2b) of ``batch``.

  Returns:
    ({block name: posterior (B, size)}, {encoder name: batch statistics after the call}).
  """
  nets = build_networks(config) if nets is None else nets
  posteriors, stats = {}, {}
  for name, _ in factor_blocks(config):
    source = config.whole_target if name == UNEXPLAINED else name
    posteriors[name], stats[encoder_name(name)] = _apply(
        nets, encoder_name(name), params, model_state, modality_value(source, batch, config),
        train=train)
  return posteriors, stats


def decode_blocks(config: ml_collections.ConfigDict, params: Any, model_state: Any,
                  blocks: Mapping[str, jax.Array], *, train: bool = False,
                  nets: Mapping[str, nn.Module] | None = None,
                  stats_out: dict[str, Any] | None = None) -> dict[str, jax.Array]:
  """p(y_i|z_yi) of every labelled factor on its own block and p(x|z) on z = [z_y1, z_y2 | z_u].

  Args:
    config: the method config.
    params, model_state: the method's variables.
    blocks: {block name: (B, size)} latent blocks (samples or means).
    train: BatchNorm in training mode (batch statistics) or eval mode (stored averages).
    nets: the networks (built from ``config`` when None).
    stats_out: if given, receives {decoder name: batch statistics after the call}.

  Returns:
    {target key: prediction}; the pose-like targets in the normalised units of `modality_value`.
  """
  nets = build_networks(config) if nets is None else nets
  out = {}
  for key in targets_of(config):
    out[key], stats = _apply(nets, decoder_name(key), params, model_state,
                             decode_input(key, blocks, config), train=train)
    if stats_out is not None:
      stats_out[decoder_name(key)] = stats
  return out


def synthesize(config: ml_collections.ConfigDict, params: Any, model_state: Any,
               pose_batch: common.Batch, content_batch: common.Batch) -> jax.Array:
  """Pose transfer (Fig. 4.3 left): the image with the pose of ``pose_batch`` and the content of
  ``content_batch``, x = p(x | [mean q(z_pose|y1), mean q(z_content|y2 or x)]), eval mode.

  For Fig. 4.2b the content block is z_u = mean q(z_u|x) of the content image ("input is still
  given in the form of a desired 3DPose and an RGB image specifying the content", Sec. 4.3).
  """
  nets = build_networks(config)
  pose_q, _ = encode_factors(config, params, model_state, pose_batch, nets=nets)
  content_q, _ = encode_factors(config, params, model_state, content_batch, nets=nets)
  first = factor_blocks(config)[0][0]
  blocks = {name: (pose_q if name == first else content_q)[name].mean
            for name, _ in factor_blocks(config)}
  return decode_blocks(config, params, model_state, blocks, nets=nets)[config.whole_target]


def latent_walk(start: jax.Array, end: jax.Array, num: int) -> jax.Array:
  """z_k = (1 - t_k) start + t_k end, t_k = k / (num - 1): the interpolation of Fig. 4.4.

  Args:
    start, end: (..., D) latent blocks (or whole latents) of the two endpoints.
    num: number of points >= 2, endpoints included.

  Returns:
    (num, ..., D).
  """
  if num < 2:
    raise ValueError(f"latent_walk needs num >= 2 points, got {num}.")
  t = jnp.linspace(0.0, 1.0, num).reshape((num,) + (1,) * jnp.ndim(start))
  return (1.0 - t) * start[None] + t * end[None]


def nearest_rotation(m: jax.Array) -> jax.Array:
  """argmin_{R in SO(3)} ||R - M||_F = U diag(1, 1, det(U V^T)) V^T (SVD of M = U S V^T)."""
  u, _, vt = jnp.linalg.svd(m)
  det = jnp.linalg.det(u @ vt)
  d = jnp.stack([jnp.ones_like(det), jnp.ones_like(det), det], axis=-1)
  return (u * d[..., None, :]) @ vt


def factor_errors(predictions: Mapping[str, jax.Array], batch: common.Batch,
                  visible: jax.Array | None = None) -> dict[str, jax.Array]:
  """EPE of each predicted factor (Sec. 4.4.3): mean joint distance of ``pose3d`` (metres) and of
  ``canonical_pose`` (canonical units), and the viewpoint's rotation angle error
  arccos((tr(R_pred^T R) - 1) / 2) in degrees. Scalars over the examples that have the label."""
  out = {}
  for key in ("pose3d", "canonical_pose"):
    if key in predictions and key in batch:
      target = jnp.asarray(batch[key], jnp.float32)
      if key == "pose3d":
        target = target - target[:, :1]
      dist = jnp.linalg.norm(predictions[key] - target, axis=-1)
      weight = jnp.ones_like(dist) if visible is None else jnp.asarray(visible, dist.dtype)
      per_example = jnp.sum(dist * weight, -1) / jnp.maximum(jnp.sum(weight, -1), 1.0)
      out[f"epe/{key}"] = elbo.masked_mean(per_example, common.has(batch, key))
  if "viewpoint" in predictions and "viewpoint" in batch:
    rel = jnp.einsum("bji,bjk->bik", predictions["viewpoint"], jnp.asarray(batch["viewpoint"]))
    cos = jnp.clip(0.5 * (jnp.trace(rel, axis1=-2, axis2=-1) - 1.0), -1.0, 1.0)
    out["angle_deg/viewpoint"] = elbo.masked_mean(jnp.degrees(jnp.arccos(cos)),
                                                  common.has(batch, "viewpoint"))
  return out


# ----------------------------------------------------------------------------------------------
# Losses.


def pose_recon_factor(config) -> float:
  """Factor on the 3D pose's sum of squares: 1 in the normalised units of `modality_value`, or
  (1000 pose_unit)^2 with ``config.pose_recon_unit = "millimetres"`` (the error in mm^2 for a
  pose_unit-sized hand; 1225 at 35 mm)."""
  unit = config.get("pose_recon_unit", "normalised")
  if unit == "normalised":
    return 1.0
  if unit == "millimetres":
    return (1000.0 * float(config.pose_unit)) ** 2
  raise ValueError(f"pose_recon_unit must be 'normalised' or 'millimetres', got {unit!r}.")


def _sum_of_squares_times(factor: float):
  if factor == 1.0:
    return common.sum_of_squares
  return lambda pred, target: factor * common.sum_of_squares(pred, target)


def _recon_fns(config) -> dict[str, Any]:
  """Per-target reconstruction -log p up to a constant: sums of squares, the 3D pose's scaled by
  `pose_recon_factor`."""
  return {k: _sum_of_squares_times(pose_recon_factor(config) if k == "pose3d" else 1.0)
          for k in targets_of(config)}


def _weights(config, embed: bool) -> dict[str, float]:
  lam_x, lam_y = ((config.embed_lambda_x, config.embed_lambda_y) if embed else
                  (config.lambda_x, config.lambda_y))
  return {k: float(lam_x if k == config.whole_target else lam_y) for k in targets_of(config)}


def _targets_and_masks(config, batch):
  keys = targets_of(config)
  return ({k: modality_value(k, batch, config) for k in keys},
          {k: modality_present(k, batch, config) for k in keys})


def _factor_mask(config, batch) -> jax.Array:
  """(B,) examples having every factor encoder's input (y_i, and x for z_u)."""
  mask = None
  for name, _ in factor_blocks(config):
    source = config.whole_target if name == UNEXPLAINED else name
    present = modality_present(source, batch, config)
    mask = present if mask is None else mask & present
  return mask


def make_disentangle_loss(config: ml_collections.ConfigDict, nets) -> method_lib.LossFn:
  """Negative disentangling-step ELBO, dissertation Eq. 4.2 (Alg. 4.1 l. 3-6) or Eq. 4.6 (Alg. 4.2
  l. 3-6), `elbo.disentangled_elbo` on the factor posteriors with all decoders in training mode."""

  def loss_fn(params, model_state, batch, rng, step):
    del step
    factors, enc_stats = encode_factors(config, params, model_state, batch, train=True, nets=nets)
    dec_stats: dict[str, Any] = {}
    decode = lambda blocks: decode_blocks(config, params, model_state, blocks, train=True,
                                          nets=nets, stats_out=dec_stats)
    targets, masks = _targets_and_masks(config, batch)
    loss, terms = elbo.disentangled_elbo(rng, factors, decode, targets, _recon_fns(config),
                                         _weights(config, False), float(config.beta),
                                         target_masks=masks,
                                         example_mask=_factor_mask(config, batch))
    return loss, (terms, common.merge_stats(model_state, {**enc_stats, **dec_stats}))

  return loss_fn


def make_factor_pair_loss(config: ml_collections.ConfigDict, nets) -> method_lib.LossFn:
  """Alg. 4.2 l. 8-11: the y1 pair's negative ELBO with z = [z_y1, z_noise], z_noise ~ q(z_u|x).

  lambda_y1 E[-log p(y1|z)] + beta KL(q(z_y1|y1) || N(0, I)) (`elbo.cross_modal_elbo`); q(z_u|x)
  is evaluated in eval mode under stop_gradient (only phi_y1, theta_y1 move). Keys: rng split 0
  samples z_y1, split 1 the noise.
  """
  first = labelled_factors(config)[0]

  def loss_fn(params, model_state, batch, rng, step):
    del step
    rng_pair, rng_noise = jax.random.split(rng)
    q_y1, enc_stats = _apply(nets, encoder_name(first), params, model_state,
                             modality_value(first, batch, config), train=True)
    q_u, _ = _apply(nets, encoder_name(UNEXPLAINED), params, model_state,
                    modality_value(config.whole_target, batch, config), train=False)
    q_u = jax.lax.stop_gradient(q_u)
    z_noise = q_u.mean + jnp.exp(0.5 * q_u.logvar) * jax.random.normal(rng_noise, q_u.mean.shape)
    dec_stats: dict[str, Any] = {}

    def decode(z):
      out, dec_stats[decoder_name(first)] = _apply(
          nets, decoder_name(first), params, model_state,
          decode_input(first, {first: z, UNEXPLAINED: z_noise}, config), train=True)
      return {first: out}

    mask = modality_present(first, batch, config)
    loss, terms = elbo.cross_modal_elbo(
        rng_pair, q_y1, decode, {first: modality_value(first, batch, config)},
        {first: _recon_fns(config)[first]}, {first: float(config.lambda_y)}, float(config.beta),
        example_mask=mask)
    return loss, (terms, common.merge_stats(model_state, {encoder_name(first): enc_stats,
                                                          **dec_stats}))

  return loss_fn


def decode_input(key: str, blocks: Mapping[str, jax.Array], config) -> jax.Array:
  """The latent decoder ``key`` reads: its own block for a labelled factor, else all of z.

  p(y_i|z_yi) reads z_yi only, so z_u (or z_y2) cannot change it: the independence Alg. 4.2 l. 7-12
  approximates by training on z_u noise holds here by construction.
  """
  if key in labelled_factors(config) and key != config.whole_target:
    return blocks[key]
  return elbo.concat_latent(blocks, [name for name, _ in factor_blocks(config)])


def make_embed_loss(config: ml_collections.ConfigDict, nets) -> method_lib.LossFn:
  """Negative embedding-step ELBO, dissertation Eq. 4.4 (x_hat = x) / Eq. 4.8 (x_hat = RGB),
  `elbo.embedding_elbo`: q(z|x_hat) with every decoder fixed (stop_gradient parameters, stored
  BatchNorm statistics), Alg. 4.1 l. 9-12 / Alg. 4.2 l. 15-18."""

  def loss_fn(params, model_state, batch, rng, step):
    del step
    posterior, stats = _apply(nets, encoder_name(EMBED), params, model_state,
                              modality_value(config.embed_input, batch, config), train=True)
    frozen = jax.lax.stop_gradient(params)
    decode = lambda blocks: decode_blocks(config, frozen, model_state, blocks, train=False,
                                          nets=nets)
    targets, masks = _targets_and_masks(config, batch)
    loss, terms = elbo.embedding_elbo(rng, posterior, factor_blocks(config), decode, targets,
                                      _recon_fns(config), _weights(config, True),
                                      float(config.embed_beta), target_masks=masks,
                                      example_mask=modality_present(config.embed_input, batch,
                                                                    config))
    return loss, (terms, common.merge_stats(model_state, {encoder_name(EMBED): stats}))

  return loss_fn


# ----------------------------------------------------------------------------------------------
# The method.


def make_phases(config: ml_collections.ConfigDict, nets) -> list[method_lib.Phase]:
  """Alg. 4.1 or 4.2 as trainer phases (see the module docstring)."""
  t1 = int(config.disentangle_steps)
  if not 0 < t1 < int(config.num_steps):
    raise ValueError(f"need 0 < disentangle_steps < num_steps (the embedding step runs after the "
                     f"disentangling step), got {t1} and {config.num_steps}.")
  opt = common.make_optimizer(config.optimizer, config.num_steps)
  names = [n for n, _ in factor_blocks(config)]
  dis_mask = method_lib.subtree_mask(*[f"params/{encoder_name(n)}" for n in names],
                                     *[f"params/{decoder_name(k)}" for k in targets_of(config)])
  inner = int(config.get("inner_steps", 1)) if config.unexplained else 1
  phases = [method_lib.Phase("disentangle", make_disentangle_loss(config, nets), opt, dis_mask,
                             every=inner, stop=t1)]
  if config.unexplained:
    first = labelled_factors(config)[0]
    phases.append(method_lib.Phase(
        "factor_pair", make_factor_pair_loss(config, nets), opt,
        method_lib.subtree_mask(f"params/{encoder_name(first)}", f"params/{decoder_name(first)}"),
        stop=t1))
  phases.append(method_lib.Phase("embed", make_embed_loss(config, nets), opt,
                                 method_lib.subtree_mask(f"params/{encoder_name(EMBED)}"),
                                 start=t1))
  return phases


@method_lib.register_method("dvae")
def dvae(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Builds the disentangled VAE of ``config`` (module docstring; fields in `default_config`)."""
  nets = build_networks(config)
  blocks = factor_blocks(config)

  def init(rng, batch):
    inputs = {}
    b = jnp.shape(batch[config.embed_input])[0]
    zeros = {name: jnp.zeros((b, size), jnp.float32) for name, size in blocks}
    for name, _ in blocks:
      source = config.whole_target if name == UNEXPLAINED else name
      inputs[encoder_name(name)] = (modality_value(source, batch, config),)
    for key in targets_of(config):
      inputs[decoder_name(key)] = (decode_input(key, zeros, config),)
    inputs[encoder_name(EMBED)] = (modality_value(config.embed_input, batch, config),)
    return common.init_modules(rng, nets, inputs)

  def predict(params, model_state, batch):
    posterior, _ = _apply(nets, encoder_name(EMBED), params, model_state,
                          modality_value(config.embed_input, batch, config), train=False)
    z = elbo.split_latent(posterior.mean, blocks)
    out = decode_blocks(config, params, model_state, z, nets=nets)
    result = {"latent_mean": posterior.mean}
    if "pose3d" in out:
      inv = config.invariances
      result["pose3d"] = common.pose_from_prediction(out["pose3d"], batch,
                                                     root_joint=config.data.root_joint,
                                                     scale=inv.scale, pose_unit=config.pose_unit)
    if "canonical_pose" in out:
      result["canonical_pose"] = out["canonical_pose"]
    if "viewpoint" in out:
      result["viewpoint"] = nearest_rotation(out["viewpoint"])
    if config.whole_target in IMAGE_KEYS:
      result[config.whole_target] = out[config.whole_target]
    return result

  return method_lib.Method(name="dvae", init=init, phases=make_phases(config, nets),
                           predict=predict, input_spec=_input_spec(config))


def default_config(application: str = "pose") -> ml_collections.ConfigDict:
  """Every field the method reads, at the dissertation's settings (Sec. 4.4.1).

  ``application``: "pose" (Fig. 4.3 right: CPose + viewpoint -> 3D pose from RGB), "synthesis"
  (Fig. 4.2a: 3D pose + content tag image -> RGB) or "synthesis_u" (Fig. 4.2b: 3D pose + z_u).
  """
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict()
  c.method = "dvae"
  c.seed = 0
  c.batch_size = 32  # Sec. 4.4.1
  c.disentangle_steps = 100_000  # T1 (the text gives epochs, not their number)
  c.num_steps = 200_000  # T1 + T2
  c.inner_steps = 1  # Alg. 4.2: factor-pair updates per disentangling update (T2 / T1 ratio)
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 10_000
  c.keep_checkpoints = 2

  if application == "pose":
    c.pose_recon_unit = "normalised"  # pose3d is x here, lambda_x = 1 against the other factors
    c.factor_keys = ("canonical_pose", "viewpoint")
    c.whole_target = "pose3d"
    c.unexplained = False
    c.beta = 1.0  # not given for the disentangling step of pose estimation
    c.embed_beta = 0.01  # beta''' = 0.01 (Sec. 4.4.1)
  elif application in ("synthesis", "synthesis_u"):
    c.factor_keys = ("pose3d",) if application == "synthesis_u" else ("pose3d", "content_image")
    c.whole_target = "image"
    c.unexplained = application == "synthesis_u"
    c.beta = 100.0  # beta = 100 for image synthesis (Sec. 4.4.1)
    # The pose term in mm^2 (lambda_y = 0.01 against beta: BUILD_NOTES, issue 20 finding 7).
    c.pose_recon_unit = "millimetres"
    c.embed_beta = 1.0  # beta' not given for synthesis
  else:
    raise ValueError(f"application must be 'pose', 'synthesis' or 'synthesis_u', got "
                     f"{application!r}.")
  c.factor_dims = (32, 32)  # d = 64 = 32 + 32
  c.embed_input = "image"
  c.lambda_x = 1.0  # Sec. 4.4.1
  c.lambda_y = 0.01
  c.embed_lambda_x = 1.0  # lambda' (taken equal to lambda)
  c.embed_lambda_y = 0.01
  c.pose_unit = 0.035
  c.invariances = ml_collections.ConfigDict({"translation": True, "scale": True})

  c.model = ml_collections.ConfigDict()
  c.model.resnet_depth = 18
  c.model.resnet_width = 1.0
  c.model.resnet_stage_sizes = ()
  c.model.mlp_hidden = (512,) * 5  # six fully connected layers of 512 (with the output layer)
  c.model.deconv_channels = (128, 64, 32, 16, 8)  # DCGAN (Spurr supp. Table 4 sizes)
  c.model.deconv_base_size = 4
  c.model.deconv_base_channels = 256

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4  # Sec. 4.4.1
  c.optimizer.warmup_steps = 0
  c.optimizer.decay = "constant"
  c.optimizer.grad_clip = 0.0
  c.optimizer.lr_drop_steps = ()
  c.optimizer.lr_drop_factor = 0.1

  c.data = pipeline.default_data_config()
  c.data.image_size = 256
  c.data.root_joint = skeleton.WRIST
  return c
