r"""Gradient share of the terms of Stergioulas et al. Eq. 17 (MSE, r_kcs L_KCS, r_geo L_GEO).

    python -m experiments.kinematic_gradients [--noise=0.05,0.3] [--num=16]

Poses: the correction template (`hand.correction.TEMPLATE_POSE`), root-relative and divided by its
reference bone (the decoder's scale-normalised units), plus Gaussian noise of ``--noise`` bone
lengths per coordinate. For each convention (the unit the poses are in, and the reduction of the
l1 distances: "mean" over entries or "sum") it prints the mean gradient norm, with respect to the
prediction, of each weighted term of `multistage.refinement_loss` with the paper's weights, and
the ratios to MSE's. Issue 20, finding 2; the figures are in BUILD_NOTES.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

_NOISE = flags.DEFINE_list("noise", ["0.05", "0.3"], "Noise levels in reference-bone lengths.")
_NUM = flags.DEFINE_integer("num", 16, "Noisy poses per level (gradient norms are averaged).")

CONVENTIONS = (("target", "mean"), ("target", "sum"), ("metres", "mean"), ("metres", "sum"),
               ("millimetres", "mean"), ("millimetres", "sum"))


def gradient_norms(pred: jax.Array, target: jax.Array, unit: float | None, reduction: str,
                   r_kcs: float = 1e-2, r_geo: float = 1e-6) -> tuple[float, float, float]:
  """(|grad MSE|, |grad r_kcs L_KCS|, |grad r_geo L_GEO|) at one (1, 21, 3) prediction."""
  from handjax.methods import multistage  # pylint: disable=g-import-not-at-top

  def term(name, weight):
    def f(p):
      terms = multistage.refinement_loss(p, target, jnp.float32(1.0), 0.0, 0.0, unit_scale=unit,
                                         reduction=reduction)[1]
      return weight * terms[name]
    return float(jnp.linalg.norm(jax.grad(f)(pred)))

  return term("mse", 1.0), term("kcs", r_kcs), term("geo", r_geo)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  from handjax.hand import correction  # pylint: disable=g-import-not-at-top
  from handjax.hand import lifting  # pylint: disable=g-import-not-at-top
  try:
    noise = [float(n) for n in _NOISE.value]
  except ValueError as e:
    raise app.UsageError(f"--noise must be comma-separated numbers, got {_NOISE.value}") from e
  template = jnp.asarray(correction.TEMPLATE_POSE, jnp.float32)
  s = float(lifting.reference_bone_length(template))
  target = ((template - template[:1]) / s)[None]
  units = {"target": None, "metres": s, "millimetres": 1000.0 * s}
  print(f"reference bone {s * 1000:.1f} mm; weights r_kcs = 1e-2, r_geo = 1e-6")
  for sigma in noise:
    rng = np.random.default_rng(0)
    preds = [target + jnp.asarray(rng.normal(0, sigma, (1, 21, 3)), jnp.float32)
             for _ in range(_NUM.value)]
    for unit, reduction in CONVENTIONS:
      g = np.mean([gradient_norms(p, target, units[unit], reduction) for p in preds], axis=0)
      print(f"noise {sigma:<5} {unit:11s} l1-{reduction:4s} |grad| MSE {g[0]:9.3g}  "
            f"KCS {g[1]:9.3g}  GEO {g[2]:9.3g}   KCS/MSE {g[1] / g[0]:8.3g}  "
            f"GEO/MSE {g[2] / g[0]:8.3g}")


if __name__ == "__main__":
  app.run(main)
