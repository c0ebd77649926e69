"""Per-example labels made at the start of a round and held fixed for it (self-training rounds).

A method with ``Method.label_rounds`` (:class:`handjax.train.method.LabelRounds`; SemiHand's
pseudo-labels, Yang dissertation Algorithm 6.1) has the generic loop label its training split at
the start of every round: one ordered, unaugmented pass (the dataset factory's ``"label"`` role)
runs the method's ``label`` function, and the per-row results of the selected rows are kept in a
:class:`LabelStore`, keyed by the example's stable source index (the pipeline's ``index`` key), not
by its position in a batch. During the round every training batch gets the stored values of its
rows attached (:meth:`LabelStore.attach`) as ``stored_<name>`` keys plus ``has_stored`` (B,), so the
compiled step reads them like any other batch key. The store is saved with every checkpoint
(:meth:`LabelStore.to_tree`) so a resumed run continues the round with the same labels.

Why on the host, as numpy: the lookup by index is a gather over a table that changes once per
round, the table is small (a few floats per example), and a row whose index is missing can be
reported by name before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import jax
import numpy as np

STORED_PREFIX = "stored_"
HAS_STORED = "has_stored"
INDEX_KEY = "index"


class LabelStoreError(ValueError):
  """A batch row with no stored label, or a store that does not fit the data (one line)."""


def stored_key(name: str) -> str:
  """The batch key under which the stored value ``name`` is attached."""
  return STORED_PREFIX + name


@dataclasses.dataclass(frozen=True)
class LabelStore:
  """The labels of one round.

  Attributes:
    round_index: k of the round (0-based).
    round_start: the loop step at which the labels were made (from the parameters before it).
    num_examples: the number of examples of the labelling split when they were made.
    index: (M,) sorted, unique source indices of the stored examples.
    values: ``{name: (M, ...) array}``, row i belonging to example ``index[i]``.
  """

  round_index: int
  round_start: int
  num_examples: int
  index: np.ndarray
  values: Mapping[str, np.ndarray]

  def __post_init__(self):
    index = np.asarray(self.index)
    if index.ndim != 1 or np.any(np.diff(index) <= 0):
      raise LabelStoreError("label store: index must be a sorted 1-D array of unique example "
                            "indices.")
    for name, value in self.values.items():
      if len(value) != len(index):
        raise LabelStoreError(f"label store: {name!r} has {len(value)} rows for {len(index)} "
                              "indices.")

  def describe(self) -> str:
    span = f"indices {self.index[0]}..{self.index[-1]}" if len(self.index) else "no example"
    return (f"the store of round {self.round_index} (made at step {self.round_start} from "
            f"{self.num_examples} examples) holds {len(self.index)} labels, {span}")

  def lookup(self, index: np.ndarray) -> np.ndarray:
    """Positions in the store of the examples ``index``; LabelStoreError naming a missing one."""
    index = np.asarray(index).astype(np.int64)
    pos = np.searchsorted(self.index, index)
    if len(self.index):
      found = (pos < len(self.index)) & (self.index[np.minimum(pos, len(self.index) - 1)] == index)
    else:
      found = np.zeros(index.shape, bool)
    if not np.all(found):
      missing = int(index[~found][0])
      what = ("carries no example index (-1)" if missing < 0
              else f"has example index {missing}, which has no stored label")
      raise LabelStoreError(f"a training row {what}: {self.describe()} (was the store made from "
                            "another dataset?)")
    return pos

  def attach(self, batch: Mapping[str, np.ndarray], rows: np.ndarray,
             spec: Mapping[str, jax.ShapeDtypeStruct]) -> dict[str, np.ndarray]:
    """``batch`` plus ``stored_<name>`` (stored values, zeros on unselected rows) and ``has_stored``.

    Args:
      batch: a local numpy batch with ``index`` (B,).
      rows: (B,) bool: the rows that read a stored label (each must be in the store).
      spec: per-example shapes and dtypes of the stored values.

    Returns:
      A new batch dict.
    """
    _require_index(batch)
    rows = np.asarray(rows, bool)
    pos = np.zeros(rows.shape, np.int64)
    if rows.any():
      pos[rows] = self.lookup(np.asarray(batch[INDEX_KEY])[rows])
    out = dict(batch)
    for name, s in spec.items():
      value = np.zeros(rows.shape + tuple(s.shape), s.dtype)
      if rows.any():
        value[rows] = np.asarray(self.values[name])[pos[rows]]
      out[stored_key(name)] = value
    out[HAS_STORED] = rows
    return out

  def check_num_examples(self, num_examples: int, where: str) -> None:
    """LabelStoreError if the labelling split no longer has the store's number of examples."""
    if int(num_examples) != self.num_examples:
      raise LabelStoreError(
          f"{where}: the pseudo-label store was made from {self.num_examples} examples but the "
          f"labelling split now has {num_examples} (the data config changed since the "
          "checkpoint; start a new workdir)")

  def to_tree(self) -> dict[str, np.ndarray]:
    """A pytree of numpy arrays for the checkpoint."""
    return {"round_index": np.asarray(self.round_index, np.int64),
            "round_start": np.asarray(self.round_start, np.int64),
            "num_examples": np.asarray(self.num_examples, np.int64),
            "index": np.asarray(self.index, np.int64),
            "values": {k: np.asarray(v) for k, v in self.values.items()}}

  @classmethod
  def from_tree(cls, tree: Mapping[str, Any]) -> "LabelStore":
    return cls(round_index=int(np.asarray(tree["round_index"])),
               round_start=int(np.asarray(tree["round_start"])),
               num_examples=int(np.asarray(tree["num_examples"])),
               index=np.asarray(tree["index"], np.int64),
               values={k: np.asarray(v) for k, v in dict(tree["values"]).items()})


