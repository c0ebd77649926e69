"""Generic evaluation over a whole split, and the evaluate/predict/train binaries."""

import dataclasses
import gc
import json
import os
import subprocess
import sys

import jax
import numpy as np
from PIL import Image
import pytest

import fixtures_public as fx
from experiments.configs import toy as toy_config
from handjax import image_files
from handjax.hand import skeleton
from handjax.train import evaluation
from handjax.train import images
from handjax.train import inference
from handjax.train import loop
from handjax.train import sharding
from handjax.train import state as state_lib
from handjax.train import toy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
  config = toy_config.get_config()
  config.update_from_flattened_dict({"batch_size": 16, "num_steps": 6, "log_every": 3,
                                     "checkpoint_every": 3, "eval_every": 0,
                                     "data.image_size": 4, "data.num_train": 40,
                                     "data.num_test": 50})
  return config


def test_predict_split_covers_every_example_once_and_summary_matches_numpy():
  config = _config()
  method = toy.toy_method(config)
  mesh = sharding.make_mesh()  # 8 devices, 16 per batch: the last of 4 batches has 2 examples.
  test = toy._toy_arrays("test", 50, 4)
  state, _ = state_lib.create_train_state(
      method, 0, sharding.global_batch({k: v[:16] for k, v in test.items()}, mesh), mesh)
  batches = toy.toy_dataset(config, "test", process_index=0, process_count=1, seed=0)
  out = evaluation.predict_split(method, state.params, state.model_state, batches, mesh, 16)
  rel = lambda p: p - p[:, :1]  # The protocol compares root-relative poses (root = joint 0).
  gt = rel(test["pose3d"])
  np.testing.assert_allclose(out["pose3d"], gt, atol=1e-7)
  host = sharding.to_host(state)
  want = rel(method.predict(host.params, host.model_state, {"image": test["image"]})["pose3d"])
  np.testing.assert_allclose(out["pred_pose3d"], want, rtol=1e-5, atol=1e-7)

  errors = np.sqrt(((want - gt) ** 2).sum(-1))  # (50, 21), metres
  summary = evaluation.summarize(out["pred_pose3d"], out["pose3d"])
  baseline = np.sqrt(((gt.mean(0) - gt) ** 2).sum(-1))  # the constant mean-pose predictor
  np.testing.assert_allclose(summary["mean_pose_epe_mm"], 1000 * baseline.mean(), rtol=1e-5)
  np.testing.assert_allclose(summary["mean_epe_mm"], 1000 * errors.mean(), rtol=1e-5)
  np.testing.assert_allclose(summary["median_epe_mm"], 1000 * np.median(errors), rtol=1e-5)
  np.testing.assert_allclose(summary["per_joint_epe_mm"], 1000 * errors.mean(0), rtol=1e-5, atol=1e-4)
  for name, thresholds in (("auc_20_50", np.arange(20, 51) / 1000),
                           ("auc_20_50_reference", np.linspace(0, 0.05, 20)[8:])):
    pck = [(errors <= t).mean() for t in thresholds]
    area = sum((pck[i] + pck[i + 1]) / 2 * (thresholds[i + 1] - thresholds[i])
               for i in range(len(pck) - 1)) / (thresholds[-1] - thresholds[0])
    np.testing.assert_allclose(summary[name], area, rtol=1e-6, atol=1e-9)


def test_predict_split_compiles_once_per_method_and_forgets_dead_methods():
  """The periodic evaluation reuses one compiled predictor (it used to retrace every call)."""
  config = _config()
  traces = []
  toy_method = toy.toy_method(config)

  def counting_predict(params, model_state, batch):
    traces.append(1)  # Python runs only while jax traces
    return toy_method.predict(params, model_state, batch)

  method = dataclasses.replace(toy_method, predict=counting_predict)
  mesh = sharding.make_mesh(jax.devices()[:1])
  test = toy._toy_arrays("test", 50, 4)
  state, _ = state_lib.create_train_state(
      method, 0, sharding.global_batch({k: v[:16] for k, v in test.items()}, mesh), mesh)
  batches = lambda: toy.toy_dataset(config, "test", process_index=0, process_count=1, seed=0)
  first = evaluation.predict_split(method, state.params, state.model_state, batches(), mesh, 16)
  moved = jax.tree.map(lambda x: x * 1.5, state.params)  # new values, same shapes: no retrace
  second = evaluation.predict_split(method, moved, state.model_state, batches(), mesh, 16)
  assert len(traces) == 1
  want = toy_method.predict(sharding.to_host(moved), sharding.to_host(state.model_state),
                            {"image": test["image"]})["pose3d"]
  np.testing.assert_allclose(second["pred_pose3d"], want - want[:, :1], rtol=1e-5, atol=1e-7)
  assert not np.allclose(first["pred_pose3d"], second["pred_pose3d"])
  key = (id(method), 0)
  assert key in evaluation._PREDICTORS
  del method
  gc.collect()
  assert key not in evaluation._PREDICTORS


