"""Fully connected and point-set modules of handjax.models against numpy re-implementations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from handjax.losses.gaussian import Gaussian
from handjax.models import (FoldingNet, GaussianHead, InjectionDecoder, JointEncoder,
                            LatentDiscriminator, MLP, PermutationEquivariantLayer, PointSetEncoder,
                            PointSetFeatures, VariationalMapper, folding_grid)

EPS = 1e-5  # BatchNorm epsilon of every handjax module


def randomize(variables, seed=1):
  """Every leaf replaced by random numbers (variances positive): eval-mode BatchNorm is no identity."""
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = str(path[-1])
    if "var" in name:
      return jnp.asarray(rng.uniform(0.5, 2.0, leaf.shape), leaf.dtype)
    return jnp.asarray(rng.normal(0.0, 0.5, leaf.shape), leaf.dtype)

  return jax.tree_util.tree_map_with_path(fill, variables)


def np_dense(p, x):
  x = np.asarray(x, np.float64) @ np.asarray(p["kernel"], np.float64)
  return x + np.asarray(p["bias"], np.float64) if "bias" in p else x


def np_bn_eval(p, s, x):
  return (x - np.asarray(s["mean"])) / np.sqrt(np.asarray(s["var"]) + EPS) * np.asarray(
      p["scale"]) + np.asarray(p["bias"])


relu = lambda x: np.maximum(x, 0.0)


@pytest.mark.parametrize("features", [(7, 5), (32, 32, 32, 3)])
def test_mlp_matches_numpy(rng, features):
  x = jax.random.normal(rng, (4, 6))
  model = MLP(features)
  params = randomize(model.init(rng, x))["params"]
  expected = np.asarray(x, np.float64)
  for i in range(len(features)):
    expected = np_dense(params[f"dense_{i}"], expected)
    if i < len(features) - 1:
      expected = relu(expected)
  np.testing.assert_allclose(model.apply({"params": params}, x), expected, rtol=1e-5, atol=1e-5)


def test_mlp_batch_norm_eval_matches_numpy(rng):
  x = jax.random.normal(rng, (4, 3))
  model = MLP((8, 2), batch_norm=True, activation=jax.nn.tanh)
  v = randomize(model.init(rng, x))
  expected = np.tanh(np_bn_eval(v["params"]["bn_0"], v["batch_stats"]["bn_0"],
                                np_dense(v["params"]["dense_0"], x)))
  expected = np_dense(v["params"]["dense_1"], expected)
  np.testing.assert_allclose(model.apply(v, x, train=False), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hidden,extra_dim", [((), 0), ((16, 8), 2)])
def test_gaussian_head_matches_numpy(rng, hidden, extra_dim):
  x = jax.random.normal(rng, (3, 5))
  extra = jax.nn.one_hot(jnp.array([0, 1, 1]), 2) if extra_dim else None
  head = GaussianHead(4, hidden, max_abs_logvar=20.0)
  params = randomize(head.init(rng, x, extra))["params"]
  h = np.asarray(x, np.float64) if extra is None else np.concatenate([x, extra], -1)
  for i in range(len(hidden)):
    h = relu(np_dense(params[f"hidden_{i}"], h))
  out = head.apply({"params": params}, x, extra)
  np.testing.assert_allclose(out.mean, np_dense(params["mean"], h), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out.logvar, 20.0 * np.tanh(np_dense(params["logvar"], h) / 20.0),
                             rtol=1e-5, atol=1e-5)


def test_gaussian_head_logvar_finite_at_extreme_inputs(rng):
  head = GaussianHead(3, (4,))
  x = jnp.full((2, 5), 1e30).at[1].set(-1e30)
  params = head.init(rng, x)["params"]
  logvar = head.apply({"params": params}, x).logvar
  assert np.all(np.isfinite(logvar)) and np.all(np.abs(logvar) <= 20.0)
  grads = jax.grad(lambda p: jnp.sum(head.apply({"params": p}, x * 1e-20).logvar))(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  # Without the clip the exp(logvar) of such an input overflows: the clip is what keeps it finite.
  raw = GaussianHead(3, (4,), max_abs_logvar=None).apply({"params": params}, x).logvar
  assert not np.all(np.isfinite(np.exp(np.asarray(raw))))


def np_injection(v, z, hidden):
  p, s = v["params"], v["batch_stats"]
  y = relu(np_bn_eval(p["bn_0"], s["bn_0"], np_dense(p["dense_0"], z)))
  for i in range(1, len(hidden)):
    main = relu(np_bn_eval(p[f"bn_{i}"], s[f"bn_{i}"], np_dense(p[f"dense_{i}"], y)))
    inject = relu(np_bn_eval(p[f"inject_bn_{i}"], s[f"inject_bn_{i}"],
                             np_dense(p[f"inject_{i}"], z)))
    y = main + inject
  return np_dense(p["out"], y)


@pytest.mark.parametrize("hidden,out_dim", [((6, 6, 6), 9), ((32, 32, 32, 32), 63)])
def test_injection_decoder_matches_eq18(rng, hidden, out_dim):
  z = jax.random.normal(rng, (5, 4))
  model = InjectionDecoder(hidden, out_dim)
  v = randomize(model.init(rng, z, False))
  np.testing.assert_allclose(model.apply(v, z, False), np_injection(v, z, hidden), rtol=1e-4,
                             atol=1e-4)
  # Output layer is linear: negative coordinates are reachable.
  assert np.any(np.asarray(model.apply(v, z, False)) < 0)


@pytest.mark.parametrize("train", [False, True])
def test_injection_decoder_without_injection_is_plain_mlp(rng, train):
  hidden, z = (8, 8, 8), jax.random.normal(rng, (6, 3))
  model = InjectionDecoder(hidden, 5)
  v = randomize(model.init(rng, z, False))
  params = dict(v["params"])
  for i in (1, 2):
    params[f"inject_{i}"] = {"kernel": jnp.zeros_like(params[f"inject_{i}"]["kernel"])}
    params[f"inject_bn_{i}"] = {"scale": params[f"inject_bn_{i}"]["scale"],
                                "bias": jnp.zeros_like(params[f"inject_bn_{i}"]["bias"])}
  stats = dict(v["batch_stats"])
  for i in (1, 2):  # running mean 0 so that eval-mode BN maps the zero projection to 0
    stats[f"inject_bn_{i}"] = {"mean": jnp.zeros(8), "var": stats[f"inject_bn_{i}"]["var"]}
  v = {"params": params, "batch_stats": stats}
  if train:
    got, _ = model.apply(v, z, True, mutable=["batch_stats"])
  else:
    got = model.apply(v, z, False)
  # The plain MLP, computed separately with the same weights: relu(BN(W y)) layers + linear output.
  y = np.asarray(z, np.float64)
  for i in range(3):
    pre = np_dense(params[f"dense_{i}"], y)
    if train:
      stat = {"mean": pre.mean(0), "var": pre.var(0)}
    else:
      stat = stats[f"bn_{i}"]
    y = relu(np_bn_eval(params[f"bn_{i}"], stat, pre))
  np.testing.assert_allclose(got, np_dense(params["out"], y), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hidden,dim_out", [((8,), None), ((16, 16), 5)])
def test_variational_mapper_matches_numpy(rng, hidden, dim_out):
  q = Gaussian(jax.random.normal(rng, (4, 3)), jax.random.normal(jax.random.key(1), (4, 3)))
  model = VariationalMapper(hidden, dim_out)
  v = randomize(model.init(rng, q, False))
  p, s = v["params"], v["batch_stats"]
  h = np.concatenate([q.mean, q.logvar], -1)
  for i in range(len(hidden)):
    h = relu(np_bn_eval(p[f"bn_{i}"], s[f"bn_{i}"], np_dense(p[f"dense_{i}"], h)))
  out = model.apply(v, q, False)
  assert out.mean.shape == (4, dim_out or 3)
  np.testing.assert_allclose(out.mean, np_dense(p["mean"], h) + np_dense(p["res_mean"], q.mean),
                             rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(out.logvar,
                             np_dense(p["logvar"], h) + np_dense(p["res_logvar"], q.logvar),
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hidden", [(4,), (32, 32)])
def test_latent_discriminator_matches_numpy(rng, hidden):
  z = jax.random.normal(rng, (5, 3))
  model = LatentDiscriminator(hidden)
  params = randomize(model.init(rng, z))["params"]["mlp"]
  h = np.asarray(z, np.float64)
  for i in range(len(hidden)):
    h = np_dense(params[f"dense_{i}"], h)
    h = np.where(h > 0, h, 0.01 * h)
  expected = np_dense(params[f"dense_{len(hidden)}"], h)[:, 0]
  np.testing.assert_allclose(model.apply({"params": {"mlp": params}}, z), expected, rtol=1e-5,
                             atol=1e-5)


def test_joint_encoder_is_head_of_concatenated_features(rng):
  x, w = jax.random.normal(rng, (3, 4)), jax.random.normal(jax.random.key(2), (3, 2, 3))
  model = JointEncoder([MLP((5, 6)), PointSetFeatures("pointnet", width=8)], GaussianHead(2))
  params = randomize(model.init(rng, [x, w], False))["params"]
  out = model.apply({"params": params}, [x, w], False)
  fx = MLP((5, 6)).apply({"params": params["encoders_0"]}, x)
  fw = PointSetFeatures("pointnet", width=8).apply({"params": params["encoders_1"]}, w)
  ref = GaussianHead(2).apply({"params": params["head"]}, jnp.concatenate([fx, fw], -1))
  np.testing.assert_allclose(out.mean, ref.mean, rtol=1e-6)
  np.testing.assert_allclose(out.logvar, ref.logvar, rtol=1e-6)
  with pytest.raises(ValueError, match="2 encoders"):
    model.apply({"params": params}, [x], False)


def test_pel_matches_numpy_and_is_equivariant(rng):
  x = jax.random.normal(rng, (2, 7, 3))
  layer = PermutationEquivariantLayer(4)
  params = randomize(layer.init(rng, x))["params"]
  expected = np_dense(params["point"], x) - np_dense(params["pool"], np.max(x, 1, keepdims=True))
  got = layer.apply({"params": params}, x)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
  perm = np.random.default_rng(0).permutation(7)
  np.testing.assert_allclose(layer.apply({"params": params}, x[:, perm]), got[:, perm], atol=1e-6)


@pytest.mark.parametrize("kind,width,n", [("respel", 8, 16), ("respel", 64, 256),
                                          ("pointnet", 16, 32)])
def test_point_set_encoder_permutation_invariant(rng, kind, width, n):
  points = jax.random.normal(rng, (3, n, 3))
  model = PointSetEncoder(5, kind, width, num_blocks=2)
  params = model.init(rng, points)["params"]
  out = model.apply({"params": params}, points)
  perms = np.stack([np.random.default_rng(i).permutation(n) for i in range(3)])
  shuffled = jnp.take_along_axis(points, perms[:, :, None], axis=1)
  out_p = model.apply({"params": params}, shuffled)
  np.testing.assert_allclose(out_p.mean, out.mean, atol=1e-5)
  np.testing.assert_allclose(out_p.logvar, out.logvar, atol=1e-5)
  # Different clouds give different codes (the encoder is not trivially constant).
  assert np.max(np.abs(np.asarray(out.mean[0] - out.mean[1]))) > 1e-4


def test_point_set_encoder_identical_points_finite(rng):
  points = jnp.zeros((2, 8, 3))
  model = PointSetEncoder(4, width=8)
  params = model.init(rng, points)["params"]
  grads = jax.grad(lambda p: jnp.sum(model.apply({"params": p}, points).mean))(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  with pytest.raises(ValueError, match=r"\(B, N, C\)"):
    model.apply({"params": params}, points[0])


@pytest.mark.parametrize("n,shape", [(256, (16, 16)), (100, (10, 10)), (24, (4, 6)), (7, (1, 7))])
def test_folding_grid(n, shape):
  grid = folding_grid(n, 0.3)
  assert grid.shape == (n, 2)
  rows, cols = shape
  assert len(np.unique(grid[:, 0])) == cols
  assert len(np.unique(grid[:, 1])) == rows
  if rows > 1:
    np.testing.assert_allclose(grid[cols], [-0.3, -0.3 + 0.6 / (rows - 1)], atol=1e-7)
  np.testing.assert_allclose([grid.min(), grid.max()], [-0.3, 0.3], atol=1e-7)


@pytest.mark.parametrize("n,hidden", [(256, 16), (64, 512)])
def test_folding_net_first_fold_is_a_function_of_the_grid(rng, n, hidden):
  z = jax.random.normal(rng, (2, 6))
  model = FoldingNet(n, hidden)
  params = randomize(model.init(rng, z))["params"]
  params["fold1_0"] = {"kernel": params["fold1_0"]["kernel"].at[:6].set(0.0),
                       "bias": params["fold1_0"]["bias"]}
  out, fold1 = model.apply({"params": params}, z, return_intermediate=True)
  assert out.shape == (2, n, 3) and fold1.shape == (2, n, 3)
  # By hand: with the codeword rows of the first kernel zeroed, fold 1 = MLP(grid) only.
  g = folding_grid(n)
  h = relu(np.asarray(g, np.float64) @ np.asarray(params["fold1_0"]["kernel"][6:])
           + np.asarray(params["fold1_0"]["bias"]))
  h = relu(np_dense(params["fold1_1"], h))
  expected = np_dense(params["fold1_2"], h)
  np.testing.assert_allclose(fold1[0], expected, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(fold1[1], expected, rtol=1e-4, atol=1e-4)
  # Fold 2 does see the codeword.
  assert np.max(np.abs(np.asarray(out[0] - out[1]))) > 1e-4


def test_folding_net_zero_weights_give_bias_points(rng):
  z = jax.random.normal(rng, (1, 4))
  model = FoldingNet(16, 8)
  params = model.init(rng, z)["params"]
  params = jax.tree.map(jnp.zeros_like, params)
  params["fold2_2"]["bias"] = jnp.array([0.1, -0.2, 0.3])
  np.testing.assert_allclose(model.apply({"params": params}, z)[0],
                             np.tile([0.1, -0.2, 0.3], (16, 1)), atol=1e-7)
