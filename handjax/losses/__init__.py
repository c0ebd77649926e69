"""handjax.losses: pure jnp loss functions (no Flax). Import as `from handjax import losses`."""

from handjax.losses.gaussian import Gaussian
