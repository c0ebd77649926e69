"""handjax.hand: skeleton conventions and hand geometry (pure numpy / jax.numpy)."""

from handjax.hand import skeleton
