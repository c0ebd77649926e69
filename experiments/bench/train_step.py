r"""Benchmark suite `train_step`: one training step of two methods, JAX vs. a PyTorch twin (issue 9).

Models (the real methods, built from their default configs, run through the trainer's own jitted
step `handjax.train.state.make_phase_step` on a one-device mesh):
  * "S4": Yang et al. ICCV 2019 RC2CHP with the product of experts (`aligned_latents`): RGB
    ResNet-18 + ResPEL point-set encoders, pose MLP / 64 px heat-map DCGAN / 256-point FoldingNet
    decoders decoded from three latents, Chamfer + Sinkhorn EMD (100 iterations), Eq. 4.
  * "Spurr": Spurr et al. CVPR 2018 RGB->3D Var. 1 (`crossmodal_vae`): ResNet-18 + linear Gaussian
    head, 6-layer MLP pose decoder, Eq. 5.
PyTorch side: `experiments/torch_reference.py` (same networks and losses, checked equal for equal
weights by tests/test_torch_reference.py), Adam, eager mode, `torch.get_num_threads()` threads.

Per (model, image size, batch): JAX and PyTorch steps are timed *interleaved* (one JAX step, one
PyTorch step, ...; the CPU is shared, so both see the same load), medians reported, on random
inputs of the right shapes. "JAX/PyTorch" = JAX examples/s over PyTorch examples/s (> 1: JAX
faster). PyTorch runs with its default threads and OMP_WAIT_POLICY=PASSIVE (see
`TORCH_THREADS_ENV`). Memory:
  * "jax XLA temp MB": `compiled.memory_analysis().temp_size_in_bytes` (XLA's buffer assignment:
    activations, gradients and scratch of the step), "jax XLA args MB" the state and batch it
    reads (the state is donated, so the new state reuses those buffers);
  * "torch peak RSS growth MB": peak RSS (Linux VmHWM) during the first PyTorch step of a fresh
    subprocess minus its RSS after building model, optimiser and batch: activations, gradients
    and the Adam moments (allocated at the first step, part of JAX's arguments instead).
"compile s": `lower` + `compile` of the JAX step. No GPU was lent to this task: the GPU columns
say "pending".

The full run also compares XLA CPU options on the Spurr step at 128 px, batch 32 (ResNet-18
dominated), each in a fresh subprocess (XLA_FLAGS must be set before JAX starts).

    python -m experiments.benchmark --suites=train_step [--quick]
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from handjax.methods import aligned_latents  # noqa: F401  (registers the method)
from handjax.methods import crossmodal_vae
from handjax.train import method as method_lib
from handjax.train import sharding as sharding_lib
from handjax.train import state as state_lib

MODELS = ("S4", "Spurr")
GPU_PENDING = "pending (no GPU lent)"
# CPU settings tried for the JAX/PyTorch ratio: (name, XLA_FLAGS, extra environment). Each row runs
# in a fresh process (XLA_FLAGS and OpenMP settings are read when the libraries start).
CPU_OPTIONS = (
    ("default", "", {}),
    ("xla single-thread eigen", "--xla_cpu_multi_thread_eigen=false", {}),
    ("xla onednn", "--xla_cpu_use_onednn=true", {}),
    ("xla xnnpack", "--xla_cpu_use_xnnpack=true", {}),
    ("xla fast_math", "--xla_cpu_enable_fast_math=true", {}),
    ("torch 1 thread", "", {"HANDJAX_BENCH_TORCH_THREADS": "1"}),
    ("torch 2 threads OMP active", "", {"HANDJAX_BENCH_TORCH_THREADS": "2",
                                        "OMP_WAIT_POLICY": "ACTIVE"}),
)
# PyTorch intra-op threads (default: PyTorch's own default, the 2 cores here) and OpenMP wait
# policy. On this 2-core machine shared by ~8 busy processes, PyTorch's default *active* OpenMP
# waiting (threads spin at every barrier) made the ResNet-18 step 8x slower than 1 thread (14-17 s
# vs 1.9 s at 128 px, batch 32) and the Sinkhorn loop ~100x slower; with OMP_WAIT_POLICY=PASSIVE
# 2 threads were the fastest setting (3.6 s vs 11-15 s with 1 thread). OMP_WAIT_POLICY is set here,
# before torch (libgomp) loads, unless the caller set it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
TORCH_THREADS_ENV = "HANDJAX_BENCH_TORCH_THREADS"


def model_config(model: str, image_size: int, batch_size: int,
                 quick: bool = False) -> ml_collections.ConfigDict:
  """The method's default (paper-size) config at `image_size`; `quick` shrinks every network."""
  if model == "S4":
    c = aligned_latents.default_config()
  elif model == "Spurr":
    c = crossmodal_vae.default_config()
  else:
    raise ValueError(f"model must be one of {MODELS}, got {model!r}.")
  c.data.image_size = image_size
  c.batch_size = batch_size
  if quick:
    c.model.resnet_width = 0.25
    c.model.resnet_stage_sizes = (1, 1, 1, 1)
    if model == "S4":
      c.model.pointset_width = 64
      c.model.folding_hidden = 64
      c.data.num_points = 64
      c.data.heatmap_size = 32
    else:
      c.model.mlp_hidden = (128,) * 2
  return c


