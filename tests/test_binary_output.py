"""What the binaries print by default (their own lines only), with --log_library, and on bad config.

Run as subprocesses, as a user runs them. absl writes log records to stderr as
``I<date> <time> <thread> <file>:<line>] <message>``; the file tells whose record it is.
"""

import json
import logging
import os
import re
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from experiments import cli
from experiments.configs import toy as toy_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = {"batch_size": 16, "num_steps": 6, "log_every": 3, "checkpoint_every": 3, "eval_every": 0,
       "data.image_size": 4, "data.num_train": 40, "data.num_test": 50}
RECORD = re.compile(r"^[IWEF]\d{4} [\d:.]+ +\d+ ([\w.]+):\d+\] (.*)$")


def _run(*args):
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  env.pop("JAX_NUM_CPU_DEVICES", None)  # One device, as on a user's CPU.
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=300)


def _records(stderr):
  """(source file, message) of each absl-formatted record; continuation lines are skipped."""
  return [m.groups() for m in map(RECORD.match, stderr.splitlines()) if m]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("toy")
  run = _run("experiments.train", "--config=experiments/configs/toy.py", f"--workdir={workdir}",
             *(f"--config.{k}={v}" for k, v in TOY.items()))
  assert run.returncode == 0, run.stderr[-3000:]
  return workdir, run


def test_train_prints_config_progress_and_eval_only(trained):
  workdir, run = trained
  assert run.stdout == ""
  config = toy_config.get_config()
  config.update_from_flattened_dict(TOY)
  config_lines = str(config).splitlines()
  lines = run.stderr.splitlines()
  # The config once (its header record plus the ConfigDict's own lines), two progress lines (steps
  # 3 and 6), the final evaluation: nothing from orbax, grain or jax.
  assert len(lines) == 1 + len(config_lines) + 2 + 1, run.stderr
  assert lines[1:1 + len(config_lines)] == config_lines
  records = _records(run.stderr)
  assert [f for f, _ in records] == ["train.py", "metrics_writer.py", "metrics_writer.py",
                                     "loop.py"]
  assert records[0][1] == "Config:"
  assert re.fullmatch(r"step 3/6  loss [\d.e-]+  [\d.]+ steps/s  [\d.]+ examples/s  ETA \S+",
                      records[1][1])
  assert records[2][1].startswith("step 6/6  loss ")
  # The numbers printed are those the run recorded.
  logged = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert f"loss {logged[0]['loss']:.5g}  " in records[1][1]
  final = logged[-1]
  assert records[3][1] == (
      f"eval @ step 6: mean EPE {final['eval/mean_epe_mm']:.2f} mm (mean-pose baseline "
      f"{final['eval/mean_pose_epe_mm']:.2f} mm), AUC(20-50 mm) {final['eval/auc_20_50']:.3f} "
      "over 50 examples")


def test_predict_prints_two_lines_and_library_logs_come_back_with_a_flag(trained, tmp_path):
  workdir, _ = trained
  photo = (np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)
  Image.fromarray(photo).save(tmp_path / "hand.png")
  args = ("experiments.predict", f"--workdir={workdir}", f"--image={tmp_path / 'hand.png'}",
          f"--output={tmp_path / 'out'}")
  quiet = _run(*args)
  assert quiet.returncode == 0, quiet.stderr[-3000:]
  assert quiet.stderr == ""
  # The checkpoint it used (issue 22: a damaged newer one would be skipped), then the result.
  assert quiet.stdout == ("checkpoint: step 6\n"
                          "pose3d (m, root-relative) of 21 joints written with the figure.\n")
  assert len(json.loads((tmp_path / "out.json").read_text())["pose3d_m"]) == 21

  loud = _run(*args, "--log_library")
  assert loud.returncode == 0 and loud.stdout == quiet.stdout
  files = {f for f, _ in _records(loud.stderr)}
  # orbax's restore logs (the 45 lines of the issue) are back.
  assert {"checkpoint_manager.py", "checkpointer.py"} & files, loud.stderr[-2000:]
  assert len(_records(loud.stderr)) >= 10


def test_an_invalid_value_is_one_line_and_exit_1_before_any_work(tmp_path):
  """The issue's example; every other value's message is checked in-process (test_config_checks)."""
  run = _run("experiments.train", "--config=experiments/configs/toy.py",
             f"--workdir={tmp_path / 'run'}", "--config.batch_size=-3")
  assert run.returncode == 1
  assert run.stdout == "" and run.stderr == (
      "error: config.batch_size=-3: expected a positive integer (the global batch of all "
      "processes)\n")
  assert not (tmp_path / "run").exists()  # Before any work (nor data: test_config_checks).


@pytest.mark.parametrize("verbosity, show_library, root, own", [
    (logging.INFO, False, logging.WARNING, logging.INFO),  # the default
    (logging.INFO, True, logging.INFO, logging.INFO),  # --log_library
    (logging.DEBUG, False, logging.DEBUG, logging.DEBUG),  # --verbosity=1: everything
    (logging.ERROR, False, logging.ERROR, logging.ERROR),  # --verbosity=-2: errors only
])
def test_library_loggers_inherit_warning_and_handjax_keeps_verbosity(verbosity, show_library, root,
                                                                     own):
  names = ("", "absl", *cli.OWN_LOGGERS)
  saved = {name: logging.getLogger(name).level for name in names}
  try:
    logging.getLogger("absl").setLevel(logging.INFO)  # as absl.logging.set_verbosity would
    cli.quiet_library_logs(verbosity, show_library)
    assert logging.getLogger().level == root
    for name in ("orbax.checkpoint", "absl", "jax._src.xla_bridge", "grain"):
      assert logging.getLogger(name).getEffectiveLevel() == root, name
    for name in ("handjax.train.loop", "handjax.data.builders.synthetic_hands", "__main__"):
      assert logging.getLogger(name).getEffectiveLevel() == own, name
  finally:
    for name, level in saved.items():
      logging.getLogger(name).setLevel(level)


def test_handjax_logs_info_through_its_own_loggers():
  """An INFO record sent through absl's logger (``absl.logging.info``) or the root logger
  (``logging.info``) is hidden by default, like orbax's; handjax modules log INFO through
  ``logging.getLogger(__name__)``, whose records the binaries show."""
  import ast  # pylint: disable=g-import-not-at-top

  hidden = []
  for folder, _, files in os.walk(os.path.join(ROOT, "handjax")):
    for name in (f for f in files if f.endswith(".py")):
      path = os.path.join(folder, name)
      with open(path) as f:
        tree = ast.parse(f.read())
      aliases = {a.asname or a.name for node in ast.walk(tree) for a in getattr(node, "names", ())
                 if (isinstance(node, ast.ImportFrom) and node.module == "absl"
                     and a.name == "logging")
                 or (isinstance(node, ast.Import) and a.name == "logging")}
      hidden += [f"{os.path.relpath(path, ROOT)}:{node.lineno}" for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and isinstance(node.func.value, ast.Name) and node.func.value.id in aliases
                 and node.func.attr in ("info", "debug", "vlog", "log", "log_every_n")]
  assert not hidden, f"INFO calls on absl's or the root logger (hidden by default): {hidden}"
