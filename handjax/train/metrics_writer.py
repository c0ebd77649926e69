"""Metric output without TensorFlow: JSON lines, TensorBoard event files and a console progress line.

clu's ``metric_writers`` import TensorFlow for their TensorBoard writer, and neither ``tensorboard``
nor ``tensorboardX`` is a dependency, so TensorBoard scalars are written by a small TFRecord +
protobuf encoder (:class:`TensorBoardWriter`): a file of records
``uint64 length | uint32 masked_crc32c(length) | Event proto | uint32 masked_crc32c(data)``
whose ``Event`` messages carry ``wall_time`` (field 1, double), ``step`` (field 2, int64) and either
``file_version`` (field 3) or a ``Summary`` (field 5) of ``Value{tag=1, simple_value=2}`` entries —
the format ``tensorboard`` reads. Only process 0 writes.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from typing import Mapping

from absl import logging
import numpy as np


def _crc32c_table() -> list[int]:
  table = []
  for i in range(256):
    c = i
    for _ in range(8):
      c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    table.append(c)
  return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
  """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as used by TFRecord."""
  crc = 0xFFFFFFFF
  for b in data:
    crc = _CRC_TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked CRC: ``rotate_right(crc, 15) + 0xa282ead8`` (mod 2^32)."""
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
  out = bytearray()
  n &= (1 << 64) - 1
  while True:
    byte = n & 0x7F
    n >>= 7
    if n:
      out.append(byte | 0x80)
    else:
      out.append(byte)
      return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
  return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_event(step: int, wall_time: float, scalars: Mapping[str, float] | None = None,
                 file_version: str | None = None) -> bytes:
  """Serialised ``tensorboard.Event`` with a scalar ``Summary`` or a ``file_version``."""
  out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0) + _varint(step)
  if file_version is not None:
    out += _length_delimited(3, file_version.encode())
  if scalars:
    values = b"".join(
        _length_delimited(1, _length_delimited(1, tag.encode()) + _varint(2 << 3 | 5)
                          + struct.pack("<f", float(v)))
        for tag, v in scalars.items())
    out += _length_delimited(5, values)
  return out


def tfrecord(data: bytes) -> bytes:
  """One TFRecord frame around ``data``."""
  length = struct.pack("<Q", len(data))
  return (length + struct.pack("<I", masked_crc32c(length)) + data
          + struct.pack("<I", masked_crc32c(data)))


class TensorBoardWriter:
  """Appends scalar events to ``<logdir>/events.out.tfevents.<time>.<host>``."""

  def __init__(self, logdir: str):
    os.makedirs(logdir, exist_ok=True)
    name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}"
    self.path = os.path.join(logdir, name)
    self._file = open(self.path, "ab")
    self._file.write(tfrecord(encode_event(0, time.time(), file_version="brain.Event:2")))

  def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
    self._file.write(tfrecord(encode_event(step, time.time(), scalars=scalars)))

  def flush(self) -> None:
    self._file.flush()

  def close(self) -> None:
    self._file.close()


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
    logging.info("%s", self.line(step, loss))
