"""Benchmark suite `losses`: point-cloud losses (Yang et al. ICCV 2019, Eqs. 8-9) on this machine.

For 32 pairs of 256-point clouds drawn uniformly in a 10 cm cube (hand-sized, metres) it times, as
value + gradient under `jit`: Chamfer (Eq. 8), the Sinkhorn EMD (`earth_movers_distance`, Eq. 9)
and the Sinkhorn divergence, against the exact Hungarian EMD (scipy `linear_sum_assignment`, value
only, host-side) on the same CPU in the same run. For each EMD estimate it reports the mean and
max relative error against the exact EMD and the cosine between its gradient and the exact EMD's
gradient (given the optimal bijection phi, d/dx_i = (x_i - y_phi(i)) / (N ||x_i - y_phi(i)||)).
Targets (issue 3): mean error <= 2%, max <= 5%, value + grad within 3x of the Hungarian solver
("x hungarian": the Hungarian solver is re-timed next to each row, as the CPU may be shared).
The non-default rows vary one knob of the Sinkhorn EMD at a time.

    python -m experiments.benchmark --suites=losses [--quick]
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import optimize

from experiments.bench import timing
from handjax.losses import pointcloud

_CUBE_SIDE_M = 0.1


def _clouds(pairs: int, points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  gen = np.random.default_rng(seed)
  shape = (pairs, points, 3)
  return (gen.uniform(0.0, _CUBE_SIDE_M, shape).astype(np.float32),
          gen.uniform(0.0, _CUBE_SIDE_M, shape).astype(np.float32))


def _exact_gradient(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """Gradient of exact EMD w.r.t. x, per pair, from the optimal assignment (float64)."""
  grads = np.zeros(x.shape)
  for b in range(x.shape[0]):
    diff = x[b, :, None, :].astype(np.float64) - y[b, None, :, :]
    cost = np.linalg.norm(diff, axis=-1)
    rows, cols = optimize.linear_sum_assignment(cost)
    d = x[b, rows].astype(np.float64) - y[b, cols]
    norm = np.linalg.norm(d, axis=-1, keepdims=True)
    grads[b, rows] = np.where(norm > 0, d / np.where(norm > 0, norm, 1.0), 0.0) / x.shape[1]
  return grads


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
  return np.sum(a * b, -1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def _row(loss: str, setting: str, seconds: float, hungarian_s: float, values: Any = None,
         exact: Any = None, grads: Any = None, exact_grads: Any = None) -> dict[str, object]:
  row: dict[str, object] = {
      "loss": loss,
      "setting": setting,
      "value+grad s": seconds,
      "x hungarian": seconds / hungarian_s,
      "mean rel err %": "-",
      "max rel err %": "-",
      "bias %": "-",
      "grad cosine": "-",
  }
  if values is not None:
    rel = (np.asarray(values, np.float64) - exact) / exact
    row["mean rel err %"] = float(100 * np.mean(np.abs(rel)))
    row["max rel err %"] = float(100 * np.max(np.abs(rel)))
    row["bias %"] = float(100 * np.mean(rel))
    row["grad cosine"] = float(np.mean(_cosines(np.asarray(grads, np.float64), exact_grads)))
  return row


def _value_and_grad(loss: Callable[[jax.Array, jax.Array], jax.Array]) -> Callable[..., Any]:
  """jit(x, y -> (per-pair values, d sum / dx))."""

  def summed(x, y):
    values = loss(x, y)
    return jnp.sum(values), values

  return jax.jit(jax.grad(summed, has_aux=True))


def _time_loss(loss, x, y, repeats: int) -> tuple[float, np.ndarray, np.ndarray]:
  fn = _value_and_grad(loss)
  grads, values = fn(x, y)
  seconds = timing.time_fn(lambda: fn(x, y), warmup=1, repeats=repeats)["median_s"]
  return seconds, np.asarray(values), np.asarray(grads)


def run(quick: bool) -> list[dict[str, object]]:
  pairs, points = (8, 128) if quick else (32, 256)
  repeats = 3 if quick else 7
  x, y = _clouds(pairs, points)
  tag = f"{pairs} pairs x {points} pts"

  exact = pointcloud.exact_emd(x, y)
  exact_grads = _exact_gradient(x, y)

  def time_hungarian() -> float:
    # Re-timed next to every row: other processes share this CPU, and a ratio of two timings
    # taken minutes apart would mostly measure the change in load.
    return timing.time_fn(lambda: pointcloud.exact_emd(x, y), warmup=1, repeats=repeats)["median_s"]

  hungarian_s = time_hungarian()

  rows = [_row("exact_emd (scipy Hungarian, value only)", tag, hungarian_s, hungarian_s)]
  seconds, _, _ = _time_loss(pointcloud.chamfer_distance, x, y, repeats)
  rows.append(_row("chamfer_distance (Eq. 8)", tag, seconds, time_hungarian()))

  defaults = dict(relative_epsilon=pointcloud.DEFAULT_RELATIVE_EPSILON,
                  epsilon_decay=pointcloud.DEFAULT_EPSILON_DECAY,
                  num_iterations=pointcloud.DEFAULT_NUM_ITERATIONS)
  default_setting = "defaults " + ", ".join(f"{k}={v}" for k, v in defaults.items())
  knobs: list[tuple[str, dict[str, Any]]] = [(default_setting, {})]
  if not quick:
    knobs += [
        ("num_iterations=75", dict(num_iterations=75)),
        ("num_iterations=150", dict(num_iterations=150)),
        ("num_iterations=300", dict(num_iterations=300)),
        ("epsilon_decay=0.8", dict(epsilon_decay=0.8)),
        ("epsilon_decay=0.95", dict(epsilon_decay=0.95)),
        ("relative_epsilon=5e-3", dict(relative_epsilon=5e-3)),
        ("relative_epsilon=2e-2", dict(relative_epsilon=2e-2)),
        ("relative_epsilon=3e-3, num_iterations=300",
         dict(relative_epsilon=3e-3, num_iterations=300)),
        ("relative_epsilon_start=0.1", dict(relative_epsilon_start=0.1)),
        ("lse_mode=False (kernel)", dict(lse_mode=False)),
        ("float64", dict(float64=True)),
    ]
  for setting, knob in knobs:
    knob = dict(knob)
    float64 = knob.pop("float64", False)

    def loss(a, b, knob=knob):
      return pointcloud.earth_movers_distance(a, b, **knob)

    if float64:
      with jax.enable_x64(True):
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        seconds, values, grads = _time_loss(loss, x64, y64, repeats)
    else:
      seconds, values, grads = _time_loss(loss, x, y, repeats)
    rows.append(_row("earth_movers_distance (Eq. 9)", setting, seconds, time_hungarian(), values,
                     exact, grads, exact_grads))

  seconds, values, grads = _time_loss(pointcloud.sinkhorn_divergence, x, y, repeats)
  rows.append(_row("sinkhorn_divergence", "defaults (3 OT problems)", seconds, time_hungarian(),
                   values, exact, grads, exact_grads))
  return rows
