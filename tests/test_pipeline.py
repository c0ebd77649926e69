"""Tests of handjax.data.pipeline on a small in-memory source of toy examples."""

from __future__ import annotations

import importlib.util

import ml_collections
import numpy as np
import pytest

from handjax.data import pipeline
from test_transforms import make_example, project

NUM_EXAMPLES = 12


@pytest.fixture(scope="module")
def source():
  return [make_example(i, height=48, width=64, num_points=80, hand_side=i % 2)
          for i in range(NUM_EXAMPLES)]


def small_config(**overrides):
  config = pipeline.default_data_config()
  config.image_size = 24
  config.heatmap_size = 12
  config.num_points = 32
  config.batch_size = 4
  config.crop_min_side = 10.0
  config.read_threads = 1
  config.augment.flip_prob = 0.5
  for key, value in overrides.items():
    config[key] = value
  return config


def take(ds, n):
  it = iter(ds)
  return [next(it) for _ in range(n)]


def test_batch_format_and_consistency(source):
  config = small_config()
  batch = take(pipeline.make_dataset(config, "train", source=source, seed=1), 1)[0]
  assert batch["image"].shape == (4, 24, 24, 3) and batch["image"].dtype == np.float32
  assert batch["image"].min() >= -0.5 and batch["image"].max() <= 0.5
  assert batch["depth"].shape == (4, 24, 24, 1) and batch["mask"].shape == (4, 24, 24, 1)
  assert batch["points"].shape == (4, 32, 3) and batch["heatmaps"].shape == (4, 12, 12, 21)
  assert batch["has_pose3d"].all() and batch["has_points"].all()
  for b in range(4):
    # Augmented (crop, jitter, rotation, maybe flip) and still consistent.
    np.testing.assert_allclose(project(batch["pose3d"][b], batch["K"][b]), batch["uv"][b],
                               atol=1e-3)
    src = source[batch["index"][b]]
    mirrored = batch["hand_side"][b] != src["hand_side"]
    np.testing.assert_allclose(np.linalg.det(batch["viewpoint"][b]), 1.0, atol=1e-4)
    np.testing.assert_allclose(batch["canonical_pose"][b], src["canonical_pose"], atol=1e-5)
    if not mirrored:  # a rotation about the camera centre keeps the viewpoint-free pose distances
      np.testing.assert_allclose(np.linalg.norm(batch["pose3d"][b], axis=-1),
                                 np.linalg.norm(src["pose3d"], axis=-1), rtol=1e-5)
    rel = (batch["pose3d"][b] - batch["pose3d"][b, 0]) / batch["scale"][b]
    np.testing.assert_allclose(batch["pose3d_normalized"][b], rel, atol=1e-5)


def test_labelled_fraction_keeps_exactly_the_first_examples(source):
  config = small_config(labelled_fraction=0.25, batch_size=NUM_EXAMPLES)
  batch = take(pipeline.make_dataset(config, "train", source=source, seed=2), 1)[0]
  assert sorted(batch["index"]) == list(range(NUM_EXAMPLES))  # one full epoch
  labelled = batch["index"] < 3  # round(0.25 * 12)
  np.testing.assert_array_equal(batch["has_pose3d"], labelled)
  np.testing.assert_array_equal(batch["has_canonical_pose"], labelled)
  assert np.all(batch["pose3d"][~labelled] == 0) and np.all(batch["scale"][~labelled] == 0)
  assert np.all(np.abs(batch["pose3d"][labelled]).sum(axis=(1, 2)) > 0)
  assert batch["has_uv"].all() and batch["has_depth"].all() and batch["has_points"].all()
  with pytest.raises(ValueError, match="labelled_fraction"):
    pipeline.num_labelled(10, 1.5)
  # Evaluation splits keep every label: a semi-supervised run is scored on the whole test split.
  test = take(pipeline.make_dataset(config, "test", source=source), 1)[0]
  assert test["has_pose3d"].all() and np.all(np.abs(test["pose3d"]).sum(axis=(1, 2)) > 0)


