"""The synthetic_hands tfds builder: ArrayRecord without TensorFlow, equal to render_batch, idempotent."""

import importlib.util
import os
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

import handjax.data  # noqa: F401  (registers synthetic_hands)
from handjax.data import synthetic
from handjax.data.builders import synthetic_hands


def _files(root):
  out = {}
  for dirpath, _, names in os.walk(root):
    for name in names:
      path = os.path.join(dirpath, name)
      out[path] = os.stat(path).st_mtime_ns
  return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  builder = tfds.builder("synthetic_hands/tiny", data_dir=data_dir)
  builder.download_and_prepare(file_format="array_record")
  return builder, data_dir


def test_registered_with_configs():
  assert tfds.builder_cls("synthetic_hands") is synthetic_hands.SyntheticHands
  names = {c.name for c in synthetic_hands.SyntheticHands.BUILDER_CONFIGS}
  assert {"tiny", "quickstart", "default_64", "default_128", "default_256", "shifted_128"} <= names


def test_default_64_40k_extends_default_64():
  # Example i of a split is render_batch(seed, i, ..., resolution, style, split) (next test), so
  # equal seed, resolution and style make default_64 the first half of default_64_40k's training
  # split and give both the same test split: the pair differs in training-set size alone.
  cfg = {c.name: c for c in synthetic_hands.SyntheticHands.BUILDER_CONFIGS}
  small, large = cfg["default_64"], cfg["default_64_40k"]
  for field in ("seed", "resolution", "style", "num_test", "group_size"):
    assert getattr(large, field) == getattr(small, field), field
  assert (small.num_train, large.num_train) == (20_000, 40_000)


def test_data_source_equals_render_batch(prepared):
  builder, _ = prepared
  source = builder.as_data_source()
  assert len(source["train"]) == 16 and len(source["test"]) == 8
  for split, start in (("train", 0), ("train", 8), ("test", 0)):
    ref = synthetic.render_batch(0, start, 8, 32, "default", split)
    for i in range(8):
      example = source[split][start + i]
      assert int(example["index"]) == start + i
      for key, value in ref.items():
        np.testing.assert_array_equal(np.asarray(example[key]), value[i], err_msg=f"{split} {key}")
  # Written and read without TensorFlow.
  assert importlib.util.find_spec("tensorflow") is None or "tensorflow" not in sys.modules


def test_second_prepare_is_a_no_op(prepared, monkeypatch):
  builder, data_dir = prepared
  before = _files(data_dir)

  def fail(*args, **kwargs):
    raise AssertionError("render_batch must not run for a prepared dataset")

  monkeypatch.setattr(synthetic, "render_batch", fail)
  again = tfds.builder("synthetic_hands/tiny", data_dir=data_dir)
  again.download_and_prepare(file_format="array_record")
  assert _files(data_dir) == before


def test_interrupted_prepare_leaves_no_dataset(tmp_path, monkeypatch):
  real = synthetic.render_batch
  calls = []

  def flaky(*args, **kwargs):
    calls.append(args)
    if len(calls) > 1:
      raise KeyboardInterrupt("simulated interruption")
    return real(*args, **kwargs)

  monkeypatch.setattr(synthetic, "render_batch", flaky)
  builder = tfds.builder("synthetic_hands/tiny", data_dir=str(tmp_path))
  with pytest.raises(KeyboardInterrupt):
    builder.download_and_prepare(file_format="array_record")
  final = tmp_path / "synthetic_hands" / "tiny" / str(synthetic_hands.SyntheticHands.VERSION)
  assert not final.exists()
  monkeypatch.setattr(synthetic, "render_batch", real)
  builder = tfds.builder("synthetic_hands/tiny", data_dir=str(tmp_path))
  builder.download_and_prepare(file_format="array_record")
  assert final.exists() and len(builder.as_data_source()["test"]) == 8


def test_prepare_never_uses_the_tfds_write_buffer(tmp_path, monkeypatch):
  # Regression: a GeneratorBasedBuilder spilled splits over tfds' 1 GB write buffer to disk through
  # tf.io.gfile, so default_128 failed without TensorFlow after ~10k examples. With a zero-byte
  # buffer any use of the shuffler would spill at the first example.
  from tensorflow_datasets.core import shuffle
  monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 0)
  builder = tfds.builder("synthetic_hands/tiny", data_dir=str(tmp_path))
  builder.download_and_prepare(file_format="array_record")
  assert "tensorflow" not in sys.modules
  split_dir = tmp_path / "synthetic_hands" / "tiny" / str(synthetic_hands.SyntheticHands.VERSION)
  shards = sorted(p.name for p in split_dir.glob("*train.array_record*"))
  assert shards == [f"synthetic_hands-train.array_record-0000{i}-of-00002" for i in range(2)]
  train = builder.as_data_source()["train"]
  assert [int(train[i]["index"]) for i in range(16)] == list(range(16))


