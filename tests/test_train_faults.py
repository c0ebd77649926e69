"""Faults a run must survive and report: SIGTERM/SIGINT, a damaged checkpoint, a failed save."""

import errno
import json
import logging as std_logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
from orbax.checkpoint._src.handlers import json_checkpoint_handler
import pytest

from experiments.configs import toy as toy_config
from handjax.train import checkpoint
from handjax.train import inference
from handjax.train import interrupts
from handjax.train import loop
from handjax.train import sharding
from handjax.train import toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY_WORKER = os.path.join(os.path.dirname(__file__), "_train_binary_worker.py")
OVERRIDES = {"batch_size": 8, "num_steps": 12, "log_every": 3, "checkpoint_every": 4,
             "keep_checkpoints": 2, "eval_every": -1, "data.image_size": 4, "data.num_train": 40}


pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _config(**extra):
  config = toy_config.get_config()
  config.update_from_flattened_dict({**OVERRIDES, **extra})
  return config


def _env():
  return {**os.environ, "PYTHONPATH": ROOT, "JAX_NUM_CPU_DEVICES": "8", "JAX_PLATFORMS": "cpu"}


def _assert_states_equal(a, b):
  ha, hb = sharding.to_host(a), sharding.to_host(b)
  assert jax.tree.structure(ha) == jax.tree.structure(hb)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=1e-6), ha, hb)


def _steps(workdir):
  ckpt = checkpoint.Checkpointer(str(workdir), read_only=True)
  steps = ckpt.all_steps()
  ckpt.close()
  return steps


def _metric_steps(workdir):
  return [json.loads(x)["step"] for x in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """An uninterrupted 12-step toy run (checkpoints 8 and 12 kept)."""
  workdir = tmp_path_factory.mktemp("full")
  return workdir, loop.train_and_evaluate(_config(), str(workdir))


# --- Preemption ----------------------------------------------------------------------------------


def test_sigterm_saves_the_current_step_prints_one_line_and_resumes(tmp_path, full_run):
  """The real train binary (data slowed to 0.2 s/batch) gets SIGTERM mid-run."""
  workdir = tmp_path / "run"
  flags = [f"--config.{k}={v}" for k, v in {**OVERRIDES, "log_every": 1,
                                             "checkpoint_every": 100}.items()]
  proc = subprocess.Popen([sys.executable, BINARY_WORKER, "--config=experiments/configs/toy.py",
                           f"--workdir={workdir}", *flags], cwd=ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 180
  metrics = workdir / "metrics.jsonl"
  while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 3):
    assert proc.poll() is None and time.time() < deadline, "the run ended before step 3"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=120)
  assert proc.returncode == interrupts.EXIT_STATUS == 75, stderr[-3000:]
  pattern = (r"^SIGTERM received: stopped at step (\d+) and saved its checkpoint to (\S+); "
             r"rerun the same command to resume\.$")
  lines = [m for m in (re.match(pattern, line) for line in stderr.splitlines()) if m]
  assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
  stopped = int(lines[0].group(1))
  assert 3 <= stopped < 12
  assert lines[0].group(2) == str(workdir / "checkpoints" / str(stopped))
  # It finished the step it was in, checkpointed exactly that step and trained no further.
  assert _steps(workdir) == [stopped]
  assert _metric_steps(workdir) == list(range(1, stopped + 1))
  # Rerunning resumes from that step to the uninterrupted run's parameters.
  resumed = loop.train_and_evaluate(_config(log_every=1, checkpoint_every=100), str(workdir))
  _assert_states_equal(resumed, full_run[1])


def _signalling_factory(signum, at_call):
  """The toy train data, sending ``signum`` to this process while fetching batch ``at_call``
  (call 1 is the start-up sample, call n + 2 the batch of 0-based step n)."""
  calls = []

  def mark(batch):
    calls.append(1)
    if len(calls) == at_call:
      signal.raise_signal(signum)
    return batch

  def factory(cfg, split, **kwargs):
    ds = toy.toy_dataset(cfg, split, **kwargs)
    return ds.map(mark) if split == "train" else ds

  return factory


