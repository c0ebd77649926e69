"""experiments.tables: row configs, RESULTS.md blocks, finished rows are not retrained."""

import json
import os

import pytest

from experiments import tables


def test_every_row_config_loads_at_cpu_scale():
  for suite in tables.SUITES.values():
    names = [r.name for r in suite.rows]
    assert len(names) == len(set(names)), "row names must be unique (they are workdirs)"
    for row in suite.rows:
      config = tables.row_config(row, 7, "/tmp/data")
      assert config.num_steps == 7 and config.data.dataset == "synthetic_hands"
      assert config.data.builder_config == "quickstart" and config.data.data_dir == "/tmp/data"
      for dotted, value in row.overrides:
        node = config
        for part in dotted.split("."):
          node = node[part]
        assert node == value, (row.name, dotted)


def test_rows_keep_what_distinguishes_them():
  rows = {r.name: r for r in tables.SUITES["vae"].rows}
  v3 = tables.row_config(rows["spurr_image_v3"], 5, None)
  assert v3.input_modality == "image" and v3.variant == 3
  s3 = tables.row_config(rows["iccv_s3_kl"], 5, None)
  assert (s3.encoders, s3.decoders, s3.alignment) == ("RC", "CHP", "kl")
  weak = tables.row_config(rows["iccv_weak_10"], 5, None)
  only = tables.row_config(rows["iccv_weak_10_only"], 5, None)
  assert weak.data.labelled_fraction == 0.1 and weak.data.train_split == "train"
  assert only.data.labelled_fraction == 1.0 and only.data.train_split == "train[:10%]"


def test_bad_row_specs_raise():
  with pytest.raises(FileNotFoundError, match="no_such.py"):
    tables.load_config("no_such.py:1")
  config = tables.load_config("spurr_rgb_to_3d.py:1")
  with pytest.raises(KeyError, match="learning_rat"):
    tables.set_path(config, "optimizer.learning_rat", 1.0)


def test_update_results_replaces_only_its_block(tmp_path):
  path = str(tmp_path / "RESULTS.md")
  with open(path, "w") as f:
    f.write("# Results\n\nhand-written intro\n")
  tables.update_results(path, "vae", "first")
  tables.update_results(path, "other", "x")
  tables.update_results(path, "vae", "second")
  text = open(path).read()
  assert text.startswith("# Results\n\nhand-written intro\n")
  assert "first" not in text and text.count("second") == 1 and text.count("\nx\n") == 1
  assert text.index("tables:vae:begin") < text.index("tables:other:begin")


def test_table_shows_finished_rows_and_marks_the_rest(tmp_path):
  suite = tables.SUITES["vae"]
  done = suite.rows[0]
  os.makedirs(tmp_path / done.name)
  result = {"row": done.name, "steps": 11, "wall_s": 90.0, "mean_epe_mm": 42.25,
            "median_epe_mm": 40.0, "auc_20_50": 0.5, "mean_pose_epe_mm": 100.0}
  with open(tmp_path / done.name / "row.json", "w") as f:
    json.dump(result, f)
  finished = tables._finished(str(tmp_path), suite.rows, 11)
  assert list(finished) == [done.name]
  assert tables._finished(str(tmp_path), suite.rows, 12) == {}  # other budget: not finished
  text = tables.render_table("vae", suite, finished)
  first = text.splitlines()[2]
  assert "| 42.2 | 40.0 | 0.500 | 100.0 |" in first and "1.5 min" in first
  assert f"--rows={done.name}" in first
  assert text.count("not run") == 5 * (len(suite.rows) - 1)
  # A finished row is returned as stored, without training.
  assert tables.run_row(done, str(tmp_path), 11, None) == result
