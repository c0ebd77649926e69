"""Data suite: synthetic hand rendering throughput (samples/s) per resolution and renderer mode.

    python -m experiments.benchmark --suites=data [--quick]

Rows: the default renderer (tile culling, 2x2 colour samples, shading, backgrounds) at 64/128/256
px, and at 128 px the brute-force reference in the same run (every cone at every ray, no
supersampling). `prepare_s` extrapolates the time to prepare the quickstart (4400 examples, 64 px)
and default_128 (22000 examples) configs from the measured rate (rendering only; ArrayRecord
writing adds a few %). On a shared CPU the numbers are depressed by other processes.
"""

from __future__ import annotations

import jax

from experiments.bench import timing
from handjax.data import synthetic

_SPLIT_TOTALS = {64: 4_400, 128: 22_000, 256: 22_000}


def _render_row(name: str, resolution: int, batch: int, repeats: int, **kwargs) -> dict[str, object]:
  counter = iter(range(10_000))

  def call():
    return synthetic.render_batch(0, batch * next(counter), batch, resolution, **kwargs)

  stats = timing.time_fn(call, warmup=1, repeats=repeats)
  rate = batch / stats["median_s"]
  return {"row": name, "resolution": resolution, "batch": batch,
          "samples_per_s": rate, "ms_per_sample": 1e3 / rate,
          "prepare_s": _SPLIT_TOTALS.get(resolution, 0) / rate,
          "backend": jax.default_backend()}


def render_rows(quick: bool) -> list[dict[str, object]]:
  """Rendering throughput rows (see module docstring)."""
  on_cpu = jax.default_backend() == "cpu"
  if quick:
    return [_render_row("render default", 64, 8, 2)]
  batch = 32 if on_cpu else 512
  repeats = 3 if on_cpu else 5
  rows = [_render_row("render default", r, batch, repeats) for r in (64, 128, 256)]
  rows.append(_render_row("render shifted", 128, batch, repeats, style="shifted"))
  rows.append(_render_row("brute force (24 cones/ray, no AA)", 128, batch, repeats,
                          supersample=1, max_per_tile=24, sparse=False))
  return rows


def run(quick: bool) -> list[dict[str, object]]:
  return render_rows(quick)