def test_sigint_in_process_finishes_the_step_saves_it_and_resumes(tmp_path, full_run):
  previous = signal.getsignal(signal.SIGINT)
  with pytest.raises(interrupts.Interrupted) as e:
    loop.train_and_evaluate(_config(), str(tmp_path),
                            dataset_factory=_signalling_factory(signal.SIGINT, 6))
  # Signalled while fetching step 4's batch (0-based): step 4 completes, 5 steps are saved.
  assert (e.value.signal_name, e.value.step) == ("SIGINT", 5)
  assert str(e.value) == (f"SIGINT received: stopped at step 5 and saved its checkpoint to "
                          f"{tmp_path}/checkpoints/5; rerun the same command to resume.")
  assert _steps(tmp_path) == [4, 5]
  assert signal.getsignal(signal.SIGINT) is previous  # Handlers restored after the run.
  _assert_states_equal(loop.train_and_evaluate(_config(), str(tmp_path)), full_run[1])


def test_stop_signals_second_sigint_interrupts_and_handlers_are_restored():
  before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
  with interrupts.StopSignals() as stop:
    assert not stop.should_stop(1)
    signal.raise_signal(signal.SIGTERM)
    assert stop.received == "SIGTERM" and stop.should_stop(2)
    signal.raise_signal(signal.SIGTERM)  # Ignored while stopping.
    with pytest.raises(KeyboardInterrupt):
      signal.raise_signal(signal.SIGINT)  # A second signal by a user who insists.
    assert stop.received == "SIGTERM"
  assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before


# --- Damaged checkpoints -------------------------------------------------------------------------


def _truncate_state(step_dir):
  """Truncates the largest array-data file of a checkpoint to half; returns (path, new size)."""
  files = [p for p in (step_dir / "state" / "d").iterdir() if p.is_file()]
  path = max(files, key=lambda p: p.stat().st_size)
  size = path.stat().st_size // 2
  with open(path, "r+b") as f:
    f.truncate(size)
  return path, size


def test_damaged_checkpoint_falls_back_warns_and_is_kept(tmp_path, full_run, caplog):
  workdir = tmp_path / "run"
  shutil.copytree(full_run[0], workdir)
  damaged, size = _truncate_state(workdir / "checkpoints" / "12")
  damaged_dir = workdir / "checkpoints" / "12"
  warning = (rf"checkpoint {damaged_dir} is damaged: it does not restore \(ValueError: "
             r"OUT_OF_RANGE: .*\)")
  # Readers (evaluate, predict) skip it, say so and which step they used; they move nothing.
  caplog.set_level("WARNING")
  restored = inference.restore_latest(str(workdir))
  assert restored.step == 8
  assert re.search(warning + "; falling back to step 8.", caplog.text), caplog.text
  _assert_states_equal(restored.state.params, inference.restore_latest(
      str(full_run[0]), step=8).state.params)
  with pytest.raises(checkpoint.DamagedCheckpointError, match=warning + "$"):
    inference.restore_latest(str(workdir), step=12)
  with pytest.raises(FileNotFoundError, match=r"no complete checkpoint of step 4 .*\[8, 12\]"):
    inference.restore_latest(str(workdir), step=4)
  assert damaged.stat().st_size == size and not (workdir / "damaged_checkpoints").exists()
  # Training falls back to step 8, moves 12 aside (unchanged) and reaches the uninterrupted result.
  caplog.clear()
  resumed = loop.train_and_evaluate(_config(), str(workdir))
  kept = workdir / "damaged_checkpoints" / "12"
  assert re.search(warning + f"; moved it to {kept}; falling back to step 8.", caplog.text)
  assert (kept / damaged.relative_to(damaged_dir)).stat().st_size == size
  assert _steps(workdir) == [8, 12]
  _assert_states_equal(resumed, full_run[1])


def test_a_changed_model_is_not_damage(tmp_path, full_run):
  """A restore that fails on the target (another model size) keeps orbax's error; nothing moves."""
  workdir = tmp_path / "run"
  shutil.copytree(full_run[0], workdir)
  with pytest.raises(ValueError,
                     # Whichever of the resized arrays orbax reads first: (48, 7), (7,), (7, 1)...
                     match=r"Requested shape: \([^)]*\b7\b[^)]*\) is not compatible with the "
                           r"stored shape: \([^)]*\b32\b"):
    loop.train_and_evaluate(_config(toy_hidden=7), str(workdir))
  assert _steps(workdir) == [8, 12] and not (workdir / "damaged_checkpoints").exists()


