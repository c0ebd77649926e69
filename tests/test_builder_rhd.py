"""RHD builder on a tiny fixture in the original format (tests/fixtures_public.py)."""

import os
import pickle

import numpy as np
import pytest

import fixtures_public as fx
from handjax.data.builders import _common
from handjax.data.builders import rhd
from handjax.hand import skeleton

# handjax joint j <- RHD keypoint EXPECTED_ORDER[j] (left hand), written out by hand from
# specs/datasets.md: wrist, then each finger MCP -> tip while RHD stores tip -> MCP.
EXPECTED_ORDER = [0, 4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9, 16, 15, 14, 13, 20, 19, 18, 17]
# Fixture masks: left 40 / right 30 -> left; 20 / 50 -> right; 25 / 25 (tie) -> right.
EXPECTED_SIDES = [skeleton.LEFT, skeleton.RIGHT, skeleton.RIGHT]


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("rhd_manual")
  fx.write_rhd(str(path))
  return path


@pytest.fixture(scope="module")
def dominant(manual_dir, tmp_path_factory):
  return fx.prepare(rhd.Rhd, "dominant", manual_dir, tmp_path_factory.mktemp("rhd_data"))


def _rhd_index(pose3d, sample):
  # Fixture x = 0.001 * (RHD index) + 0.1 * sample.
  return np.round((np.asarray(pose3d)[:, 0] - 0.1 * sample) * 1000).astype(int).tolist()


def test_splits_and_eval_protocol(dominant):
  source = dominant.as_data_source()
  assert {k: len(v) for k, v in source.items()} == {"train": 3, "test": 1}
  assert rhd.Rhd.EVAL_PROTOCOL == "root_relative_gt_scale"
  assert dominant.info.metadata["eval_protocol"] == "root_relative_gt_scale"


def test_dominant_hand_joint_order_and_labels(dominant):
  source = dominant.as_data_source()["train"]
  for sample in range(3):
    ex = source[sample]
    side = EXPECTED_SIDES[sample]
    offset = 0 if side == skeleton.LEFT else 21
    expected = [i + offset for i in EXPECTED_ORDER]
    assert int(ex["hand_side"]) == side
    assert _rhd_index(ex["pose3d"], sample) == expected
    anno = fx.rhd_annotation(sample)
    np.testing.assert_allclose(ex["pose3d"], anno["xyz"][expected], atol=1e-7)
    # uv_vis of the fixture: u = i + 0.25, v = 2 i + 0.5 + sample, visible iff i % 3 != 0.
    idx = np.asarray(expected, np.float64)
    np.testing.assert_allclose(ex["uv"][:, 0], idx + 0.25, atol=1e-5)
    np.testing.assert_allclose(ex["uv"][:, 1], 2 * idx + 0.5 + sample, atol=1e-5)
    np.testing.assert_array_equal(ex["visible"], idx % 3 != 0)
    np.testing.assert_allclose(ex["K"], [[280 + sample, 0, 160], [0, 281 + sample, 161], [0, 0, 1]])
    for key in _common.FLAGGED_KEYS:
      assert bool(ex[f"has_{key}"]), key


def test_dominant_hand_rule_and_tie():
  mask = np.zeros((4, 4), np.uint8)
  mask[0, :3] = [2, 9, 17]  # 3 left pixels (labels 2..17)
  mask[1, :2] = [18, 33]    # 2 right pixels (labels >= 18)
  mask[2, :] = 1            # the person counts for neither
  assert rhd.hand_pixel_counts(mask) == (3, 2)
  assert rhd.dominant_hand(mask) == skeleton.LEFT
  mask[1, 2] = 25           # 3 / 3: a tie goes to the right hand
  assert rhd.dominant_hand(mask) == skeleton.RIGHT
  mask[1, 3] = 20
  assert rhd.dominant_hand(mask) == skeleton.RIGHT


def test_depth_decoded_to_metres(dominant):
  depth = dominant.as_data_source()["train"][0]["depth"][..., 0]
  assert depth.shape == (fx.RHD_SIZE, fx.RHD_SIZE)
  # (R * 256 + G) / 65535 * 5 with the bytes the fixture wrote.
  assert depth[3, 7] == pytest.approx((0x12 * 256 + 0x34) / 65535 * 5.0, rel=1e-6)
  assert depth[20, 5] == pytest.approx(5.0, rel=1e-6)
  assert depth[0, 0] == pytest.approx(5.0 / 65535, rel=1e-6)
  assert depth[10, 11] == pytest.approx((20000 + 3000 + 77) / 65535 * 5.0, rel=1e-6)


