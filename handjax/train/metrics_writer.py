"""Metric output without TensorFlow: JSON lines, TensorBoard event files and a console progress line.

TensorBoard scalars are written with tensorboardX (maintained, TensorFlow-free): its
``EventsWriter`` names the file ``events.out.tfevents.<time>.<host>``, writes the
``file_version`` event and frames every ``Event`` proto as a TFRecord with CRC-32C. Each
``write_scalars`` call is one ``Event`` whose ``Summary`` holds every scalar of that step as a
``simple_value``. The synchronous ``EventsWriter`` is used rather than ``SummaryWriter``: the
latter's ``flush()`` does not drain its background queue, so a run killed after a flush could
lose its last scalars, and its ``add_scalar`` writes one event per scalar and logs a warning for
every NaN (a NaN eval metric is a legitimate value here). Only process 0 writes.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Mapping

import numpy as np
from tensorboardX.event_file_writer import EventsWriter
from tensorboardX.proto import event_pb2
from tensorboardX.proto import summary_pb2

log = logging.getLogger(__name__)


class TensorBoardWriter:
  """Appends scalar events to ``<logdir>/events.out.tfevents.<time>.<host>`` (tensorboardX)."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    self.logdir = logdir
    self._writer = EventsWriter(os.path.join(logdir, "events"))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    summary = summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in scalars.items()])
    self._writer.write_event(event_pb2.Event(wall_time=time.time(), step=int(step),
                                             summary=summary))

  def flush(self) -> None:
    self._writer.flush()

  def close(self) -> None:
    self._writer.close()


class MetricWriter:
  """Writes scalars to ``metrics.jsonl`` and TensorBoard; a no-op on processes other than 0."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    if not enabled:
      return
    self.jsonl_path = os.path.join(workdir, "metrics.jsonl")
    self._jsonl = open(self.jsonl_path, "a")
    self._tb = TensorBoardWriter(os.path.join(workdir, "tensorboard"))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    if not self.enabled:
      return
    clean = {k: float(np.asarray(v)) for k, v in scalars.items()}
    self._jsonl.write(json.dumps({"step": int(step), **clean}, allow_nan=True) + "\n")
    self._tb.write_scalars(int(step), clean)
    self.flush()

  def flush(self) -> None:
    if self.enabled:
      self._jsonl.flush()
      self._tb.flush()

  def close(self) -> None:
    if self.enabled:
      self._jsonl.close()
      self._tb.close()


class Progress:
  """Console progress line: step, loss, steps/s, examples/s and ETA since the last report."""

  def __init__(self, num_steps: int, batch_size: int, first_step: int):
    self.num_steps = num_steps
    self.batch_size = batch_size
    self._last_step = first_step
    self._last_time = time.perf_counter()

  def line(self, step: int, loss: float) -> str:
    now = time.perf_counter()
    steps = max(step - self._last_step, 0)
    rate = steps / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    eta = (self.num_steps - step) / rate if rate > 0 else float("inf")
    eta_text = time.strftime("%H:%M:%S", time.gmtime(eta)) if np.isfinite(eta) else "?"
    return (f"step {step}/{self.num_steps}  loss {loss:.5g}  {rate:.2f} steps/s  "
            f"{rate * self.batch_size:.1f} examples/s  ETA {eta_text}")

  def report(self, step: int, loss: float) -> None:
    log.info("%s", self.line(step, loss))
