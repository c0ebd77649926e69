"""A training subprocess killed with SIGKILL mid-run resumes to the uninterrupted result."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

from experiments.configs import toy as toy_config
from handjax.train import checkpoint
from handjax.train import loop
from handjax.train import sharding

WORKER = os.path.join(os.path.dirname(__file__), "_train_worker.py")
OVERRIDES = {"batch_size": 8, "num_steps": 6, "log_every": 1, "checkpoint_every": 2,
             "eval_every": -1, "data.image_size": 4, "data.num_train": 40}


def _config(**extra):
  config = toy_config.get_config()
  config.update_from_flattened_dict({**OVERRIDES, **extra})
  return config


def _env(**extra):
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return {**os.environ, "PYTHONPATH": root, **extra}


def _leaves(state):
  return jax.tree.leaves(sharding.to_host(state))


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path):
  overrides = {**OVERRIDES, "num_steps": 16}
  workdir = tmp_path / "killed"
  proc = subprocess.Popen([sys.executable, WORKER, str(workdir), str(tmp_path / "x.npz"),
                           json.dumps(overrides), "--slow"],
                          env=_env(JAX_NUM_CPU_DEVICES="8"), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
  deadline = time.time() + 180
  while not (workdir / "checkpoints" / "4").exists():
    assert proc.poll() is None and time.time() < deadline, "worker ended before its 2nd checkpoint"
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  ckpt = checkpoint.Checkpointer(str(workdir))
  killed_at = ckpt.latest_step()
  ckpt.close()
  assert 4 <= killed_at < 16, killed_at
  config = _config(num_steps=16)
  resumed = loop.train_and_evaluate(config, str(workdir))
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  assert int(jax.device_get(resumed.step)) == 16
  for a, b in zip(_leaves(resumed), _leaves(full)):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