def test_weak_labels_survive_on_unlabelled_rows(source):
  # Fig. 4.9's weak setting: beyond the labelled 25% only the viewpoint stays.
  config = small_config(labelled_fraction=0.25, batch_size=NUM_EXAMPLES,
                        weak_labels=("viewpoint",))
  config.augment.enabled = False
  batch = take(pipeline.make_dataset(config, "train", source=source, seed=2), 1)[0]
  labelled = batch["index"] < 3
  np.testing.assert_array_equal(batch["has_pose3d"], labelled)
  np.testing.assert_array_equal(batch["has_canonical_pose"], labelled)
  assert batch["has_viewpoint"].all()
  full = take(pipeline.make_dataset(small_config(batch_size=NUM_EXAMPLES, augment=config.augment),
                                    "train", source=source, seed=2), 1)[0]
  np.testing.assert_array_equal(full["index"], batch["index"])
  np.testing.assert_allclose(batch["viewpoint"], full["viewpoint"])
  assert np.all(batch["pose3d"][~labelled] == 0)
  with pytest.raises(ValueError, match="data.weak_labels"):
    pipeline.make_dataset(small_config(weak_labels=("uv",)), "train", source=source)


def test_labelled_examples_stay_labelled_in_later_epochs(source):
  # Regression: after shuffle + repeat the marking saw unwrapped indices, so every example of
  # epoch 2 onwards lost its label and training silently stopped learning the pose.
  config = small_config(labelled_fraction=0.25, batch_size=NUM_EXAMPLES)
  for batch in take(pipeline.make_dataset(config, "train", source=source, seed=2), 3):
    assert sorted(batch["index"]) == list(range(NUM_EXAMPLES))
    np.testing.assert_array_equal(batch["has_pose3d"], batch["index"] < 3)


def test_resumed_iterator_yields_the_next_batch(source):
  config = small_config()
  k = 4  # crosses an epoch boundary (12 examples / 4 per batch)
  it = iter(pipeline.make_dataset(config, "train", source=source, seed=3))
  for _ in range(k):
    next(it)
  state = it.get_state()
  expected = next(it)
  fresh = iter(pipeline.make_dataset(config, "train", source=source, seed=3))
  fresh.set_state(state)
  resumed = next(fresh)
  assert expected.keys() == resumed.keys()
  for key in expected:
    np.testing.assert_array_equal(resumed[key], expected[key], err_msg=key)


def test_two_processes_split_the_global_batch(source):
  config = small_config()
  full = take(pipeline.make_dataset(config, "train", source=source, seed=4), 3)
  shards = [take(pipeline.make_dataset(config, "train", source=source, seed=4, process_index=p,
                                       process_count=2), 3) for p in range(2)]
  for step in range(3):
    a, b = shards[0][step], shards[1][step]
    assert len(a["index"]) == 2 and not set(a["index"]) & set(b["index"])
    assert sorted(np.concatenate([a["index"], b["index"]])) == sorted(full[step]["index"])
    # The same example is processed identically whatever the process count.
    for shard in (a, b):
      for i, index in enumerate(shard["index"]):
        j = list(full[step]["index"]).index(index)
        np.testing.assert_array_equal(shard["image"][i], full[step]["image"][j])
  with pytest.raises(ValueError, match="divisible"):
    pipeline.make_dataset(small_config(batch_size=5), "train", source=source, process_count=2)


def test_points_resampled_each_epoch_and_deterministic_per_seed(source):
  config = small_config(batch_size=NUM_EXAMPLES)
  config.augment.enabled = False
  epochs = take(pipeline.make_dataset(config, "train", source=source, seed=5), 2)
  again = take(pipeline.make_dataset(config, "train", source=source, seed=5), 2)
  for a, b in zip(epochs, again):
    np.testing.assert_array_equal(a["points"], b["points"])
  order = [np.argsort(e["index"]) for e in epochs]
  p0, p1 = epochs[0]["points"][order[0]], epochs[1]["points"][order[1]]
  assert not np.array_equal(p0, p1)
  # Without augmentation the same points, as sets, come from the same source cloud.
  src = source[0]
  chosen = epochs[0]["points"][order[0][0]]
  distances = np.linalg.norm(chosen[:, None] - src["points"][None], axis=-1).min(1)
  np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_eval_split_is_ordered_unaugmented_and_complete(source):
  config = small_config(batch_size=5)
  batches = list(pipeline.make_dataset(config, "test", source=source))
  indices = np.concatenate([b["index"] for b in batches])
  np.testing.assert_array_equal(indices, np.arange(NUM_EXAMPLES))
  assert [len(b["index"]) for b in batches] == [5, 5, 2]
  np.testing.assert_array_equal(batches[0]["hand_side"], [s["hand_side"] for s in source[:5]])


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(source):
  config = small_config()
  reference = take(pipeline.make_dataset(config, "train", source=source, seed=6), 2)
  config.num_workers = 2
  ds = pipeline.make_dataset(config, "train", source=source, seed=6)
  it = iter(ds)
  got = [next(it) for _ in range(2)]
  it.close()
  for a, b in zip(reference, got):
    np.testing.assert_array_equal(a["image"], b["image"])


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("handjax.data.builders.synthetic_hands") is None,
                    reason="synthetic_hands builder not present")
