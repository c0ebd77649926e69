"""Tests of the SemiHand method (Yang dissertation ch. 6): its losses against handjax.losses."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from handjax.hand import circles as circles_lib
from handjax.hand import correction
from handjax.hand import lifting
from handjax.hand import skeleton
from handjax.hand.lifting import Pose25D
from handjax.losses import consistency
from handjax.losses import image as image_losses
from handjax.losses import pseudo_labels
from handjax.losses.pose import pose_25d_distance
from handjax.methods import semihand
from handjax.train import label_store
from handjax.train import method as method_lib

SIZE = 32
UNIT = 64 / SIZE  # loss units: pixels of a 64 x 64 output map (Sec. 6.4) per map pixel
BATCH = 4


def _config(**overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "semihand"
  c.num_steps = 10
  c.batch_size = BATCH
  c.data = ml_collections.ConfigDict({"image_size": SIZE})
  c.model = ml_collections.ConfigDict({"features": 8, "num_stacks": 2, "levels": 1,
                                       "stem_stride": 1})
  c.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-3})
  c.semihand = semihand.default_semihand_config()
  c.semihand.update(overrides)
  return c


def _batch() -> dict[str, jax.Array]:
  rng = np.random.default_rng(0)
  template = np.asarray(correction.TEMPLATE_POSE)
  pose = template[None] + rng.normal(0, 0.005, (BATCH, 21, 3)) + np.array([0, 0, 0.5])
  K = np.array([[60.0, 0, 15.5], [0, 60.0, 15.5], [0, 0, 1]], np.float32)
  uv = np.einsum("ij,bnj->bni", K, pose)
  uv = uv[..., :2] / uv[..., 2:]
  scale = np.linalg.norm(pose[:, 10] - pose[:, 9], axis=-1)
  normalized = (pose - pose[:, :1]) / scale[:, None, None]
  mask = (rng.uniform(size=(BATCH, SIZE, SIZE, 1)) > 0.7).astype(np.uint8)
  return {"image": jnp.asarray(rng.uniform(-0.5, 0.5, (BATCH, SIZE, SIZE, 3)), jnp.float32),
          "uv": jnp.asarray(uv, jnp.float32), "pose3d": jnp.asarray(pose, jnp.float32),
          "pose3d_normalized": jnp.asarray(normalized, jnp.float32),
          "scale": jnp.asarray(scale, jnp.float32), "mask": jnp.asarray(mask),
          "K": jnp.broadcast_to(jnp.asarray(K), (BATCH, 3, 3)),
          "hand_side": jnp.zeros((BATCH,), jnp.int32), "index": jnp.arange(BATCH),
          "has_pose3d": jnp.array([True, True, False, False])}


def _with_stored_labels(config, method, batch) -> dict[str, jax.Array]:
  """``batch`` plus a round's stored labels made by another network (another init), so that the
  labels are not functions of the current prediction."""
  other_params, other_state = jax.jit(method.init)(jax.random.key(2), batch)
  host = {k: np.asarray(v) for k, v in batch.items()}
  empty = label_store.empty_batch_labels(host, semihand.LABEL_SPEC)
  labels = semihand.make_label_fn(config)(other_params, other_state, empty, jax.random.key(3))
  out = dict(batch)
  for name, value in labels.items():
    out[label_store.stored_key(name)] = value
  out[label_store.HAS_STORED] = ~batch["has_pose3d"]
  return out


@pytest.fixture(scope="module")
def setup():
  config = _config()
  method = method_lib.get_method(config)
  batch = _batch()
  params, state = jax.jit(method.init)(jax.random.key(1), batch)
  return config, method, _with_stored_labels(config, method, batch), params, state


def _reference_terms(config, params, state, batch, rng):
  """Eq. 6.1 recomputed from handjax.losses with an independent forward pass."""
  s = config.semihand
  net = semihand._network(config)  # pylint: disable=protected-access
  variables = {**params, **state}
  outs = net.apply(variables, batch["image"], train=True, mutable=["batch_stats"])[0]
  labelled = np.asarray(batch["has_pose3d"])
  # Map == image resolution here (stem_stride 1): loss units are pixels * 64 / SIZE.
  gt_uv, gt_d = batch["uv"] * UNIT, batch["pose3d_normalized"][..., 2]
  sup = 0.0
  for o in outs:
    sup = sup + pose_25d_distance(o["uv"] * UNIT, o["depth"], gt_uv, gt_d, 50.0)
    sup = sup + 100.0 * image_losses.mask_l1(jax.nn.sigmoid(o["mask_logits"]),
                                             batch["mask"].astype(jnp.float32))
  total = np.mean(np.asarray(sup)[labelled])
  transform = semihand.perturbation_affine(rng, BATCH, SIZE, 5.0, 2.0, True)
  image_t, _ = consistency.warp_affine(batch["image"], transform)
  out_t = net.apply(variables, image_t, train=True, mutable=["batch_stats"])[0][-1]
  last = outs[-1]
  t_unit = transform.at[..., 2].multiply(UNIT)
  p = Pose25D(last["uv"] * UNIT, last["depth"])
  p_t = Pose25D(out_t["uv"] * UNIT, out_t["depth"])
  s_t = semihand.TEMPLATE_SCALE

  del s_t
  # L_unsup (Eq. 6.6) with the round's stored p_hat, r and C (image pixels = map pixels here; no
  # augmentation map in the batch: the identity).
  pseudo = Pose25D(batch["stored_pseudo_uv"] * UNIT, batch["stored_pseudo_depth"])
  corrected = Pose25D(batch["stored_corrected_uv"] * UNIT, batch["stored_corrected_depth"])
  conf = batch["stored_confidence"]
  keep = np.asarray(conf) <= s.tau
  l_pp = np.asarray(pseudo_labels.pose_distance(p, pseudo))
  l_rp = np.asarray(pseudo_labels.pose_distance(corrected, p))
  unsup = keep * l_pp + l_rp
  # Eq. 6.10 term by term: uv moves in loss units (t_unit), the mask at its own map size, which
  # is the image size here (`transform`).
  moved = consistency.affine_pose(p, t_unit)
  warped, valid = consistency.warp_affine(jax.nn.sigmoid(last["mask_logits"]), transform)
  mask_l1 = (np.sum(valid * np.abs(jax.nn.sigmoid(out_t["mask_logits"]) - warped), (1, 2, 3))
             / np.maximum(np.sum(valid, (1, 2, 3)), 1))
  vc = pose_25d_distance(p_t.uv, p_t.depth, moved.uv, moved.depth, 50.0) + mask_l1
  # Sec. 6.3.3: the consistency terms act on X_L and X_U, i.e. every row (issue 20, finding 5).
  vc_mask = np.mean(mask_l1)
  K = batch["K"]
  ppu = lifting.root_depth_from_scale(last["uv"], last["depth"], K)
  cc = consistency.cross_modal_consistency(last["uv"], jax.nn.sigmoid(last["mask_logits"]),
                                           K[:, 0, 0] / ppu)
  u = ~labelled
  return {"total": total, "unsup_rows": unsup[u], "keep": keep[u], "l_pp": l_pp[u],
          "vc": np.mean(np.asarray(vc)), "vc_mask": vc_mask, "cc": np.mean(np.asarray(cc)),
          "conf": conf}


def test_adapt_loss_is_composition_of_loss_terms(setup):
  config, method, batch, params, state = setup
  rng = jax.random.key(7)
  loss, (metrics, _) = method.phases[0].loss(params, state, batch, rng, jnp.int32(0))
  ref = _reference_terms(config, params, state, batch, rng)
  np.testing.assert_allclose(metrics["sup_pose"] + metrics["sup_mask"], ref["total"], rtol=1e-5)
  np.testing.assert_allclose(metrics["unsup"], np.mean(ref["unsup_rows"]), rtol=1e-4)
  np.testing.assert_allclose(metrics["vc"], ref["vc"], rtol=1e-4)
  np.testing.assert_allclose(metrics["vc_mask"], ref["vc_mask"], rtol=1e-4)
  np.testing.assert_allclose(metrics["cc"], ref["cc"], rtol=1e-4)
  expected = ref["total"] + np.mean(ref["unsup_rows"]) + 0.1 * (ref["vc"] + ref["cc"])
  np.testing.assert_allclose(loss, expected, rtol=1e-4)


def test_confidence_selection_keeps_exactly_samples_below_tau(setup):
  """Through the method loss: loss(tau) - loss(tau=-1) = mean over unlabelled rows of
  1(C <= tau) l(p, p_hat); a row with C > tau adds nothing."""
  config, _, batch, params, state = setup
  rng = jax.random.key(7)
  ref = _reference_terms(config, params, state, batch, rng)
  conf = np.sort(np.asarray(ref["conf"])[2:])
  tau_mid = float(np.mean(conf))  # between the two unlabelled confidences
  assert conf[0] < tau_mid < conf[1]
  losses = {}
  for tau in (-1.0, tau_mid, 1e9):
    m = method_lib.get_method(_config(tau=tau, use_vc=False, use_cc=False))
    losses[tau] = float(m.phases[0].loss(params, state, batch, rng, jnp.int32(0))[0])
  l_pp, c_rows = ref["l_pp"], np.asarray(ref["conf"])[2:]
  np.testing.assert_allclose(losses[tau_mid] - losses[-1.0],
                             np.sum(l_pp * (c_rows <= tau_mid)) / 2, rtol=1e-3, atol=1e-7)
  np.testing.assert_allclose(losses[1e9] - losses[-1.0], np.sum(l_pp) / 2, rtol=1e-3, atol=1e-7)


def test_pretrain_phase_is_supervised_only_and_schedules(setup):
  _, _, batch, params, state = setup
  m = method_lib.get_method(_config(pretrain_steps=4))
  assert [p.name for p in m.phases] == ["pretrain", "adapt"]
  assert m.phases[0].runs_at(3) and not m.phases[0].runs_at(4) and m.phases[1].runs_at(4)
  loss, (metrics, _) = m.phases[0].loss(params, state, batch, jax.random.key(0), jnp.int32(0))
  np.testing.assert_allclose(loss, metrics["sup_pose"] + metrics["sup_mask"], rtol=1e-6)


def test_rescale_affine_matches_coordinate_change():
  t = semihand.random_affine(jax.random.key(3), 2, 64, 30.0, 0.1, 0.1)
  pts = jnp.asarray(np.random.default_rng(0).uniform(0, 63, (2, 5, 2)), jnp.float32)
  in_img = consistency.affine_uv(pts, t)
  f = 0.25
  t_map = semihand.rescale_affine(t, f)
  in_map = consistency.affine_uv(semihand.image_to_map_uv(pts, 64, 16), t_map)
  np.testing.assert_allclose(in_map, semihand.image_to_map_uv(in_img, 64, 16), atol=1e-4)
  np.testing.assert_allclose(semihand.map_to_image_uv(semihand.image_to_map_uv(pts, 64, 16), 64,
                                                      16), pts, atol=1e-5)


def test_predict_lifts_with_ground_truth_scale(setup):
  config, method, batch, params, state = setup
  out = method.predict(params, state, batch)
  net = semihand._network(config)  # pylint: disable=protected-access
  last = net.apply({**params, **state}, batch["image"], train=False)[-1]
  pose = lifting.lift_25d(last["uv"], last["depth"], batch["K"], batch["scale"])
  np.testing.assert_allclose(out["pose3d"], pose - pose[:, :1], rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(out["uv"], last["uv"], atol=1e-5)


def _train(loss_fn, params, state, batch, steps, lr):
  import optax  # pylint: disable=g-import-not-at-top
  opt = optax.adam(lr)
  opt_state = opt.init(params)

  @jax.jit
  def step(params, state, opt_state, i):
    (loss, (_, new_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, state, batch, jax.random.fold_in(jax.random.key(0), i), i)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), {**state, **new_state}, opt_state, loss

  losses = []
  for i in range(steps):
    params, state, opt_state, loss = step(params, state, opt_state, jnp.int32(i))
    assert np.isfinite(loss)
    losses.append(float(loss))
  return losses


def test_few_pretrain_steps_reduce_loss(setup):
  _, _, batch, params, state = setup
  m = method_lib.get_method(_config(pretrain_steps=5))
  losses = _train(m.phases[0].loss, params, state, batch, 12, 3e-3)
  assert np.mean(losses[-3:]) < 0.8 * losses[0], losses


@pytest.mark.slow
def test_few_adapt_steps_reduce_loss(setup):
  _, method, batch, params, state = setup
  losses = _train(method.phases[0].loss, params, state, batch, 30, 1e-3)
  # The perturbation T is redrawn every step, so compare averages over a few steps.
  assert np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses


def _fake_source(n: int, value: int) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(value)
  K = np.array([[60.0, 0, 15.5], [0, 60.0, 15.5], [0, 0, 1]], np.float32)
  out = []
  for _ in range(n):
    pose = (rng.normal(0, 0.03, (21, 3)) + [0, 0, 0.5]).astype(np.float32)
    uv = (pose @ K.T)[:, :2] / pose[:, 2:]
    out.append({"image": np.full((SIZE, SIZE, 3), value, np.uint8), "K": K, "uv": uv,
                "pose3d": pose, "mask": np.ones((SIZE, SIZE), np.uint8),
                "depth": np.full((SIZE, SIZE), 0.5, np.float32), "hand_side": np.int32(0)})
  return out


def test_mixed_domain_batches():
  from handjax.data import domains  # pylint: disable=g-import-not-at-top
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict({"batch_size": 4})
  c.data = pipeline.default_data_config()
  c.data.update({"image_size": SIZE, "crop": False, "read_threads": 0})
  c.data.augment.enabled = False
  c.data.target = ml_collections.ConfigDict({"labelled": False})
  sources = (_fake_source(6, 10), _fake_source(6, 200))
  it = iter(domains.make_mixed_dataset(c, "train", sources=sources))
  batch = next(it)
  # First half source (labelled, pixel value 10), second half target (unlabelled, value 200).
  np.testing.assert_array_equal(batch["has_pose3d"], [True, True, False, False])
  expected = (np.array([10, 10, 200, 200]) / 255.0 - 0.5).astype(np.float32)
  np.testing.assert_allclose(batch["image"][:, 0, 0, 0], expected, atol=1e-6)
  state = it.get_state()
  following = next(it)
  resumed = iter(domains.make_mixed_dataset(c, "train", sources=sources))
  resumed.set_state(state)
  again = next(resumed)
  for k in following:
    np.testing.assert_array_equal(following[k], again[k])
  test_batch = next(iter(domains.make_mixed_dataset(c, "test", sources=sources)))
  assert test_batch["has_pose3d"].all() and test_batch["image"].shape[0] == 4


def test_mixed_iterator_survives_the_trainers_checkpoint(tmp_path):
  """Regression: grain's checkpoint handler stores a non-grain iterator's state as bytes; a dict
  state crashed every semihand / dual-modality run at its first checkpoint."""
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from handjax.data import domains  # pylint: disable=g-import-not-at-top
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top
  from handjax.train import checkpoint  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict({"batch_size": 4})
  c.data = pipeline.default_data_config()
  c.data.update({"image_size": SIZE, "crop": False, "read_threads": 0})
  c.data.target = ml_collections.ConfigDict({"labelled": False})
  sources = (_fake_source(6, 10), _fake_source(6, 200))
  it = iter(domains.make_mixed_dataset(c, "train", sources=sources))
  for _ in range(3):
    next(it)
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  ckpt.save(3, {"w": jnp.zeros(2)}, it, c)
  ckpt.wait()
  following = next(it)
  resumed = iter(domains.make_mixed_dataset(c, "train", sources=sources))
  ckpt.restore(3, {"w": jnp.zeros(2)}, resumed)
  ckpt.close()
  again = next(resumed)
  for k in following:
    np.testing.assert_array_equal(following[k], again[k], err_msg=k)


def test_cross_modal_term_stays_bounded_when_the_lifted_root_reaches_the_camera():
  """A predicted depth step along the reference bone longer than the bone itself (common while the
  depth is unlearned) leaves Iqbal's quadratic without a real root: Z_root -> 0 and f / Z_root
  explodes. The circle radii are capped at half the map, so L_cc stays at most the mean of
  |rendered - mask| (<= 1) plus the largest inside distance."""
  batch = _batch()
  uv = batch["uv"]
  i, j = skeleton.REFERENCE_SCALE_BONE
  depth = batch["pose3d_normalized"][..., 2]
  depth = depth.at[:, j].set(depth[:, i] + 1.5)
  mask_logits = jnp.full((BATCH, SIZE, SIZE, 1), -10.0)  # all background
  ppu = circles_lib.pixels_per_reference_bone(uv, depth, batch["K"])
  assert float(jnp.min(ppu)) > 1e3 * SIZE  # the degenerate case is real
  loss = semihand.cross_modal_term({"uv": uv, "depth": depth, "mask_logits": mask_logits}, batch,
                                   SIZE)
  radius = float(jnp.max(circles_lib.circle_model(uv, 0.5 * SIZE).radii))
  assert np.all(np.isfinite(np.asarray(loss))) and float(jnp.max(loss)) <= 1.0 + radius
  grad = jax.grad(lambda u: jnp.sum(semihand.cross_modal_term(
      {"uv": u, "depth": depth, "mask_logits": mask_logits}, batch, SIZE)))(uv)
  assert np.all(np.isfinite(np.asarray(grad)))


def test_perturbations_are_those_of_sec_6_3_4():
  """Unlabelled rows are perturbed by a translation of +-5 px (64-px input), or a rotation of
  +-2 degrees, or of 90 / 180 / 270 degrees; no scaling (issue 20, finding 4)."""
  size, n = 128, 4000
  t = np.asarray(semihand.perturbation(jax.random.key(0), n, size,
                                       semihand.default_semihand_config()), np.float64)
  linear, shift = t[..., :2], t[..., 2]
  np.testing.assert_allclose(np.linalg.det(linear), 1.0, atol=1e-5)  # rotations only
  angle = np.rad2deg(np.arctan2(linear[:, 1, 0], linear[:, 0, 0]))
  centre = np.full(2, (size - 1) / 2)
  moved = np.einsum("bij,j->bi", linear, centre) + shift - centre  # translation of the centre
  translation = np.abs(angle) < 1e-4
  small = ~translation & (np.abs(angle) <= 2.0 + 1e-4)
  right = (np.abs(angle / 90.0 - np.round(angle / 90.0)) < 1e-5) & (np.abs(angle) > 45.0)
  assert np.all(translation | small | right)
  assert np.max(np.abs(moved[translation])) <= 5.0 * size / 64 + 1e-4  # 10 px at 128 px
  assert np.max(np.abs(moved[~translation])) < 1e-3  # rotations about the centre
  np.testing.assert_allclose([translation.mean(), small.mean(), right.mean()], [0.5, 0.25, 0.25],
                             atol=0.03)
  quarter = np.round(angle[right] / 90.0) % 4
  np.testing.assert_allclose(np.bincount(quarter.astype(int), minlength=4)[1:] / right.sum(),
                             1 / 3, atol=0.04)


def test_consistency_terms_can_be_limited_to_unlabelled_rows(setup):
  """consistency_on_labelled=False restores the unlabelled-only reading: vc and cc then average
  over the two unlabelled rows only."""
  config, _, batch, params, state = setup
  rng = jax.random.key(7)
  both = method_lib.get_method(_config(use_pseudo_labels=False))
  only = method_lib.get_method(_config(use_pseudo_labels=False, consistency_on_labelled=False))
  m_both = both.phases[0].loss(params, state, batch, rng, jnp.int32(0))[1][0]
  m_only = only.phases[0].loss(params, state, batch, rng, jnp.int32(0))[1][0]
  # Same rows, same draws: the unlabelled-only mean of vc, from the all-row mean and a labelled-
  # only run (flags swapped) of the same batch.
  swapped = dict(batch, has_pose3d=~batch["has_pose3d"])
  m_swap = only.phases[0].loss(params, state, swapped, rng, jnp.int32(0))[1][0]
  for k in ("vc", "cc"):
    np.testing.assert_allclose(0.5 * (m_only[k] + m_swap[k]), m_both[k], rtol=1e-4)
  assert not np.isclose(float(m_only["vc"]), float(m_both["vc"]))
