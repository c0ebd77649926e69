"""Checks of the config values a run depends on, made before any work starts.

``--config.batch_size=-3`` used to end in a grain ``ValueError`` traceback after the dataset had
been prepared (minutes of rendering at 128 px). :func:`validate` runs first in
``train_and_evaluate`` and raises :class:`ConfigError`, whose message names the field, its value
and what is expected; ``experiments/train.py`` prints it as one line and exits with status 1.

What is checked (fields that a config lacks are skipped):
  * ``batch_size``: a positive integer divisible by the devices of the mesh and by the processes
    that feed it (twice the processes for ``data.source = 'domains'``: source and target halves);
  * ``num_steps`` > 0; every other ``*_steps`` >= 0; ``log_every``, ``checkpoint_every`` >= 0,
    ``eval_every`` >= -1, ``keep_checkpoints`` >= 1;
  * every ``learning_rate`` (``optimizer``, ``discriminator_optimizer``, ...): finite and > 0;
  * every ``*_fraction`` / ``*_prob`` field: in [0, 1];
  * ``data.image_size``, ``data.heatmap_size``, ``data.num_points``: positive integers;
  * ``data.builder_config`` (and ``data.target.builder_config``): a config of ``data.dataset``'s
    tfds builder; for ``synthetic_hands`` without one, ``default_<data.resolution>`` must exist.
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Iterator

import ml_collections


class ConfigError(ValueError):
  """A config field holds a value the run cannot use.

  Attributes:
    field: dotted path under ``config`` (e.g. ``"optimizer.learning_rate"``).
    value: the offending value.
    expected: what the field must hold.
  """

  def __init__(self, field: str, value: Any, expected: str):
    self.field, self.value, self.expected = field, value, expected
    super().__init__(f"config.{field}={value!r}: expected {expected}")


def _leaves(node: Any, prefix: str = "") -> Iterator[tuple[str, str, Any]]:
  """(dotted path, last key, value) of every non-dict field, depth first."""
  for key, value in node.items():
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      yield from _leaves(value, f"{prefix}{key}.")
    else:
      yield f"{prefix}{key}", key, value


def _is_int(value: Any) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_int(field: str, value: Any, minimum: int, expected: str) -> None:
  if not _is_int(value) or value < minimum:
    raise ConfigError(field, value, expected)


def _check_batch_size(config: ml_collections.ConfigDict, num_processes: int,
                      num_devices: int) -> None:
  batch = config.batch_size
  _check_int("batch_size", batch, 1, "a positive integer (the global batch of all processes)")
  if batch % num_devices:
    raise ConfigError("batch_size", batch,
                      f"a multiple of the {num_devices} devices of the mesh (one equal share each)")
  halves = 2 if config.get("data", {}).get("source") == "domains" else 1
  if batch % (halves * num_processes):
    what = f"{num_processes} processes" if halves == 1 else (
        f"2 x {num_processes} processes (a source and a target half per process)")
    raise ConfigError("batch_size", batch, f"a multiple of the {what}")


def _check_schedule(config: ml_collections.ConfigDict) -> None:
  _check_int("num_steps", config.get("num_steps"), 1, "a positive integer")
  for field, minimum, expected in (
      ("log_every", 0, "an integer >= 0 (0: only at the end)"),
      ("checkpoint_every", 0, "an integer >= 0 (0: only at the end)"),
      ("eval_every", -1, "an integer >= -1 (0: only at the end, -1: never)"),
      ("keep_checkpoints", 1, "an integer >= 1")):
    if field in config:
      _check_int(field, config[field], minimum, expected)


def _check_fields(config: ml_collections.ConfigDict) -> None:
  """Rules by field name, anywhere in the config tree."""
  for field, key, value in _leaves(config):
    if key == "learning_rate":
      if (isinstance(value, bool) or not isinstance(value, (int, float))
          or not math.isfinite(value) or value <= 0):
        raise ConfigError(field, value, "a finite number > 0")
    elif key.endswith("_steps") and field != "num_steps" and _is_int(value):
      _check_int(field, value, 0, "an integer >= 0")
    elif key.endswith(("fraction", "_prob")):
      if (isinstance(value, bool) or not isinstance(value, (int, float))
          or not 0.0 <= value <= 1.0):
        raise ConfigError(field, value, "a number in [0, 1]")


def _known_builder_configs(dataset: str) -> list[str] | None:
  """Names of the tfds builder configs of ``dataset``, or None when it has no named configs.

  Imports ``handjax.data.builders.<dataset>`` first (which registers handjax's builders), as
  ``pipeline.load_source`` does.

  Raises:
    ConfigError: ``dataset`` is no registered tfds builder.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  module = f"handjax.data.builders.{dataset}"
  try:
    importlib.import_module(module)
  except ModuleNotFoundError as e:
    if e.name != module:
      raise
  try:
    builder_cls = tfds.builder_cls(dataset)
  except tfds.core.registered.DatasetNotFoundError:
    raise ConfigError("data.dataset", dataset, "a tfds builder name (handjax's: synthetic_hands, "
                      "rhd, stb, freihand)") from None
  names = list(getattr(builder_cls, "builder_configs", None) or {})
  return names or None


def _check_data(data: ml_collections.ConfigDict) -> None:
  for key in ("image_size", "heatmap_size", "num_points"):
    if key in data:
      _check_int(f"data.{key}", data[key], 1, "a positive integer")
  if data.get("source", "pipeline") == "toy" or "dataset" not in data:
    return
  known = _known_builder_configs(data.dataset)
  if known is None:
    return
  blocks = [("data", data)]
  if "target" in data:
    blocks.append(("data.target", {**data.to_dict(), **dict(data.target)}))
  for where, block in blocks:
    name = block.get("builder_config")
    if name is None and data.dataset == "synthetic_hands":
      resolution = block.get("resolution")
      if f"default_{resolution}" not in known:
        raise ConfigError(f"{where}.resolution", resolution,
                          "a resolution with a default_<resolution> builder config ("
                          # Only default_<digits>: default_64_40k is no resolution's default.
                          + ", ".join(sorted((k[len("default_"):] for k in known
                                              if k.startswith("default_")
                                              and k[len("default_"):].isdigit()), key=int))
                          + ") or an explicit data.builder_config")
    elif name is not None and name not in known:
      raise ConfigError(f"{where}.builder_config", name,
                        f"a builder config of {data.dataset}: {', '.join(known)}")


def validate(config: ml_collections.ConfigDict, num_processes: int = 1,
             num_devices: int = 1) -> None:
  """Checks the values a run depends on; cheap (no data is read or rendered).

  Args:
    config: the experiment config (``experiments/configs/*.py``).
    num_processes: processes that feed the mesh (``jax.process_count()`` for the default mesh).
    num_devices: devices of the data mesh (``jax.device_count()`` for the default mesh).

  Raises:
    ConfigError: the first field found with a value the run cannot use.
  """
  if "batch_size" in config:
    _check_batch_size(config, num_processes, num_devices)
  _check_schedule(config)
  _check_fields(config)
  if "data" in config:
    _check_data(config.data)