def synthetic_batch(config: ml_collections.ConfigDict, batch_size: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """Random inputs of the method's shapes (values do not change the cost of a step)."""
  gen = np.random.default_rng(seed)
  s = config.data.image_size
  batch = {
      "image": gen.uniform(0, 1, (batch_size, s, s, 3)).astype(np.float32),
      "pose3d": (np.array([0, 0, 0.5]) + gen.normal(0, 0.04, (batch_size, 21, 3))).astype(np.float32),
      "scale": gen.uniform(0.02, 0.04, batch_size).astype(np.float32),
  }
  if config.method == "aligned_latents":
    h, n = config.data.heatmap_size, config.data.num_points
    batch["points"] = (0.04 * gen.normal(size=(batch_size, n, 3))).astype(np.float32)
    batch["heatmaps"] = gen.uniform(0, 1, (batch_size, h, h, 21)).astype(np.float32)
  else:
    batch["hand_side"] = gen.integers(0, 2, batch_size).astype(np.int32)
  return batch


def jax_train_step(config: ml_collections.ConfigDict, batch: dict[str, np.ndarray],
                   devices: Any = None) -> tuple[Callable[[], Any], dict[str, float]]:
  """(step closure, info): the trainer's compiled phase step on a mesh over `devices` (default: the
  first device); info has compile_s and XLA's memory analysis in bytes."""
  mesh = sharding_lib.make_mesh(devices if devices is not None else jax.devices()[:1])
  method = method_lib.get_method(config)
  global_batch = sharding_lib.global_batch(batch, mesh)
  state, shardings = state_lib.create_train_state(method, config.seed, global_batch, mesh)
  step = state_lib.make_phase_step(method, 0, shardings, mesh)
  start = time.perf_counter()
  compiled = step.lower(state, global_batch, True).compile()
  compile_s = time.perf_counter() - start
  mem = compiled.memory_analysis()
  info = {"compile_s": compile_s,
          "temp_bytes": float(getattr(mem, "temp_size_in_bytes", float("nan"))),
          "argument_bytes": float(getattr(mem, "argument_size_in_bytes", float("nan")))}
  holder = [state]

  def run() -> Any:
    holder[0], metrics = compiled(holder[0], global_batch)
    return metrics["loss"].block_until_ready()

  return run, info


def torch_train_step(model: str, config: ml_collections.ConfigDict,
                     batch: dict[str, np.ndarray]) -> Callable[[], Any]:
  """The PyTorch twin's step (forward, backward, Adam) on the same batch."""
  import torch  # pylint: disable=g-import-not-at-top

  from experiments import torch_reference as tr  # pylint: disable=g-import-not-at-top

  if os.environ.get(TORCH_THREADS_ENV):
    torch.set_num_threads(int(os.environ[TORCH_THREADS_ENV]))
  if model == "S4":
    net, kwargs = tr.S4Model.from_config(config), {"beta": 1e-5}
  else:
    net, kwargs = tr.SpurrModel.from_config(config), {"beta": float(config.beta)}
  step = tr.make_train_step(net, float(config.optimizer.learning_rate), **kwargs)
  tbatch = tr.to_torch(batch)
  return lambda: step(tbatch)


def _rss_mb(field: str) -> float:
  with open("/proc/self/status") as f:
    match = re.search(rf"^{field}:\s+(\d+) kB", f.read(), re.M)
  return float(match.group(1)) / 1024 if match else float("nan")


def _torch_memory(args: dict[str, Any]) -> dict[str, float]:
  """Subprocess body: PyTorch's peak RSS growth over one step from a fresh start (MB)."""
  config = model_config(args["model"], args["px"], args["batch"], args["quick"])
  fn = torch_train_step(args["model"], config, synthetic_batch(config, args["batch"]))
  before = _rss_mb("VmRSS")
  fn()
  return {"peak_growth_mb": _rss_mb("VmHWM") - before}


def torch_peak_mb(model: str, image_size: int, batch_size: int, quick: bool) -> float:
  """Peak RSS during the first PyTorch step minus the RSS after building model, optimiser and
  batch, in a fresh subprocess (so earlier steps' cached memory cannot hide it); NaN on failure."""
  args = {"mode": "torch_memory", "model": model, "px": image_size, "batch": batch_size,
          "quick": quick}
  result = _subprocess(args, {})
  return float(result["peak_growth_mb"]) if result else float("nan")


def _subprocess(args: dict[str, Any], env_extra: dict[str, str]) -> dict[str, Any] | None:
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  env = {**os.environ, "PYTHONPATH": root, "JAX_PLATFORMS": "cpu", **env_extra}
  proc = subprocess.run([sys.executable, "-m", "experiments.bench.train_step", json.dumps(args)],
                        env=env, capture_output=True, text=True, cwd=root, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
  if proc.returncode or not lines:
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
    print(f"[train_step] subprocess {args} failed: {tail[0]}", file=sys.stderr, flush=True)
    return None
  return json.loads(lines[-1][len("RESULT "):])


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int,
                        warmup: int = 1) -> dict[str, float]:
  """Median seconds per call of each fn, calling them in turn (one of each per round)."""
  for _ in range(warmup):
    for fn in fns.values():
      fn()
  times: dict[str, list[float]] = {k: [] for k in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(time.perf_counter() - start)
  return {k: float(np.median(v)) for k, v in times.items()}


def measure(model: str, image_size: int, batch_size: int, quick: bool,
            repeats: int) -> dict[str, object]:
  """One table row: JAX and PyTorch steps of `model`, interleaved on one batch."""
  import torch  # pylint: disable=g-import-not-at-top

  config = model_config(model, image_size, batch_size, quick)
  batch = synthetic_batch(config, batch_size)
  jax_fn, info = jax_train_step(config, batch)
  torch_fn = torch_train_step(model, config, batch)
  medians = interleaved_medians({"jax": jax_fn, "torch": torch_fn}, repeats)
  torch_peak = torch_peak_mb(model, image_size, batch_size, quick)
  return {
      "model": model + (" (quick: narrow)" if quick else ""),
      "px": image_size,
      "batch": batch_size,
      "jax step s": medians["jax"],
      "torch step s": medians["torch"],
      "jax ex/s": batch_size / medians["jax"],
      "torch ex/s": batch_size / medians["torch"],
      "JAX/PyTorch": medians["torch"] / medians["jax"],
      "jax compile s": info["compile_s"],
      "jax XLA temp MB": info["temp_bytes"] / 2**20,
      "jax XLA args MB": info["argument_bytes"] / 2**20,
      "torch peak RSS growth MB": torch_peak,
      "torch threads": torch.get_num_threads(),
      "GPU JAX/PyTorch": GPU_PENDING,
  }


def _probe(args: dict[str, Any]) -> dict[str, float]:
  """Subprocess body for the CPU-option rows: times the Spurr step under the inherited XLA_FLAGS."""
  config = model_config("Spurr", args["px"], args["batch"], args["quick"])
  batch = synthetic_batch(config, args["batch"])
  jax_fn, info = jax_train_step(config, batch)
  torch_fn = torch_train_step("Spurr", config, batch)
  medians = interleaved_medians({"jax": jax_fn, "torch": torch_fn}, args["repeats"])
  import torch  # pylint: disable=g-import-not-at-top
  return {"jax_s": medians["jax"], "torch_s": medians["torch"], "compile_s": info["compile_s"],
          "torch_threads": torch.get_num_threads()}


def cpu_option_rows(quick: bool, repeats: int) -> list[dict[str, object]]:
  """The Spurr step under each CPU setting of `CPU_OPTIONS`, PyTorch interleaved in-process."""
  px, batch = (64, 8) if quick else (128, 32)
  rows = []
  chosen = os.environ.get("HANDJAX_BENCH_OPTION_NAMES")  # e.g. "default,xla onednn"
  for name, flags, extra_env in CPU_OPTIONS:
    if chosen and name not in chosen.split(","):
      continue
    env = {"XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") + " " + flags).strip(), **extra_env}
    r = _subprocess({"mode": "probe", "px": px, "batch": batch, "quick": quick,
                     "repeats": repeats}, env)
    row: dict[str, object] = {"model": "Spurr" + (" (quick: narrow)" if quick else ""),
                              "px": px, "batch": batch, "option": name}
    if r is None:
      row.update({"jax step s": "failed", "torch step s": "-", "JAX/PyTorch": "-"})
    else:
      row.update({"jax step s": r["jax_s"], "torch step s": r["torch_s"],
                  "JAX/PyTorch": r["torch_s"] / r["jax_s"], "jax compile s": r["compile_s"],
                  "torch threads": r["torch_threads"]})
    rows.append(row)
    print(f"[train_step] {row}", file=sys.stderr, flush=True)
  return rows


