"""Forward + backward time and parameter count of each handjax.models module at the papers' sizes.

    python -m experiments.benchmark --suites=models [--quick]

Each row: one jitted value-and-grad of sum(outputs^2) w.r.t. the parameters, train-mode BatchNorm,
timed with `timing.time_fn` after compilation. `--quick` uses narrow networks and small inputs (a
smoke run on CPU, not a figure to record).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from experiments.bench import timing
from handjax.losses.gaussian import Gaussian
from handjax.models import (MLP, DeconvDecoder, DualBranchResNet, FoldingNet, Hourglass,
                            InjectionDecoder, PointSetEncoder, ResNetEncoder, VariationalMapper)


def _cases(quick: bool) -> list[tuple[str, nn.Module, Callable[[jax.Array], tuple[Any, ...]]]]:
  b = 2 if quick else 32
  img = 64 if quick else 256
  w = 0.25 if quick else 1.0
  hidden = 64 if quick else 512
  normal = jax.random.normal
  return [
      (f"ResNetEncoder-18 {img}x{img} (Spurr Table 4)", ResNetEncoder(64, width=w),
       lambda k: (normal(k, (b, img, img, 3)), True)),
      ("MLP 6x512 -> 63 (Spurr Table 3)", MLP((hidden,) * 5 + (63,)),
       lambda k: (normal(k, (b, 64)),)),
      ("InjectionDecoder (Stergioulas Eq. 18)", InjectionDecoder((hidden,) * 4, 63),
       lambda k: (normal(k, (b, 64)), True)),
      ("VariationalMapper (Stergioulas Fig. 2b)", VariationalMapper((hidden, hidden)),
       lambda k: (Gaussian(normal(k, (b, 64)), jnp.zeros((b, 64))), True)),
      (f"DeconvDecoder {img}x{img}x3 (Spurr Table 4)",
       DeconvDecoder(img, 3, (128, 64, 32, 16, 8), base_channels=256 if not quick else 32),
       lambda k: (normal(k, (b, 64)), True)),
      ("FoldingNet 256 points (ICCV 2019)", FoldingNet(256, hidden), lambda k: (normal(k, (b, 64)),)),
      ("PointSetEncoder ResPEL 512 (ICCV 2019)", PointSetEncoder(64, width=hidden),
       lambda k: (normal(k, (b, 256, 3)),)),
      ("DualBranchResNet-18 (diss. ch. 7)", DualBranchResNet(18, w),
       lambda k: (normal(k, (b, img, img, 3)), normal(k, (b, img, img, 1)), True)),
      ("Hourglass 2 stacks 64x64 (diss. ch. 6)", Hourglass(21, 64 if quick else 256, 2, 4),
       lambda k: (normal(k, (b, 64, 64, 3)), True)),
  ]


def _sum_squares(tree: Any) -> jax.Array:
  return sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree))


def run(quick: bool) -> list[dict[str, object]]:
  rows = []
  rng = jax.random.key(0)
  for name, model, make_args in _cases(quick):
    args = make_args(rng)
    variables = model.init(rng, *args)
    params = variables["params"]
    rest = {k: v for k, v in variables.items() if k != "params"}

    def loss(p, model=model, args=args, rest=rest):
      if rest:
        out, _ = model.apply({"params": p, **rest}, *args, mutable=list(rest))
      else:
        out = model.apply({"params": p}, *args)
      return _sum_squares(out)

    step = jax.jit(jax.value_and_grad(loss))
    stats = timing.time_fn(lambda: step(params), warmup=1, repeats=3 if quick else 10)
    rows.append({"module": name, "params": sum(x.size for x in jax.tree.leaves(params)),
                 "batch": int(jax.tree.leaves(args)[0].shape[0]),
                 "fwd+bwd median ms": 1e3 * stats["median_s"]})
  return rows
