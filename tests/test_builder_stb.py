"""STB builder on a tiny fixture in the original format (tests/fixtures_public.py)."""

import numpy as np
import pytest
import scipy.io

import fixtures_public as fx
from handjax.data.builders import _common
from handjax.data.builders import stb
from handjax.hand import skeleton

# handjax joint j <- STB joint EXPECTED_ORDER[j], written out from specs/datasets.md: STB is palm,
# pinky 1-4, ring 5-8, middle 9-12, index 13-16, thumb 17-20 (each MCP -> tip).
EXPECTED_ORDER = [0, 17, 18, 19, 20, 13, 14, 15, 16, 9, 10, 11, 12, 5, 6, 7, 8, 1, 2, 3, 4]
# Published constants, typed independently of the builder.
K_COLOR = np.array([[607.92271, 0, 314.78337], [0, 607.88192, 236.42484], [0, 0, 1]])
K_DEPTH = np.array([[475.62768, 0, 336.41179], [0, 474.77709, 238.77962], [0, 0, 1]])
K_BB = np.array([[822.79041, 0, 318.47345], [0, 822.79041, 250.31296], [0, 0, 1]])
RVEC = np.array([0.00531, -0.01196, 0.00301])
T_MM = np.array([-24.0381, -0.4563, -1.2326])


def rodrigues(r):
  """Rodrigues' formula, R = cos(t) I + sin(t) [k]x + (1 - cos(t)) k k^T."""
  t = np.linalg.norm(r)
  k = r / t
  kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.cos(t) * np.eye(3) + np.sin(t) * kx + (1 - np.cos(t)) * np.outer(k, k)


def depth_to_color_mm(p_mm):
  """colour = R^T (depth - t), millimetres, one point per row."""
  R = rodrigues(RVEC)
  return np.array([R.T @ (p - T_MM) for p in np.atleast_2d(p_mm)])


def sk_label_mm(seq, frame=0):
  return fx.stb_labels(fx.STB_SEQUENCES.index(seq), frame + 1)[:, :, frame].T  # (21, 3) mm


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
  path = tmp_path_factory.mktemp("stb_manual")
  fx.write_stb(str(path))
  return path


@pytest.fixture(scope="module")
def sk(manual_dir, tmp_path_factory):
  return fx.prepare(stb.Stb, "sk", manual_dir, tmp_path_factory.mktemp("stb_data"))


def test_rodrigues_matches_independent_formula():
  from scipy.spatial.transform import Rotation  # pylint: disable=g-import-not-at-top

  np.testing.assert_allclose(stb.SK_ROTATION, Rotation.from_rotvec(RVEC).as_matrix(), atol=1e-12)
  np.testing.assert_allclose(stb.SK_ROTATION, rodrigues(RVEC), atol=1e-12)


def test_splits_b1_is_test(sk):
  source = sk.as_data_source()
  assert {k: len(v) for k, v in source.items()} == {"train": 10, "test": 2}
  assert stb.Stb.EVAL_PROTOCOL == "root_relative_gt_scale"
  # Example order follows the sequences; the label x offset encodes the sequence index.
  for i, seq in enumerate(("B1Counting", "B1Random")):
    expected = depth_to_color_mm(sk_label_mm(seq))[0] / 1000
    np.testing.assert_allclose(source["test"][i]["pose3d"][0], expected, atol=1e-6)
  for i, seq in enumerate(stb.TRAIN_SEQUENCES):
    expected = depth_to_color_mm(sk_label_mm(seq))[0] / 1000
    np.testing.assert_allclose(source["train"][i]["pose3d"][0], expected, atol=1e-6)
  assert set(stb.TRAIN_SEQUENCES) == set(fx.STB_SEQUENCES[2:])


def test_sk_labels_in_colour_frame_metres_and_order(sk):
  ex = sk.as_data_source()["test"][1]  # B1Random
  colour = depth_to_color_mm(sk_label_mm("B1Random")) / 1000.0  # metres
  np.testing.assert_allclose(ex["pose3d"], colour[EXPECTED_ORDER], atol=1e-6)
  np.testing.assert_allclose(ex["K"], K_COLOR, rtol=1e-7)
  uv = colour[EXPECTED_ORDER] @ K_COLOR.T
  np.testing.assert_allclose(ex["uv"], uv[:, :2] / uv[:, 2:], atol=1e-3)
  assert int(ex["hand_side"]) == skeleton.LEFT
  assert ex["visible"].all() and not bool(ex["has_visible"])
  assert bool(ex["has_depth"]) and not bool(ex["has_mask"]) and not bool(ex["has_points"])
  assert bool(ex["has_pose3d"]) and bool(ex["has_canonical_pose"])


def test_sk_depth_registered_into_colour_camera(sk):
  depth = sk.as_data_source()["train"][3]["depth"][..., 0]
  assert depth.shape == (fx.STB_HEIGHT, fx.STB_WIDTH)
  expected = {}
  for (r, c), mm in fx.STB_DEPTH_MM.items():
    # Back-project with the depth intrinsics at the pixel centre, change frame, project.
    p_d = mm * np.array([(c - K_DEPTH[0, 2]) / K_DEPTH[0, 0],
                         (r - K_DEPTH[1, 2]) / K_DEPTH[1, 1], 1.0])
    p_c = depth_to_color_mm(p_d)[0]
    u = K_COLOR[0, 0] * p_c[0] / p_c[2] + K_COLOR[0, 2]
    v = K_COLOR[1, 1] * p_c[1] / p_c[2] + K_COLOR[1, 2]
    expected[(int(np.floor(v + 0.5)), int(np.floor(u + 0.5)))] = p_c[2] / 1000
  assert np.count_nonzero(depth) == len(expected)
  for (v, u), z in expected.items():
    assert depth[v, u] == pytest.approx(z, rel=1e-6)


