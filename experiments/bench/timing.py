"""Timing helpers shared by every benchmark suite."""

from __future__ import annotations

import time
from typing import Any, Callable

import jax
import numpy as np


def block(tree: Any) -> Any:
  """Waits for every array in `tree` (JAX dispatch is asynchronous)."""
  return jax.tree.map(lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree)


def time_fn(fn: Callable[[], Any], *, warmup: int = 2, repeats: int = 10) -> dict[str, float]:
  """Times `fn()` (already compiled by the warm-up calls); returns seconds: median, min, mean."""
  for _ in range(warmup):
    block(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    block(fn())
    times.append(time.perf_counter() - start)
  times = np.asarray(times)
  return {"median_s": float(np.median(times)), "min_s": float(times.min()), "mean_s": float(times.mean())}


def machine_description() -> str:
  import platform
  import os

  devices = jax.devices()
  return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{devices[0].platform} x{len(devices)} ({devices[0].device_kind}), jax {jax.__version__}")