def _grid(quick: bool) -> list[tuple[str, int, int]]:
  """(model, px, batch) rows; HANDJAX_BENCH_MODELS / HANDJAX_BENCH_SIZES ("128x32,256x64") narrow
  the full grid when a run must be time-boxed."""
  models = os.environ.get("HANDJAX_BENCH_MODELS", ",".join(MODELS)).split(",")
  if quick:
    sizes = [(64, 8)]
  elif os.environ.get("HANDJAX_BENCH_SIZES"):
    sizes = [tuple(int(v) for v in item.split("x"))
             for item in os.environ["HANDJAX_BENCH_SIZES"].split(",")]
  else:
    sizes = [(px, bs) for px in (128, 256) for bs in (32, 64)]
  return [(m, px, bs) for m in models for px, bs in sizes]


def run(quick: bool) -> list[dict[str, object]]:
  """Main grid, then (full runs, or HANDJAX_BENCH_CPU_OPTIONS=1) the CPU-option rows;
  HANDJAX_BENCH_CPU_OPTIONS=0 skips them, HANDJAX_BENCH_CPU_OPTIONS=only runs just them."""
  repeats = 2 if quick else 3
  options = os.environ.get("HANDJAX_BENCH_CPU_OPTIONS", "0" if quick else "1")
  rows = []
  if options != "only":
    for model, px, bs in _grid(quick):
      rows.append(measure(model, px, bs, quick, repeats))
      print(f"[train_step] {rows[-1]}", file=sys.stderr, flush=True)
  if options in ("1", "only"):
    option_rows = cpu_option_rows(quick, repeats)
    if not rows:
      return option_rows
    keys = list(rows[0])
    for r in option_rows:
      rows.append({k: r.get(k, "-") for k in keys} | {"model": f"{r['model']} [{r['option']}]"})
  return rows


if __name__ == "__main__":
  _args = json.loads(sys.argv[1])
  _body = _torch_memory if _args["mode"] == "torch_memory" else _probe
  print("RESULT " + json.dumps(_body(_args)), flush=True)
