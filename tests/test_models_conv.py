"""Convolutional modules of handjax.models: ResNet, deconvolution decoder, attention fusion, the
dual-branch network and the hourglass, against numpy references and closed-form parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses.heatmap import soft_argmax
from handjax.models import (MLP, AttentionFusion, BasicBlock, DeconvDecoder, DualBranchResNet,
                            GaussianHead, Hourglass, ResNet, ResNetEncoder, attention_weights,
                            latent_25d_readout)

EPS = 1e-5
TINY = (1, 1, 1, 1)  # one basic block per stage: the ResNet-18 layout with half the blocks


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def randomize(variables, seed=1):
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    if "var" in str(path[-1]):
      return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), leaf.dtype)
    return jnp.asarray(rng.normal(0.0, 0.5, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, variables)


def np_conv(x, kernel, stride, pad):
  """Brute-force NHWC convolution (cross-correlation, as every deep-learning library computes)."""
  x = np.pad(np.asarray(x, np.float64), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  kh, kw, _, cout = kernel.shape
  oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
  out = np.zeros((x.shape[0], oh, ow, cout))
  for i in range(oh):
    for j in range(ow):
      patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
      out[:, i, j] = np.einsum("bhwc,hwco->bo", patch, np.asarray(kernel, np.float64))
  return out


def np_bn(p, s, x):
  return (x - np.asarray(s["mean"])) / np.sqrt(np.asarray(s["var"]) + EPS) * np.asarray(
      p["scale"]) + np.asarray(p["bias"])


# ---------------------------------------------------------------------------------------- ResNet


def resnet_closed_form(stages, widths, in_ch=3):
  """Parameters (kernels + BN scale/bias) of a torchvision ResNet without fc, counted by hand."""
  n = 7 * 7 * in_ch * widths[0] + 2 * widths[0]
  cin = widths[0]
  for i, blocks in enumerate(stages):
    c = widths[i]
    for j in range(blocks):
      n += 9 * cin * c + 2 * c + 9 * c * c + 2 * c
      if i > 0 and j == 0:
        n += cin * c + 2 * c
      cin = c
  return n


@pytest.mark.parametrize("depth,stages", [(18, (2, 2, 2, 2)), (34, (3, 4, 6, 3))])
def test_resnet_parameter_count_is_torchvision(depth, stages):
  shapes = jax.eval_shape(lambda: ResNet(depth).init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)),
                                                     False))
  n = count(shapes["params"])
  assert n == resnet_closed_form(stages, (64, 128, 256, 512))
  # torchvision resnet18/34 total minus the 1000-way fc (512 * 1000 + 1000).
  assert n == {18: 11_689_512, 34: 21_797_672}[depth] - 513_000


@pytest.mark.parametrize("strides,cin,cout", [(1, 3, 3), (2, 2, 4)])
def test_basic_block_matches_numpy(rng, strides, cin, cout):
  x = jax.random.normal(rng, (2, 5, 5, cin))
  block = BasicBlock(cout, strides, project=strides != 1)
  v = randomize(block.init(rng, x, False, "main"))
  p, s = v["params"], v["batch_stats"]
  y = np.maximum(np_bn(p["bn1_main"], s["bn1_main"], np_conv(x, p["conv1"]["kernel"], strides, 1)), 0)
  y = np_bn(p["bn2_main"], s["bn2_main"], np_conv(y, p["conv2"]["kernel"], 1, 1))
  skip = np.asarray(x, np.float64)
  if strides != 1:
    skip = np_bn(p["proj_bn_main"], s["proj_bn_main"],
                 np_conv(x, p["proj_conv"]["kernel"], strides, 0))
  expected = np.maximum(y + skip, 0)
  np.testing.assert_allclose(block.apply(v, x, False, "main"), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("size,width,blocks,maps", [
    (32, 1 / 16, TINY, (8, 8, 4, 2, 1)),
    (48, 1 / 8, TINY, (12, 12, 6, 3, 2)),
    pytest.param(64, 1 / 16, None, (16, 16, 8, 4, 2), marks=pytest.mark.slow),
])
def test_resnet_stages_and_pooling(rng, size, width, blocks, maps):
  x = jax.random.normal(rng, (2, size, size, 1))
  model = ResNet(18, width, stage_sizes=blocks)
  v = model.init(rng, x, False)
  pooled, stages = model.apply(v, x, False, return_stages=True)
  widths = [max(1, round(c * width)) for c in (64, 64, 128, 256, 512)]
  assert [m.shape for m in stages] == [(2, s, s, c) for s, c in zip(maps, widths)]
  np.testing.assert_allclose(pooled, np.mean(np.asarray(stages[-1]), axis=(1, 2)), rtol=1e-6)
  # Train mode normalises the stem with batch statistics and records them in batch_stats.
  _, updates = model.apply(v, x, True, mutable=["batch_stats"])
  conv = model.apply(v, x, method=lambda m, x: m.stem_conv(x))
  np.testing.assert_allclose(updates["batch_stats"]["stem_bn_main"]["mean"],
                             0.1 * np.mean(np.asarray(conv), axis=(0, 1, 2)), rtol=1e-4, atol=1e-6)
  with pytest.raises(ValueError, match="rank 4"):
    model.apply(v, x[0], False)


def test_resnet_encoder_head_and_hand_side(rng):
  image = jax.random.normal(rng, (2, 32, 32, 3))
  side = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  model = ResNetEncoder(6, width=1 / 16, head_hidden=(8,), stage_sizes=TINY)
  v = model.init(rng, image, False, side)
  q = model.apply(v, image, False, side)
  feats = ResNet(18, 1 / 16, stage_sizes=TINY).apply({"params": v["params"]["backbone"],
                                    "batch_stats": v["batch_stats"]["backbone"]}, image, False)
  ref = GaussianHead(6, (8,)).apply({"params": v["params"]["head"]}, feats, side)
  np.testing.assert_allclose(q.mean, ref.mean, rtol=1e-5, atol=1e-6)
  q_flip = model.apply(v, image, False, side[::-1])
  assert np.max(np.abs(np.asarray(q_flip.mean - q.mean))) > 1e-6  # the hand side is used
  with pytest.raises(ValueError, match=r"\(B, H, W, 1\)"):
    ResNetEncoder(6, width=1 / 16, in_channels=1).init(rng, image, False)


def test_spurr_rgb_to_3d_vae_parameter_count():
  """ResNet-18 + GaussianHead + Table 3 decoder (6 Linear, 512 wide) -> 63: Spurr supp. 7.3 says
  12,398,387 for the smallest RGB->3D model."""
  latent = 64
  enc = ResNetEncoder(latent)
  dec = MLP((512,) * 5 + (63,))
  enc_shapes = jax.eval_shape(lambda: enc.init(jax.random.key(0), jnp.zeros((1, 256, 256, 3)), False))
  dec_shapes = jax.eval_shape(lambda: dec.init(jax.random.key(0), jnp.zeros((1, latent))))
  n = count(enc_shapes["params"]) + count(dec_shapes["params"])
  head = 2 * (512 * latent + latent)
  decoder = (latent * 512 + 512) + 4 * (512 * 512 + 512) + (512 * 63 + 63)
  print(f"\nSpurr RGB->3D VAE parameters (latent {latent}): {n:,} vs 12,398,387 reported "
        f"({100 * (n / 12_398_387 - 1):+.2f}%)")
  assert n == 11_176_512 + head + decoder
  assert abs(n / 12_398_387 - 1) < 0.10


# ------------------------------------------------------------------------------------ DeconvDecoder


def test_deconv_decoder_table4_parameter_count():
  model = DeconvDecoder(256, 3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 64)), False))
  chans = (256, 128, 64, 32, 16, 8, 3)
  expected = 64 * 4096 + 4096 + 2 * 4096
  for cin, cout in zip(chans[:-1], chans[1:]):
    expected += 16 * cin * cout + cout + (2 * cout if cout != 3 else 0)
  assert count(shapes["params"]) == expected
  out = jax.eval_shape(lambda: model.apply(jax.tree.map(jnp.zeros_like, model.init(
      jax.random.key(0), jnp.zeros((1, 64)), False)), jnp.zeros((1, 64)), False))
  assert out.shape == (1, 256, 256, 3)


@pytest.mark.parametrize("size,channels,out_ch", [(8, (), 1), (16, (4,), 21)])
def test_deconv_decoder_values(rng, size, channels, out_ch):
  z = jax.random.normal(rng, (2, 5))
  model = DeconvDecoder(size, out_ch, channels, base_channels=4)
  v = model.init(rng, z, False)
  out = model.apply(v, z, False)
  assert out.shape == (2, size, size, out_ch)
  # Train mode: the Linear layer's BatchNorm sees batch statistics (mean 0, var 1 per unit).
  _, upd = model.apply(v, z, True, mutable=["batch_stats"])
  pre = np.asarray(z, np.float64) @ np.asarray(v["params"]["dense"]["kernel"]) + np.asarray(
      v["params"]["dense"]["bias"])
  np.testing.assert_allclose(upd["batch_stats"]["bn_dense"]["var"], 0.9 + 0.1 * pre.var(0),
                             rtol=1e-4)
  # Last transposed convolution with a zero kernel outputs its bias at every pixel.
  params = jax.tree.map(lambda a: a, v["params"])
  params["out"] = {"kernel": jnp.zeros_like(params["out"]["kernel"]),
                   "bias": jnp.arange(out_ch, dtype=jnp.float32)}
  out0 = model.apply({"params": params, "batch_stats": v["batch_stats"]}, z, False)
  np.testing.assert_allclose(out0, np.broadcast_to(np.arange(out_ch), out0.shape), atol=1e-7)
  with pytest.raises(ValueError, match="base_size"):
    DeconvDecoder(24, 1, channels, base_channels=4).init(rng, z, False)


# ------------------------------------------------------------------------------------------ Fusion


@pytest.mark.parametrize("shape", [(3, 4, 5, 6), (2, 8, 8, 32)])
def test_attention_weights_eq_7_2(rng, shape):
  f = jax.nn.relu(jax.random.normal(rng, shape))
  w = np.asarray(attention_weights(f))
  fn = np.asarray(f, np.float64)
  b, h, wd, _ = shape
  for n in range(b):
    fbar = fn[n].mean(axis=(0, 1))
    inner = np.array([[fbar @ fn[n, i, j] for j in range(wd)] for i in range(h)])
    np.testing.assert_allclose(w[n], inner / inner.sum() * h * wd, rtol=1e-4)
  np.testing.assert_allclose(w.sum(axis=(1, 2)), h * wd, rtol=1e-5)
  fused = AttentionFusion().apply({}, f * 2.0, f)
  np.testing.assert_allclose(fused, w[..., None] * np.asarray(f) * 2.0, rtol=1e-5)


def test_attention_weights_degenerate_map_is_uniform_and_finite():
  f = jnp.zeros((2, 3, 3, 4))
  np.testing.assert_array_equal(attention_weights(f), np.ones((2, 3, 3)))
  g = jax.grad(lambda f: jnp.sum(attention_weights(f) ** 2))(f)
  assert np.all(np.isfinite(g))


def dual_setup(rng, width=1 / 16, size=16, stop_gradient=True):
  image = jax.random.normal(rng, (2, size, size, 3))
  depth = jax.random.normal(jax.random.key(5), (2, size, size, 1))
  model = DualBranchResNet(18, width, stop_gradient, TINY)
  return model, model.init(rng, image, depth, False), image, depth


def test_dual_branch_shares_rgb_kernels_with_separate_batch_norm(rng):
  model, v, image, depth = dual_setup(rng)
  rgb_params = v["params"]["rgb_net"]
  # One set of convolution kernels (as many as a single ResNet-18) serves both branches.
  single = jax.eval_shape(lambda: ResNet(18, 1 / 16, stage_sizes=TINY).init(rng, image, False))
  single = single["params"]
  kernels = lambda t: sorted(jax.tree_util.keystr(p) for p, _ in
                             jax.tree_util.tree_flatten_with_path(t)[0] if "kernel" in str(p[-1]))
  assert kernels(rgb_params) == kernels(single)
  stats = v["batch_stats"]["rgb_net"]
  assert {"stem_bn_rgb", "stem_bn_fusion"} <= set(stats) and "bn1_fusion" in stats["stages_0_0"]
  out, upd = model.apply(v, image, depth, True, mutable=["batch_stats"])
  s = upd["batch_stats"]["rgb_net"]["stages_3_0"]
  assert np.max(np.abs(np.asarray(s["bn2_rgb"]["mean"] - s["bn2_fusion"]["mean"]))) > 1e-6
  # The fusion branch uses exactly those kernels: change one, and the fusion output changes too.
  bumped = jax.tree.map(lambda a: a, v)
  bumped["params"]["rgb_net"]["stem_conv"]["kernel"] = rgb_params["stem_conv"]["kernel"] * 2.0
  out2 = model.apply(bumped, image, depth, False)
  out1 = model.apply(v, image, depth, False)
  assert np.max(np.abs(np.asarray(out2["fusion"] - out1["fusion"]))) > 1e-6
  np.testing.assert_array_equal(out2["depth"], out1["depth"])


def test_dual_branch_stop_gradient_blocks_fusion_loss_into_depth_branch(rng):
  model, v, image, depth = dual_setup(rng)

  def fusion_loss(params, sg_model):
    out = sg_model.apply({"params": params, "batch_stats": v["batch_stats"]}, image, depth, False)
    return jnp.sum(out["fusion"] ** 2)

  grad_fn = jax.jit(jax.grad(fusion_loss), static_argnums=1)
  grads = grad_fn(v["params"], model)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  assert all(np.all(np.asarray(g) == 0.0) for g in jax.tree.leaves(grads["depth_net"]))
  assert any(np.any(np.asarray(g) != 0.0) for g in jax.tree.leaves(grads["rgb_net"]))
  open_model = DualBranchResNet(18, 1 / 16, stop_gradient=False, stage_sizes=TINY)
  grads_open = grad_fn(v["params"], open_model)
  assert any(np.any(np.asarray(g) != 0.0) for g in jax.tree.leaves(grads_open["depth_net"]))


# ---------------------------------------------------------------------------------------- Hourglass


@pytest.mark.parametrize("size,peak", [(16, (5.3, 9.7)), (64, (40.25, 21.6))])
def test_latent_25d_readout_recovers_sharp_peak(size, peak):
  rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
  u0, v0 = peak
  logits = -((cols - u0) ** 2 + (rows - v0) ** 2) / (2 * 0.7**2)  # sharp, log of a Gaussian
  heat = jnp.asarray(np.stack([logits, logits.T], -1)[None], jnp.float32)  # K = 2: (u, v) and (v, u)
  depth_maps = jnp.asarray(np.stack([0.01 * cols - 0.2, np.full_like(cols, 0.3)], -1)[None],
                           jnp.float32)
  uv, z = latent_25d_readout(heat, depth_maps)
  np.testing.assert_allclose(uv[0, 0], [u0, v0], atol=0.1)
  np.testing.assert_allclose(uv[0, 1], [v0, u0], atol=0.1)
  np.testing.assert_allclose(z[0], [0.01 * u0 - 0.2, 0.3], atol=1e-3)
  np.testing.assert_allclose(uv, soft_argmax(heat), atol=1e-6)


@pytest.mark.parametrize("size,features,levels", [(8, 4, 1), (16, 4, 2)])
def test_hourglass_outputs_are_their_readout(rng, size, features, levels):
  image = jax.random.normal(rng, (2, size, size, 3))
  model = Hourglass(num_keypoints=5, features=features, num_stacks=2, levels=levels)
  v = model.init(rng, image, False)
  outs = model.apply(v, image, False)
  assert len(outs) == 2
  for o in outs:
    assert o["heatmaps"].shape == (2, size, size, 5) and o["mask_logits"].shape == (2, size, size, 1)
    uv, z = latent_25d_readout(o["heatmaps"], o["depthmaps"])
    np.testing.assert_allclose(o["uv"], uv, atol=1e-5)
    np.testing.assert_allclose(o["depth"], z, atol=1e-5)
    assert np.all((np.asarray(o["uv"]) >= 0) & (np.asarray(o["uv"]) <= size - 1))
  assert np.max(np.abs(np.asarray(outs[0]["uv"] - outs[1]["uv"]))) > 1e-6
  with pytest.raises(ValueError, match="divisible"):
    model.init(rng, image[:, :size - 1, :size - 1], False)