def _require_index(batch: Mapping[str, Any]) -> None:
  if INDEX_KEY not in batch:
    raise LabelStoreError(f"the training batches carry no {INDEX_KEY!r} key (the stable example "
                          f"index that stored labels are keyed by); they have {sorted(batch)}")


def empty_batch_labels(batch: Mapping[str, np.ndarray],
                       spec: Mapping[str, jax.ShapeDtypeStruct]) -> dict[str, np.ndarray]:
  """``batch`` with zero ``stored_<name>`` keys and ``has_stored`` all False (before round 0)."""
  _require_index(batch)
  n = len(np.asarray(batch[INDEX_KEY]))
  out = dict(batch)
  for name, s in spec.items():
    out[stored_key(name)] = np.zeros((n,) + tuple(s.shape), s.dtype)
  out[HAS_STORED] = np.zeros((n,), bool)
  return out


def from_pass(outputs: Mapping[str, np.ndarray], spec: Mapping[str, jax.ShapeDtypeStruct],
              round_index: int, round_start: int, num_examples: int) -> LabelStore:
  """The store of one labelling pass.

  Args:
    outputs: host arrays over every example of the pass: ``index`` (N,), ``selected`` (N,) bool
      and one (N, ...) array per name of ``spec``.
    spec: per-example shapes/dtypes of the stored values.
    round_index, round_start: the round.
    num_examples: the size of the labelling split.

  Returns:
    The store of the selected rows, sorted by index.

  Raises:
    LabelStoreError: an index occurs twice, or the pass did not see ``num_examples`` examples.
  """
  index = np.asarray(outputs[INDEX_KEY]).astype(np.int64)
  if len(index) != num_examples:
    raise LabelStoreError(f"the labelling pass of round {round_index} saw {len(index)} examples, "
                          f"its split has {num_examples}")
  selected = np.asarray(outputs["selected"], bool)
  index_sel = index[selected]
  order = np.argsort(index_sel, kind="stable")
  index_sel = index_sel[order]
  if np.any(np.diff(index_sel) == 0):
    dup = int(index_sel[1:][np.diff(index_sel) == 0][0])
    raise LabelStoreError(f"the labelling pass of round {round_index} saw example index {dup} "
                          "twice; the labelling split must hold each example once")
  values = {}
  for name, s in spec.items():
    value = np.asarray(outputs[name])[selected][order].astype(s.dtype)
    if value.shape[1:] != tuple(s.shape):
      raise LabelStoreError(f"label {name!r} has per-example shape {value.shape[1:]}, expected "
                            f"{tuple(s.shape)}")
    values[name] = value
  return LabelStore(round_index, round_start, num_examples, index_sel, values)


__all__ = ["HAS_STORED", "LabelStore", "LabelStoreError", "empty_batch_labels", "from_pass",
           "stored_key"]