def test_unlabelled_and_invisible_joints_are_left_out():
  config = _config()
  method = toy.toy_method(config)
  mesh = sharding.make_mesh(jax.devices()[:2])
  test = toy._toy_arrays("test", 50, 4)
  state, _ = state_lib.create_train_state(
      method, 0, sharding.global_batch({k: v[:16] for k, v in test.items()}, mesh), mesh)
  visible = np.random.default_rng(0).random((50, 21)) > 0.3
  has_pose3d = np.arange(50) % 3 != 0

  def batches():
    for i in range(0, 50, 16):
      yield {**{k: v[i:i + 16] for k, v in test.items()}, "visible": visible[i:i + 16],
             "has_pose3d": has_pose3d[i:i + 16]}

  out = evaluation.predict_split(method, state.params, state.model_state, batches(), mesh, 16)
  np.testing.assert_array_equal(out["visible"], visible & has_pose3d[:, None])
  errors = np.sqrt(((out["pred_pose3d"] - (test["pose3d"] - test["pose3d"][:, :1])) ** 2).sum(-1))
  summary = evaluation.summarize(out["pred_pose3d"], out["pose3d"], out["visible"])
  np.testing.assert_allclose(summary["mean_epe_mm"], 1000 * errors[out["visible"]].mean(),
                             rtol=1e-6)


# --- Image loading -------------------------------------------------------------------------------


