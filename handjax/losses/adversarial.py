"""Adversarial losses for latent-space discriminators, Stergioulas et al. Eq. 1 (seed 004).

Binary cross-entropy on logits through log-sigmoid, exact and finite for logits of any magnitude
(tested at +-100 and beyond): -log sigmoid(x) = softplus(-x) never forms sigmoid(x) itself.
Outputs are element-wise (one value per logit, usually (B,)); reduce explicitly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def bce_with_logits(logits: jax.Array, labels: jax.Array | float) -> jax.Array:
  """Binary cross-entropy of sigmoid(logits) against labels in [0, 1], element-wise.

  BCE(x, y) = -y log sigmoid(x) - (1 - y) log sigmoid(-x), evaluated with log-sigmoid.

  Args:
    logits: (...) discriminator logits.
    labels: labels broadcastable to `logits` (1 = real, 0 = fake).

  Returns:
    (...) non-negative losses.
  """
  labels = jnp.asarray(labels, dtype=jnp.result_type(logits))
  return -(labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(-logits))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
  """Discriminator objective, Stergioulas et al. Eq. 1.

  L_Dis = 1/2 BCE(Dis(z_pose^RGB), 0) + 1/2 BCE(Dis(z_pose^true), 1): `real_logits` are the
  discriminator's logits on the pose encoder's latents z_pose^true, `fake_logits` on the RGB
  encoder's z_pose^RGB. Stop the generator's gradient (`jax.lax.stop_gradient` on the fake latents)
  when updating the discriminator.

  Args:
    real_logits: (...) logits on real samples.
    fake_logits: (...) logits on generated samples, broadcastable against `real_logits` (for
      different batch sizes, average `bce_with_logits` of each side separately).

  Returns:
    (...) per-example losses.
  """
  return 0.5 * bce_with_logits(real_logits, 1.0) + 0.5 * bce_with_logits(fake_logits, 0.0)


def generator_loss(fake_logits: jax.Array) -> jax.Array:
  """Non-saturating generator loss BCE(Dis(z_pose^RGB), 1) = -log sigmoid(fake_logits).

  Stergioulas et al. give only the discriminator's Eq. 1 and call the RGB encoder the generator;
  this is the standard non-saturating counterpart (Goodfellow et al. NeurIPS 2014, Sec. 3), which
  keeps strong gradients while the discriminator wins.

  Args:
    fake_logits: (...) discriminator logits on generated samples.

  Returns:
    (...) per-example losses.
  """
  return bce_with_logits(fake_logits, 1.0)
