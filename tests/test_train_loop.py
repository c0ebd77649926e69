"""The generic loop: resume equals an uninterrupted run, guards, start-up checks, metric files."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from experiments.configs import toy as toy_config
from handjax.train import checkpoint
from handjax.train import guards
from handjax.train import loop
from handjax.train import sharding
from handjax.train import toy


pytestmark = pytest.mark.usefixtures("persistent_compilation_cache")


def _config(**overrides):
  config = toy_config.get_config()
  config.batch_size = 8
  config.num_steps = 12
  config.log_every = 3
  config.checkpoint_every = 4
  config.keep_checkpoints = 2
  config.eval_every = -1
  config.data.image_size = 4
  config.data.num_train = 40
  config.update(overrides)
  return config


def _assert_states_equal(a, b):
  ha, hb = sharding.to_host(a), sharding.to_host(b)
  assert jax.tree.structure(ha) == jax.tree.structure(hb)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=1e-6), ha, hb)


def _restore_raw(workdir, step):
  """The state saved at ``step`` in ``workdir``, as stored (no target structure)."""
  ckpt = checkpoint.Checkpointer(str(workdir))
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  state = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
  ckpt.close()
  return state


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  """An uninterrupted 12-step toy run (checkpoints at 4, 8, 12), shared by several tests."""
  workdir = tmp_path_factory.mktemp("full")
  return workdir, loop.train_and_evaluate(_config(), str(workdir))


def test_stop_and_resume_equals_uninterrupted(tmp_path, full_run):
  config = _config()
  _, full = full_run
  # Stop at 6 (between periodic checkpoints at 4 and 8), then resume to 12.
  partial = loop.train_and_evaluate(config, str(tmp_path / "resumed"), stop_at_step=6)
  assert int(jax.device_get(partial.step)) == 6
  shutil.copytree(tmp_path / "resumed", tmp_path / "rewound")
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
  _assert_states_equal(full, resumed)
  # Negative control: the same resume with the data iterator rewound to its start (same seed, first
  # batches again) must give different parameters, so the equality above does test data order.
  for f in (tmp_path / "rewound" / "checkpoints" / "6" / "data").glob("process_*.json"):
    f.write_text(json.dumps({**json.loads(f.read_text()), "next_index": 0}))
  wrong = loop.train_and_evaluate(config, str(tmp_path / "rewound"))
  assert not np.allclose(sharding.to_host(wrong.params)["params"]["head"]["kernel"],
                         sharding.to_host(full.params)["params"]["head"]["kernel"], atol=1e-6)


def test_two_phase_stop_and_resume_equals_uninterrupted(tmp_path):
  config = _config(method="toy_two_phase", num_steps=7, checkpoint_every=100, log_every=100)
  full = loop.train_and_evaluate(config, str(tmp_path / "full"))
  loop.train_and_evaluate(config, str(tmp_path / "resumed"), stop_at_step=3)
  resumed = loop.train_and_evaluate(config, str(tmp_path / "resumed"))
  _assert_states_equal(full, resumed)


def test_metrics_files_and_keep_last_checkpoints(full_run):
  workdir, _ = full_run
  lines = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [x["step"] for x in lines] == [3, 4, 6, 8, 9, 12]
  assert all(np.isfinite(x["loss"]) and x["loss"] == x["mse"] for x in lines)
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [8, 12]  # keep_checkpoints=2
  events = list((workdir / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1 and events[0].stat().st_size > 0
  stored = checkpoint.load_config(str(workdir))
  assert stored.num_steps == 12 and stored.data.image_size == 4 and stored.method == "toy"


def test_nan_stops_run_and_keeps_last_good_checkpoint(tmp_path, full_run):
  config = _config(toy_nan_at_step=9, log_every=100, num_steps=14)
  with pytest.raises(guards.NonFiniteError, match=r"step 9: grad_norm=nan, loss=nan, mse=nan") as e:
    loop.train_and_evaluate(config, str(tmp_path))
  assert e.value.step == 9 and set(e.value.terms) == {"grad_norm", "loss", "mse"}
  ckpt = checkpoint.Checkpointer(str(tmp_path))
  assert ckpt.all_steps() == [4, 8]  # The save due at 12 never happened.
  ckpt.close()
  # The kept checkpoint is the good state at step 8: bitwise the uninterrupted run's.
  kept, good = _restore_raw(tmp_path, 8), _restore_raw(full_run[0], 8)
  jax.tree.map(np.testing.assert_array_equal, kept, good)


def test_wrong_data_shape_fails_at_startup_naming_the_key(tmp_path):
  config = _config()

  def factory(cfg, split, **kwargs):
    ds = toy.toy_dataset(cfg, split, **kwargs)
    return ds.map(lambda b: {**b, "pose3d": b["pose3d"][:, :20]})

  with pytest.raises(guards.DataSpecError,
                     match=r"Data key 'pose3d' has shape \(8, 20, 3\).*\(8, 21, 3\)"):
    loop.train_and_evaluate(config, str(tmp_path), dataset_factory=factory)
  bigger = _config()
  bigger.data.image_size = 6  # The config says 6x6 images, the data has 4x4.
  with pytest.raises(guards.DataSpecError,
                     match=r"Data key 'image' has shape \(8, 4, 4, 3\).*\(8, 6, 6, 3\)"):
    loop.train_and_evaluate(bigger, str(tmp_path),
                            dataset_factory=lambda c, s, **k: toy.toy_dataset(config, s, **k))

  def missing(cfg, split, **kwargs):
    return toy.toy_dataset(cfg, split, **kwargs).map(lambda b: {"image": b["image"]})

  with pytest.raises(guards.DataSpecError, match="no key 'pose3d'"):
    loop.train_and_evaluate(config, str(tmp_path), dataset_factory=missing)
  with pytest.raises(guards.DataSpecError, match="'image' has dtype float64"):
    loop.train_and_evaluate(config, str(tmp_path), dataset_factory=lambda c, s, **k: toy.toy_dataset(
        c, s, **k).map(lambda b: {**b, "image": b["image"].astype(np.float64)}))


def test_bad_workdirs_are_clear_errors(tmp_path):
  a_file = tmp_path / "file"
  a_file.write_text("x")
  with pytest.raises(NotADirectoryError, match="not a directory"):
    guards.prepare_workdir(str(a_file))
  with pytest.raises(PermissionError, match="cannot be created or written"):
    guards.prepare_workdir(str(a_file / "sub"))
  with pytest.raises(ValueError, match="workdir is required"):
    guards.prepare_workdir("")
  if os.geteuid() != 0:  # root ignores permission bits
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    with pytest.raises(PermissionError, match="cannot be created or written"):
      guards.prepare_workdir(str(ro))
  with pytest.raises(FileNotFoundError, match="No checkpoints"):
    checkpoint.load_config(str(tmp_path / "never_trained"))


def test_init_from_loads_another_runs_parameters(tmp_path, full_run):
  """A stage run alone: fresh step and optimiser, parameters from the other run's checkpoint."""
  source_dir, source_state = full_run
  state = loop.train_and_evaluate(_config(init_from=str(source_dir)), str(tmp_path / "b"),
                                  stop_at_step=0)
  assert int(jax.device_get(state.step)) == 0
  _assert_states_equal(state.params, source_state.params)
  fresh = loop.train_and_evaluate(_config(), str(tmp_path / "c"), stop_at_step=0)
  assert not np.allclose(sharding.to_host(fresh.params)["params"]["body"]["kernel"],
                         sharding.to_host(state.params)["params"]["body"]["kernel"])
  _assert_states_equal(state.opt_state, fresh.opt_state)
  # A different network under the same parameter paths is an error, not a warm start.
  with pytest.raises(ValueError, match=r"init_from: params.*\(32,\) float32 in the source chec"):
    loop.train_and_evaluate(_config(init_from=str(source_dir), toy_hidden=7),
                            str(tmp_path / "d"), stop_at_step=0)
  with pytest.raises(FileNotFoundError):
    loop.train_and_evaluate(_config(init_from=str(tmp_path / "none")), str(tmp_path / "e"),
                            stop_at_step=0)
