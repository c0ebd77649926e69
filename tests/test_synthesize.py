"""Tests of experiments/synthesize.py: the numerics against closed forms and numpy references,
the mode checks, and every mode end to end on tiny models trained on synthetic_hands/tiny."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest

from experiments import synthesize as syn
from handjax.methods import aligned_latents as al
from handjax.methods import crossmodal_vae as cv
from handjax.methods import dvae
from handjax.train import inference
from handjax.train import loop

S = 32  # synthetic_hands/tiny renders 32 px crops; 16 train / 8 test examples


# --- Numerics ------------------------------------------------------------------------------------


def test_walk_endpoints_are_the_inputs_and_the_midpoint_their_average():
  r = np.random.default_rng(0)
  z0, z1 = r.normal(size=6).astype(np.float32), r.normal(size=6).astype(np.float32)
  walk = np.asarray(dvae.latent_walk(jnp.asarray(z0), jnp.asarray(z1), 5))
  np.testing.assert_array_equal(walk[0], z0)
  np.testing.assert_allclose(walk[-1], z1, atol=1e-6)
  np.testing.assert_allclose(walk[2], 0.5 * (z0 + z1), atol=1e-6)
  np.testing.assert_allclose(walk[1], 0.75 * z0 + 0.25 * z1, atol=1e-6)
  np.testing.assert_allclose(syn.interpolated_scales(0.02, 0.04, 5), [0.02, 0.025, 0.03, 0.035,
                                                                      0.04])


def test_pca_2d_finds_the_known_axes_and_matches_the_covariance_eigenvectors():
  r = np.random.default_rng(1)
  basis, _ = np.linalg.qr(r.normal(size=(5, 5)))
  u, v = basis[:, 0], basis[:, 1]
  # Standard deviations 3 along u, 1 along v, 0.05 elsewhere: the axes are u then v.
  x = (3.0 * r.normal(size=(4000, 1)) * u + r.normal(size=(4000, 1)) * v
       + 0.05 * r.normal(size=(4000, 5)) + np.array([1.0, -2.0, 0.5, 0.0, 3.0]))
  coords, axes, variance = syn.pca_2d(x)
  assert abs(axes[0] @ u) > 0.999 and abs(axes[1] @ v) > 0.999
  # Independent reference: eigen-decomposition of the sample covariance.
  eigval, eigvec = np.linalg.eigh(np.cov(x, rowvar=False))
  np.testing.assert_allclose(variance, eigval[::-1][:2], rtol=1e-8)
  for i in range(2):
    np.testing.assert_allclose(abs(axes[i] @ eigvec[:, -1 - i]), 1.0, atol=1e-8)
    assert axes[i, np.argmax(np.abs(axes[i]))] > 0  # the sign convention
  np.testing.assert_allclose(coords, (x - x.mean(0)) @ axes.T, atol=1e-10)
  np.testing.assert_allclose(variance, np.var(coords, axis=0, ddof=1), rtol=1e-8)


def test_pca_2d_degenerate_inputs_stay_finite():
  coords, axes, variance = syn.pca_2d(np.ones((7, 3)))
  np.testing.assert_array_equal(coords, 0.0)
  np.testing.assert_array_equal(variance, 0.0)
  coords, axes, variance = syn.pca_2d(np.arange(4.0)[:, None])  # one dimension
  np.testing.assert_allclose(coords[:, 0], [-1.5, -0.5, 0.5, 1.5])
  np.testing.assert_array_equal(axes[1], 0.0)
  assert np.isfinite(syn.pca_2d(np.zeros((1, 4)))[0]).all()
  with pytest.raises(ValueError, match=r"\(n, d\)"):
    syn.pca_2d(np.zeros(3))


def test_linear_probe_separated_clouds_identical_clouds_and_the_bayes_rate():
  r = np.random.default_rng(2)
  n, d = 2000, 8
  separated = np.concatenate([r.normal(size=(n, d)), r.normal(size=(n, d)) + 10.0])
  labels = np.repeat([0, 1], n)
  assert syn.linear_probe_accuracy(separated, labels, np.random.default_rng(0)) == 1.0
  # Identical distributions: the classifier fit on one half is independent of the other half's
  # labels, so its held-out accuracy is Binomial(2000, 1/2) / 2000: sd 0.011, 0.05 is 4.5 sd.
  same = r.normal(size=(2 * n, d))
  assert abs(syn.linear_probe_accuracy(same, labels, np.random.default_rng(0)) - 0.5) < 0.05
  # Two unit-variance Gaussians at -1 and +1 on one axis: the best linear rule is sign(x), with
  # accuracy Phi(1) = 0.8413; the probe reaches it up to sampling error (sd ~0.006 at 2000).
  x = np.concatenate([r.normal(-1.0, 1.0, n), r.normal(1.0, 1.0, n)])[:, None]
  bayes = 0.5 * (1.0 + math.erf(1.0 / math.sqrt(2.0)))
  assert abs(syn.linear_probe_accuracy(x, labels, np.random.default_rng(0)) - bayes) < 0.03
  # Three modalities, one of them apart: chance is 1/3, and only the two merged ones confuse.
  three = np.concatenate([r.normal(size=(n, d)), r.normal(size=(n, d)),
                          r.normal(size=(n, d)) + 10.0])
  acc = syn.linear_probe_accuracy(three, np.repeat([0, 1, 2], n), np.random.default_rng(0))
  assert abs(acc - (1 / 3 * 1.0 + 2 / 3 * 0.5)) < 0.05


def test_linear_probe_bad_inputs_are_named_and_constant_codes_stay_finite():
  with pytest.raises(ValueError, match=">= 2 classes"):
    syn.linear_probe_accuracy(np.zeros((6, 2)), np.zeros(6), np.random.default_rng(0))
  with pytest.raises(ValueError, match="n >= 4"):
    syn.linear_probe_accuracy(np.zeros((3, 2)), np.arange(3), np.random.default_rng(0))
  acc = syn.linear_probe_accuracy(np.zeros((8, 2)), np.repeat([0, 1], 4), np.random.default_rng(0))
  assert 0.0 <= acc <= 1.0


def test_pose_to_metres_by_hand():
  pred = np.zeros((2, 21, 3))
  pred[:, 5] = [1.0, 2.0, 3.0]
  pred[1] += 7.0  # a root offset: removed
  out = syn.pose_to_metres(pred, np.array([0.5, 2.0]), root_joint=0)
  np.testing.assert_allclose(out[0, 5], [0.5, 1.0, 1.5])
  np.testing.assert_allclose(out[1, 5], [2.0, 4.0, 6.0])
  np.testing.assert_allclose(out[:, 0], 0.0)


# --- Mode checks ---------------------------------------------------------------------------------


def test_unsupported_modes_fail_with_one_line_naming_what_is_supported():
  var1 = cv.default_config()
  with pytest.raises(syn.SynthesisError, match=r"needs >= 2 encoders.*image>pose3d") as e:
    syn.check_mode(var1, "coherence")
  assert "\n" not in str(e.value)
  syn.check_mode(var1, "walk")
  var4 = cv.default_config()
  var4.variant = 4
  syn.check_mode(var4, "coherence")
  with pytest.raises(syn.SynthesisError, match="supported modes: walk, sample, coherence"):
    syn.check_mode(var4, "transfer")
  with pytest.raises(syn.SynthesisError, match="supported modes: interpolate"):
    syn.check_mode(al.default_config(), "walk")
  with pytest.raises(syn.SynthesisError, match=r"needs an image decoder.*canonical_pose"):
    syn.check_mode(dvae.default_config("pose"), "walk")
  syn.check_mode(dvae.default_config("synthesis_u"), "transfer")
  other = cv.default_config()
  other.method = "semihand"
  with pytest.raises(syn.SynthesisError, match=r"'semihand'.*dvae: walk, transfer, sample"):
    syn.check_mode(other, "walk")


# --- End to end on tiny trained models -----------------------------------------------------------


def _tiny_data(config, data_dir):
  config.data.dataset = "synthetic_hands"
  config.data.builder_config = "tiny"
  config.data.data_dir = data_dir
  config.data.image_size = S
  config.data.read_threads = 1
  config.batch_size = 8  # one example on each of the 8 virtual devices
  config.log_every = 1
  config.checkpoint_every = 1000  # the last step always checkpoints
  config.eval_every = -1
  return config


def _small_convs(m):
  m.resnet_width = 1 / 16
  m.resnet_stage_sizes = (1, 1, 1, 1)
  m.deconv_channels = (8, 8, 8)
  m.deconv_base_channels = 8


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _train(config, workdir):
  loop.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope="module")
def crossmodal_workdir(data_dir, tmp_path_factory):
  # 2D-keypoint input (MLP encoders keep the test fast) with a pose3d encoder for coherence and
  # every decoder kind the walk draws: 3D pose, 2D keypoints and an RGB image.
  c = _tiny_data(cv.default_config(), data_dir)
  c.input_modality = "uv"
  c.pairs = "uv>pose3d,pose3d>pose3d,uv>uv,uv>image"
  c.latent_dim = 6
  c.model.mlp_hidden = (16, 16)
  _small_convs(c.model)
  c.num_steps = 2  # phases compile on first use: two of the four train (and compile) here
  return _train(c, str(tmp_path_factory.mktemp("crossmodal")))


def _png(path) -> np.ndarray:
  image = np.asarray(Image.open(path).convert("RGB"))
  assert image.shape[0] > 100 and image.shape[1] > 100
  assert image.std() > 1.0  # something was drawn
  return image


def _example(restored, split: str, index: int, keep=None):
  batch = syn.collect_examples(restored.config, split, index + 1, keep)
  return {k: v[index:index + 1] for k, v in batch.items()}


def test_crossmodal_walk_sample_coherence(crossmodal_workdir, tmp_path):
  walk = syn.run("walk", crossmodal_workdir, str(tmp_path / "walk.png"), num=4, indices=(2, 5))
  _png(tmp_path / "walk.png")
  # The walk's ends are the input encoder's posterior means, which predict() also returns.
  restored = inference.restore_latest(crossmodal_workdir, devices=jax.devices()[:1])
  p, s = restored.state.params, restored.state.model_state
  for end, index in ((0, 2), (-1, 5)):
    want = restored.method.predict(p, s, _example(restored, "test", index))["latent_mean"][0]
    np.testing.assert_allclose(walk["latents"][end], np.asarray(want), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(walk["latents"][1], (2 * walk["latents"][0] + walk["latents"][3]) / 3,
                             atol=1e-5)

  sample = syn.run("sample", crossmodal_workdir, str(tmp_path / "sample.png"), num=3, seed=4)
  _png(tmp_path / "sample.png")
  np.testing.assert_array_equal(sample["latents"],
                                np.asarray(jax.random.normal(jax.random.key(4), (3, 6))))

  summary = syn.run("coherence", crossmodal_workdir, str(tmp_path / "coherence.png"))
  _png(tmp_path / "coherence.png")
  stored = json.loads((tmp_path / "coherence.json").read_text())
  assert 0.0 <= stored["probe_accuracy"] <= 1.0 and stored["chance"] == 0.5
  assert stored["encoders"] == ["pose3d", "uv"] and stored["num_examples"] == 8
  assert stored["probe_accuracy"] == summary["probe_accuracy"]
  # Default output path, and a mode of another method refused before the restore.
  syn.run("sample", crossmodal_workdir, num=2)
  _png(f"{crossmodal_workdir}/synthesis/sample.png")
  with pytest.raises(syn.SynthesisError, match="supported modes: walk, sample, coherence"):
    syn.run("interpolate", crossmodal_workdir)
  with pytest.raises(syn.SynthesisError, match=r"--indices must be two example indices in \[0, 8"):
    syn.run("walk", crossmodal_workdir, str(tmp_path / "bad.png"), indices=(0, 8))


@pytest.mark.slow
def test_aligned_latents_interpolate(data_dir, tmp_path):
  c = _tiny_data(al.default_config(), data_dir)
  c.encoders, c.decoders, c.alignment = "R", "CP", "none"  # S2 R2CP: pose and point cloud
  c.data.num_points, c.data.heatmap_size = 32, 8
  c.latent_dim = 6
  _small_convs(c.model)
  c.model.head_hidden = (16,)
  c.model.pose_hidden = (16, 16)
  c.model.folding_hidden = 16
  c.emd.relative_epsilon, c.emd.epsilon_decay, c.emd.num_iterations = 0.1, 0.5, 10
  c.optimizer.lr_drop_steps = ()
  c.num_steps = 2
  workdir = _train(c, str(tmp_path / "aligned"))
  result = syn.run("interpolate", workdir, str(tmp_path / "interp.png"), num=3, indices=(1, 0))
  _png(tmp_path / "interp.png")
  restored = inference.restore_latest(workdir, devices=jax.devices()[:1])
  p, s = restored.state.params, restored.state.model_state
  for end, index in ((0, 1), (-1, 0)):
    want = restored.method.predict(p, s, _example(restored, "test", index))["latent_mean"][0]
    np.testing.assert_allclose(result["latents"][end], np.asarray(want), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_dvae_walk_transfer_sample(data_dir, tmp_path):
  c = _tiny_data(dvae.default_config("synthesis_u"), data_dir)  # Fig. 4.2b: 3D pose + z_u -> RGB
  c.factor_dims = (4, 3)
  c.model.mlp_hidden = (16, 16)
  _small_convs(c.model)
  c.num_steps, c.disentangle_steps = 3, 2
  workdir = _train(c, str(tmp_path / "dvae"))
  walk = syn.run("walk", workdir, str(tmp_path / "walk.png"), num=3)
  _png(tmp_path / "walk.png")
  assert sorted(walk["latents"]) == ["pose3d", "u"]
  transfer = syn.run("transfer", workdir, str(tmp_path / "transfer.png"), num=2)
  _png(tmp_path / "transfer.png")
  # Row i, column j = dvae.synthesize(pose of example i, content of example 2 + j).
  restored = inference.restore_latest(workdir, devices=jax.devices()[:1])
  p, s = restored.state.params, restored.state.model_state
  batch = syn.collect_examples(restored.config, "test", 4)
  want = dvae.synthesize(restored.config, p, s, {k: v[[1]] for k, v in batch.items()},
                         {k: v[[2]] for k, v in batch.items()})
  np.testing.assert_allclose(transfer["images"][1, 0], np.asarray(want[0]), atol=1e-5)
  sample = syn.run("sample", workdir, str(tmp_path / "sample.png"), num=2)
  _png(tmp_path / "sample.png")
  assert sample["images"].shape == (2, 2, S, S, 3)
  with pytest.raises(syn.SynthesisError, match="supported modes: walk, transfer, sample"):
    syn.run("coherence", workdir)
