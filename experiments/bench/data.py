"""Data suite: synthetic hand rendering throughput, and the input pipeline vs. a training step.

    python -m experiments.benchmark --suites=data [--quick]
    HANDJAX_BENCH_DATA_DIR=/path/to/tfds python -m experiments.benchmark --suites=data

Rendering rows:
Rows: the default renderer (tile culling, 2x2 colour samples, shading, backgrounds) at 64/128/256
px, and at 128 px the brute-force reference in the same run (every cone at every ray, no
supersampling). `prepare_s` extrapolates the time to prepare the quickstart (4400 examples, 64 px)
and default_128 (22000 examples) configs from the measured rate (rendering only; ArrayRecord
writing adds a few %). On a shared CPU the numbers are depressed by other processes.

Pipeline rows (issue 4's "reading + transforms deliver at least 3x the consumption rate of a
training step"): `handjax.data.pipeline.make_dataset` on the prepared `synthetic_hands` config of
the row's resolution (train split, augmentation on, the config's reader threads, batches of 32,
the keys the method reads), batches/s after two warm-up batches; next to it the examples/s of the
method's jitted train step (`train_step.jax_train_step`, paper-size networks, one device) on
random inputs of the same shapes, both in the same process one after the other, and the ratio
pipeline/step. The dataset is read from `HANDJAX_BENCH_DATA_DIR` (tfds default when unset) and
prepared there first if needed (default_128: about 7 minutes on the 2-core CPU).
"""

from __future__ import annotations

import os
import time

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


# (model of the train_step suite, image size, synthetic_hands builder config).
PIPELINE_CASES = (("Spurr", 128, "default_128"), ("S4", 128, "default_128"))
PIPELINE_BATCH = 32


def pipeline_rate(config, num_batches: int) -> float:
  """Batches/s of the train pipeline of `config`, after two warm-up batches."""
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top
  it = iter(pipeline.make_dataset(config.data, "train", process_index=0, process_count=1,
                                   seed=0))
  for _ in range(2):
    next(it)
  start = time.perf_counter()
  for _ in range(num_batches):
    next(it)
  return num_batches / (time.perf_counter() - start)


def pipeline_rows(quick: bool) -> list[dict[str, object]]:
  """Input pipeline vs. train-step consumption (see the module docstring)."""
  from experiments.bench import train_step  # pylint: disable=g-import-not-at-top
  cases = (("Spurr", 32, "tiny"),) if quick else PIPELINE_CASES
  rows = []
  for model, px, builder_config in cases:
    batch = 4 if quick else PIPELINE_BATCH
    config = train_step.model_config(model, px, batch, quick=quick)
    config.data.builder_config = builder_config
    config.data.data_dir = os.environ.get("HANDJAX_BENCH_DATA_DIR") or None
    config.data.batch_size = batch
    batches_s = pipeline_rate(config, 3 if quick else 30)
    step, _ = train_step.jax_train_step(config, train_step.synthetic_batch(config, batch))
    stats = timing.time_fn(step, warmup=1, repeats=2 if quick else 5)
    step_examples_s = batch / stats["median_s"]
    rows.append({"row": f"pipeline vs {model} train step", "resolution": px, "batch": batch,
                 "dataset": f"synthetic_hands/{builder_config}",
                 "pipeline_examples_per_s": batches_s * batch,
                 "step_examples_per_s": step_examples_s,
                 "pipeline/step": batches_s * batch / step_examples_s,
                 "backend": jax.default_backend()})
  return rows


def run(quick: bool) -> list[dict[str, object]]:
  return render_rows(quick) + pipeline_rows(quick)