def test_mask_part_labels(dominant):
  ex = dominant.as_data_source()["train"][0]  # left hand
  raw = fx.rhd_mask(0)
  np.testing.assert_array_equal(ex["rhd_mask"][..., 0], raw)
  mask = ex["mask"][..., 0].astype(int)
  left = (raw >= 2) & (raw <= 17)
  # Thumb 2 -> 1, ..., palm 17 -> 16.
  np.testing.assert_array_equal(mask[left], raw[left].astype(int) - 1)
  np.testing.assert_array_equal(mask[raw >= 18], 17)  # the other hand: other foreground
  np.testing.assert_array_equal(mask[raw == 1], 17)   # the person
  np.testing.assert_array_equal(mask[raw == 0], 0)
  right_ex = dominant.as_data_source()["train"][1]
  raw1 = fx.rhd_mask(1)
  np.testing.assert_array_equal(right_ex["mask"][..., 0][raw1 >= 18], raw1[raw1 >= 18] - 17)


def test_points_lie_on_depth_surface_inside_hand_mask(dominant):
  for sample in range(3):
    ex = dominant.as_data_source()["train"][sample]
    points, K = np.asarray(ex["points"], np.float64), np.asarray(ex["K"], np.float64)
    raw = fx.rhd_mask(sample)
    left = EXPECTED_SIDES[sample] == skeleton.LEFT
    hand = ((raw >= 2) & (raw <= 17)) if left else (raw >= 18)
    rows, cols = np.mgrid[:fx.RHD_SIZE, :fx.RHD_SIZE]
    code = fx.rhd_depth_code(rows, cols).astype(np.float64)
    for (r, c), (hi, lo) in fx.RHD_DEPTH_BYTES.items():
      code[r, c] = hi * 256 + lo
    depth = code / 65535 * 5.0
    # Each point projects onto a pixel centre of the hand, at that pixel's depth.
    u = K[0, 0] * points[:, 0] / points[:, 2] + K[0, 2]
    v = K[1, 1] * points[:, 1] / points[:, 2] + K[1, 2]
    iu, iv = np.round(u).astype(int), np.round(v).astype(int)
    np.testing.assert_allclose(u, iu, atol=1e-3)
    np.testing.assert_allclose(v, iv, atol=1e-3)
    assert hand[iv, iu].all()
    np.testing.assert_allclose(points[:, 2], depth[iv, iu], rtol=1e-6)
    # n hand pixels < P: the cloud cycles through all of them (point i = point i mod n).
    n = int(hand.sum())
    assert len(set(zip(iv.tolist(), iu.tolist()))) == n
    np.testing.assert_array_equal(points[n:2 * n], points[:n])


def test_canonical_pose_reconstructs_pose(dominant):
  for sample in range(3):
    ex = dominant.as_data_source()["train"][sample]
    pose = np.asarray(ex["pose3d"], np.float64)
    rel = pose - pose[0]
    rel = rel / np.linalg.norm(pose[skeleton.MIDDLE_PIP] - pose[skeleton.MIDDLE_MCP])
    canonical = np.asarray(ex["canonical_pose"], np.float64)
    if int(ex["hand_side"]) == skeleton.RIGHT:
      canonical = canonical * [1, 1, -1]  # right hands are mirrored in the canonical frame.
    np.testing.assert_allclose(canonical @ np.asarray(ex["viewpoint"], np.float64).T, rel,
                               atol=1e-4)


