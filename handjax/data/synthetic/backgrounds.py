"""Procedural backgrounds: colour gradients, multi-scale value noise, soft shapes and stripes.

Photographs are not used: no package on the target machines ships them (scikit-image's sample
images would qualify but it is not a dependency), so the variety comes from composing procedural
layers with random colours, scales and opacities.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from handjax.data.synthetic.draws import Draws

NUM_SHAPES = 6
NOISE_SCALES = (3, 7, 17, 41)
DRAWS_SIZE = 8192


def _value_noise(rand: Draws, resolution: int, cells: int) -> jax.Array:
  """Bilinear value noise: a random (cells x cells x 3) grid resized to the image, in [0, 1]."""
  grid = rand.uniform((cells, cells, 3))
  return jax.image.resize(grid, (resolution, resolution, 3), method="linear")


def procedural_background(key: jax.Array, resolution: int, saturation: float,
                          brightness: tuple[float, float]) -> jax.Array:
  """A (resolution, resolution, 3) float image in [0, 1].

  Layers, bottom to top: a linear gradient between two random colours; value noise at 4 scales with
  random amplitudes; NUM_SHAPES discs/rectangles with soft (1 px) edges and random opacity; stripes
  (a thresholded sinusoid of random period/orientation) with probability 0.35. `saturation` scales
  colour spread around grey, `brightness` bounds the mean level.
  """
  rand = Draws(key, DRAWS_SIZE)
  res = resolution
  v, u = jnp.meshgrid(jnp.arange(res, dtype=jnp.float32), jnp.arange(res, dtype=jnp.float32),
                      indexing="ij")
  un, vn = u / res, v / res

  def colour():
    level = rand.uniform((), brightness[0], brightness[1])
    tint = saturation * rand.uniform((3,), -0.5, 0.5)
    return jnp.clip(level + tint, 0.0, 1.0)

  theta = rand.uniform((), 0.0, 2 * jnp.pi)
  ramp = jnp.clip(0.5 + (un - 0.5) * jnp.cos(theta) + (vn - 0.5) * jnp.sin(theta), 0.0, 1.0)
  image = colour() * (1 - ramp[..., None]) + colour() * ramp[..., None]
  amps = rand.uniform((len(NOISE_SCALES),), 0.0, 0.35)
  for cells, amp in zip(NOISE_SCALES, amps):
    image = image + amp * (_value_noise(rand, res, cells) - 0.5)

  for _ in range(NUM_SHAPES):
    centre = rand.uniform((2,))
    size = rand.uniform((2,), 0.05, 0.4)
    is_disc = rand.bernoulli(0.5)
    du, dv = (un - centre[0]) / size[0], (vn - centre[1]) / size[1]
    disc = jnp.sqrt(du * du + dv * dv) - 1.0
    rect = jnp.maximum(jnp.abs(du), jnp.abs(dv)) - 1.0
    sdf_px = jnp.where(is_disc, disc, rect) * jnp.min(size) * res
    coverage = jnp.clip(0.5 - sdf_px, 0.0, 1.0)
    alpha = rand.uniform((), 0.3, 1.0) * coverage
    image = image * (1 - alpha[..., None]) + colour() * alpha[..., None]

  phi = rand.uniform((), 0.0, jnp.pi)
  period = rand.uniform((), 4.0, 0.3 * res)
  wave = jnp.sin(2 * jnp.pi * (u * jnp.cos(phi) + v * jnp.sin(phi)) / period)
  stripe = jnp.clip(wave * period / (2 * jnp.pi) + 0.5, 0.0, 1.0)  # ~1 px soft edge.
  use = rand.bernoulli(0.35)
  alpha = jnp.where(use, 0.6 * stripe, 0.0)
  image = image * (1 - alpha[..., None]) + colour() * alpha[..., None]
  return jnp.clip(image, 0.0, 1.0)
