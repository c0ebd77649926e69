"""Direct regression RGB -> 3D: the deterministic baseline next to the latent-space methods.

A ResNet encodes the crop, the pooled features (and Spurr et al.'s handedness flag "H") go through
an MLP to 21 x 3 numbers, and the loss is the per-example sum of squared errors on the normalised
pose, the same target and unit as the VAEs' pose reconstruction (Spurr et al. CVPR 2018 Sec. 4.5,
``handjax.methods.common.pose_target``):

  L = (1 / B) sum_b || y_b - f(x_b) ||^2,  y = (P - P_root) / s,

s the ground-truth middle-finger MCP->PIP bone (scale invariance) or ``pose_unit`` metres. With
``pose_loss = "euclidean"`` the per-example term is instead the sum over joints of the Euclidean
distance, sum_j || y_bj - f(x_b)_j ||: the end-point error itself, in normalised units. Its
minimiser is a per-joint geometric median rather than the mean, which is what a mean-EPE metric
rewards, and large errors pull less (the L1-over-L2 choice of integral regression, Sun et al.
ECCV 2018 Sec. 3.2). This is
the cross-modal VAE's RGB->3D pair with the posterior collapsed to its mean (beta = 0, no sampling),
i.e. what every latent-space paper compares against ("direct regression", Spurr et al. Table 1;
Yang et al. ICCV 2019 S1 without a variational bottleneck), and the instrument the diagnostics
suite uses to tell data and capacity limits apart from objective ones.

With ``model.keypoints`` the ResNet gains the stride-4 keypoint read-out of
``handjax.models.keypoints`` (integral regression, Sun et al. ECCV 2018): the head also sees the
soft-argmax 2D keypoints, trained by ``keypoint_weight`` x the squared 2D error in [-1, 1] crop
units and ``heatmap_weight`` x a heat-map cross-entropy (``keypoint_terms``). A diagnostic of what
2D supervision buys at CPU scale (RESULTS.md), not a paper's method.

``predict`` returns the root-relative pose in metres (and, with ``model.keypoints``, the read-out
``uv`` in crop pixels), multiplied by the ground-truth scale as the
RHD/STB protocol allows (``fallback_scale`` metres for a photo), like the VAEs' predict.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from handjax.hand import skeleton
from handjax.methods import common
from handjax.losses import heatmap
from handjax.losses import pose as pose_losses
from handjax.models.keypoints import KeypointResNet, crop_to_heatmap_uv
from handjax.models.mlp import MLP
from handjax.models.resnet import ResNet
from handjax.train import config_checks
from handjax.train import method as method_lib

NUM_JOINTS = skeleton.NUM_JOINTS
NETWORK = "regressor"


class PoseRegressor(nn.Module):
  """ResNet features -> [features, extra] -> MLP -> (B, 21, 3).

  With ``keypoints`` the backbone is a `KeypointResNet`: the head also sees the soft-argmax 2D
  keypoints (normalised to [-1, 1]), and the network returns them for the 2D loss.

  ``head_features`` is what the head reads of the backbone: ``"pooled"``, the global average of the
  conv5_x map (He et al. CVPR 2016, the papers' encoders), or ``"flattened"``, that map flattened
  (h x w x C numbers: at 64 px a 2 x 2 map, so 4 x the pooled width), which keeps where in the crop
  each feature fired. Flattening fixes the input size the head was built for.

  Attributes:
    depth: ResNet depth (18 or 34).
    width: ResNet channel multiplier.
    hidden: widths of the hidden ReLU layers of the head (() = one linear layer).
    stage_sizes: optional blocks per stage (see `ResNet`).
    keypoints: add the 2D keypoint read-out.
  """

  depth: int = 18
  width: float = 1.0
  hidden: Sequence[int] = ()
  stage_sizes: tuple[int, int, int, int] | None = None
  keypoints: bool = False
  head_features: str = "pooled"

  @nn.compact
  def __call__(self, image: jax.Array, train: bool, extra: jax.Array | None = None
               ) -> tuple[jax.Array, tuple[jax.Array, jax.Array] | None]:
    """image (B, H, W, 3), extra optional (B, E) -> normalised pose (B, 21, 3) and, with
    ``keypoints``, (uv (B, 21, 2) in [-1, 1], heat-map logits (B, H/4, W/4, 21)), else None."""
    if image.ndim != 4 or image.shape[-1] != 3:
      raise ValueError(f"PoseRegressor expects RGB images (B, H, W, 3), got {image.shape}.")
    keypoints = None
    if self.keypoints:
      h, uv, logits = KeypointResNet(NUM_JOINTS, self.depth, self.width, self.stage_sizes,
                                     name="backbone")(image, train)
      keypoints = (uv, logits)
      h = jnp.concatenate([h, jnp.reshape(uv, (image.shape[0], -1))], axis=-1)
    else:
      h, maps = ResNet(self.depth, self.width, stage_sizes=self.stage_sizes, name="backbone")(
          image, train, return_stages=True)
      if self.head_features == "flattened":
        h = jnp.reshape(maps[-1], (image.shape[0], -1))
    if extra is not None:
      h = jnp.concatenate([h, extra.astype(h.dtype)], axis=-1)
    out = MLP(tuple(self.hidden) + (NUM_JOINTS * 3,), name="head")(h)
    return jnp.reshape(out, (image.shape[0], NUM_JOINTS, 3)), keypoints


HEAD_FEATURES = ("pooled", "flattened")


def build_network(config: ml_collections.ConfigDict) -> PoseRegressor:
  m = config.model
  sizes = tuple(m.get("resnet_stage_sizes", ()) or ()) or None
  features = m.get("head_features", "pooled")
  if features not in HEAD_FEATURES:
    raise config_checks.ConfigError("model.head_features", features,
                                    f"one of {', '.join(HEAD_FEATURES)}")
  keypoints = m.get("keypoints", False)
  if keypoints and features != "pooled":
    raise config_checks.ConfigError("model.head_features", features,
                                    "'pooled' with model.keypoints (the read-out's head is pooled)")
  return PoseRegressor(depth=m.resnet_depth, width=m.resnet_width, hidden=tuple(m.head_hidden),
                       stage_sizes=sizes, keypoints=keypoints, head_features=features)


def pose_target(batch: common.Batch, config: ml_collections.ConfigDict) -> jax.Array:
  inv = config.invariances
  return common.pose_target(batch, root_joint=config.data.root_joint, translation=inv.translation,
                            scale=inv.scale, pose_unit=config.pose_unit)


def _extra(batch: common.Batch, config: ml_collections.ConfigDict) -> jax.Array | None:
  return common.hand_side_one_hot(batch) if config.invariances.handedness else None


def keypoint_terms(uv: jax.Array, logits: jax.Array, batch: common.Batch,
                   config: ml_collections.ConfigDict) -> dict[str, jax.Array]:
  """The 2D terms, means over the examples with 2D labels:

  ``keypoints2d``: sum_j ||uv_j - uv*_j||^2, both in [-1, 1] of the crop (``common.normalized_uv``),
  the coordinate loss of integral regression (Sun et al. ECCV 2018);
  ``heatmap_ce``: `losses.heatmap.heatmap_cross_entropy` of the logits against Gaussians of
  ``config.heatmap_sigma`` heat-map pixels at the labels.
  """
  present = common.has(batch, "uv")
  weight = present.astype(jnp.float32)
  size = config.data.image_size
  target = jnp.where(present[:, None, None], common.normalized_uv(batch["uv"], size), uv)
  label_map = crop_to_heatmap_uv(jnp.asarray(batch["uv"], jnp.float32), logits.shape[1:3],
                                 (size, size))
  per_example = {
      "keypoints2d": common.sum_of_squares(uv, target),
      "heatmap_ce": heatmap.heatmap_cross_entropy(logits, label_map, config.heatmap_sigma),
  }
  return {k: jnp.sum(weight * v) / jnp.maximum(jnp.sum(weight), 1.0)
          for k, v in per_example.items()}


POSE_LOSSES = ("squared", "euclidean")


def pose_error(pred: jax.Array, target: jax.Array, kind: str) -> jax.Array:
  """Per-example 3D term of (B, 21, 3) poses: ``squared``, sum_j ||e_j||^2 (the Gaussian NLL of
  the VAEs); ``euclidean``, sum_j ||e_j|| (the end-point error; zero gradient at e_j = 0 rather
  than NaN, `losses.pose.pose_epe`)."""
  if kind == "squared":
    return common.sum_of_squares(pred, target)
  if kind == "euclidean":
    return pose_losses.pose_epe(pred, target)
  raise ValueError(f"pose_error: kind must be one of {POSE_LOSSES}, got {kind!r}.")


def make_loss(network: PoseRegressor, config: ml_collections.ConfigDict) -> method_lib.LossFn:
  """Mean over the labelled examples of the per-example `pose_error` (terms: ``recon/pose3d``).

  Examples without a 3D pose (``has_pose3d`` False, or no scale under scale invariance) are
  masked out, so the method runs on semi-supervised batches too.
  """
  kind = config.get("pose_loss", "squared")
  if kind not in POSE_LOSSES:
    raise config_checks.ConfigError("pose_loss", kind, f"one of {', '.join(POSE_LOSSES)}")

  def loss_fn(params, model_state, batch, rng, step):
    del rng, step
    (pred, keypoints), stats = common.apply_module(network, NETWORK, params, model_state,
                                                   jnp.asarray(batch["image"], jnp.float32),
                                                   train=True, extra=_extra(batch, config))
    present = common.has(batch, "pose3d")
    if config.invariances.scale and "has_scale" in batch:
      present = present & common.has(batch, "scale")
    weight = present.astype(jnp.float32)
    target = jnp.where(present[:, None, None], pose_target(batch, config), 0.0)
    per_example = pose_error(pred, target, kind)
    pose_loss = jnp.sum(weight * per_example) / jnp.maximum(jnp.sum(weight), 1.0)
    terms = {"recon/pose3d": pose_loss}
    loss = config.get("pose_weight", 1.0) * pose_loss
    if keypoints is not None:
      terms.update(keypoint_terms(*keypoints, batch, config))
      loss = (loss + config.keypoint_weight * terms["keypoints2d"]
              + config.heatmap_weight * terms["heatmap_ce"])
    new_state = common.merge_stats(model_state, {NETWORK: stats})
    return loss, ({"loss": loss, **terms}, new_state)

  return loss_fn


@method_lib.register_method("regression")
def regression(config: ml_collections.ConfigDict) -> method_lib.Method:
  """Builds the direct RGB -> 3D regressor of ``config`` (module docstring)."""
  network = build_network(config)
  s = config.data.image_size
  spec = {"image": jax.ShapeDtypeStruct((s, s, 3), jnp.float32)}
  if config.invariances.scale:
    spec["scale"] = jax.ShapeDtypeStruct((), jnp.float32)
  if config.invariances.handedness:
    spec["hand_side"] = jax.ShapeDtypeStruct((), jnp.int32)

  def init(rng, batch):
    image = jnp.asarray(batch["image"], jnp.float32)
    return common.init_modules(rng, {NETWORK: network}, {NETWORK: (image,)},
                               {NETWORK: {"extra": _extra(batch, config)}})

  def predict(params, model_state, batch):
    image = jnp.asarray(batch["image"], jnp.float32)
    (pred, keypoints), _ = common.apply_module(network, NETWORK, params, model_state, image,
                                               train=False, extra=_extra(batch, config))
    pose = common.pose_from_prediction(pred, batch, root_joint=config.data.root_joint,
                                       scale=config.invariances.scale, pose_unit=config.pose_unit,
                                       fallback_scale=config.fallback_scale)
    if keypoints is None:
      return {"pose3d": pose}
    half = 0.5 * config.data.image_size
    return {"pose3d": pose, "uv": keypoints[0] * half + half}  # crop pixels

  optimizer = common.make_optimizer(config.optimizer, config.num_steps)
  return method_lib.Method(name="regression", init=init,
                           phases=method_lib.single_phase(make_loss(network, config), optimizer),
                           predict=predict, input_spec=spec)


def default_config() -> ml_collections.ConfigDict:
  """Every field the method reads; the CPU-scale recipe is ``experiments/configs/regression.py``."""
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top

  c = ml_collections.ConfigDict()
  c.method = "regression"
  c.seed = 0
  c.batch_size = 64
  c.num_steps = 100_000
  c.log_every = 100
  c.checkpoint_every = 5_000
  c.eval_every = 10_000
  c.keep_checkpoints = 2

  c.pose_unit = 0.035  # metres; the pose unit when scale invariance is off
  c.fallback_scale = 0.035  # metres; predict's scale for inputs without batch["scale"] (photos)
  c.invariances = ml_collections.ConfigDict(
      {"translation": True, "scale": True, "handedness": True})

  c.model = ml_collections.ConfigDict()
  c.model.resnet_depth = 18
  c.model.resnet_width = 1.0
  c.model.resnet_stage_sizes = ()
  c.model.head_hidden = ()
  c.model.head_features = "pooled"  # what the head reads: "pooled" conv5_x or "flattened"
  c.model.keypoints = False  # add the 2D keypoint read-out (handjax.models.keypoints)
  c.keypoint_weight = 1.0  # weight of the 2D coordinate term when model.keypoints is set
  c.heatmap_weight = 0.0  # weight of the heat-map cross-entropy when model.keypoints is set
  c.heatmap_sigma = 1.0  # its Gaussian's standard deviation, heat-map pixels
  c.pose_weight = 1.0  # weight of the 3D term (0 with keypoints: a 2D-only diagnostic)
  c.pose_loss = "squared"  # the 3D term: "squared" (sum of squares) or "euclidean" (sum of EPEs)

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.name = "adam"
  c.optimizer.learning_rate = 1e-4
  c.optimizer.warmup_steps = 0
  c.optimizer.decay = "constant"
  c.optimizer.grad_clip = 0.0

  c.data = pipeline.default_data_config()
  c.data.image_size = 256
  c.data.root_joint = skeleton.WRIST
  return c