def test_both_hands_and_palm_configs(manual_dir, tmp_path):
  both = fx.prepare(rhd.Rhd, "both_hands", manual_dir, tmp_path / "both").as_data_source()
  assert len(both["train"]) == 6
  for sample in range(3):
    for k, side in enumerate((skeleton.LEFT, skeleton.RIGHT)):
      ex = both["train"][2 * sample + k]
      assert int(ex["hand_side"]) == side
      assert _rhd_index(ex["pose3d"], sample) == [i + 21 * k for i in EXPECTED_ORDER]
  palm = fx.prepare(rhd.Rhd, "dominant_palm", manual_dir, tmp_path / "palm").as_data_source()
  ex = palm["train"][0]  # left hand: wrist = RHD 0, middle MCP = RHD 12.
  xyz = fx.rhd_annotation(0)["xyz"].astype(np.float64)
  np.testing.assert_allclose(ex["pose3d"][0], 0.5 * (xyz[0] + xyz[12]), atol=1e-7)
  np.testing.assert_allclose(ex["pose3d"][1:], xyz[EXPECTED_ORDER[1:]], atol=1e-7)
  K = np.asarray(ex["K"], np.float64)
  p = 0.5 * (xyz[0] + xyz[12])
  np.testing.assert_allclose(ex["uv"][0], [K[0, 0] * p[0] / p[2] + K[0, 2],
                                           K[1, 1] * p[1] / p[2] + K[1, 2]], rtol=1e-5)
  # wrist (RHD 0) is invisible in the fixture (0 % 3 == 0), so the palm is too.
  assert not bool(ex["visible"][0])


def test_constants_match_synthetic_hands():
  from handjax.data.synthetic import hand_model  # pylint: disable=g-import-not-at-top
  from handjax.data.synthetic import render  # pylint: disable=g-import-not-at-top

  assert _common.NUM_POINTS == render.NUM_POINTS
  assert _common.PART_PALM == hand_model.PART_PALM
  assert _common.PART_FOREARM == hand_model.PART_FOREARM
  assert _common.PART_BACKGROUND == hand_model.PART_BACKGROUND


# --- Bad input ---------------------------------------------------------------------------------


def test_missing_manual_dir(tmp_path):
  with pytest.raises(_common.DatasetFormatError, match="does not exist"):
    fx.prepare(rhd.Rhd, "dominant", tmp_path / "nowhere", tmp_path / "data")
  os.makedirs(tmp_path / "empty")
  with pytest.raises(_common.DatasetFormatError, match="RHD_published_v2.*training"):
    fx.prepare(rhd.Rhd, "dominant", tmp_path / "empty", tmp_path / "data")


def test_missing_file_fails_then_good_prepare_works(tmp_path):
  fx.write_rhd(str(tmp_path / "manual"))
  mask = tmp_path / "manual" / "RHD_published_v2" / "training" / "mask" / "00001.png"
  saved = mask.read_bytes()
  mask.unlink()
  data = tmp_path / "data"
  with pytest.raises(_common.DatasetFormatError, match=r"missing file .*mask/00001\.png"):
    fx.prepare(rhd.Rhd, "dominant", tmp_path / "manual", data)
  assert not fx.is_prepared(rhd.Rhd, "dominant", data)
  mask.write_bytes(saved)
  builder = fx.prepare(rhd.Rhd, "dominant", tmp_path / "manual", data)
  assert fx.is_prepared(rhd.Rhd, "dominant", data)
  assert len(builder.as_data_source()["train"]) == 3


def test_truncated_image(tmp_path):
  fx.write_rhd(str(tmp_path / "manual"))
  colour = tmp_path / "manual" / "RHD_published_v2" / "training" / "color" / "00002.png"
  fx.truncate(str(colour))
  with pytest.raises(_common.DatasetFormatError, match=r"color/00002\.png: cannot decode"):
    fx.prepare(rhd.Rhd, "dominant", tmp_path / "manual", tmp_path / "data")
  assert not fx.is_prepared(rhd.Rhd, "dominant", tmp_path / "data")


@pytest.mark.parametrize("corrupt, message", [
    (lambda a: a[1].pop("uv_vis"), r"anno_training\.pickle: sample 1 has \['K', 'xyz'\]; "
                                   r"expected .*'uv_vis'"),
    (lambda a: a[0].update(xyz=np.zeros((21, 3))), r"sample 0 'xyz': shape \(21, 3\), "
                                                    r"expected \(42, 3\)"),
])
def test_pickle_without_expected_keys(tmp_path, corrupt, message):
  root = fx.write_rhd(str(tmp_path / "manual"))
  path = os.path.join(root, "training", "anno_training.pickle")
  with open(path, "rb") as f:
    annos = pickle.load(f)
  corrupt(annos)
  with open(path, "wb") as f:
    pickle.dump(annos, f)
  with pytest.raises(_common.DatasetFormatError, match=message):
    fx.prepare(rhd.Rhd, "dominant", tmp_path / "manual", tmp_path / "data")


