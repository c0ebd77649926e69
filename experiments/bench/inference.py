r"""Benchmark suite `inference`: RGB -> 3D latency and throughput, and train-step compile time.

Prediction (test time, RGB only) of both benchmarked methods: the RGB ResNet-18 encoder's posterior
mean decoded by the pose decoder, i.e. each method's jitted `predict` (Spurr et al. CVPR 2018
RGB->3D; S4 of Yang et al. ICCV 2019, whose test path is the same RGB encoder + pose MLP), next to
the PyTorch twin (`experiments/torch_reference.py`, eval mode, `torch.no_grad`, threads and
OpenMP wait policy as in `train_step`), timed interleaved
(medians). Rows at batch 1 give latency, larger batches throughput. Target on a GPU: < 5 ms per
128 px image at batch 1 after compilation; no GPU was lent to this task, so that column is
"pending".

Compile rows: `lower` + `compile` of the full jitted train step (the trainer's
`make_phase_step`) of each method; target < 60 s on CPU.

    python -m experiments.benchmark --suites=inference [--quick]
"""

from __future__ import annotations

import os
import time
from typing import Any, Callable

import jax
import numpy as np

from experiments.bench import train_step as ts
from handjax.train import method as method_lib

GPU_TARGET = "pending (no GPU lent; target < 5 ms/img at batch 1, 128 px)"


def jax_predict(config: Any, batch: dict[str, np.ndarray]) -> tuple[Callable[[], Any], float, Any]:
  """(closure running the jitted `predict` on `batch`, compile seconds, (params, model_state))."""
  method = method_lib.get_method(config)
  params, model_state = method.init(jax.random.key(0), batch)
  predict = jax.jit(method.predict)
  device_batch = jax.device_put(batch)
  start = time.perf_counter()
  compiled = predict.lower(params, model_state, device_batch).compile()
  compile_s = time.perf_counter() - start
  return (lambda: compiled(params, model_state, device_batch)["pose3d"].block_until_ready(),
          compile_s, (params, model_state))


def torch_predict(model: str, config: Any, batch: dict[str, np.ndarray],
                  variables: Any) -> Callable[[], Any]:
  """The twin's RGB -> 3D prediction with the same weights, eval mode, no autograd."""
  import torch  # pylint: disable=g-import-not-at-top

  from experiments import torch_reference as tr  # pylint: disable=g-import-not-at-top

  if os.environ.get(ts.TORCH_THREADS_ENV):  # threads and OMP wait policy: see train_step
    torch.set_num_threads(int(os.environ[ts.TORCH_THREADS_ENV]))
  net = tr.S4Model.from_config(config) if model == "S4" else tr.SpurrModel.from_config(config)
  net.load_flax(*variables)
  net.eval()
  tbatch = tr.to_torch(batch)

  def run():
    with torch.no_grad():
      return net.predict(tbatch)

  return run


def latency_row(model: str, px: int, batch_size: int, quick: bool,
                repeats: int) -> dict[str, object]:
  config = ts.model_config(model, px, batch_size, quick)
  batch = ts.synthetic_batch(config, batch_size)
  jax_fn, compile_s, variables = jax_predict(config, batch)
  torch_fn = torch_predict(model, config, batch, variables)
  med = ts.interleaved_medians({"jax": jax_fn, "torch": torch_fn}, repeats, warmup=2)
  return {
      "what": f"{model} predict (RGB->3D)" + (" (quick: narrow)" if quick else ""),
      "px": px,
      "batch": batch_size,
      "jax ms/img": 1e3 * med["jax"] / batch_size,
      "torch ms/img": 1e3 * med["torch"] / batch_size,
      "jax img/s": batch_size / med["jax"],
      "torch img/s": batch_size / med["torch"],
      "JAX/PyTorch": med["torch"] / med["jax"],
      "jax compile s": compile_s,
      "GPU": GPU_TARGET if px == 128 and batch_size == 1 else "pending",
  }


def compile_row(model: str, px: int, batch_size: int, quick: bool) -> dict[str, object]:
  config = ts.model_config(model, px, batch_size, quick)
  _, info = ts.jax_train_step(config, ts.synthetic_batch(config, batch_size))
  return {
      "what": f"{model} train step compile (target < 60 s)" + (" (quick: narrow)" if quick else ""),
      "px": px, "batch": batch_size, "jax ms/img": "-", "torch ms/img": "-", "jax img/s": "-",
      "torch img/s": "-", "JAX/PyTorch": "-", "jax compile s": info["compile_s"], "GPU": "pending",
  }


def run(quick: bool) -> list[dict[str, object]]:
  px = 64 if quick else 128
  batches = (1, 8) if quick else (1, 32)
  repeats = 5 if quick else 9
  rows = []
  for model in ts.MODELS:
    for bs in batches:
      rows.append(latency_row(model, px, bs, quick, repeats))
  if os.environ.get("HANDJAX_BENCH_COMPILE_ROWS", "1") == "1":  # 0 skips them (time-boxed runs)
    for model in ts.MODELS:
      rows.append(compile_row(model, px, 8 if quick else 32, quick))
  return rows
