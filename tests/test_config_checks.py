"""Config values are checked before any work starts, with messages naming field, value, expectation."""

import glob
import importlib
import inspect
import os

import pytest

from experiments.configs import quickstart as quickstart_config
from experiments.configs import toy as toy_config
from handjax.data.builders import synthetic_hands
from handjax.train import config_checks
from handjax.train import loop

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC_CONFIGS = ", ".join(c.name for c in synthetic_hands.SyntheticHands.BUILDER_CONFIGS)


def _with(config, overrides):
  with config.unlocked():
    config.update_from_flattened_dict(overrides)
  return config


@pytest.mark.parametrize("overrides, processes, devices, message", [
    ({"batch_size": -3}, 1, 1,
     "config.batch_size=-3: expected a positive integer (the global batch of all processes)"),
    ({"batch_size": 0}, 1, 1,
     "config.batch_size=0: expected a positive integer (the global batch of all processes)"),
    ({"batch_size": 12}, 1, 8,
     "config.batch_size=12: expected a multiple of the 8 devices of the mesh (one equal share each)"),
    ({"batch_size": 6}, 4, 2, "config.batch_size=6: expected a multiple of the 4 processes"),
    ({"num_steps": 0}, 1, 1, "config.num_steps=0: expected a positive integer"),
    ({"eval_every": -2}, 1, 1,
     "config.eval_every=-2: expected an integer >= -1 (0: only at the end, -1: never)"),
    ({"log_every": -1}, 1, 1, "config.log_every=-1: expected an integer >= 0 (0: only at the end)"),
    ({"keep_checkpoints": 0}, 1, 1, "config.keep_checkpoints=0: expected an integer >= 1"),
    ({"optimizer.learning_rate": 0.0}, 1, 1,
     "config.optimizer.learning_rate=0.0: expected a finite number > 0"),
    ({"optimizer.learning_rate": -1e-3}, 1, 1,
     "config.optimizer.learning_rate=-0.001: expected a finite number > 0"),
    ({"optimizer.learning_rate": float("nan")}, 1, 1,
     "config.optimizer.learning_rate=nan: expected a finite number > 0"),
    ({"optimizer.warmup_steps": -5}, 1, 1,
     "config.optimizer.warmup_steps=-5: expected an integer >= 0"),
    ({"data.image_size": 0}, 1, 1, "config.data.image_size=0: expected a positive integer"),
])
def test_each_invalid_toy_value_names_field_value_and_expectation(overrides, processes, devices,
                                                                   message):
  config = _with(toy_config.get_config(), overrides)
  with pytest.raises(config_checks.ConfigError) as info:
    config_checks.validate(config, processes, devices)
  assert str(info.value) == message
  field, value = next(iter(overrides.items()))
  assert info.value.field == field and repr(info.value.value) == repr(value)
  assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("overrides, message", [
    ({"data.labelled_fraction": 1.5}, "config.data.labelled_fraction=1.5: expected a number in [0, 1]"),
    ({"data.augment.flip_prob": -0.1},
     "config.data.augment.flip_prob=-0.1: expected a number in [0, 1]"),
    ({"data.heatmap_size": -16}, "config.data.heatmap_size=-16: expected a positive integer"),
    ({"data.builder_config": "quickstrat"},
     f"config.data.builder_config='quickstrat': expected a builder config of synthetic_hands: "
     f"{SYNTHETIC_CONFIGS}"),
    ({"data.builder_config": None, "data.resolution": 100},
     "config.data.resolution=100: expected a resolution with a default_<resolution> builder config "
     "(64, 128, 256) or an explicit data.builder_config"),
    ({"data.dataset": "no_such_dataset"},
     "config.data.dataset='no_such_dataset': expected a tfds builder name (handjax's: "
     "synthetic_hands, rhd, stb, freihand)"),
])
def test_each_invalid_data_value_names_field_value_and_expectation(overrides, message):
  config = _with(quickstart_config.get_config(), overrides)
  with pytest.raises(config_checks.ConfigError, match="^config\\.") as info:
    config_checks.validate(config)
  assert str(info.value) == message


def test_domain_batches_split_into_halves_per_process():
  config = toy_config.get_config()
  with config.unlocked():
    config.data.source = "domains"
    config.batch_size = 6
  config_checks.validate(config, 3, 3)  # 2 per process: one source, one target example.
  with pytest.raises(config_checks.ConfigError, match=(
      r"^config\.batch_size=6: expected a multiple of the 2 x 2 processes \(a source and a "
      r"target half per process\)$")):
    config_checks.validate(config, 2, 2)


def test_every_shipped_config_is_valid():
  checked = 0
  for path in sorted(glob.glob(os.path.join(ROOT, "experiments", "configs", "*.py"))):
    module = importlib.import_module(f"experiments.configs.{os.path.basename(path)[:-3]}")
    get_config = getattr(module, "get_config", None)
    if get_config is None or any(p.default is p.empty
                                 for p in inspect.signature(get_config).parameters.values()):
      continue  # *_common.py helpers
    config_checks.validate(get_config(), 1, 1)  # with its default argument, if it takes one
    checked += 1
  assert checked >= 40


def test_the_loop_checks_before_any_work(tmp_path):
  def factory(*args, **kwargs):
    raise AssertionError("the dataset must not be touched by a run with an invalid config")

  config = _with(toy_config.get_config(), {"batch_size": -3})
  with pytest.raises(config_checks.ConfigError, match=r"^config\.batch_size=-3: "):
    loop.train_and_evaluate(config, str(tmp_path / "run"), dataset_factory=factory)
  assert not (tmp_path / "run").exists()
  # The device count of the mesh the run would use (8 virtual CPU devices in tests).
  config = _with(toy_config.get_config(), {"batch_size": 12})
  with pytest.raises(config_checks.ConfigError, match="multiple of the 8 devices"):
    loop.train_and_evaluate(config, str(tmp_path / "run"), dataset_factory=factory)
