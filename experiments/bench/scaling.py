r"""Benchmark suite `scaling`: the same global batch on 1, 2, 4, 8 virtual CPU devices and 2 processes.

The trainer's data-parallel step (`handjax.train.state.make_phase_step`, state replicated, batch
sharded on a 1-D `data` mesh) of the Spurr et al. CVPR 2018 RGB->3D model (ResNet-18, 64 px, global
batch 32) runs in a fresh subprocess per configuration, because the number of virtual CPU devices
(JAX_NUM_CPU_DEVICES) is fixed when JAX starts. The 2-process row is a loopback `jax.distributed`
cluster (gloo CPU collectives), one device per process, each feeding half of the global batch.
The correctness of the sharded step is tested by the trainer's tests; this measures the overhead:
"x 1 device" = step time / step time on one device. All virtual devices share this machine's two
physical cores, so no speed-up is possible here: the figure is the cost of partitioning and of the
gradient all-reduce, i.e. an upper bound on the overhead on real multi-device hardware.

    python -m experiments.benchmark --suites=scaling [--quick]
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _worker(args: dict[str, Any]) -> None:
  """Subprocess body: JAX starts here, with the environment the parent chose."""
  import jax  # pylint: disable=g-import-not-at-top

  if args["processes"] > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args['port']}",
                               num_processes=args["processes"], process_id=args["process_id"])
  from experiments.bench import train_step as ts  # pylint: disable=g-import-not-at-top
  from experiments.bench import timing  # pylint: disable=g-import-not-at-top

  config = ts.model_config("Spurr", args["px"], args["batch"], args["quick"])
  local = args["batch"] // args["processes"]
  batch = ts.synthetic_batch(config, args["batch"])
  offset = local * args["process_id"]
  batch = {k: v[offset:offset + local] for k, v in batch.items()}
  fn, info = ts.jax_train_step(config, batch, devices=jax.devices())
  t = timing.time_fn(fn, warmup=1, repeats=args["repeats"])
  print("RESULT " + json.dumps({"median_s": t["median_s"], "compile_s": info["compile_s"],
                                "devices": jax.device_count(),
                                "processes": jax.process_count()}), flush=True)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _launch(devices_per_process: int, processes: int, args: dict[str, Any]) -> dict[str, Any]:
  env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": str(devices_per_process),
         "PYTHONPATH": _ROOT}
  port = _free_port()
  procs = []
  for pid in range(processes):
    a = json.dumps({**args, "processes": processes, "process_id": pid, "port": port})
    procs.append(subprocess.Popen([sys.executable, "-m", "experiments.bench.scaling", a], env=env,
                                  cwd=_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  outs = [p.communicate(timeout=1200) for p in procs]
  for p, (out, err) in zip(procs, outs):
    lines = [l for l in out.splitlines() if l.startswith("RESULT ")]
    if p.returncode or not lines:
      raise RuntimeError(f"scaling worker failed (rc {p.returncode}): {err.strip()[-2000:]}")
  return json.loads([l for l in outs[0][0].splitlines() if l.startswith("RESULT ")][-1][7:])


def run(quick: bool) -> list[dict[str, object]]:
  args = {"px": 32 if quick else 64, "batch": 8 if quick else 32, "quick": quick,
          "repeats": 3 if quick else 7}
  # (virtual devices per process, processes); --quick skips 4 and 8 (each compile is ~40 s here).
  configs = [(1, 1), (2, 1), (1, 2)] if quick else [(1, 1), (2, 1), (4, 1), (8, 1), (1, 2)]
  rows, base = [], None
  for devices, processes in configs:
    r = _launch(devices, processes, args)
    base = base or r["median_s"]
    rows.append({
        "model": "Spurr RGB->3D" + (" (quick: narrow)" if quick else ""),
        "px": args["px"],
        "global batch": args["batch"],
        "processes": r["processes"],
        "devices": r["devices"],
        "per-device batch": args["batch"] // r["devices"],
        "step s": r["median_s"],
        "x 1 device": r["median_s"] / base,
        "compile s": r["compile_s"],
    })
    print(f"[scaling] {rows[-1]}", file=sys.stderr, flush=True)
  return rows


if __name__ == "__main__":
  _worker(json.loads(sys.argv[1]))
