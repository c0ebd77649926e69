"""FreiHAND builder on a tiny fixture in the original format (tests/fixtures_public.py)."""

import json
import os

import numpy as np
import pytest

import fixtures_public as fx
from handjax.data.builders import _common
from handjax.data.builders import freihand
from handjax.hand import skeleton

NUM = 2  # unique training samples in the fixture


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("frei_manual")
  fx.write_freihand(str(path), num=NUM)
  return path


@pytest.fixture(scope="module")
def built(manual_dir, tmp_path_factory):
  return fx.prepare(freihand.Freihand, "all", manual_dir, tmp_path_factory.mktemp("frei_data"))


def test_splits_and_protocol(built):
  source = built.as_data_source()
  assert {k: len(v) for k, v in source.items()} == {"train": 4 * NUM, "test": 1}
  assert freihand.Freihand.EVAL_PROTOCOL == "procrustes"
  assert built.info.metadata["eval_protocol"] == "procrustes"


def test_training_versions_labels_and_mano(built):
  source = built.as_data_source()["train"]
  for version in range(4):
    for sample in range(NUM):
      ex = source[sample + NUM * version]  # image index = id + N * version
      # The fixture colours image (version, id) as (40 version, 10 id, 200); JPEG is lossy.
      np.testing.assert_allclose(ex["image"][100, 100], [40 * version, 10 * sample, 200], atol=4)
      xyz = fx.dataset_keypoints(21, sample)
      np.testing.assert_allclose(ex["pose3d"], xyz, atol=1e-7)  # already the handjax order
      K = fx.freihand_K(sample)
      uv = np.stack([K[0, 0] * xyz[:, 0] / xyz[:, 2] + K[0, 2],
                     K[1, 1] * xyz[:, 1] / xyz[:, 2] + K[1, 2]], -1)
      np.testing.assert_allclose(ex["uv"], uv, atol=1e-3)
      np.testing.assert_allclose(ex["K"], K)
      np.testing.assert_allclose(ex["mano"], np.ravel(fx.freihand_mano(sample)), atol=1e-6)
      assert bool(ex["has_mano"]) and bool(ex["has_pose3d"]) and bool(ex["has_mask"])
      assert int(ex["hand_side"]) == skeleton.RIGHT
      # No depth in FreiHAND: zeros + has_depth = False, no point cloud.
      assert ex["depth"].shape == (fx.FREIHAND_SIZE, fx.FREIHAND_SIZE, 1)
      assert not ex["depth"].any() and not bool(ex["has_depth"]) and not bool(ex["has_points"])
      assert ex["visible"].all() and not bool(ex["has_visible"])


def test_mask_by_unique_id(built):
  source = built.as_data_source()["train"]
  for sample in range(NUM):
    side = 20 + 10 * sample
    expected = np.zeros((fx.FREIHAND_SIZE, fx.FREIHAND_SIZE), np.uint8)
    expected[50:50 + side, 60:60 + side] = 16
    for version in range(4):
      mask = source[sample + NUM * version]["mask"][..., 0]
      # Away from the square's JPEG-blurred border the labels are exact.
      np.testing.assert_array_equal(mask[52:48 + side, 62:58 + side], 16)
      assert not mask[:45].any() and not mask[:, :55].any()
      assert np.mean(mask != expected) < 0.01


def test_evaluation_split_with_and_without_annotations(built, manual_dir, tmp_path):
  ex = built.as_data_source()["test"][0]
  np.testing.assert_allclose(ex["pose3d"], fx.dataset_keypoints(21, 10), atol=1e-7)
  assert not bool(ex["has_mano"]) and not bool(ex["has_mask"])
  fx.write_freihand(str(tmp_path / "m"), num=1, eval_xyz=False)
  ex = fx.prepare(freihand.Freihand, "gs", tmp_path / "m", tmp_path / "d").as_data_source()
  assert len(ex["train"]) == 1  # the green-screen version only
  test = ex["test"][0]
  assert not bool(test["has_pose3d"]) and not bool(test["has_uv"]) and not test["pose3d"].any()
  np.testing.assert_allclose(test["K"], fx.freihand_K(0))


def test_palm_config(manual_dir, tmp_path):
  ex = fx.prepare(freihand.Freihand, "all_palm", manual_dir, tmp_path / "p").as_data_source()
  xyz = fx.dataset_keypoints(21, 1)
  got = ex["train"][1]["pose3d"]
  np.testing.assert_allclose(got[0], 0.5 * (xyz[0] + xyz[9]), atol=1e-7)  # wrist, middle MCP
  np.testing.assert_allclose(got[1:], xyz[1:], atol=1e-7)


# --- Bad input ---------------------------------------------------------------------------------


def test_missing_manual_dir(tmp_path):
  with pytest.raises(_common.DatasetFormatError, match="does not exist"):
    fx.prepare(freihand.Freihand, "all", tmp_path / "nowhere", tmp_path / "data")


def _rewrite_json(path, edit):
  with open(path) as f:
    data = json.load(f)
  with open(path, "w") as f:
    json.dump(edit(data), f)


@pytest.mark.parametrize("name, edit, message", [
    ("training_xyz.json", lambda d: d[:1] + [np.zeros((3, 21)).tolist()],
     r"training_xyz\.json: entry 1 has shape \(3, 21\); "
     r"expected xyz \(metres\) of shape \(21, 3\)"),
    ("training_K.json", lambda d: d[:1], r"training_K\.json: 1 entries; expected 2"),
    ("training_mano.json", lambda d: {"mano": d}, r"training_mano\.json: a dict; expected a list"),
])
def test_bad_json(tmp_path, name, edit, message):
  root = fx.write_freihand(str(tmp_path / "m"), num=NUM)
  _rewrite_json(os.path.join(root, name), edit)
  with pytest.raises(_common.DatasetFormatError, match=message):
    fx.prepare(freihand.Freihand, "all", tmp_path / "m", tmp_path / "d")
  assert not fx.is_prepared(freihand.Freihand, "all", tmp_path / "d")


def test_truncated_or_missing_jpeg_then_good_prepare(tmp_path):
  root = fx.write_freihand(str(tmp_path / "m"), num=NUM)
  rgb = os.path.join(root, "training", "rgb", "00000005.jpg")  # id 1, version 2
  with open(rgb, "rb") as f:
    saved = f.read()
  fx.truncate(rgb, keep=0.3)
  with pytest.raises(_common.DatasetFormatError, match=r"rgb/00000005\.jpg: cannot decode"):
    fx.prepare(freihand.Freihand, "all", tmp_path / "m", tmp_path / "d")
  assert not fx.is_prepared(freihand.Freihand, "all", tmp_path / "d")
  os.remove(os.path.join(root, "training", "mask", "00000001.jpg"))
  with open(rgb, "wb") as f:
    f.write(saved)
  with pytest.raises(_common.DatasetFormatError, match=r"missing file .*mask/00000001\.jpg"):
    fx.prepare(freihand.Freihand, "all", tmp_path / "m", tmp_path / "d")
  fx.write_freihand(str(tmp_path / "m"), num=NUM)
  builder = fx.prepare(freihand.Freihand, "all", tmp_path / "m", tmp_path / "d")
  assert len(builder.as_data_source()["train"]) == 4 * NUM
