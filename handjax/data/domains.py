"""Labelled-source + unlabelled-target batches for domain adaptation (Yang dissertation ch. 6-7).

`make_mixed_dataset(config, split, ...)` has the signature of `pipeline.make_dataset`'s factory
(it reads ``config.data`` with the experiment's global ``config.batch_size``). On the train split
each global batch is the concatenation of a source batch and a target batch, each of half the size,
from two ordinary `pipeline.make_dataset` pipelines:

* source: ``config.data`` as is (e.g. ``synthetic_hands`` / ``default_64``), labels kept;
* target: ``config.data`` with ``config.data.target`` fields overriding it (e.g. ``builder_config
  = "shifted_64"``), and ``labelled_fraction = 0`` unless ``config.data.target.labelled`` (the
  mix-and-train upper bound of Table 6.1), so its rows have ``has_pose3d = False``.

Methods tell the domains apart by ``has_pose3d``; the target rows keep uv / mask / depth arrays
(the pipeline drops only the 3D pose labels), which the ch. 6-7 methods read on labelled rows only.
Other splits (evaluation) are the target pipeline alone, labels kept: results are reported on the
target domain.
The iterator's state is the pair of the two pipelines' states (checkpointable).
"""

from __future__ import annotations

import json
from typing import Any

import ml_collections
import numpy as np

from handjax.data import pipeline

# The split role of the pseudo-labelling pass (handjax.train.datasets.LABEL_ROLE).
LABEL_ROLE = "label"


def default_data_config(resolution: int) -> ml_collections.ConfigDict:
  """`pipeline.default_data_config()` for synthetic-to-synthetic adaptation at `resolution`:
  labelled "default" style source, unlabelled "shifted" style target, both of `default_<res>`
  size, crops resized to `resolution`."""
  data = pipeline.default_data_config()
  data.source = "domains"
  data.builder_config = f"default_{resolution}"
  data.image_size = resolution
  data.target = ml_collections.ConfigDict({"builder_config": f"shifted_{resolution}",
                                           "labelled": False})
  return data


def target_data_config(data: ml_collections.ConfigDict,
                       keep_labels: bool = False) -> ml_collections.ConfigDict:
  """``data`` with the ``data.target`` overrides; ``labelled_fraction`` 0 unless target.labelled
  or ``keep_labels`` (evaluation splits, which need the labels to be scored)."""
  fields = data.to_dict()
  target = dict(fields.pop("target", None) or {})
  out = ml_collections.ConfigDict(fields)
  labelled = bool(target.pop("labelled", False))
  out.update(target)
  if not (labelled or keep_labels):
    out.labelled_fraction = 0.0
  return out


def _concat(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  if set(a) != set(b):
    raise ValueError(f"source and target batches have different keys: {sorted(set(a) ^ set(b))}.")
  return {k: np.concatenate([a[k], b[k]], axis=0) for k in a}


class _MixedIterator:
  """Yields concat(next(source), next(target)); state = both pipelines' states."""

  def __init__(self, source: Any, target: Any):
    self._source, self._target = iter(source), iter(target)

  def __iter__(self) -> "_MixedIterator":
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return _concat(next(self._source), next(self._target))

  # grain's checkpoint handler stores a non-grain iterator's state as `get_state().decode()` and
  # restores it with `set_state(text.encode())` then `start_prefetch()`: JSON bytes of both states.
  def get_state(self) -> bytes:
    return json.dumps({"source": self._source.get_state(),
                       "target": self._target.get_state()}).encode()

  def set_state(self, state: bytes) -> None:
    both = json.loads(state)
    self._source.set_state(both["source"])
    self._target.set_state(both["target"])

  def start_prefetch(self) -> None:
    for it in (self._source, self._target):
      if hasattr(it, "start_prefetch"):
        it.start_prefetch()


class MixedDataset:
  """An iterable of mixed batches (see the module docstring); `iter` gives a fresh iterator."""

  def __init__(self, source: Any, target: Any):
    self.source, self.target = source, target

  def __iter__(self) -> _MixedIterator:
    return _MixedIterator(self.source, self.target)


def make_mixed_dataset(config: ml_collections.ConfigDict, split: str, *, process_index: int = 0,
                       process_count: int = 1, seed: int = 0, sources: tuple[Any, Any] | None = None
                       ) -> Any:
  """Source + target batches on the train split, the target pipeline on the others.

  Args:
    config: experiment config with ``batch_size`` (global) and a ``data`` block with ``target``.
    split: split name.
    process_index, process_count, seed: as `pipeline.make_dataset`.
    sources: optional (source, target) random-access sources (tests); default tfds.

  Returns:
    A `MixedDataset` (train), the target `grain.IterDataset` (evaluation splits), or for the split
    role ``"label"`` the target training split's `pipeline.OrderedPass` (the pseudo-labelling pass
    of SemiHand's rounds: the rows every training batch takes from the target domain).
  """
  if "target" not in config.data:
    raise ValueError("make_mixed_dataset needs config.data.target (overrides for the target "
                     "domain, e.g. builder_config='shifted_64').")
  batch = int(config.batch_size)
  source_data = ml_collections.ConfigDict(
      {k: v for k, v in config.data.to_dict().items() if k != "target"})
  train = split == source_data.train_split
  src, tgt = sources if sources is not None else (None, None)
  kwargs = {"process_index": process_index, "process_count": process_count}
  if split == LABEL_ROLE:  # The target training examples once, in order, unaugmented.
    target_data = target_data_config(config.data)
    target_data.batch_size = batch
    return pipeline.make_dataset(target_data, source_data.train_split, seed=seed + 1, source=tgt,
                                 labelling_pass=True, **kwargs)
  target_data = target_data_config(config.data, keep_labels=not train)
  if not train:
    target_data.batch_size = batch
    return pipeline.make_dataset(target_data, split, seed=seed, source=tgt, **kwargs)
  if batch % (2 * process_count):
    raise ValueError(f"batch_size {batch} must split into two halves per process "
                     f"(divisible by 2 x process_count = {2 * process_count}).")
  source_data.batch_size = target_data.batch_size = batch // 2
  return MixedDataset(pipeline.make_dataset(source_data, split, seed=seed, source=src, **kwargs),
                      pipeline.make_dataset(target_data, split, seed=seed + 1, source=tgt,
                                            **kwargs))


__all__ = ["MixedDataset", "default_data_config", "make_mixed_dataset", "target_data_config"]
