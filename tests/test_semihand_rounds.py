"""SemiHand's pseudo-label rounds (Yang dissertation Algorithm 6.1; issue 20, finding 6).

Labels made at the start of each round by a pass over the target training set, stored per example
index, fixed within the round, checkpointed; checked against a brute-force loop over examples.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from handjax.data import domains
from handjax.data import pipeline
from handjax.hand import correction
from handjax.hand.lifting import Pose25D
from handjax.losses import consistency
from handjax.losses import pseudo_labels
from handjax.methods import semihand
from handjax.train import checkpoint
from handjax.train import label_store
from handjax.train import loop
from handjax.train import method as method_lib
from handjax.train import sharding

SIZE = 16
UNIT = 64 / SIZE  # loss units per image (= map) pixel
N_TARGET = 10


pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _source(n: int, seed: int) -> list[dict[str, np.ndarray]]:
  rng = np.random.default_rng(seed)
  K = np.array([[30.0, 0, 7.5], [0, 30.0, 7.5], [0, 0, 1]], np.float32)
  template = np.asarray(correction.TEMPLATE_POSE)
  out = []
  for _ in range(n):
    pose = (template + rng.normal(0, 0.004, (21, 3)) + [0, 0, 0.5]).astype(np.float32)
    uv = (pose @ K.T)[:, :2] / pose[:, 2:]
    out.append({"image": rng.integers(0, 255, (SIZE, SIZE, 3)).astype(np.uint8), "K": K,
                "uv": uv.astype(np.float32), "pose3d": pose,
                "mask": (rng.uniform(size=(SIZE, SIZE)) > 0.6).astype(np.uint8),
                "depth": np.full((SIZE, SIZE), 0.5, np.float32), "hand_side": np.int32(0)})
  return out


SOURCES = (_source(8, 1), _source(N_TARGET, 2))


def _config(**semihand_overrides) -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.method = "semihand"
  c.seed = 0
  c.batch_size = 8  # 4 source + 4 target rows; the labelling pass: 8 + 2 target rows
  c.num_steps = 8
  c.log_every = 100
  c.checkpoint_every = 1
  c.eval_every = -1
  c.keep_checkpoints = 10
  c.data = pipeline.default_data_config()
  c.data.source = "domains"
  c.data.update({"image_size": SIZE, "crop": False, "read_threads": 0, "heatmap_size": 4,
                 "num_points": 8})
  c.data.augment.rotation_deg = 20.0
  c.data.target = ml_collections.ConfigDict({"labelled": False})
  c.model = ml_collections.ConfigDict({"features": 4, "num_stacks": 1, "levels": 1,
                                       "stem_stride": 1})
  c.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 1e-2})
  c.semihand = semihand.default_semihand_config()
  c.semihand.update({"pretrain_steps": 2, "pseudo_label_rounds": 2, "use_vc": False,
                     "use_cc": False, **semihand_overrides})
  return c


def _factory(sources=SOURCES):
  return functools.partial(domains.make_mixed_dataset, sources=sources)


@pytest.fixture(scope="module")
def init():
  config = _config()
  method = method_lib.get_method(config)
  batch = next(iter(_factory()(config, "train")))
  params, model_state = jax.jit(method.init)(jax.random.key(0), batch)
  return config, method, params, model_state


def _state(params, model_state, rng=5):
  return loop.state_lib.TrainState(step=jnp.int32(0), params=params, model_state=model_state,
                                   opt_state={}, rng=jax.random.key_data(jax.random.key(rng)))


def _brute_force(config, params, model_state, state, start, previous=None):
  """Round labels of each target example alone, from handjax.losses and the correction."""
  s = config.semihand
  net = semihand._network(config)  # pylint: disable=protected-access
  variables = {**params, **model_state}
  examples = list(domains.make_mixed_dataset(config, "label", sources=SOURCES))
  key = jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(state.rng), start),
                           loop.LABEL_STREAM)
  @jax.jit
  def one(image, k, index, r_prev_uv, r_prev_depth, has_prev):
    o = net.apply(variables, image, train=False)[-1]
    t = semihand.perturbation(jax.random.fold_in(key, index), 1, SIZE, s)
    o_t = net.apply(variables, consistency.warp_affine(image, t)[0], train=False)[-1]
    p = Pose25D(o["uv"] * UNIT, o["depth"])
    p_t = Pose25D(o_t["uv"] * UNIT, o_t["depth"])

    def correct(q):
      uv, d = correction.correct_pose_25d(q.uv / UNIT, q.depth * semihand.TEMPLATE_SCALE, k, 0)
      return Pose25D(uv * UNIT, d / semihand.TEMPLATE_SCALE)

    # Alg. 6.1 l. 1 (p_hat = p') in round 0, Eq. 6.7 with the previous r afterwards.
    pseudo = Pose25D(jnp.where(has_prev, 0.5 * (p.uv + r_prev_uv * UNIT), p.uv),
                     jnp.where(has_prev, 0.5 * (p.depth + r_prev_depth), p.depth))
    corrected = correct(pseudo)
    conf = (pseudo_labels.pose_distance(consistency.affine_pose(pseudo, t.at[..., 2].multiply(
        UNIT)), p_t) + pseudo_labels.pose_distance(pseudo, corrected))
    return {"pseudo_uv": pseudo.uv[0] / UNIT, "pseudo_depth": pseudo.depth[0],
            "corrected_uv": corrected.uv[0] / UNIT, "corrected_depth": corrected.depth[0],
            "confidence": conf[0]}

  out = {}
  for b in examples:
    for r in range(len(b["index"])):
      i = int(b["index"][r])
      if previous is None:
        prev = (np.zeros((21, 2), np.float32), np.zeros(21, np.float32), False)
      else:
        j = int(np.searchsorted(previous.index, i))
        prev = (previous.values["corrected_uv"][j], previous.values["corrected_depth"][j], True)
      out[i] = one(jnp.asarray(b["image"][r:r + 1]), jnp.asarray(b["K"][r:r + 1]), i, *prev)
  return out


def _assert_store_matches(store, reference):
  np.testing.assert_array_equal(store.index, np.arange(N_TARGET))
  for i, ref in reference.items():
    for name, value in ref.items():
      np.testing.assert_allclose(store.values[name][i], value, rtol=2e-4, atol=2e-4,
                                 err_msg=f"{name} of example {i}")


def test_label_pass_matches_a_brute_force_loop_over_examples(init):
  """Round 0 (p_hat = p') and round 1 (Eq. 6.7 with the previous r) against one example at a time;
  the batches of the pass (8 + 2 rows) do not matter; the stored C selects exactly C <= tau."""
  config, method, params, model_state = init
  mesh = sharding.make_mesh()
  state = _state(params, model_state)
  first = loop.label_round(method, 0, state, config, _factory(), mesh, None)
  assert first.round_start == 2 and first.num_examples == N_TARGET
  _assert_store_matches(first, _brute_force(config, params, model_state, state, 2))
  # Round 1 with other parameters: the update of Eq. 6.7 reads round 0's corrections.
  other, other_state = jax.jit(method.init)(jax.random.key(9), next(iter(_factory()(config,
                                                                                     "train"))))
  state1 = _state(other, other_state)
  second = loop.label_round(method, 1, state1, config, _factory(), mesh, first)
  assert second.round_start == 5
  _assert_store_matches(second, _brute_force(config, other, other_state, state1, 5, first))
  # Selection 1(C <= tau) on the stored confidences, through the loss (Eq. 6.6).
  conf = np.sort(second.values["confidence"])
  tau = float(0.5 * (conf[2] + conf[3]))  # keeps the three most confident
  rows = np.ones(N_TARGET, bool)
  batch = second.attach({"index": np.arange(N_TARGET)}, rows, semihand.LABEL_SPEC)
  keep = pseudo_labels.select_confident(batch["stored_confidence"], tau)
  np.testing.assert_array_equal(keep, second.values["confidence"] <= tau)
  assert keep.sum() == 3


def test_store_lookup_and_errors():
  spec = {"v": jax.ShapeDtypeStruct((2,), jnp.float32)}
  out = {"index": np.array([5, 2, 9, 7]), "selected": np.array([True, True, False, True]),
         "v": np.arange(8, dtype=np.float32).reshape(4, 2)}
  store = label_store.from_pass(out, spec, 0, 3, num_examples=4)
  np.testing.assert_array_equal(store.index, [2, 5, 7])
  batch = store.attach({"index": np.array([7, 9, 2])}, np.array([True, False, True]), spec)
  # By index, not by position: row 0 is example 7 (pass row 3), row 2 example 2 (pass row 1).
  np.testing.assert_array_equal(batch["stored_v"], [[6, 7], [0, 0], [2, 3]])
  np.testing.assert_array_equal(batch["has_stored"], [True, False, True])
  with pytest.raises(label_store.LabelStoreError, match=r"example index 9, which has no stored "
                     r"label: the store of round 0 \(made at step 3 from 4 examples\) holds 3 "
                     r"labels, indices 2..7"):
    store.attach({"index": np.array([9])}, np.array([True]), spec)
  with pytest.raises(label_store.LabelStoreError, match="carry no 'index' key"):
    store.attach({"image": np.zeros(1)}, np.array([True]), spec)
  with pytest.raises(label_store.LabelStoreError, match="saw example index 2 twice"):
    label_store.from_pass({**out, "index": np.array([2, 2, 9, 7])}, spec, 0, 3, 4)
  with pytest.raises(label_store.LabelStoreError, match="made from 4 examples but the labelling "
                     "split now has 6"):
    store.check_num_examples(6, "checkpoint x")
  again = label_store.LabelStore.from_tree(store.to_tree())
  np.testing.assert_array_equal(again.values["v"], store.values["v"])
  assert (again.round_index, again.round_start, again.num_examples) == (0, 3, 4)


def test_stored_labels_follow_the_augmented_view():
  """reference_to_view maps the unaugmented view's pixels (the labelling pass) onto the augmented
  training view: the pipeline's own uv of both views agree through it."""
  config = _config()
  data = domains.target_data_config(config.data)
  data.batch_size = N_TARGET
  train = next(iter(pipeline.make_dataset(data, "train", source=SOURCES[1], seed=3)))
  ref = next(iter(pipeline.make_dataset(data, "train", source=SOURCES[1], labelling_pass=True)))
  h = train["reference_to_view"]
  assert not np.allclose(h, np.eye(3), atol=1e-3)  # the view is augmented (rotation)
  np.testing.assert_allclose(h[:, 2], np.broadcast_to([0, 0, 1], (N_TARGET, 3)), atol=1e-6)
  moved = consistency.affine_uv(jnp.asarray(ref["uv"][train["index"]]), jnp.asarray(h[:, :2]))
  np.testing.assert_allclose(moved, train["uv"], atol=1e-3)
  np.testing.assert_allclose(ref["reference_to_view"], np.broadcast_to(np.eye(3), (N_TARGET, 3, 3)),
                             atol=1e-6)


def test_unsup_term_reads_the_stored_labels_not_the_current_prediction(init):
  """Eq. 6.6 with labels made by other parameters: the term equals the hand-computed value from
  the stored p_hat, r, C (moved by reference_to_view), and is not the on-the-fly
  1(C <= tau) l(p, (p + P(p)) / 2) + l(P(p_hat), p) the code had before."""
  config, method, params, model_state = init
  other, other_state = jax.jit(method.init)(jax.random.key(9), next(iter(_factory()(config,
                                                                                     "train"))))
  store = loop.label_round(method, 0, _state(other, other_state), config, _factory(),
                           sharding.make_mesh(), None)
  local = next(iter(_factory()(config, "train")))
  batch = store.attach(local, ~local["has_pose3d"], semihand.LABEL_SPEC)
  batch = {k: jnp.asarray(v) for k, v in batch.items()}
  _, (metrics, _) = method.phases[1].loss(params, model_state, batch, jax.random.key(1),
                                          jnp.int32(3))
  net = semihand._network(config)  # pylint: disable=protected-access
  out = net.apply({**params, **model_state}, batch["image"], train=True,
                  mutable=["batch_stats"])[0][-1]
  p = Pose25D(out["uv"] * UNIT, out["depth"])
  h = batch["reference_to_view"][:, :2]
  pseudo = Pose25D(consistency.affine_uv(batch["stored_pseudo_uv"], h) * UNIT,
                   batch["stored_pseudo_depth"])
  corr = Pose25D(consistency.affine_uv(batch["stored_corrected_uv"], h) * UNIT,
                 batch["stored_corrected_depth"])
  keep = np.asarray(batch["stored_confidence"]) <= config.semihand.tau
  ref = keep * pseudo_labels.pose_distance(p, pseudo) + pseudo_labels.pose_distance(corr, p)
  rows = ~np.asarray(local["has_pose3d"])
  np.testing.assert_allclose(metrics["unsup"], np.mean(np.asarray(ref)[rows]), rtol=1e-4)

  def correct(q):
    uv, d = correction.correct_pose_25d(q.uv / UNIT, q.depth * semihand.TEMPLATE_SCALE,
                                        batch["K"], 0)
    return Pose25D(uv * UNIT, d / semihand.TEMPLATE_SCALE)

  fly, fly_r = pseudo_labels.update_pseudo_labels(p, correct(p), correct)
  old = pseudo_labels.pose_distance(p, fly) + pseudo_labels.pose_distance(fly_r, p)
  assert abs(float(metrics["unsup"]) - float(np.mean(np.asarray(old)[rows]))) > 0.1 * float(
      metrics["unsup"])


def _run(workdir, stops=(), sources=SOURCES):
  config = _config()
  for stop in stops:
    loop.train_and_evaluate(config, str(workdir), dataset_factory=_factory(sources),
                            stop_at_step=stop)
  return loop.train_and_evaluate(config, str(workdir), dataset_factory=_factory(sources))


def _labels(workdir, step):
  ckpt = checkpoint.Checkpointer(str(workdir), read_only=True)
  try:
    tree = ckpt.restore_labels(step)
    return None if tree is None else label_store.LabelStore.from_tree(tree)
  finally:
    ckpt.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("full")
  return workdir, sharding.to_host(_run(workdir).params)


@pytest.mark.slow  # needs the uninterrupted trainer run (~45 s)
def test_labels_fixed_within_a_round_and_renewed_between_rounds(uninterrupted):
  workdir, _ = uninterrupted
  # Checkpoint s is saved after step s - 1: rounds start at steps 2 and 5 (2 + 6 * k // 2).
  assert _labels(workdir, 2) is None  # pre-training: no round has started, nothing is stored
  stores = {s: _labels(workdir, s) for s in range(3, 9)}
  for s in (4, 5):
    for name in semihand.LABEL_SPEC:
      np.testing.assert_array_equal(stores[s].values[name], stores[3].values[name])
  assert stores[5].round_index == 0 and stores[6].round_index == 1 and stores[8].round_start == 5
  assert not np.allclose(stores[6].values["pseudo_uv"], stores[3].values["pseudo_uv"])
  np.testing.assert_array_equal(stores[8].values["pseudo_uv"], stores[6].values["pseudo_uv"])


@pytest.mark.slow  # three tiny trainer runs, ~90 s on 2 cores
def test_preempted_runs_resume_to_the_uninterrupted_store_and_params(tmp_path, uninterrupted):
  """Stopped mid-round 0 (step 4) and just after round 1 began (step 6): the resumed run finishes
  round 0 with the checkpointed labels, relabels round 1 from the same parameters, and ends with
  the uninterrupted run's parameters and labels."""
  full_dir, full_params = uninterrupted
  params = sharding.to_host(_run(tmp_path, stops=(4, 6)).params)
  for a, b in zip(jax.tree.leaves(full_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(a, b)
  for name in semihand.LABEL_SPEC:
    np.testing.assert_array_equal(_labels(tmp_path, 8).values[name],
                                  _labels(full_dir, 8).values[name])


@pytest.mark.slow  # needs the uninterrupted trainer run (~45 s)
def test_resume_with_another_target_size_is_a_clear_error(tmp_path, uninterrupted):
  full_dir, _ = uninterrupted
  config = _config()
  config.num_steps = 10
  bigger = (SOURCES[0], _source(N_TARGET + 2, 2))
  with pytest.raises(label_store.LabelStoreError, match=r"made from 10 examples but the labelling "
                     r"split now has 12"):
    loop.train_and_evaluate(config, str(full_dir), dataset_factory=_factory(bigger))
