"""Fully connected modules: MLP encoders/decoders, the injection decoder, the variational mapper, the
latent discriminator and the joint encoder.

Papers: Spurr et al. CVPR 2018 supp. Table 3 (2D/3D encoders and decoders: 6 Linear(512) layers,
ReLU between them); Yang et al. ICCV 2019 Sec. 3.1-3.2 and 4.2 (pose decoder, joint encoder of
Eq. 2-3); Stergioulas et al. Eq. 18-19 and Fig. 2 (injection decoder, variational mapper), Sec. 3.1.1
(discriminator). Modules with BatchNorm take `train: bool`; statistics live in 'batch_stats'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from handjax.losses.gaussian import Gaussian
from handjax.models.resnet import GaussianHead

Activation = Callable[[jax.Array], jax.Array]


def _batch_norm(name: str) -> nn.BatchNorm:
  return nn.BatchNorm(momentum=0.9, epsilon=1e-5, name=name)


class MLP(nn.Module):
  """Stack of Dense layers, activation between them: y = W_L act(... act(W_1 x + b_1) ...) + b_L.

  Spurr et al. CVPR 2018 supp. Table 3 is `MLP((512,) * 5 + (out,))`: six Linear layers, ReLU after
  all but the last (the table's sixth Linear(512) carries no ReLU; as a decoder its output width is
  the target's, 42 or 63). The ICCV 2019 pose decoder is four fully connected layers of 128 units
  (`MLP((128,) * 3 + (63,))`). With `batch_norm` each hidden layer is act(BN(W x + b)).

  Attributes:
    features: output width of every layer; the last one is the output.
    activation: hidden nonlinearity.
    batch_norm: BatchNorm before each hidden activation.
    activate_final: also apply the activation (and BatchNorm) to the last layer.
  """

  features: Sequence[int]
  activation: Activation = nn.relu
  batch_norm: bool = False
  activate_final: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
    """x: (..., F_in) -> (..., features[-1])."""
    if not self.features:
      raise ValueError("MLP needs at least one layer width in `features`.")
    n = len(self.features)
    for i, width in enumerate(self.features):
      x = nn.Dense(width, name=f"dense_{i}")(x)
      if i < n - 1 or self.activate_final:
        if self.batch_norm:
          x = _batch_norm(f"bn_{i}")(x, use_running_average=not train)
        x = self.activation(x)
    return x


class InjectionDecoder(nn.Module):
  """Injection decoder ID, Stergioulas et al. Eq. 18-19 and Fig. 2a.

    y_1 = relu(BN(W_1 z)),
    y_i = relu(BN(W_i y_{i-1})) + relu(BN(W_i^s z)),   i = 2..K-1  (Eq. 18, z injected),
    y_K = W_K y_{K-1} + b_K                                        (Eq. 19, kept linear).

  Departures, deliberate: Eq. 19 literally ends in relu(BN(.)), but joint coordinates (root-relative,
  camera frame) are negative as often as positive and a ReLU output cannot represent them; the output
  layer is linear here. Eq. 18's i = 1 case ("the left term becomes relu(BN(z))") is garbled in the
  text; here the first layer is a plain relu(BN(W_1 z)) and injection starts at layer 2, the range
  Eq. 18 states. Biases are omitted before BatchNorm (its shift replaces them), as the paper does.

  Attributes:
    hidden: widths of the K-1 hidden layers.
    out_dim: output width (3N for N joints).
  """

  hidden: Sequence[int]
  out_dim: int

  @nn.compact
  def __call__(self, z: jax.Array, train: bool) -> jax.Array:
    """z: (B, D) -> (B, out_dim)."""
    if not self.hidden:
      raise ValueError("InjectionDecoder needs at least one hidden layer.")
    ura = not train
    y = z
    for i, width in enumerate(self.hidden):
      main = nn.Dense(width, use_bias=False, name=f"dense_{i}")(y)
      main = nn.relu(_batch_norm(f"bn_{i}")(main, use_running_average=ura))
      if i == 0:
        y = main
      else:
        inject = nn.Dense(width, use_bias=False, name=f"inject_{i}")(z)
        y = main + nn.relu(_batch_norm(f"inject_bn_{i}")(inject, use_running_average=ura))
    return nn.Dense(self.out_dim, name="out")(y)


class VariationalMapper(nn.Module):
  """Variational alignment component T (Gaussian -> Gaussian), Stergioulas et al. Sec. 3.1.2, Fig. 2b.

    h = relu(BN(W_k ... relu(BN(W_1 [mean_in, logvar_in])))),
    mean_out = W_mu h + b_mu + R_mu mean_in,   logvar_out = W_lv h + b_lv + R_lv logvar_in,

  where R_mu, R_lv are the linear "Res" connections of Fig. 2b. The mapper acts on the distribution
  parameters (the paper: "takes the vector pair (mu, sigma) ... generating a new distribution"); the
  caller samples from the output. Fig. 2b's exact layer sizes are not in the text (they follow
  Theodoridis et al. [36]); the widths are configurable.

  Attributes:
    hidden: hidden widths.
    latent_dim: output latent dimension; None keeps the input's.
  """

  hidden: Sequence[int] = (512, 512)
  latent_dim: int | None = None

  @nn.compact
  def __call__(self, q: Gaussian, train: bool) -> Gaussian:
    """q with (B, D) arrays -> Gaussian with (B, latent_dim or D) arrays."""
    dim = q.mean.shape[-1] if self.latent_dim is None else self.latent_dim
    h = jnp.concatenate([q.mean, q.logvar], axis=-1)
    for i, width in enumerate(self.hidden):
      h = nn.Dense(width, name=f"dense_{i}")(h)
      h = nn.relu(_batch_norm(f"bn_{i}")(h, use_running_average=not train))
    mean = nn.Dense(dim, name="mean")(h) + nn.Dense(dim, use_bias=False, name="res_mean")(q.mean)
    logvar = nn.Dense(dim, name="logvar")(h) + nn.Dense(dim, use_bias=False,
                                                      name="res_logvar")(q.logvar)
    return Gaussian(mean, logvar)


class LatentDiscriminator(nn.Module):
  """Latent-space discriminator Dis, Stergioulas et al. Sec. 3.1.1 (Eq. 1): MLP -> one logit.

  logit = w^T act(... act(W_1 z)) + b; Eq. 1 applies binary cross-entropy to sigmoid(logit) (use a
  logits-based BCE for stability). Leaky ReLU by default, the usual GAN discriminator choice; the
  paper does not give the layer sizes.

  Attributes:
    hidden: hidden widths.
    activation: hidden nonlinearity.
  """

  hidden: Sequence[int] = (256, 256)
  activation: Activation = nn.leaky_relu

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """z: (B, D) -> (B,) logits."""
    logit = MLP(tuple(self.hidden) + (1,), self.activation, name="mlp")(z)
    return logit[..., 0]


class JointEncoder(nn.Module):
  """Joint encoder q(z_joint | x, w), Yang et al. ICCV 2019 Eq. 2-3 and Algorithm 2.

  Each input goes through its own feature encoder; the features are concatenated and a Gaussian head
  predicts the joint posterior: q(z|x, w) = N(mean, exp(logvar)) with (mean, logvar) =
  head([f_x(x), f_w(w)]). Each encoder is a module called as `encoder(input, train=train)` returning
  (B, F_i) features (e.g. `ResNet`, `PointSetFeatures`, `MLP`).

  Attributes:
    encoders: one feature encoder per input.
    head: the Gaussian head on the concatenated features.
  """

  encoders: Sequence[nn.Module]
  head: GaussianHead

  def __call__(self, inputs: Sequence[jax.Array], train: bool) -> Gaussian:
    """inputs: one array per encoder, leading batch axis B -> Gaussian with (B, D) arrays."""
    if len(inputs) != len(self.encoders):
      raise ValueError(f"JointEncoder has {len(self.encoders)} encoders but got {len(inputs)} "
                       "inputs.")
    features = [enc(x, train=train) for enc, x in zip(self.encoders, inputs)]
    return self.head(jnp.concatenate(features, axis=-1))
