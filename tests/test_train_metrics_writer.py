"""TensorBoard event files written without TensorFlow, JSON lines and the progress line."""

import json
import struct

import numpy as np

from handjax.train import metrics_writer


def _crc32c_bitwise(data: bytes) -> int:
  """Independent reference: bit-by-bit CRC-32C without a table."""
  crc = 0xFFFFFFFF
  for byte in data:
    crc ^= byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
  return crc ^ 0xFFFFFFFF


def test_crc32c_known_vectors():
  # RFC 3720 (iSCSI) appendix B.4 test vectors and the standard "123456789" check value.
  assert metrics_writer.crc32c(b"123456789") == 0xE3069283
  assert metrics_writer.crc32c(bytes(32)) == 0x8A9136AA
  assert metrics_writer.crc32c(bytes([0xFF] * 32)) == 0x62A8AB43
  assert metrics_writer.crc32c(bytes(range(32))) == 0x46DD794E
  rng = np.random.default_rng(0)
  for n in (0, 1, 7, 100):
    data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    assert metrics_writer.crc32c(data) == _crc32c_bitwise(data)


def _read_varint(buf, i):
  shift = result = 0
  while True:
    b = buf[i]
    i += 1
    result |= (b & 0x7F) << shift
    shift += 7
    if not b & 0x80:
      return result, i


def _parse_fields(buf):
  """Minimal protobuf wire-format decoder: list of (field, wire_type, value)."""
  i, out = 0, []
  while i < len(buf):
    key, i = _read_varint(buf, i)
    field, wire = key >> 3, key & 7
    if wire == 0:
      value, i = _read_varint(buf, i)
    elif wire == 1:
      value, i = buf[i:i + 8], i + 8
    elif wire == 5:
      value, i = buf[i:i + 4], i + 4
    elif wire == 2:
      n, i = _read_varint(buf, i)
      value, i = buf[i:i + n], i + n
    else:
      raise AssertionError(f"unexpected wire type {wire}")
    out.append((field, wire, value))
  return out


def _read_records(path):
  data = open(path, "rb").read()
  i, records = 0, []
  while i < len(data):
    (length,) = struct.unpack("<Q", data[i:i + 8])
    (len_crc,) = struct.unpack("<I", data[i + 8:i + 12])
    assert len_crc == metrics_writer.masked_crc32c(data[i:i + 8])
    payload = data[i + 12:i + 12 + length]
    (data_crc,) = struct.unpack("<I", data[i + 12 + length:i + 16 + length])
    assert data_crc == metrics_writer.masked_crc32c(payload)
    records.append(payload)
    i += 16 + length
  return records


def test_event_file_roundtrip(tmp_path):
  writer = metrics_writer.MetricWriter(str(tmp_path))
  writer.write_scalars(3, {"loss": 0.25, "eval/mean_epe_mm": np.float32(12.5)})
  writer.write_scalars(300, {"loss": float("nan")})
  writer.close()
  (path,) = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
  records = _read_records(path)
  assert len(records) == 3
  first = dict((f, v) for f, _, v in _parse_fields(records[0]))
  assert first[3] == b"brain.Event:2"
  scalars = []
  for rec in records[1:]:
    fields = _parse_fields(rec)
    step = [v for f, _, v in fields if f == 2][0]
    (summary,) = [v for f, _, v in fields if f == 5]
    for _, _, value in _parse_fields(summary):
      tag, simple = None, None
      for f, _, v in _parse_fields(value):
        if f == 1:
          tag = v.decode()
        elif f == 2:
          (simple,) = struct.unpack("<f", v)
      scalars.append((step, tag, simple))
  assert scalars[:2] == [(3, "loss", 0.25), (3, "eval/mean_epe_mm", 12.5)]
  assert scalars[2][:2] == (300, "loss") and np.isnan(scalars[2][2])
  lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert lines[0] == {"step": 3, "loss": 0.25, "eval/mean_epe_mm": 12.5}
  assert lines[1]["step"] == 300 and np.isnan(lines[1]["loss"])


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
