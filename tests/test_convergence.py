"""experiments.convergence: per-step error, PCK and movement of target-domain predictions."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import convergence


def test_trajectory_stats_on_hand_computed_predictions():
  gt = np.array([[[0.0, 0.0], [10.0, 0.0]]])
  steps = np.array([[[[3.0, 4.0], [10.0, 0.0]]],  # joint 0 off by 5 px, joint 1 exact
                    [[[0.0, 0.0], [10.0, 1.0]]]])  # joint 0 exact, joint 1 off by 1 px
  out = convergence.trajectory_stats(steps, gt, None, image_size=64)  # PCK threshold 3.2 px
  assert out["error_px"] == pytest.approx([2.5, 0.5])
  assert out["movement_px"] == pytest.approx([0.0, 3.0])  # joint 0 moved 5, joint 1 moved 1
  assert out["pck_005"] == pytest.approx([0.5, 1.0])
  only_1 = convergence.trajectory_stats(steps, gt, np.array([[False, True]]), image_size=64)
  assert only_1["error_px"] == pytest.approx([0.0, 1.0])
  assert only_1["movement_px"] == pytest.approx([0.0, 1.0])
  assert only_1["pck_005"] == pytest.approx([1.0, 1.0])


def test_a_workdir_without_two_checkpoints_is_a_clear_error(tmp_path):
  with pytest.raises(convergence.ConvergenceError, match="keep_checkpoints"):
    convergence.predictions_per_step(str(tmp_path), "test", 8)


def test_the_binary_reports_a_bad_workdir_and_its_flags_do_not_clash_with_tables(tmp_path):
  """As a binary it imports `experiments.tables` for its helpers; both have a --workdir."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  run = subprocess.run([sys.executable, "-m", "experiments.convergence", f"--workdir={tmp_path}"],
                       cwd=root, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": root})
  assert run.returncode == 1 and "DuplicateFlagError" not in run.stderr
  assert run.stderr.strip().splitlines()[-1].startswith("error:") and "keep_checkpoints" in run.stderr


@pytest.mark.slow
def test_convergence_of_a_tiny_semihand_run(tmp_path):
  from experiments import tables  # pylint: disable=g-import-not-at-top
  from handjax.train import loop  # pylint: disable=g-import-not-at-top
  row = {r.name: r for r in tables.SUITES["semihand_dualmod"].rows}["semihand_full"]
  tiny = (("batch_size", 8), ("data.builder_config", "tiny"), ("data.image_size", 32),
          ("data.read_threads", 1), ("data.target.builder_config", "tiny"),
          ("model.features", 8))
  config = tables.row_config(dataclasses.replace(row, overrides=tiny), 3,
                             str(tmp_path / "tfds"))
  config.checkpoint_every, config.keep_checkpoints = 1, 5
  workdir = str(tmp_path / "run")
  loop.train_and_evaluate(config, workdir)
  out = str(tmp_path / "fig.png")
  result = convergence.run(workdir, out, num_examples=8, show=2)
  assert result["steps"] == [1, 2, 3] and result["num_examples"] == 8
  assert result["movement_px"][0] == 0.0 and all(m > 0 for m in result["movement_px"][1:])
  assert all(0.0 <= p <= 1.0 for p in result["pck_005"])
  with open(out + ".json") as f:
    assert json.load(f) == result