def test_load_image_errors_are_clear(tmp_path):
  with pytest.raises(images.ImageError, match="does not exist"):
    images.load_rgb_image(str(tmp_path / "missing.png"))
  with pytest.raises(images.ImageError, match="is a directory"):
    images.load_rgb_image(str(tmp_path))
  (tmp_path / "junk.png").write_bytes(b"definitely not a png")
  with pytest.raises(images.ImageError, match="not an image format"):
    images.load_rgb_image(str(tmp_path / "junk.png"))
  Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "ok.png")
  data = (tmp_path / "ok.png").read_bytes()
  (tmp_path / "truncated.png").write_bytes(data[:len(data) // 2])
  with pytest.raises(images.ImageError, match="could not be decoded|not an image format"):
    images.load_rgb_image(str(tmp_path / "truncated.png"))
  Image.fromarray(np.zeros((10, 40, 3), np.uint8)).save(tmp_path / "tiny.png")
  with pytest.raises(images.ImageError, match=r"40x10 pixels; need at least 16"):
    images.load_rgb_image(str(tmp_path / "tiny.png"))


def test_load_image_converts_modes(tmp_path):
  grey = np.arange(32 * 48, dtype=np.uint8).reshape(32, 48)
  Image.fromarray(grey, "L").save(tmp_path / "grey.png")
  image, notes = images.load_rgb_image(str(tmp_path / "grey.png"))
  assert image.shape == (32, 48, 3) and image.dtype == np.uint8
  np.testing.assert_array_equal(image, np.repeat(grey[..., None], 3, -1))
  assert any("mode L" in n for n in notes)

  rgba = np.zeros((20, 20, 4), np.uint8)
  rgba[..., 0] = 200
  rgba[:10, :, 3] = 255  # top half opaque red, bottom half transparent
  Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
  image, notes = images.load_rgb_image(str(tmp_path / "rgba.png"))
  np.testing.assert_array_equal(image[0, 0], [200, 0, 0])
  np.testing.assert_array_equal(image[-1, -1], [255, 255, 255])
  assert any("alpha" in n for n in notes)

  deep = (np.arange(20 * 20).reshape(20, 20) * 100).astype(np.uint16)
  Image.fromarray(deep).save(tmp_path / "deep.png")  # 16-bit grey-scale
  image, notes = images.load_rgb_image(str(tmp_path / "deep.png"))
  assert image.max() == 255 and image[0, 0, 0] == 0
  want = np.round(255.0 * deep.astype(np.float64) / deep.max()).astype(np.uint8)
  np.testing.assert_array_equal(image[..., 0], want)


def _forbid_decoding(monkeypatch):
  from PIL import ImageFile  # pylint: disable=g-import-not-at-top

  def no_decode(self):
    raise AssertionError(f"decoded {self.size}")

  monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)


def test_load_image_refuses_oversized_without_decoding(tmp_path, monkeypatch):
  _forbid_decoding(monkeypatch)
  size = fx.write_bomb_png(str(tmp_path / "bomb.png"), 15000, 15000)
  assert size < 100_000  # small on disk, 225 MP (675 MB as RGB) decoded
  with pytest.raises(images.ImageError,
                     match=r"^Image '.*bomb\.png' is 225000000 pixels, above the limit of "
                           r"40000000 \(40 MP\); it was not decoded\."):
    images.load_rgb_image(str(tmp_path / "bomb.png"))
  # Under Pillow's own limits (89.5 MP warns, 179 MP raises): our header check refuses it.
  fx.write_bomb_png(str(tmp_path / "big.png"), 8000, 6000)
  with pytest.raises(images.ImageError,
                     match=r"'.*big\.png' is 8000x6000 = 48000000 pixels, above the limit"):
    images.load_rgb_image(str(tmp_path / "big.png"))


def test_pixel_limit_boundary():
  assert image_files.MAX_PIXELS == 40_000_000
  image_files.check_pixels("ok.png", 8000, 5000)  # exactly the limit passes
  with pytest.raises(image_files.ImageTooLargeError, match=r"'no\.png' is 8001x5000 = 40005000"):
    image_files.check_pixels("no.png", 8001, 5000)


def test_load_image_converts_cmyk_and_float_in_words(tmp_path):
  cmyk = np.zeros((16, 16, 4), np.uint8)
  cmyk[:8, :, 1] = 255  # magenta ink on the top half
  cmyk[8:, :, 3] = 128  # half black on the bottom half
  Image.fromarray(cmyk, "CMYK").save(tmp_path / "print.tiff")
  image, notes = images.load_rgb_image(str(tmp_path / "print.tiff"))
  # R = (255 - C)(255 - K) / 255 per channel (ink subtracts light), no colour profile.
  np.testing.assert_array_equal(image[0, 0], [255, 0, 255])
  np.testing.assert_allclose(image[-1, -1], [127, 127, 127], atol=1)
  assert notes == ["converted from CMYK (print colours) (PIL mode CMYK) to RGB without a colour "
                   "profile (colours may be off)"]
  values = np.linspace(0.0, 2.0, 16 * 16, dtype=np.float32).reshape(16, 16)
  Image.fromarray(values).save(tmp_path / "float.tiff")
  image, notes = images.load_rgb_image(str(tmp_path / "float.tiff"))
  np.testing.assert_array_equal(image[..., 1], np.round(255 * values / 2.0).astype(np.uint8))
  assert notes[0] == "32-bit float grey-scale (PIL mode F) image rescaled to 8 bits (max -> 255)"


def test_centre_crop_resize_and_uv_mapping():
  image = np.zeros((60, 90, 3), np.uint8)
  image[:, 15:75] = 255  # exactly the central 60x60 square is white
  crop = images.centre_crop_resize(image, 6)
  np.testing.assert_allclose(crop, 0.5)
  assert images.centre_crop_box(60, 90) == (15, 0, 60)
  assert images.centre_crop_box(90, 60) == (0, 15, 60)
  # Crop pixel u covers original [x0 + 10u, x0 + 10u + 10) -> its centre is x0 + 10u + 4.5.
  uv = images.crop_to_image_uv(np.array([[0.0, 0.0], [5.0, 5.0]]), (60, 90, 3), 6)
  np.testing.assert_allclose(uv, [[19.5, 4.5], [69.5, 54.5]])


# --- End to end ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("trained")
  loop.train_and_evaluate(_config(), str(workdir))
  return workdir


def test_evaluate_matches_in_training_eval(trained):
  summary = inference.evaluate_workdir(str(trained), "test", num_skeletons=4)
  lines = [json.loads(x) for x in (trained / "metrics.jsonl").read_text().splitlines()]
  in_training = [x for x in lines if "eval/mean_epe_mm" in x][-1]
  assert in_training["step"] == 6 and summary["num_examples"] == 50
  np.testing.assert_allclose(summary["mean_epe_mm"], in_training["eval/mean_epe_mm"], rtol=1e-6)
  np.testing.assert_allclose(summary["auc_20_50"], in_training["eval/auc_20_50"], rtol=1e-6)
  for name in ("summary.json", "pck.png", "skeletons.png"):
    assert (trained / "eval_test" / name).stat().st_size > 0
  assert (trained / "figures" / "pck_step00000006.png").exists()


def test_predict_writes_joints_and_left_is_mirrored_right(trained, tmp_path):
  rng = np.random.default_rng(0)
  photo = (rng.random((30, 40, 3)) * 255).astype(np.uint8)
  Image.fromarray(photo).save(tmp_path / "hand.png")
  Image.fromarray(np.ascontiguousarray(photo[:, ::-1])).save(tmp_path / "flipped.png")
  right = inference.predict_image(str(trained), str(tmp_path / "hand.png"), "right",
                                str(tmp_path / "out" / "right"))
  left = inference.predict_image(str(trained), str(tmp_path / "flipped.png"), "left",
                               str(tmp_path / "out" / "left"))
  pose_right = np.array(right["pose3d_m"])
  assert pose_right.shape == (21, 3) and np.all(np.isfinite(pose_right))
  # Left hand in the mirrored photo = the right-hand prediction mirrored across x = 0.
  np.testing.assert_allclose(left["pose3d_m"], skeleton.mirror_pose(pose_right), atol=1e-6)
  stored = json.loads((tmp_path / "out" / "right.json").read_text())
  assert stored["pose3d_m"] == right["pose3d_m"] and stored["joint_names"][0] == "wrist"
  assert "centre crop 30 px square, resized to 4x4" in stored["preprocessing"]
  assert (tmp_path / "out" / "right.png").stat().st_size > 0
  # The same numbers as the method's predict on the hand-made crop.
  restored = inference.restore_latest(str(trained), devices=jax.devices()[:1])
  crop = np.asarray(Image.fromarray(photo[:, 5:35]).resize((4, 4), Image.Resampling.BILINEAR),
                    np.float32) / 255 - 0.5
  want = restored.method.predict(restored.state.params, restored.state.model_state,
                                 {"image": crop[None]})["pose3d"][0]
  np.testing.assert_allclose(pose_right, want, atol=1e-6)


def _run_cli(*args):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=120)