def test_every_checkpoint_damaged_is_a_one_line_error_of_evaluate(tmp_path, full_run):
  workdir = tmp_path / "run"
  shutil.copytree(full_run[0], workdir)
  for step in (8, 12):
    _truncate_state(workdir / "checkpoints" / str(step))
  out = subprocess.run([sys.executable, "-m", "experiments.evaluate", f"--workdir={workdir}"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      f"error: no checkpoint in {workdir}/checkpoints restores: step(s) 8, 12 are damaged")
  assert "Traceback" not in out.stderr, out.stderr[-3000:]


def test_orphaned_read_errors_are_dropped_and_other_asyncio_reports_kept():
  """asyncio reports an unretrieved task error when the task is collected, possibly after the
  one-line error; only those of tensorstore/orbax reads are dropped."""
  drop = checkpoint._DropOrphanedReadErrors()  # pylint: disable=protected-access

  def record(msg, error, path="x.py"):
    exc_info = (type(error), error, None) if error else None
    return std_logging.LogRecord("asyncio", std_logging.ERROR, path, 1, msg, None, exc_info)

  read_error = ValueError("OUT_OF_RANGE: Error reading ... [tensorstore_spec='{}']")
  orbax_task = ("Task exception was never retrieved\nfuture: <Task finished coro=<"
                f"async_deserialize() defined at {os.sep}site-packages{os.sep}orbax{os.sep}x.py>>")
  assert not drop.filter(record("Task exception was never retrieved\nfuture: <Task>", read_error))
  assert not drop.filter(record("Future exception was never retrieved\nfuture: <F>", read_error))
  assert not drop.filter(record(orbax_task, ValueError("no spec")))
  assert drop.filter(record("Task exception was never retrieved\nfuture: <T>", KeyError("mine")))
  assert drop.filter(record("Unclosed client session", read_error))
  assert drop.filter(record("Task exception was never retrieved", None))


# --- Failed saves --------------------------------------------------------------------------------


@pytest.fixture
def no_space_at_step(monkeypatch):
  """Makes the config writer of one step's save raise ENOSPC, as a full disk would."""
  failing = []
  original = json_checkpoint_handler.JsonCheckpointHandler._save_fn

  async def save_fn(self, x, directory):
    if any(f"/{s}.orbax-checkpoint-tmp/" in str(directory) for s in failing):
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory))
    return await original(self, x, directory)

  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler, "_save_fn", save_fn)
  return failing


def test_failed_save_stops_the_run_naming_the_last_good_checkpoint(tmp_path, full_run,
                                                                  no_space_at_step):
  no_space_at_step.append(8)
  with pytest.raises(checkpoint.SaveError) as e:
    loop.train_and_evaluate(_config(), str(tmp_path))
  ckpts = tmp_path / "checkpoints"
  assert e.value.step == 8
  assert re.fullmatch(
      rf"saving the checkpoint of step 8 to {ckpts}/8 failed \(OSError: \[Errno 28\] No space "
      rf"left on device: '{ckpts}/8\.orbax-checkpoint-tmp/config\.orbax-checkpoint-tmp'\); "
      rf"training stopped, the last good checkpoint is {ckpts}/4", str(e.value)), str(e.value)
  assert _steps(tmp_path) == [4]  # Nothing was saved after the failure (no step 12).
  assert (ckpts / "8.orbax-checkpoint-tmp").is_dir()
  # Space freed: the next run removes the temporary directory, resumes from step 4 and reaches
  # the uninterrupted result, so step 4 was intact.
  no_space_at_step.clear()
  state = loop.train_and_evaluate(_config(), str(tmp_path), stop_at_step=5)
  assert int(jax.device_get(state.step)) == 5 and _steps(tmp_path) == [4, 5]
  assert not list(ckpts.glob("*.orbax-checkpoint-tmp*"))
  _assert_states_equal(loop.train_and_evaluate(_config(), str(tmp_path)), full_run[1])


def test_a_failed_background_save_is_found_without_waiting(tmp_path, full_run, no_space_at_step):
  """``check()`` (called every step) reports a failed asynchronous save once it has ended."""
  no_space_at_step.append(2)
  state, config = full_run[1], _config()
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(1, state, None, config)
  ckpt.wait()
  ckpt.save(2, state, None, config)
  deadline = time.time() + 60
  with pytest.raises(checkpoint.SaveError, match=r"step 2 .*Errno 28.* checkpoint is .*/1$"):
    while time.time() < deadline:
      ckpt.check()  # Never blocks: returns while the save is still running.
      time.sleep(0.01)
  ckpt.close()  # Already reported: not raised again.
  assert _steps(tmp_path) == [1]
