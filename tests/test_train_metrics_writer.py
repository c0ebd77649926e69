"""TensorBoard event files (tensorboardX) read back by TensorBoard's reader; JSON lines; progress."""

import json

import numpy as np
import pytest

from handjax.train import metrics_writer

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard (the `test` extra) reads the event files back")


def _read_scalars(logdir):
  """{tag: [(step, value), ...]} as TensorBoard's event accumulator (its loader) reads them."""
  acc = event_accumulator.EventAccumulator(str(logdir), size_guidance={"scalars": 0})
  acc.Reload()
  return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_event_files_read_back_by_tensorboard(tmp_path):
  writer = metrics_writer.MetricWriter(str(tmp_path))
  writer.write_scalars(3, {"loss": 0.25, "eval/mean_epe_mm": np.float32(12.5)})
  writer.write_scalars(300, {"loss": float("nan"), "lr": np.asarray(1e-3)})
  writer.write_scalars(301, {"loss": -7.0})
  writer.close()
  assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1
  scalars = _read_scalars(tmp_path / "tensorboard")
  assert sorted(scalars) == ["eval/mean_epe_mm", "loss", "lr"]
  assert scalars["eval/mean_epe_mm"] == [(3, 12.5)]
  steps, values = zip(*scalars["loss"])
  assert steps == (3, 300, 301)
  assert values[0] == 0.25 and np.isnan(values[1]) and values[2] == -7.0
  # simple_value is a float32 field: 1e-3 comes back as its float32 rounding.
  assert scalars["lr"] == [(300, float(np.float32(1e-3)))]
  lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines[0] == {"step": 3, "loss": 0.25, "eval/mean_epe_mm": 12.5}
  assert lines[1]["step"] == 300 and np.isnan(lines[1]["loss"])


def test_event_file_is_complete_after_each_write(tmp_path):
  """A run killed between writes still leaves TensorBoard every scalar written so far."""
  writer = metrics_writer.MetricWriter(str(tmp_path))
  writer.write_scalars(1, {"loss": 2.0})
  writer.write_scalars(2, {"loss": 1.5})
  try:
    assert _read_scalars(tmp_path / "tensorboard") == {"loss": [(1, 2.0), (2, 1.5)]}
  finally:
    writer.close()


def test_disabled_writer_writes_nothing(tmp_path):
  writer = metrics_writer.MetricWriter(str(tmp_path), enabled=False)
  writer.write_scalars(1, {"loss": 1.0})
  writer.close()
  assert list(tmp_path.iterdir()) == []


def test_progress_line(monkeypatch):
  clock = iter([100.0, 104.0])
  monkeypatch.setattr(metrics_writer.time, "perf_counter", lambda: next(clock))
  progress = metrics_writer.Progress(num_steps=1000, batch_size=32, first_step=0)
  line = progress.line(200, 0.123456)
  # 200 steps in 4 s = 50 steps/s = 1600 examples/s; 800 steps left = 16 s.
  assert line == "step 200/1000  loss 0.12346  50.00 steps/s  1600.0 examples/s  ETA 00:00:16"
