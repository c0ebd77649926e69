"""Procedural RHD-like hands rendered by a JAX ray caster (the `synthetic_hands` dataset)."""

from handjax.data.synthetic.hand_model import PART_NAMES
from handjax.data.synthetic.render import STYLES
from handjax.data.synthetic.render import render_batch

__all__ = ["PART_NAMES", "STYLES", "render_batch"]