def test_load_source_synthetic_hands(tmp_path):
  config = small_config(data_dir=str(tmp_path), builder_config="tiny")  # 32 px, 16 / 8 examples
  src = pipeline.load_source(config, "train")
  example = src[0]
  assert example["image"].dtype == np.uint8
  assert len(src) == 16 and example["image"].shape == (32, 32, 3)
  batch = take(pipeline.make_dataset(config, "train", source=src), 1)[0]
  for b in range(config.batch_size):
    np.testing.assert_allclose(project(batch["pose3d"][b], batch["K"][b]), batch["uv"][b],
                               atol=1e-2)
  # Points of the rendered cloud land on hand pixels of the warped depth map, at their depth.
  uv = project(batch["points"][0], batch["K"][0])
  iu, iv = np.rint(uv).astype(int).T
  inside = (iu >= 0) & (iu < 24) & (iv >= 0) & (iv < 24)
  depth = batch["depth"][0, iv[inside], iu[inside], 0]
  assert np.mean(np.abs(depth - batch["points"][0, inside, 2]) < 5e-3) > 0.9


def test_load_source_takes_sliced_splits(tmp_path):
  # Training on the labelled m% alone (supervised-only curves) is a sliced split.
  config = small_config(data_dir=str(tmp_path), builder_config="tiny")  # 16 / 8 examples
  part = pipeline.load_source(config, "train[4:8]")
  assert [int(part[i]["index"]) for i in range(len(part))] == [4, 5, 6, 7]
  assert len(pipeline.load_source(config, "train[:25%]")) == 4


def test_content_partner_is_another_member_of_the_group_each_epoch():
  n, size = 24, 4
  for index in range(3 * n):
    i = index % n
    partners = {pipeline.content_partner(i + e * n, n, size) for e in range(size - 1)}
    group = set(range(i // size * size, i // size * size + size))
    assert partners == group - {i}  # Every other member once over size - 1 epochs.


@pytest.mark.skipif(importlib.util.find_spec("handjax.data.builders.synthetic_hands") is None,
                    reason="synthetic_hands builder not present")
def test_content_image_is_the_partners_crop(tmp_path):
  config = small_config(data_dir=str(tmp_path), builder_config="tiny_groups", batch_size=8,
                        content_image=True)
  batch = take(pipeline.make_dataset(config, "test", seed=0), 1)[0]  # Unaugmented, in order.
  for i in range(8):
    partner = pipeline.content_partner(i, 8, 4)
    assert partner // 4 == i // 4 and partner != i
    np.testing.assert_allclose(batch["content_image"][i], batch["image"][partner], atol=1e-6)
  config = small_config(data_dir=str(tmp_path), builder_config="tiny", content_image=True)
  with pytest.raises(ValueError, match="content groups of >= 2"):
    pipeline.make_dataset(config, "test")


def test_trainer_factory_reads_the_configured_train_split(tmp_path):
  # Regression: the trainer asks for "train"; a sliced `train_split` (the labelled-only curves)
  # must be the endless, shuffled training split, not the whole split read once.
  from handjax.train import loop  # pylint: disable=g-import-not-at-top
  config = ml_collections.ConfigDict({"batch_size": 4, "data": small_config(
      data_dir=str(tmp_path), builder_config="tiny", train_split="train[4:8]").to_dict()})
  config.data.augment.enabled = False
  it = iter(loop.resolve_dataset_factory(config)(config, "train", seed=0))
  images = np.concatenate([next(it)["image"] for _ in range(3)])  # three epochs of 4 examples
  assert len({im.tobytes() for im in images}) <= 4