def test_pipeline_reads_rhd_by_name(manual_dir, tmp_path):
  """`--config.dataset=rhd` (+ manual_dir) is all a config needs to switch to RHD."""
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top

  config = pipeline.default_data_config()
  config.dataset, config.manual_dir, config.data_dir = "rhd", str(manual_dir), str(tmp_path)
  config.batch_size, config.image_size, config.num_points = 1, 16, 8
  batch = next(iter(pipeline.make_dataset(config, "test")))
  assert batch["image"].shape == (1, 16, 16, 3)
  assert bool(batch["has_points"][0]) and bool(batch["has_depth"][0])
  # Sample 0 is a left hand; its wrist is RHD keypoint 0 of the fixture (x = 0).
  assert int(batch["hand_side"][0]) == skeleton.LEFT
  np.testing.assert_allclose(batch["root"][0], fx.rhd_annotation(0)["xyz"][0], atol=1e-5)


def test_index_is_source_position(manual_dir, tmp_path):
  both = fx.prepare(rhd.Rhd, "both_hands", manual_dir, tmp_path).as_data_source()["train"]
  assert [int(both[i]["index"]) for i in range(len(both))] == list(range(6))


# --- Files from elsewhere are data, never code ---------------------------------------------------


class _WritesMarker:
  """Pickles as `os.system("touch <marker>")`: plain `pickle.load` would run it."""

  def __init__(self, marker):
    self.marker = str(marker)

  def __reduce__(self):
    return os.system, (f"touch '{self.marker}'",)


def test_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
  root = fx.write_rhd(str(tmp_path / "manual"), num_train=2)
  path = os.path.join(root, "training", "anno_training.pickle")
  with open(path, "rb") as f:
    annos = pickle.load(f)
  annos[1]["xyz"] = _WritesMarker(tmp_path / "marker")
  with open(path, "wb") as f:
    pickle.dump(annos, f)
  refused = f"{os.system.__module__}.system"  # posix.system on Linux
  with pytest.raises(_common.DatasetFormatError,
                     match=rf"anno_training\.pickle: refused to unpickle global {refused} "):
    fx.prepare(rhd.Rhd, "dominant", tmp_path / "manual", tmp_path / "data")
  assert not (tmp_path / "marker").exists()
  assert not fx.is_prepared(rhd.Rhd, "dominant", tmp_path / "data")
  # Control: the file is hostile - the unrestricted loader runs the command.
  with open(path, "rb") as f:
    pickle.load(f)
  assert (tmp_path / "marker").exists()


@pytest.mark.parametrize("payload, refused", [
    (b"cbuiltins\neval\n(V1\ntR.", "builtins.eval"),  # an allowed module, a refused name
    (b"c__builtin__\ngetattr\n(I1\nVreal\ntR.", "__builtin__.getattr"),  # Python 2 spelling
    (b"csubprocess\nPopen\n(Vtrue\ntR.", "subprocess.Popen"),
    (b"cnumpy\nload\n(Vx\ntR.", "numpy.load"),  # numpy, but not array reconstruction
])
def test_read_pickle_refuses_every_other_global(tmp_path, payload, refused):
  (tmp_path / "p.pickle").write_bytes(payload)
  with pytest.raises(_common.DatasetFormatError,
                     match=rf"p\.pickle: refused to unpickle global {refused} "):
    _common.read_pickle(str(tmp_path / "p.pickle"), "data")


def test_read_pickle_codecs_encode_is_latin1_only(tmp_path):
  (tmp_path / "p.pickle").write_bytes(b"c_codecs\nencode\n(Vab\nVrot13\ntR.")
  with pytest.raises(_common.DatasetFormatError, match="only latin-1 encoding"):
    _common.read_pickle(str(tmp_path / "p.pickle"), "data")


def _rhd_like():
  """RHD's structure (specs/datasets.md) plus the other data types pickle writes as globals."""
  annos = {i: fx.rhd_annotation(i) for i in range(3)}
  annos[0]["uv_vis"] = annos[0]["uv_vis"].astype(np.float32)
  annos[1]["extra"] = [np.int64(7), np.float32(0.5), np.bool_(True), 1 + 2j, {1, 2},
                       frozenset("ab"), b"raw", bytearray(b"ba"), (1, "x"), None,
                       np.zeros((0, 3), np.int16), np.arange(6, dtype=np.uint8).reshape(2, 3).T]
  return annos