def test_register_depth_z_buffer_keeps_nearest():
  # Target focal length = source / 2: each 2x2 block of source pixels lands on one pixel.
  K_src = np.array([[10.0, 0, -0.5], [0, 10.0, -0.5], [0, 0, 1]])
  K_dst = np.array([[5.0, 0, -0.25], [0, 5.0, -0.25], [0, 0, 1]])
  depth = np.array([[2.0, 1.5, 0.0, 0.0],
                    [3.0, 2.5, 0.0, 4.0],
                    [0.0, 0.0, 0.0, 0.0],
                    [0.0, 0.0, 0.0, 0.0]])
  out = stb.register_depth(depth, K_src, K_dst, lambda p: p, (2, 2))
  # Brute force: pixel (r, c) has u = (c + 0.5) / 2 - 0.25 = c / 2 (scale 1/2 of the centre).
  brute = np.full((2, 2), np.inf)
  for r in range(4):
    for c in range(4):
      if depth[r, c] > 0:
        v, u = int(np.floor(r / 2 + 0.5)), int(np.floor(c / 2 + 0.5))
        if v < 2 and u < 2:
          brute[v, u] = min(brute[v, u], depth[r, c])
  brute[np.isinf(brute)] = 0
  np.testing.assert_allclose(out, brute)
  assert out[0, 0] == 2.0 and out[0, 1] == 1.5  # 1.5 beats 2.5 on pixel (0, 1).


def test_wrist_and_bb_configs(manual_dir, tmp_path):
  wrist = fx.prepare(stb.Stb, "sk_wrist", manual_dir, tmp_path / "w").as_data_source()["test"][0]
  colour = depth_to_color_mm(sk_label_mm("B1Counting")) / 1000.0
  palm, ring_mcp = colour[0], colour[5]  # STB palm, ring MCP
  np.testing.assert_allclose(wrist["pose3d"][0], ring_mcp + 2 * (palm - ring_mcp), atol=1e-6)
  np.testing.assert_allclose(wrist["pose3d"][1:], colour[EXPECTED_ORDER[1:]], atol=1e-6)

  bb = fx.prepare(stb.Stb, "bb", manual_dir, tmp_path / "bb").as_data_source()
  assert {k: len(v) for k, v in bb.items()} == {"train": 20, "test": 4}
  bb_mm = sk_label_mm("B1Random") + 5.0  # the fixture's BB labels are the SK ones + 5 mm.
  left, right = bb["test"][2], bb["test"][3]
  np.testing.assert_allclose(left["pose3d"], bb_mm[EXPECTED_ORDER] / 1000, atol=1e-6)
  np.testing.assert_allclose(right["pose3d"], (bb_mm[EXPECTED_ORDER] - [120.054, 0, 0]) / 1000,
                             atol=1e-6)
  for ex in (left, right):
    np.testing.assert_allclose(ex["K"], K_BB, rtol=1e-7)
    assert not bool(ex["has_depth"])
  # The right view's image is the fixture's colour + 1.
  assert int(right["image"][0, 0, 2]) == int(left["image"][0, 0, 2]) + 1 == 8


# --- Bad input ---------------------------------------------------------------------------------


def test_missing_manual_dir(tmp_path):
  with pytest.raises(_common.DatasetFormatError, match="does not exist"):
    fx.prepare(stb.Stb, "sk", tmp_path / "nowhere", tmp_path / "data")


@pytest.mark.parametrize("content, message", [
    ({"handPara": np.zeros((21, 3, 1))}, r"B3Random_SK\.mat handPara .*shape \(21, 3, 1\), "
                                          r"expected \(3, 21, None\)"),
    ({"other": np.zeros((3, 21, 1))}, r"B3Random_SK\.mat: no variable handPara"),
])
def test_mat_with_wrong_content(tmp_path, content, message):
  fx.write_stb(str(tmp_path / "manual"), size=(8, 8))
  scipy.io.savemat(str(tmp_path / "manual" / "labels" / "B3Random_SK.mat"), content)
  with pytest.raises(_common.DatasetFormatError, match=message):
    fx.prepare(stb.Stb, "sk", tmp_path / "manual", tmp_path / "data")
  assert not fx.is_prepared(stb.Stb, "sk", tmp_path / "data")


def test_missing_image_fails_then_good_prepare_works(tmp_path):
  fx.write_stb(str(tmp_path / "manual"), size=(8, 8))
  image = tmp_path / "manual" / "images" / "B4Counting" / "SK_depth_0.png"
  saved = image.read_bytes()
  image.unlink()
  data = tmp_path / "data"
  with pytest.raises(_common.DatasetFormatError,
                     match=r"missing file .*B4Counting/SK_depth_0\.png"):
    fx.prepare(stb.Stb, "sk", tmp_path / "manual", data)
  assert not fx.is_prepared(stb.Stb, "sk", data)
  fx.truncate(str(tmp_path / "manual" / "images" / "B1Random" / "SK_color_0.png"))
  image.write_bytes(saved)
  with pytest.raises(_common.DatasetFormatError, match=r"B1Random/SK_color_0\.png: cannot decode"):
    fx.prepare(stb.Stb, "sk", tmp_path / "manual", data)
  assert not fx.is_prepared(stb.Stb, "sk", data)
  fx.write_stb(str(tmp_path / "manual"), size=(8, 8))
  builder = fx.prepare(stb.Stb, "sk", tmp_path / "manual", data)
  assert fx.is_prepared(stb.Stb, "sk", data)
  assert len(builder.as_data_source()["train"]) == 10