def test_shard_size_must_be_a_multiple_of_the_batch():
  with pytest.raises(ValueError, match="examples_per_shard=100 must be a multiple of batch_size=64"):
    synthetic_hands._config("bad", 64, 10, 10, examples_per_shard=100)


def test_grouped_config_stores_content_groups(tmp_path):
  from handjax.data.synthetic import groups
  builder = tfds.builder("synthetic_hands/tiny_groups", data_dir=str(tmp_path))
  builder.download_and_prepare(file_format="array_record")
  source = builder.as_data_source()
  ref = groups.render_groups(0, 1, 2, 4, 32, "default", "train")  # examples 4..11 of train
  for i in range(8):
    example = source["train"][4 + i]
    assert int(example["content_id"]) == 1 + i // 4 and int(example["index"]) == 4 + i
    for key in ("image", "pose3d", "viewpoint"):
      np.testing.assert_array_equal(np.asarray(example[key]), ref[key][i], err_msg=key)
  # Splits are different examples.
  assert not np.allclose(source["test"][0]["pose3d"], source["train"][0]["pose3d"])
  with pytest.raises(ValueError, match="group_size=3 must divide"):
    synthetic_hands._config("bad", 32, 16, 8, batch_size=8, group_size=3)


# --- Progress while rendering (issue 19) ---------------------------------------------------------


def test_render_progress_lines_with_a_fake_clock():
  times = iter([100.0, 130.0, 131.0, 135.0, 142.0, 160.0])
  progress = synthetic_hands.RenderProgress("synthetic_hands/x", "train", 1000, every_s=10.0,
                                            clock=lambda: next(times))
  assert progress.start_line(64) == "synthetic_hands/x train: rendering 1000 examples at 64 px"
  # First batch at once (30 s, compile included): 64 / 30 = 2.1 examples/s, 936 left = 438.75 s.
  assert progress.update(64) == ("synthetic_hands/x train: 64/1000 examples (6%), 2.1 examples/s, "
                                 "ETA 00:07:19")
  assert progress.update(128) is None  # 1 s after the last line
  assert progress.update(192) is None  # 5 s
  # 12 s after the last line; the rate leaves out the first batch: (256 - 64) / (142 - 130) = 16.
  assert progress.update(256) == ("synthetic_hands/x train: 256/1000 examples (26%), 16.0 "
                                  "examples/s, ETA 00:00:46")
  # The last batch always reports: (1000 - 64) / (160 - 130) = 31.2; 60 s since the start.
  assert progress.update(1000) == ("synthetic_hands/x train: 1000/1000 examples (100%), 31.2 "
                                   "examples/s, done in 00:01:00")


def test_tiny_preparation_reports_progress(prepared, tmp_path, monkeypatch, caplog):
  """Same rendering as `prepared` (compiled already), into a new data_dir; 4 s per clock read."""
  del prepared
  ticks = iter(range(0, 1000, 4))
  monkeypatch.setattr(synthetic_hands, "_clock", lambda: float(next(ticks)))
  caplog.set_level("INFO", logger="handjax")
  builder = tfds.builder("synthetic_hands/tiny", data_dir=str(tmp_path))
  builder.download_and_prepare(file_format="array_record")
  lines = [r.getMessage() for r in caplog.records if r.name == synthetic_hands.__name__]
  # train: clock 0 at the start, 4 after the first shard (8 of 16: first line), 8 at the end
  # (rate after the first line: 8 / 4 s); test: 12 at the start, 16 after its one shard.
  assert lines == [
      "synthetic_hands/tiny train: rendering 16 examples at 32 px",
      "synthetic_hands/tiny train: 8/16 examples (50%), 2.0 examples/s, ETA 00:00:04",
      "synthetic_hands/tiny train: 16/16 examples (100%), 2.0 examples/s, done in 00:00:08",
      "synthetic_hands/tiny test: rendering 8 examples at 32 px",
      "synthetic_hands/tiny test: 8/8 examples (100%), 2.0 examples/s, done in 00:00:04",
  ]