def _assert_same(got, want):
  assert type(got) is type(want)
  if isinstance(want, np.ndarray) or isinstance(want, np.generic):
    assert got.dtype == want.dtype and np.shape(got) == np.shape(want)
    np.testing.assert_array_equal(got, want)
  elif isinstance(want, dict):
    assert list(got) == list(want)
    for key in want:
      _assert_same(got[key], want[key])
  elif isinstance(want, (list, tuple)):
    assert len(got) == len(want)
    for g, w in zip(got, want):
      _assert_same(g, w)
  else:
    assert got == want


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_rhd_like_pickle_loads_exactly_as_before(tmp_path, protocol):
  data = pickle.dumps(_rhd_like(), protocol=protocol)
  (tmp_path / "p.pickle").write_bytes(data)
  _assert_same(_common.read_pickle(str(tmp_path / "p.pickle"), "data"), pickle.loads(data))


def test_numpy1_and_python2_names_load(tmp_path):
  """NumPy 1.x writes `numpy.core.multiarray`, Python 2 `__builtin__` (protocol 0 text)."""
  data = pickle.dumps(_rhd_like(), protocol=0)
  assert b"numpy._core.multiarray" in data and b"c__builtin__\nset" in data
  (tmp_path / "p.pickle").write_bytes(data.replace(b"numpy._core.", b"numpy.core."))
  _assert_same(_common.read_pickle(str(tmp_path / "p.pickle"), "data"), pickle.loads(data))


def test_oversized_image_is_refused_before_decoding(tmp_path, monkeypatch):
  from PIL import ImageFile  # pylint: disable=g-import-not-at-top

  def no_decode(self):
    raise AssertionError(f"decoded {self.size}")

  monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
  fx.write_bomb_png(str(tmp_path / "big.png"), 8000, 6000)  # 48 MP, under Pillow's own limit
  with pytest.raises(_common.DatasetFormatError,
                     match=r"'.*big\.png' is 8000x6000 = 48000000 pixels, above the limit of "
                           r"40000000 .* Expected an RGB PNG\."):
    _common.read_image(str(tmp_path / "big.png"), "RGB", "an RGB PNG")
  fx.write_bomb_png(str(tmp_path / "bomb.png"), 15000, 15000)  # Pillow's DecompressionBombError
  with pytest.raises(_common.DatasetFormatError,
                     match=r"'.*bomb\.png' is 225000000 pixels, above the limit of 40000000"):
    _common.read_image(str(tmp_path / "bomb.png"), "L", "a mask")


def test_oversized_colour_image_stops_the_build(tmp_path):
  root = fx.write_rhd(str(tmp_path / "manual"), num_train=1)
  fx.write_bomb_png(os.path.join(root, "training", "color", "00000.png"), 15000, 15000)
  with pytest.raises(_common.DatasetFormatError,
                     match=r"color/00000\.png' is 225000000 pixels, above the limit"):
    fx.prepare(rhd.Rhd, "dominant", tmp_path / "manual", tmp_path / "data")
  assert not fx.is_prepared(rhd.Rhd, "dominant", tmp_path / "data")


@pytest.mark.parametrize("array, mode, save_as, words", [
    (np.full((8, 8), 300, np.uint16), "RGB", "png", r"16-bit grey-scale \(PIL mode I;16\)"),
    (np.full((8, 8), 300, np.uint16), "L", "png", r"16-bit grey-scale \(PIL mode I;16\)"),
    (np.full((8, 8, 4), 9, np.uint8), "RGB", "tiff", r"CMYK \(print colours\) \(PIL mode CMYK\)"),
    (np.full((8, 8), 0.5, np.float32), "L", "tiff", r"32-bit float grey-scale \(PIL mode F\)"),
])
def test_image_mode_a_builder_cannot_take_is_refused_in_words(tmp_path, array, mode, save_as,
                                                              words):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  image = Image.fromarray(array, "CMYK") if array.ndim == 3 else Image.fromarray(array)
  path = str(tmp_path / f"x.{save_as}")
  image.save(path)
  with pytest.raises(_common.DatasetFormatError,
                     match=rf"x\.{save_as}: {words} image; expected an 8-bit file \(PIL modes "):
    _common.read_image(path, mode, "an 8-bit file")
