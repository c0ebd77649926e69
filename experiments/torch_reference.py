r"""PyTorch twin of the benchmarked handjax networks and losses (benchmarks only; never imported by
the library).

The twin computes the same numbers as the JAX code for the same weights (tests/test_torch_reference.py
loads Flax parameters into it and compares), so `experiments/bench/train_step.py` times the same
work in both frameworks:

  * S4 of Yang et al. ICCV 2019 (RC2CHP, product of experts, Eq. 4-6, Alg. 3;
    `handjax.methods.aligned_latents`): RGB ResNet-18 encoder and ResPEL point-set encoder with
    Gaussian heads, pose MLP / heat-map DCGAN / FoldingNet decoders shared by the three latents
    (image, points, PoE), L_pose + lambda_heat L_heat + lambda_cloud (L_Chamfer + L_EMD) (Eq. 7-11).
  * Spurr et al. CVPR 2018 RGB->3D (Var. 1, `handjax.methods.crossmodal_vae`): ResNet-18 with a
    linear Gaussian head (hand-side one-hot appended to the features), 6-layer MLP pose decoder,
    sum of squared errors + beta KL (Eq. 5).

EMD: a fixed-iteration log-domain Sinkhorn with ott-jax's update order and epsilon schedule
(g then f, eps_t = max(init decay^t, 1) eps, eps = relative_epsilon * mean C), the plan held fixed
(envelope-theorem gradient), exactly as `handjax.losses.pointcloud.earth_movers_distance`.

Images enter as NHWC (as in handjax) and are permuted once to NCHW, PyTorch's native layout.
Every example is assumed fully labelled (the JAX methods' masks are then all True and change
nothing). BatchNorm modules called several times in one step (the shared heat-map decoder) update
their running statistics at each call in PyTorch, at the last call only in handjax; the loss and
gradients do not depend on this.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from handjax.models.decoders import folding_grid

Tensor = torch.Tensor
NUM_JOINTS = 21
_EPSILON_FLOOR = 1e-30


# ------------------------------------------------------------------------------------------------
# Flax -> PyTorch parameter copies.


def _t(x: Any) -> Tensor:
  return torch.from_numpy(np.array(x, dtype=np.float32))


def _load_dense(layer: nn.Linear, p: Mapping[str, Any]) -> None:
  layer.weight.data.copy_(_t(p["kernel"]).T)
  if layer.bias is not None:
    layer.bias.data.copy_(_t(p["bias"]))


def _load_conv(layer: nn.Conv2d, p: Mapping[str, Any]) -> None:
  layer.weight.data.copy_(_t(p["kernel"]).permute(3, 2, 0, 1))  # HWIO -> OIHW
  if layer.bias is not None:
    layer.bias.data.copy_(_t(p["bias"]))


def _load_conv_transpose(layer: nn.ConvTranspose2d, p: Mapping[str, Any]) -> None:
  # Flax's ConvTranspose (transpose_kernel=False) convolves the dilated input with the kernel as
  # stored; torch's is the adjoint of a convolution, i.e. uses the spatially flipped kernel.
  kernel = _t(p["kernel"]).flip(0, 1)  # (kh, kw, in, out)
  layer.weight.data.copy_(kernel.permute(2, 3, 0, 1))  # -> (in, out, kh, kw)
  layer.bias.data.copy_(_t(p["bias"]))


def _load_bn(layer: nn.BatchNorm2d | nn.BatchNorm1d, p: Mapping[str, Any],
             s: Mapping[str, Any] | None) -> None:
  layer.weight.data.copy_(_t(p["scale"]))
  layer.bias.data.copy_(_t(p["bias"]))
  if s is not None:
    layer.running_mean.copy_(_t(s["mean"]))
    layer.running_var.copy_(_t(s["var"]))


def _bn2d(c: int) -> nn.BatchNorm2d:
  return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)


# ------------------------------------------------------------------------------------------------
# Networks.


class BasicBlock(nn.Module):
  """relu(x' + bn(conv3(relu(bn(conv3(x)))))), x' = x or bn(conv1x1(x)) (He et al. CVPR 2016)."""

  def __init__(self, cin: int, cout: int, stride: int, project: bool):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = _bn2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = _bn2d(cout)
    self.proj = None
    if project:
      self.proj = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _bn2d(cout))

  def forward(self, x: Tensor) -> Tensor:
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.proj is None else self.proj(x)))

  def load_flax(self, p: Mapping[str, Any], s: Mapping[str, Any] | None) -> None:
    s = s or {}
    _load_conv(self.conv1, p["conv1"])
    _load_conv(self.conv2, p["conv2"])
    _load_bn(self.bn1, p["bn1_main"], s.get("bn1_main"))
    _load_bn(self.bn2, p["bn2_main"], s.get("bn2_main"))
    if self.proj is not None:
      _load_conv(self.proj[0], p["proj_conv"])
      _load_bn(self.proj[1], p["proj_bn_main"], s.get("proj_bn_main"))


class ResNet(nn.Module):
  """ResNet-18 features (B, H, W, C) NHWC -> (B, 512 width), as `handjax.models.ResNet`."""

  def __init__(self, width: float = 1.0, in_channels: int = 3,
               stage_sizes: Sequence[int] = (2, 2, 2, 2)):
    super().__init__()
    widths = [max(1, int(round(c * width))) for c in (64, 128, 256, 512)]
    self.stem_conv = nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False)
    self.stem_bn = _bn2d(widths[0])
    blocks, cin = [], widths[0]
    self.layout = []
    for i, n in enumerate(stage_sizes):
      for j in range(n):
        down = i > 0 and j == 0
        blocks.append(BasicBlock(cin, widths[i], 2 if down else 1, down))
        self.layout.append((i, j))
        cin = widths[i]
    self.blocks = nn.ModuleList(blocks)
    self.num_features = widths[-1]

  def forward(self, image: Tensor) -> Tensor:
    x = image.permute(0, 3, 1, 2)  # NHWC -> NCHW
    x = F.relu(self.stem_bn(self.stem_conv(x)))
    x = F.max_pool2d(x, 3, 2, 1)
    for block in self.blocks:
      x = block(x)
    return x.mean(dim=(2, 3))

  def load_flax(self, p: Mapping[str, Any], s: Mapping[str, Any] | None) -> None:
    s = s or {}
    _load_conv(self.stem_conv, p["stem_conv"])
    _load_bn(self.stem_bn, p["stem_bn_main"], s.get("stem_bn_main"))
    for block, (i, j) in zip(self.blocks, self.layout):
      name = f"stages_{i}_{j}"
      block.load_flax(p[name], s.get(name))


class GaussianHead(nn.Module):
  """h = relu(Dense(...)([x, extra])), mean = Dense(h), logvar = L tanh(Dense(h) / L)."""

  def __init__(self, cin: int, latent_dim: int, hidden: Sequence[int] = (),
               max_abs_logvar: float | None = 20.0):
    super().__init__()
    layers = []
    for w in hidden:
      layers.append(nn.Linear(cin, w))
      cin = w
    self.hidden = nn.ModuleList(layers)
    self.mean = nn.Linear(cin, latent_dim)
    self.logvar = nn.Linear(cin, latent_dim)
    self.limit = max_abs_logvar

  def forward(self, x: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
    if extra is not None:
      x = torch.cat([x, extra.to(x.dtype)], dim=-1)
    for layer in self.hidden:
      x = F.relu(layer(x))
    logvar = self.logvar(x)
    if self.limit is not None:
      logvar = self.limit * torch.tanh(logvar / self.limit)
    return self.mean(x), logvar

  def load_flax(self, p: Mapping[str, Any]) -> None:
    for i, layer in enumerate(self.hidden):
      _load_dense(layer, p[f"hidden_{i}"])
    _load_dense(self.mean, p["mean"])
    _load_dense(self.logvar, p["logvar"])


class ResNetEncoder(nn.Module):
  """q(z|x): ResNet -> GaussianHead (`handjax.models.ResNetEncoder`)."""

  def __init__(self, latent_dim: int, width: float = 1.0, head_hidden: Sequence[int] = (),
               extra_dim: int = 0, stage_sizes: Sequence[int] = (2, 2, 2, 2)):
    super().__init__()
    self.backbone = ResNet(width, 3, stage_sizes)
    self.head = GaussianHead(self.backbone.num_features + extra_dim, latent_dim, head_hidden)

  def forward(self, image: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
    return self.head(self.backbone(image), extra)

  def load_flax(self, p: Mapping[str, Any], s: Mapping[str, Any] | None) -> None:
    self.backbone.load_flax(p["backbone"], (s or {}).get("backbone"))
    self.head.load_flax(p["head"])


class PermutationEquivariantLayer(nn.Module):
  """y_n = Lambda x_n + b - Gamma max_m x_m (Zaheer et al. 2017; Li & Lee CVPR 2019)."""

  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.point = nn.Linear(cin, cout)
    self.pool = nn.Linear(cin, cout, bias=False)

  def forward(self, x: Tensor) -> Tensor:
    return self.point(x) - self.pool(x.amax(dim=-2, keepdim=True))

  def load_flax(self, p: Mapping[str, Any]) -> None:
    _load_dense(self.point, p["point"])
    _load_dense(self.pool, p["pool"])


class PointSetEncoder(nn.Module):
  """ResPEL features -> GaussianHead (`handjax.models.PointSetEncoder`, kind="respel")."""

  def __init__(self, latent_dim: int, width: int = 512, num_blocks: int = 3,
               head_hidden: Sequence[int] = ()):
    super().__init__()
    self.pel_in = PermutationEquivariantLayer(3, width)
    self.blocks = nn.ModuleList(
        nn.ModuleList([PermutationEquivariantLayer(width, width) for _ in range(2)])
        for _ in range(num_blocks))
    self.head = GaussianHead(width, latent_dim, head_hidden)

  def forward(self, points: Tensor) -> tuple[Tensor, Tensor]:
    x = self.pel_in(points)
    for pel0, pel1 in self.blocks:
      x = x + pel1(F.relu(pel0(F.relu(x))))
    return self.head(F.relu(x).amax(dim=-2))

  def load_flax(self, p: Mapping[str, Any]) -> None:
    f = p["features"]
    self.pel_in.load_flax(f["pel_in"])
    for i, (pel0, pel1) in enumerate(self.blocks):
      pel0.load_flax(f[f"block_{i}_pel_0"])
      pel1.load_flax(f[f"block_{i}_pel_1"])
    self.head.load_flax(p["head"])


class MLP(nn.Module):
  """Dense layers with ReLU between them (`handjax.models.MLP`), optionally after the last too."""

  def __init__(self, cin: int, features: Sequence[int], activate_final: bool = False):
    super().__init__()
    layers = []
    for w in features:
      layers.append(nn.Linear(cin, w))
      cin = w
    self.layers = nn.ModuleList(layers)
    self.activate_final = activate_final

  def forward(self, x: Tensor) -> Tensor:
    n = len(self.layers)
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i < n - 1 or self.activate_final:
        x = F.relu(x)
    return x

  def load_flax(self, p: Mapping[str, Any]) -> None:
    for i, layer in enumerate(self.layers):
      _load_dense(layer, p[f"dense_{i}"])


class MLPDecoder(nn.Module):
  """p(x|z): MLP with a linear last layer, reshaped (`handjax.methods.common.MLPDecoder`)."""

  def __init__(self, latent_dim: int, out_shape: Sequence[int], hidden: Sequence[int]):
    super().__init__()
    self.out_shape = tuple(out_shape)
    self.mlp = MLP(latent_dim, tuple(hidden) + (int(np.prod(out_shape)),))

  def forward(self, z: Tensor) -> Tensor:
    return self.mlp(z).reshape(z.shape[:-1] + self.out_shape)

  def load_flax(self, p: Mapping[str, Any]) -> None:
    self.mlp.load_flax(p["mlp"])


class DeconvDecoder(nn.Module):
  """DCGAN decoder (Spurr et al. CVPR 2018 supp. Table 4): z -> (B, S, S, C) NHWC."""

  def __init__(self, latent_dim: int, output_size: int, out_channels: int,
               channels: Sequence[int] = (128, 64, 32, 16, 8), base_size: int = 4,
               base_channels: int = 256):
    super().__init__()
    k = int(round(math.log2(output_size / base_size)))
    self.base = (base_channels, base_size, base_size)
    self.dense = nn.Linear(latent_dim, base_size**2 * base_channels)
    self.bn_dense = nn.BatchNorm1d(base_size**2 * base_channels, eps=1e-5, momentum=0.1)
    widths = [base_channels] + list(channels[:k - 1])
    self.deconvs = nn.ModuleList(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1)
                                 for i in range(k - 1))
    self.bns = nn.ModuleList(_bn2d(w) for w in widths[1:])
    self.out = nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1)

  def forward(self, z: Tensor) -> Tensor:
    h = F.relu(self.bn_dense(self.dense(z)))
    c, s, _ = self.base
    # Flax reshapes the dense output to (s, s, c) NHWC; reorder it to NCHW.
    h = h.reshape(z.shape[0], s, s, c).permute(0, 3, 1, 2)
    for deconv, bn in zip(self.deconvs, self.bns):
      h = F.relu(bn(deconv(h)))
    return self.out(h).permute(0, 2, 3, 1)

  def load_flax(self, p: Mapping[str, Any], s: Mapping[str, Any] | None) -> None:
    s = s or {}
    _load_dense(self.dense, p["dense"])
    _load_bn(self.bn_dense, p["bn_dense"], s.get("bn_dense"))
    for i, (deconv, bn) in enumerate(zip(self.deconvs, self.bns)):
      _load_conv_transpose(deconv, p[f"deconv_{i}"])
      _load_bn(bn, p[f"bn_{i}"], s.get(f"bn_{i}"))
    _load_conv_transpose(self.out, p["out"])


class FoldingNet(nn.Module):
  """FoldingNet decoder (Yang et al. CVPR 2018): fold2(z, fold1(z, grid)), N points."""

  def __init__(self, latent_dim: int, num_points: int = 256, hidden: int = 512):
    super().__init__()
    self.register_buffer("grid", torch.from_numpy(folding_grid(num_points)))
    self.fold1 = MLP(latent_dim + 2, (hidden, hidden, 3))
    self.fold2 = MLP(latent_dim + 3, (hidden, hidden, 3))

  def forward(self, z: Tensor) -> Tensor:
    n = self.grid.shape[0]
    code = z[:, None, :].expand(-1, n, -1)
    grid = self.grid[None].expand(z.shape[0], -1, -1)
    fold1 = self.fold1(torch.cat([code, grid], dim=-1))
    return self.fold2(torch.cat([code, fold1], dim=-1))

  def load_flax(self, p: Mapping[str, Any]) -> None:
    for name, mlp in (("fold1", self.fold1), ("fold2", self.fold2)):
      mlp.load_flax({f"dense_{i}": p[f"{name}_{i}"] for i in range(3)})


# ------------------------------------------------------------------------------------------------
# Losses (per example, shape (B,)).


def pairwise_distances(x: Tensor, y: Tensor) -> Tensor:
  """(B, N, M) ||x_i - y_j|| with zero gradient at coincident points (as handjax)."""
  sq = (x[:, :, None, :] - y[:, None, :, :]).square().sum(-1)
  positive = sq > 0
  return torch.where(positive, torch.sqrt(torch.where(positive, sq, torch.ones_like(sq))),
                     torch.zeros_like(sq))


def chamfer_distance(x: Tensor, y: Tensor) -> Tensor:
  """Yang et al. ICCV 2019 Eq. 8 (plain distances, means over points)."""
  d = pairwise_distances(x, y)
  return d.amin(dim=-1).mean(-1) + d.amin(dim=-2).mean(-1)


@torch.no_grad()
def sinkhorn_plan(cost: Tensor, relative_epsilon: float = 1e-2,
                  relative_epsilon_start: float = 1.0, epsilon_decay: float = 0.9,
                  num_iterations: int = 100) -> Tensor:
  """(B, N, N) entropic plan between uniform clouds: ott-jax's log-domain Sinkhorn, fixed length.

  eps = max(relative_epsilon mean_ij C_ij, 1e-30); iteration t uses
  eps_t = max(init decay^t, 1) eps with init = max(start / relative_epsilon, 1), updates
  g_j = eps_t log(1/N) - eps_t LSE_i((f_i - C_ij) / eps_t), then f likewise; the plan is
  exp((f_i + g_j - C_ij) / eps).
  """
  b, n, m = cost.shape
  eps = torch.clamp(relative_epsilon * cost.mean(dim=(1, 2)), min=_EPSILON_FLOOR)[:, None, None]
  init = max(relative_epsilon_start / relative_epsilon, 1.0) if epsilon_decay < 1 else 1.0
  f = cost.new_zeros(b, n, 1)
  g = cost.new_zeros(b, 1, m)
  log_a, log_b = -math.log(n), -math.log(m)
  for t in range(num_iterations):
    e = max(init * epsilon_decay**t, 1.0) * eps
    g = e * log_b - e * torch.logsumexp((f - cost) / e, dim=1, keepdim=True)
    f = e * log_a - e * torch.logsumexp((g - cost) / e, dim=2, keepdim=True)
  return torch.exp((f + g - cost) / eps)


def earth_movers_distance(x: Tensor, y: Tensor, **sinkhorn: Any) -> Tensor:
  """Eq. 9 by entropic OT: <P, C> with the Sinkhorn plan P held fixed (envelope gradient)."""
  cost = pairwise_distances(x, y)
  plan = sinkhorn_plan(cost.detach(), **sinkhorn)
  return (plan * cost).sum(dim=(1, 2))


def sum_of_squares(pred: Tensor, target: Tensor) -> Tensor:
  """Per-example sum of squared errors (pose_l2 of Eq. 10, heatmap_l2 of Eq. 7, Spurr's MSE)."""
  return (pred - target).square().flatten(1).sum(-1)


def kl_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
  """KL(N(mean, exp(logvar)) || N(0, I)) summed over the latent."""
  return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).sum(-1)


def product_of_experts(experts: Sequence[tuple[Tensor, Tensor]],
                       prior_expert: bool = True) -> tuple[Tensor, Tensor]:
  """Eq. 5-6: precision-weighted product (all experts present), in log-precision space."""
  means = torch.stack([m for m, _ in experts], dim=-2)
  log_prec = torch.stack([-lv for _, lv in experts], dim=-2)
  if prior_expert:
    zeros = torch.zeros_like(means[..., :1, :])
    means, log_prec = torch.cat([means, zeros], -2), torch.cat([log_prec, zeros], -2)
  total = torch.logsumexp(log_prec, dim=-2, keepdim=True)
  mean = (torch.exp(log_prec - total) * means).sum(-2)
  return mean, -total[..., 0, :]


# ------------------------------------------------------------------------------------------------
# The two benchmarked models and their objectives.


def _sample(mean: Tensor, logvar: Tensor, noise: Tensor | None) -> Tensor:
  noise = torch.randn_like(mean) if noise is None else noise
  return mean + torch.exp(0.5 * logvar) * noise


class S4Model(nn.Module):
  """Yang et al. ICCV 2019 S4 (RC2CHP, PoE): `aligned_latents` with its default config's networks.

  loss = sum_{q in (image, points, PoE)} [L_pose + lambda_heat L_heat + lambda_cloud (Chamfer + EMD)]
         + beta (KL(q_image) + KL(q_points))     (Eq. 4 with beta_joint = 0, Eq. 7-11).
  """

  def __init__(self, latent_dim: int = 64, heatmap_size: int = 64, num_points: int = 256,
               resnet_width: float = 1.0, stage_sizes: Sequence[int] = (2, 2, 2, 2),
               head_hidden: Sequence[int] = (512,), pointset_width: int = 512,
               pointset_blocks: int = 3, pose_hidden: Sequence[int] = (128, 128, 128),
               deconv_channels: Sequence[int] = (128, 64, 32, 16, 8), deconv_base_size: int = 4,
               deconv_base_channels: int = 256, folding_hidden: int = 512,
               lambda_heat: float = 0.01, lambda_cloud: float = 1.0, cloud_unit: float = 0.035,
               root_joint: int = 9, emd: Mapping[str, Any] | None = None):
    super().__init__()
    self.encoder_image = ResNetEncoder(latent_dim, resnet_width, head_hidden,
                                       stage_sizes=stage_sizes)
    self.encoder_points = PointSetEncoder(latent_dim, pointset_width, pointset_blocks, head_hidden)
    self.decoder_pose3d = MLPDecoder(latent_dim, (NUM_JOINTS, 3), pose_hidden)
    self.decoder_heatmaps = DeconvDecoder(latent_dim, heatmap_size, NUM_JOINTS, deconv_channels,
                                          deconv_base_size, deconv_base_channels)
    self.decoder_points = FoldingNet(latent_dim, num_points, folding_hidden)
    self.lambda_heat, self.lambda_cloud = lambda_heat, lambda_cloud
    self.cloud_unit, self.root_joint = cloud_unit, root_joint
    self.emd = dict(emd or {})

  @classmethod
  def from_config(cls, config: Any) -> "S4Model":
    """Twin of `aligned_latents.build_networks(config)` for an S4 config (ml_collections)."""
    m = config.model
    return cls(config.latent_dim, config.data.heatmap_size, config.data.num_points,
               m.resnet_width, tuple(m.resnet_stage_sizes) or (2, 2, 2, 2), tuple(m.head_hidden),
               m.pointset_width, m.pointset_blocks, tuple(m.pose_hidden), tuple(m.deconv_channels),
               m.deconv_base_size, m.deconv_base_channels, m.folding_hidden,
               float(config.lambda_heat), float(config.lambda_cloud), float(config.cloud_unit),
               int(config.data.root_joint), dict(config.emd))

  def recon(self, z: Tensor, targets: Mapping[str, Tensor]) -> Tensor:
    """(B,) L_pose + lambda_heat L_heat + lambda_cloud (Chamfer + EMD) of decode(z)."""
    points = self.decoder_points(z)
    cloud = chamfer_distance(points, targets["points"]) + earth_movers_distance(
        points, targets["points"], **self.emd)
    return (sum_of_squares(self.decoder_pose3d(z), targets["pose3d"])
            + self.lambda_heat * sum_of_squares(self.decoder_heatmaps(z), targets["heatmaps"])
            + self.lambda_cloud * cloud)

  def targets(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
    pose = batch["pose3d"] - batch["pose3d"][:, self.root_joint:self.root_joint + 1]
    scale = torch.where(batch["scale"] > 0, batch["scale"], torch.ones_like(batch["scale"]))
    pts = batch["points"]
    return {"pose3d": pose / scale[:, None, None], "heatmaps": batch["heatmaps"],
            "points": (pts - pts.mean(dim=-2, keepdim=True)) / self.cloud_unit}

  def forward(self, batch: Mapping[str, Tensor], beta: float,
              noise: Sequence[Tensor] | None = None) -> Tensor:
    """Negative Eq. 4; `noise` = the three N(0, I) draws (image, points, joint) or None."""
    noise = noise or (None, None, None)
    targets = self.targets(batch)
    cloud = targets["points"]
    q_image = self.encoder_image(batch["image"])
    q_points = self.encoder_points(cloud)
    joint = product_of_experts([q_image, q_points])
    loss = torch.zeros(())
    for q, eps in zip((q_image, q_points), noise[:2]):
      loss = loss + self.recon(_sample(*q, eps), targets).mean()
      loss = loss + beta * kl_standard_normal(*q).mean()
    return loss + self.recon(_sample(*joint, noise[2]), targets).mean()

  def predict(self, batch: Mapping[str, Tensor]) -> Tensor:
    """RGB only: pose decoded from the image posterior's mean (root-relative, scale units)."""
    return self.decoder_pose3d(self.encoder_image(batch["image"])[0])

  def load_flax(self, params: Mapping[str, Any], model_state: Mapping[str, Any]) -> None:
    p, s = params["params"], model_state.get("batch_stats", {})
    self.encoder_image.load_flax(p["encoder_image"], s.get("encoder_image"))
    self.encoder_points.load_flax(p["encoder_points"])
    self.decoder_pose3d.load_flax(p["decoder_pose3d"])
    self.decoder_heatmaps.load_flax(p["decoder_heatmaps"], s.get("decoder_heatmaps"))
    self.decoder_points.load_flax(p["decoder_points"])


class SpurrModel(nn.Module):
  """Spurr et al. CVPR 2018 RGB->3D (Var. 1): loss = ||y - dec(z)||^2 + beta KL, z ~ q(z|x, H)."""

  def __init__(self, latent_dim: int = 64, resnet_width: float = 1.0,
               stage_sizes: Sequence[int] = (2, 2, 2, 2), mlp_hidden: Sequence[int] = (512,) * 5,
               root_joint: int = 0, handedness: bool = True):
    super().__init__()
    self.handedness = handedness
    self.encoder_image = ResNetEncoder(latent_dim, resnet_width, (), 2 if handedness else 0,
                                       stage_sizes)
    self.decoder_pose3d = MLPDecoder(latent_dim, (NUM_JOINTS, 3), mlp_hidden)
    self.root_joint = root_joint

  @classmethod
  def from_config(cls, config: Any) -> "SpurrModel":
    """Twin of `crossmodal_vae` Var. 1 (image -> pose3d), translation + scale invariant."""
    m = config.model
    return cls(config.latent_dim, m.resnet_width, tuple(m.resnet_stage_sizes) or (2, 2, 2, 2),
               tuple(m.mlp_hidden), int(config.data.root_joint),
               bool(config.invariances.handedness))

  def encode(self, batch: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    extra = F.one_hot(batch["hand_side"].long(), 2).float() if self.handedness else None
    return self.encoder_image(batch["image"], extra)

  def forward(self, batch: Mapping[str, Tensor], beta: float = 1.0,
              noise: Tensor | None = None) -> Tensor:
    pose = batch["pose3d"] - batch["pose3d"][:, self.root_joint:self.root_joint + 1]
    scale = torch.where(batch["scale"] > 0, batch["scale"], torch.ones_like(batch["scale"]))
    q = self.encode(batch)
    pred = self.decoder_pose3d(_sample(*q, noise))
    return (sum_of_squares(pred, pose / scale[:, None, None]).mean()
            + beta * kl_standard_normal(*q).mean())

  def predict(self, batch: Mapping[str, Tensor]) -> Tensor:
    """Root-relative pose in scale units from the posterior mean (no sampling)."""
    return self.decoder_pose3d(self.encode(batch)[0])

  def load_flax(self, params: Mapping[str, Any], model_state: Mapping[str, Any]) -> None:
    p, s = params["params"], model_state.get("batch_stats", {})
    self.encoder_image.load_flax(p["encoder_image"], s.get("encoder_image"))
    self.decoder_pose3d.load_flax(p["decoder_pose3d"])


def to_torch(batch: Mapping[str, Any]) -> dict[str, Tensor]:
  """numpy batch -> torch tensors (float32, ints kept)."""
  return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in batch.items()}


def make_train_step(model: nn.Module, learning_rate: float = 1e-4,
                    **loss_kwargs: Any) -> Callable[[Mapping[str, Tensor]], Tensor]:
  """step(batch) -> loss: forward, backward and one Adam update (train-mode BatchNorm)."""
  model.train()
  opt = torch.optim.Adam(model.parameters(), lr=learning_rate)

  def step(batch: Mapping[str, Tensor]) -> Tensor:
    opt.zero_grad(set_to_none=True)
    loss = model(batch, **loss_kwargs)
    loss.backward()
    opt.step()
    return loss.detach()

  return step