def test_cli_errors_are_one_line_not_tracebacks(trained, tmp_path):
  typo = _run_cli("experiments.train", "--config=experiments/configs/toy.py",
                  f"--workdir={tmp_path}", "--config.num_stepz=3")
  assert typo.returncode != 0
  assert 'Did you mean "num_steps"' in typo.stderr and "Traceback" not in typo.stderr
  nan = _run_cli("experiments.train", "--config=experiments/configs/toy.py",
                f"--workdir={tmp_path / 'nan'}", "--config.num_steps=4", "--config.eval_every=-1",
                "--config.toy_nan_at_step=2", "--config.data.image_size=4")
  assert nan.returncode != 0 and "Traceback" not in nan.stderr
  assert "error: NonFiniteError: Non-finite values at step 2: grad_norm=nan, loss=nan" in nan.stderr
  (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
  bad = _run_cli("experiments.predict", f"--workdir={trained}", f"--image={tmp_path / 'bad.jpg'}")
  assert bad.returncode != 0 and "Traceback" not in bad.stderr
  assert "error:" in bad.stderr and "bad.jpg" in bad.stderr


def test_predict_refuses_a_decompression_bomb_in_one_line(tmp_path):
  """The issue's case: a 15000 x 15000 black PNG. The image is checked before the workdir."""
  fx.write_bomb_png(str(tmp_path / "bomb.png"), 15000, 15000)
  run = _run_cli("experiments.predict", f"--workdir={tmp_path / 'no_run'}",
                 f"--image={tmp_path / 'bomb.png'}")
  assert run.returncode == 1 and "Traceback" not in run.stderr
  errors = [line for line in run.stderr.splitlines() if line.startswith("error:")]
  assert errors == [f"error: Image '{tmp_path / 'bomb.png'}' is 225000000 pixels, above the limit "
                    "of 40000000 (40 MP); it was not decoded. Downscale it first (a possible "
                    "decompression bomb otherwise)."]


def test_evaluation_protocol_follows_the_dataset_and_procrustes_aligns():
  rng = np.random.default_rng(0)
  gt = rng.normal(size=(6, 21, 3)) * 0.03
  angle = 0.7
  rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
  pred = 1.3 * gt @ rot.T + np.array([0.01, -0.02, 0.005])  # a similarity transform of the truth
  plain = evaluation.summarize(pred, gt, protocol="root_relative_gt_scale")
  aligned = evaluation.summarize(pred, gt, protocol="procrustes")
  assert plain["mean_epe_mm"] > 10.0 and aligned["protocol"] == "procrustes"
  np.testing.assert_allclose(aligned["mean_epe_mm"], 0.0, atol=1e-6)

  config = _config()
  with config.unlocked():
    config.data.dataset = "freihand"
    assert evaluation.eval_protocol(config) == "procrustes"
    config.data.dataset = "rhd"
    assert evaluation.eval_protocol(config) == "root_relative_gt_scale"
    config.data.dataset = "synthetic_hands"
    assert evaluation.eval_protocol(config) == "root_relative_gt_scale"
    config.data.eval_protocol = "procrustes"  # an explicit choice wins
    assert evaluation.eval_protocol(config) == "procrustes"
    config.data.eval_protocol = "nonsense"
    with pytest.raises(ValueError, match="eval_protocol"):
      evaluation.eval_protocol(config)
