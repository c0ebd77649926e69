"""handjax.hand: skeleton conventions and hand geometry (pure numpy / jax.numpy)."""

from handjax.hand import circles
from handjax.hand import correction
from handjax.hand import kinematics
from handjax.hand import lifting
from handjax.hand import pose
from handjax.hand import skeleton
from handjax.hand import viewpoint
