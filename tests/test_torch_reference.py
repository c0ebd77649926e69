"""The PyTorch twin (experiments/torch_reference.py) computes the JAX methods' numbers.

Same weights (Flax parameters copied into the twin), same inputs and the same N(0, I) draws ->
the same loss and the same gradients, for tiny versions of the two benchmarked models (S4 of
Yang et al. ICCV 2019 and Spurr et al. CVPR 2018 RGB->3D). This is what makes the benchmark's
JAX/PyTorch ratio a comparison of the same work.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from experiments import torch_reference as tr  # noqa: E402
from handjax.losses import pointcloud  # noqa: E402
from handjax.methods import aligned_latents  # noqa: E402
from handjax.methods import crossmodal_vae  # noqa: E402
from handjax.models import decoders  # noqa: E402
from handjax.models import pointset  # noqa: E402
from handjax.train import method as method_lib  # noqa: E402

B = 4


def _tiny_model(c):
  c.data.image_size = 32
  c.latent_dim = 8
  c.model.resnet_width = 1 / 16
  c.model.resnet_stage_sizes = (1, 1, 1, 1)
  return c


def _s4_config():
  c = _tiny_model(aligned_latents.default_config())
  c.data.heatmap_size = 16
  c.data.num_points = 16
  c.model.head_hidden = (16,)
  c.model.pointset_width = 16
  c.model.pose_hidden = (16,)
  c.model.folding_hidden = 16
  c.model.deconv_channels = (8,)
  c.model.deconv_base_channels = 8
  c.beta_init = c.beta_final = 0.5  # make the KL terms visible in the loss
  return c


def _spurr_config():
  c = _tiny_model(crossmodal_vae.default_config())
  c.model.mlp_hidden = (16, 16)
  c.beta = 0.5
  return c


def _batch(c, seed=0):
  gen = np.random.default_rng(seed)
  s = c.data.image_size
  batch = {
      "image": gen.uniform(0, 1, (B, s, s, 3)).astype(np.float32),
      "pose3d": (np.array([0, 0, 0.5]) + gen.normal(0, 0.04, (B, 21, 3))).astype(np.float32),
      "scale": gen.uniform(0.02, 0.04, B).astype(np.float32),
      "hand_side": gen.integers(0, 2, B).astype(np.int32),
  }
  if "num_points" in c.data:
    h, n = c.data.heatmap_size, c.data.num_points
    batch["points"] = (0.05 * gen.normal(size=(B, n, 3))).astype(np.float32)
    batch["heatmaps"] = gen.uniform(0, 1, (B, h, h, 21)).astype(np.float32)
  return batch


def _jax_loss_and_grads(method, batch, rng):
  params, state = method.init(jax.random.key(1), batch)
  loss_fn = method.phases[0].loss
  (loss, _), grads = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))(
      params, state, batch, rng, jnp.zeros((), jnp.int32))
  return params, state, float(loss), grads


def _grad_close(torch_grad, flax_grad, transform):
  np.testing.assert_allclose(torch_grad.numpy(), transform(np.asarray(flax_grad)),
                             rtol=2e-3, atol=2e-5 * np.abs(flax_grad).max())


@pytest.mark.slow  # compiles the tiny S4 gradient (three decodes, three Sinkhorn scans)
def test_s4_twin_matches_aligned_latents_loss_and_gradients():
  c = _s4_config()
  batch = _batch(c)
  rng = jax.random.key(7)
  params, state, loss, grads = _jax_loss_and_grads(method_lib.get_method(c), batch, rng)
  keys = jax.random.split(rng, 3)  # image, points, joint (poe_alignment_objective)
  noise = [torch.from_numpy(np.array(jax.random.normal(k, (B, c.latent_dim)))) for k in keys]
  model = tr.S4Model.from_config(c)
  model.load_flax(params, state)
  model.train()
  t_loss = model(tr.to_torch(batch), beta=0.5, noise=noise)
  t_loss.backward()
  assert loss > 1.0  # not a degenerate comparison
  np.testing.assert_allclose(float(t_loss.detach()), loss, rtol=1e-4)
  g = grads["params"]
  _grad_close(model.encoder_image.backbone.stem_conv.weight.grad,
              g["encoder_image"]["backbone"]["stem_conv"]["kernel"],
              lambda k: k.transpose(3, 2, 0, 1))
  _grad_close(model.encoder_points.pel_in.point.weight.grad,
              g["encoder_points"]["features"]["pel_in"]["point"]["kernel"], lambda k: k.T)
  _grad_close(model.decoder_points.fold2.layers[0].weight.grad,
              g["decoder_points"]["fold2_0"]["kernel"], lambda k: k.T)
  _grad_close(model.decoder_heatmaps.deconvs[0].weight.grad,
              g["decoder_heatmaps"]["deconv_0"]["kernel"],
              lambda k: k[::-1, ::-1].transpose(2, 3, 0, 1))


def test_spurr_twin_matches_crossmodal_vae_loss_and_gradients():
  c = _spurr_config()
  batch = _batch(c, seed=1)
  rng = jax.random.key(3)
  params, state, loss, grads = _jax_loss_and_grads(method_lib.get_method(c), batch, rng)
  noise = torch.from_numpy(np.array(jax.random.normal(rng, (B, c.latent_dim))))
  model = tr.SpurrModel.from_config(c)
  model.load_flax(params, state)
  model.train()
  t_loss = model(tr.to_torch(batch), beta=0.5, noise=noise)
  t_loss.backward()
  assert loss > 1.0
  np.testing.assert_allclose(float(t_loss.detach()), loss, rtol=1e-4)
  g = grads["params"]
  _grad_close(model.encoder_image.backbone.blocks[1].conv1.weight.grad,
              g["encoder_image"]["backbone"]["stages_1_0"]["conv1"]["kernel"],
              lambda k: k.transpose(3, 2, 0, 1))
  _grad_close(model.decoder_pose3d.mlp.layers[-1].weight.grad,
              g["decoder_pose3d"]["mlp"]["dense_2"]["kernel"], lambda k: k.T)


def test_sinkhorn_twin_matches_handjax_emd_value_and_gradient():
  gen = np.random.default_rng(2)
  x = gen.uniform(0, 0.1, (3, 64, 3)).astype(np.float32)
  y = gen.uniform(0, 0.1, (3, 64, 3)).astype(np.float32)
  value, grad = jax.value_and_grad(lambda a: jnp.sum(pointcloud.earth_movers_distance(a, y)))(x)
  xt = torch.from_numpy(x).requires_grad_()
  t_values = tr.earth_movers_distance(xt, torch.from_numpy(y))
  t_values.sum().backward()
  np.testing.assert_allclose(t_values.detach().numpy(),
                             pointcloud.earth_movers_distance(x, y), rtol=1e-4)
  np.testing.assert_allclose(float(t_values.sum().detach()), float(value), rtol=1e-4)
  np.testing.assert_allclose(xt.grad.numpy(), grad, rtol=1e-3, atol=1e-4 * np.abs(grad).max())
  # Against the exact EMD: both are the same ~1% approximation, not an exact solver.
  exact = pointcloud.exact_emd(x, y)
  assert np.all(np.abs(t_values.detach().numpy() / exact - 1) < 0.05)


def test_s4_decoder_and_point_encoder_twins_match_flax_forward():
  """Fast check of the S4-only networks (the full S4 loss test is marked slow)."""
  gen = np.random.default_rng(4)
  z = gen.normal(size=(B, 6)).astype(np.float32)
  pts = gen.normal(size=(B, 10, 3)).astype(np.float32)
  deconv = decoders.DeconvDecoder(output_size=16, out_channels=5, channels=(4,), base_channels=3)
  fold = decoders.FoldingNet(num_points=10, hidden=8)
  enc = pointset.PointSetEncoder(latent_dim=6, width=8, num_blocks=2, head_hidden=(8,))
  v_deconv = deconv.init(jax.random.key(0), z, train=False)
  v_fold = fold.init(jax.random.key(1), z)
  v_enc = enc.init(jax.random.key(2), pts)
  t_deconv = tr.DeconvDecoder(6, 16, 5, (4,), 4, 3)
  t_deconv.load_flax(v_deconv["params"], None)
  t_fold = tr.FoldingNet(6, 10, 8)
  t_fold.load_flax(v_fold["params"])
  t_enc = tr.PointSetEncoder(6, 8, 2, (8,))
  t_enc.load_flax(v_enc["params"])
  t_deconv.train()  # batch statistics, as Flax with train=True
  with torch.no_grad():
    out_deconv = t_deconv(torch.from_numpy(z)).numpy()
    out_fold = t_fold(torch.from_numpy(z)).numpy()
    mean, logvar = t_enc(torch.from_numpy(pts))
  ref_deconv, _ = deconv.apply(v_deconv, z, train=True, mutable=["batch_stats"])
  ref_q = enc.apply(v_enc, pts)
  assert np.abs(ref_deconv).max() > 0.1  # not a degenerate comparison
  np.testing.assert_allclose(out_deconv, ref_deconv, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out_fold, fold.apply(v_fold, z), rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(mean.numpy(), ref_q.mean, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(logvar.numpy(), ref_q.logvar, rtol=1e-4, atol=1e-6)
