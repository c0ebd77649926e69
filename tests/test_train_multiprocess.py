"""Two processes on loopback (gloo CPU collectives) train like one process with two devices."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments.configs import toy as toy_config
from handjax.train import interrupts
from handjax.train import loop
from handjax.train import sharding

WORKER = os.path.join(os.path.dirname(__file__), "_train_worker.py")
OVERRIDES = {"batch_size": 8, "num_steps": 6, "log_every": 1, "checkpoint_every": 2,
             "eval_every": -1, "data.image_size": 4, "data.num_train": 40}


def _config(**extra):
  config = toy_config.get_config()
  config.update_from_flattened_dict({**OVERRIDES, **extra})
  return config


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(**extra):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return {**os.environ, "PYTHONPATH": root, **extra}


def _leaves(state):
  return jax.tree.leaves(sharding.to_host(state))


def test_two_processes_match_one_process_with_two_devices(tmp_path):
  """Two processes (one CPU device each, gloo collectives) == one process with two devices."""
  port = str(_free_port())
  overrides = json.dumps(OVERRIDES)
  procs = [subprocess.Popen([sys.executable, WORKER, str(tmp_path / "multi"),
                             str(tmp_path / f"out{i}.npz"), overrides, str(i), "2", port],
                            env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outputs = [p.communicate(timeout=240)[0] for p in procs]
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
    assert "worker done" in out and " 2 2" in out.splitlines()[-1]  # 2 processes, 2 devices.
  reference = loop.train_and_evaluate(_config(), str(tmp_path / "single"), devices=jax.devices()[:2])
  want = _leaves(reference)
  for i in range(2):
    got = np.load(tmp_path / f"out{i}.npz")
    assert len(got.files) == len(want)
    for j, w in enumerate(want):
      np.testing.assert_allclose(got[f"arr_{j}"], w, rtol=0, atol=1e-6)
  # Both processes checkpointed their own iterator position.
  data_dir = tmp_path / "multi" / "checkpoints" / "6" / "data"
  assert sorted(p.name for p in data_dir.iterdir() if p.suffix == ".json") == [
      "process_0-of-2.json", "process_1-of-2.json"]


def test_distributed_initialisation_is_requested_by_flag_or_cluster_env(monkeypatch):
  calls = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda *a, **k: calls.append((a, k)))
  monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
  for name in sharding._CLUSTER_ENV:
    monkeypatch.delenv(name, raising=False)
  assert not sharding.maybe_initialize_distributed() and not calls
  monkeypatch.setenv("SLURM_NTASKS", "1")  # a one-task job is not multi-process
  assert not sharding.maybe_initialize_distributed() and not calls
  assert sharding.maybe_initialize_distributed(force=True) and len(calls) == 1
  monkeypatch.setenv("SLURM_NTASKS", "4")
  assert sharding.maybe_initialize_distributed() and len(calls) == 2
  monkeypatch.delenv("SLURM_NTASKS")
  monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:1234")
  assert sharding.maybe_initialize_distributed() and len(calls) == 3


@pytest.mark.slow
@pytest.mark.parametrize("jax_preemption_service", ["true", "false"])
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, jax_preemption_service):
  """Only process 1 gets SIGTERM; both save the same step. With JAX's preemption service they
  agree through its sync point, without it through the loop's all-gather of the stop flags."""
  port = str(_free_port())
  overrides = json.dumps({**OVERRIDES, "num_steps": 40, "checkpoint_every": 100})
  workdir = tmp_path / "multi"
  procs = [subprocess.Popen([sys.executable, WORKER, str(workdir), str(tmp_path / f"out{i}.npz"),
                             overrides, str(i), "2", port, "--slow"],
                            env=_env(JAX_ENABLE_PREEMPTION_SERVICE=jax_preemption_service),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  metrics = workdir / "metrics.jsonl"
  deadline = time.time() + 240
  while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
    assert all(p.poll() is None for p in procs) and time.time() < deadline, "ended before step 3"
    time.sleep(0.05)
  procs[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=240)[0] for p in procs]
  pattern = r"stopped at step (\d+) and saved its checkpoint to (\S+); rerun the same command"
  stops = []
  for p, out in zip(procs, outputs):
    assert p.returncode == interrupts.EXIT_STATUS, out[-3000:]
    stops.append(re.search(pattern, out).groups())
  assert stops[0] == stops[1], stops
  step = int(stops[0][0])
  assert 3 <= step < 40 and stops[0][1] == str(workdir / "checkpoints" / str(step))
  data_dir = workdir / "checkpoints" / str(step) / "data"
  assert sorted(p.name for p in data_dir.iterdir() if p.suffix == ".json") == [
      "process_0-of-2.json", "process_1-of-2.json"]
