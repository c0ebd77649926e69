"""Start-up and run-time checks that make the loop fail loudly instead of silently.

- :func:`prepare_workdir`: a workdir that cannot be created or written is an error at start-up.
- :func:`check_batch_spec`: every key a method reads must be in the data with the shape and dtype
  the config implies; the :class:`DataSpecError` names the key.
- :func:`check_finite`: the first step whose loss, loss terms or gradient norm is NaN/inf stops the
  run, naming the step and the offending terms. The loop calls it before every checkpoint, so a
  non-finite state is never saved over the last good checkpoint.
"""

from __future__ import annotations

import os
import tempfile
from typing import Mapping, Sequence

import jax
import numpy as np


class DataSpecError(ValueError):
  """The data does not match what the config/method expects (missing key, shape or dtype)."""


class NonFiniteError(FloatingPointError):
  """Raised when a train step produced a non-finite loss, loss term or gradient."""

  def __init__(self, step: int, terms: Sequence[str], values: Mapping[str, float]):
    self.step = step
    self.terms = tuple(terms)
    shown = ", ".join(f"{k}={values[k]}" for k in terms)
    super().__init__(f"Non-finite values at step {step}: {shown}. Training stopped; nothing was "
                     "saved after the last finite step, so the latest checkpoint is intact.")


def prepare_workdir(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks it is writable; returns its absolute path."""
  if not workdir:
    raise ValueError("A workdir is required (--workdir=DIR).")
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise NotADirectoryError(f"workdir {path!r} exists and is not a directory.")
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
      pass
  except OSError as e:
    raise PermissionError(f"workdir {path!r} cannot be created or written: {e.strerror}.") from e
  return path


def check_batch_spec(batch: Mapping[str, np.ndarray], spec: Mapping[str, jax.ShapeDtypeStruct],
                     batch_size: int) -> None:
  """Checks a local batch against the method's per-example spec; names the first offending key.

  Args:
    batch: a local batch, arrays with a leading batch axis.
    spec: per-example shape and dtype for each key the method reads.
    batch_size: the expected leading dimension (the per-process batch size).
  """
  for key, want in spec.items():
    if key not in batch:
      raise DataSpecError(f"The data has no key {key!r}, which the method needs "
                     f"(expected per-example shape {tuple(want.shape)}, dtype {want.dtype}); "
                     f"the data has keys {sorted(batch)}.")
    got = np.asarray(batch[key])
    if got.shape != (batch_size,) + tuple(want.shape):
      raise DataSpecError(f"Data key {key!r} has shape {got.shape}, but the config implies "
                       f"{(batch_size,) + tuple(want.shape)} (batch {batch_size} x per-example "
                       f"{tuple(want.shape)}). Check the config's data fields (e.g. image_size).")
    if got.dtype != np.dtype(want.dtype):
      raise DataSpecError(f"Data key {key!r} has dtype {got.dtype}, but the method expects {want.dtype}.")


def check_finite(steps: Sequence[int], metrics: Sequence[Mapping[str, np.ndarray]]) -> None:
  """Raises :class:`NonFiniteError` for the first step with a non-finite metric.

  Args:
    steps: the 0-based loop step of each entry.
    metrics: host copies of each step's metrics (loss, named loss terms, ``grad_norm``).
  """
  for step, m in zip(steps, metrics):
    bad = sorted(k for k, v in m.items() if not np.all(np.isfinite(v)))
    if bad:
      raise NonFiniteError(step, bad, {k: float(np.asarray(v).ravel()[0]) for k, v in m.items()})
