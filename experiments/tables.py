r"""Trains the paper-table rows at CPU scale on `synthetic_hands` and writes them into RESULTS.md.

    python -m experiments.tables --suite=vae [--rows=spurr_image_v1,iccv_s4_poe] \
        [--workdir=workdirs/tables] [--results=RESULTS.md]

Every row is a paper config of `experiments/configs/` (the file and argument are in the table)
with the overrides of `cpu_scale` (below) and the row's own: the `quickstart` builder config of
`synthetic_hands` (4000 train / 400 test, 64 px), networks a quarter of the paper's width, Adam
1e-3 with warm-up and cosine decay, and `--steps` steps (default `STEPS`). The scale is chosen so
that a whole suite runs on a 2-core CPU in about an hour; it is far from the papers' budgets
(100k-300k steps at 256 px), so the rows measure orderings at a small budget, not the papers'
numbers. A row whose workdir already holds a finished result (same steps) is not retrained; the
tables are rewritten from all finished rows, between the suite's markers in RESULTS.md.

Each row is reproducible alone: `python -m experiments.tables --suite=<suite> --rows=<name>`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
import ml_collections

_SUITE = flags.DEFINE_string("suite", "vae", "Suite of rows to train: one of SUITES.")
_ROWS = flags.DEFINE_list("rows", [], "Only these rows of the suite (default: all).")
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/tables", "Parent of one workdir per row.")
_RESULTS = flags.DEFINE_string("results", "RESULTS.md", "Markdown file to update.")
_STEPS = flags.DEFINE_integer("steps", None, "Training steps per row (default: the suite's).")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds' default).")
_LIST = flags.DEFINE_bool("list", False, "Print the suite's rows and exit.")

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


@dataclasses.dataclass(frozen=True)
class Row:
  """One table row: a paper config (`file.py:arg`), its CPU-scale overrides and the paper's number."""
  name: str
  label: str
  config: str
  overrides: tuple[tuple[str, Any], ...] = ()
  paper: str = ""
  group: str = ""


@dataclasses.dataclass(frozen=True)
class Suite:
  title: str
  steps: int
  rows: tuple[Row, ...]
  notes: str = ""
  curves: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (figure, title, groups)


# --- Configs --------------------------------------------------------------------------------


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`"iccv_s1_r2p.py:vc"` -> that file's `get_config("vc")` (argument optional)."""
  filename, _, arg = spec.partition(":")
  path = os.path.join(CONFIG_DIR, filename)
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} (row config {spec!r}) does not exist")
  module_spec = importlib.util.spec_from_file_location(f"_tables_{filename[:-3]}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def set_path(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  """`config.a.b = value` for `dotted = "a.b"`; an unknown field is an error (typos)."""
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  if leaf not in node:
    raise KeyError(f"override {dotted!r}: the config has no field {leaf!r}")
  with node.ignore_type():
    node[leaf] = value


def cpu_scale(config: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
  """The shared CPU budget: quickstart data at 64 px, quarter-width networks, `steps` steps."""
  c = config
  c.num_steps = steps
  c.batch_size = 32
  c.log_every = 100
  c.checkpoint_every = steps
  c.eval_every = 0
  c.keep_checkpoints = 1
  c.optimizer.learning_rate = 1e-3
  c.optimizer.warmup_steps = 50
  c.optimizer.decay = "cosine"
  c.optimizer.lr_drop_steps = ()
  d = c.data
  d.dataset = "synthetic_hands"
  d.builder_config = "quickstart"
  d.manual_dir = None
  d.image_size = 64
  d.heatmap_size = 16
  d.heatmap_sigma = 1.0
  d.read_threads = 2
  d.num_workers = 0
  m = c.model
  if "resnet_width" in m:
    m.resnet_width = 0.25
  if c.method == "crossmodal_vae":
    c.latent_dim = 32
    c.beta = 0.1  # as the quickstart; Alg. 1's beta = 1 collapses the latent at this budget
    m.mlp_hidden = (128, 128)
    m.deconv_base_channels = 64
    m.deconv_channels = (32, 16, 8)
  elif c.method == "aligned_latents":
    d.num_points = 128
    m.head_hidden = (128,)
    m.pointset_width = 128
    m.pose_hidden = (128, 128, 128)
    m.folding_hidden = 128
    m.deconv_base_channels = 64
    m.deconv_channels = (32, 16)
    c.beta_steps = steps
  return c


def row_config(row: Row, steps: int, data_dir: str | None) -> ml_collections.ConfigDict:
  config = cpu_scale(load_config(row.config), steps)
  for dotted, value in row.overrides:
    set_path(config, dotted, value)
  if data_dir:
    config.data.data_dir = data_dir
  return config


# --- Suites ---------------------------------------------------------------------------------


def _spurr_rows() -> list[Row]:
  from experiments.configs import spurr_common  # pylint: disable=g-import-not-at-top
  rows = []
  for modality, filename, short in (("image", "spurr_rgb_to_3d.py", "RGB"),
                                    ("uv", "spurr_2d_to_3d.py", "2D"),
                                    ("depth", "spurr_depth_to_3d.py", "depth")):
    for variant in (1, 2, 3, 4):
      paper = spurr_common.TABLE1.get(f"{modality}_rhd", {}).get(variant)
      rows.append(Row(
          name=f"spurr_{modality}_v{variant}", group=f"spurr_{modality}",
          label=f"Spurr {short}->3D, Var. {variant}", config=f"{filename}:{variant}",
          paper=f"{paper:.2f} (RHD)" if paper else "-"))
  # Fig. 8's "not cross-trained" model: each modality only reconstructs itself, so the RGB and 3D
  # encoders need not share a space (its RGB->3D EPE shows what that costs).
  rows.append(Row("spurr_uncoupled", "Spurr RGB->RGB + 3D->3D, no cross pair (Fig. 8 contrast)",
                  "spurr_rgb_to_3d.py:1", (("pairs", "image>image,pose3d>pose3d"),),
                  group="spurr_uncoupled"))
  return rows


# Mean EPE [mm] on RHD, Yang et al. ICCV 2019 Table 1.
_ICCV_PAPER = {"s1": "16.61", "s2_hp": "16.10", "s2_cp": "15.91", "s2_chp": "15.49", "s3": "14.93",
               "s4": "13.14"}


def _iccv_rows() -> list[Row]:
  spec = [("iccv_s1", "S1 R2P", "iccv_s1_r2p.py", "s1"),
          ("iccv_s2_r2hp", "S2 R2HP", "iccv_s2_r2hp.py", "s2_hp"),
          ("iccv_s2_r2cp", "S2 R2CP", "iccv_s2_r2cp.py", "s2_cp"),
          ("iccv_s2_r2chp", "S2 R2CHP", "iccv_s2_r2chp.py", "s2_chp"),
          ("iccv_s3_kl", "S3 RC2CHP, KL alignment", "iccv_s3_rc2chp_kl.py", "s3"),
          ("iccv_s4_poe", "S4 RC2CHP, product of experts", "iccv_s4_rc2chp_poe.py", "s4"),
          ("iccv_s4_moe", "S4 RC2CHP, mixture of experts (beyond the paper)",
           "iccv_s4_rc2chp_moe.py", ""),
          ("iccv_s4_mopoe", "S4 RC2CHP, mixture of products (beyond the paper)",
           "iccv_s4_rc2chp_mopoe.py", "")]
  return [Row(name, label, cfg, paper=f"{_ICCV_PAPER[k]} (RHD, Table 1)" if k else "-",
              group="iccv")
          for name, label, cfg, k in spec]


FRACTIONS = (0.1, 0.3)


def _curve_rows() -> list[Row]:
  """Labelled-fraction points: with the unlabelled rest (the method) vs the labelled m% alone."""
  rows = []
  for m in FRACTIONS:
    pct = int(round(100 * m))
    labelled_only = (("data.train_split", f"train[:{pct}%]"),)
    rows += [
        Row(f"spurr_semi_{pct}_var3", f"Spurr RGB->3D Var. 3, {pct}% labelled + unlabelled images",
            f"spurr_semisupervised.py:{m},3", group="semi_with"),
        Row(f"spurr_semi_{pct}_var1_only", f"Spurr RGB->3D Var. 1 on the {pct}% labelled alone",
            f"spurr_semisupervised.py:{m},1", (("data.labelled_fraction", 1.0),) + labelled_only,
            group="semi_only"),
        Row(f"iccv_weak_{pct}", f"ICCV S4 PoE, {pct}% labelled + RGB/cloud-only rest",
            f"iccv_weak.py:{m}", group="weak_with"),
        Row(f"iccv_weak_{pct}_only", f"ICCV S4 PoE on the {pct}% labelled alone",
            f"iccv_weak.py:{m}", (("data.labelled_fraction", 1.0),) + labelled_only,
            group="weak_only"),
    ]
  return rows


def _suites() -> dict[str, Suite]:
  return {
      "vae": Suite(
          title="Methods I: Spurr et al. CVPR 2018 and Yang et al. ICCV 2019",
          steps=500,
          rows=tuple(_spurr_rows() + _iccv_rows() + _curve_rows()),
          curves=(("labelled_fraction.png", "Labelled-fraction curves",
                   ("semi_with", "semi_only", "weak_with", "weak_only")),)),
  }


SUITES = _suites()


# --- Running --------------------------------------------------------------------------------


def command(suite: str, row: Row) -> str:
  return f"python -m experiments.tables --suite={suite} --rows={row.name}"


def run_row(row: Row, root: str, steps: int, data_dir: str | None) -> dict[str, Any]:
  """Trains and evaluates one row unless its workdir holds a finished result for `steps`."""
  from handjax.train import inference, loop  # pylint: disable=g-import-not-at-top

  workdir = os.path.join(root, row.name)
  result_path = os.path.join(workdir, "row.json")
  if os.path.exists(result_path):
    with open(result_path) as f:
      done = json.load(f)
    if done.get("steps") == steps:
      return done
  config = row_config(row, steps, data_dir)
  start = time.perf_counter()
  loop.train_and_evaluate(config, workdir)
  summary = inference.evaluate_workdir(workdir, "test", num_skeletons=8)
  result = {"row": row.name, "steps": steps, "wall_s": time.perf_counter() - start,
            **{k: v for k, v in summary.items() if isinstance(v, (int, float, str))}}
  tmp = result_path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, result_path)  # A row is finished only once its result is complete.
  return result


def _finished(root: str, rows: Sequence[Row], steps: int) -> dict[str, dict[str, Any]]:
  out = {}
  for row in rows:
    path = os.path.join(root, row.name, "row.json")
    if os.path.exists(path):
      with open(path) as f:
        result = json.load(f)
      if result.get("steps") == steps:
        out[row.name] = result
  return out


def _fmt(x: Any, spec: str) -> str:
  return "-" if x is None else format(x, spec)


def render_table(suite_name: str, suite: Suite, results: dict[str, dict[str, Any]]) -> str:
  lines = ["| row | config | mean EPE | median EPE | AUC 20-50 | mean-pose baseline | paper | "
           "train+eval time | command |", "|---|---|---|---|---|---|---|---|---|"]
  for row in suite.rows:
    r = results.get(row.name)
    if r is None:
      cells = ["not run"] * 5
    else:
      cells = [_fmt(r.get("mean_epe_mm"), ".1f"), _fmt(r.get("median_epe_mm"), ".1f"),
               _fmt(r.get("auc_20_50"), ".3f"), _fmt(r.get("mean_pose_epe_mm"), ".1f"),
               f"{r['wall_s'] / 60:.1f} min"]
    overrides = "".join(f" `{k}={v}`" for k, v in row.overrides)
    lines.append(f"| {row.label} | `{row.config}`{overrides} | {cells[0]} | {cells[1]} | "
                 f"{cells[2]} | {cells[3]} | {row.paper or '-'} | {cells[4]} | "
                 f"`{command(suite_name, row)}` |")
  return "\n".join(lines)


def plot_curves(path: str, title: str, groups: Sequence[str], suite: Suite,
                results: dict[str, dict[str, Any]]) -> bool:
  """Mean EPE against the labelled fraction, one line per group; False if nothing to plot."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
  plotted = False
  for group in groups:
    points = []
    for row in suite.rows:
      if row.group == group and row.name in results:
        pct = int(re.search(r"_(\d+)(_|$)", row.name).group(1))
        points.append((pct, results[row.name]["mean_epe_mm"]))
    if points:
      points.sort()
      ax.plot(*zip(*points), marker="o", label=group.replace("_", " "))
      plotted = True
  if plotted:
    ax.set_xlabel("labelled fraction of the training set (%)")
    ax.set_ylabel("mean EPE (mm), test split")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
  plt.close(fig)
  return plotted


def update_results(path: str, suite_name: str, text: str) -> None:
  """Replaces the suite's block (between its markers) in `path`, or appends it."""
  begin, end = f"<!-- tables:{suite_name}:begin -->", f"<!-- tables:{suite_name}:end -->"
  block = f"{begin}\n{text}\n{end}"
  old = open(path).read() if os.path.exists(path) else "# Results\n"
  if begin in old and end in old:
    new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
  else:
    new = old.rstrip("\n") + "\n\n" + block + "\n"
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(new)
  os.replace(tmp, path)


def write_suite(suite_name: str, suite: Suite, root: str, steps: int, results_path: str) -> None:
  results = _finished(root, suite.rows, steps)
  figure_dir = os.path.join(os.path.dirname(os.path.abspath(results_path)), "docs", "results")
  parts = [f"## {suite.title}", "",
           f"CPU scale (`experiments/tables.py`, `cpu_scale`): {steps} steps, batch 32, "
           "`synthetic_hands/quickstart` (64 px, 4000 train / 400 test), quarter-width networks. "
           "EPE in mm, root-relative test split, AUC over 20-50 mm.", ""]
  if suite.notes:
    parts += [suite.notes, ""]
  parts.append(render_table(suite_name, suite, results))
  for filename, title, groups in suite.curves:
    os.makedirs(figure_dir, exist_ok=True)
    figure = os.path.join(figure_dir, f"{suite_name}_{filename}")
    if plot_curves(figure, title, groups, suite, results):
      rel = os.path.relpath(figure, os.path.dirname(os.path.abspath(results_path)))
      parts += ["", f"![{title}]({rel})"]
  update_results(results_path, suite_name, "\n".join(parts))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if _SUITE.value not in SUITES:
    sys.exit(f"error: --suite={_SUITE.value!r}: expected one of {sorted(SUITES)}")
  suite = SUITES[_SUITE.value]
  names = {r.name for r in suite.rows}
  unknown = sorted(set(_ROWS.value) - names)
  if unknown:
    sys.exit(f"error: --rows: {unknown} not in suite {_SUITE.value!r}; rows: {sorted(names)}")
  if _LIST.value:
    for row in suite.rows:
      print(f"{row.name:24s} {row.config:32s} {row.label}")
    return
  steps = _STEPS.value or suite.steps
  for row in suite.rows:
    if _ROWS.value and row.name not in _ROWS.value:
      continue
    print(f"=== {row.name}: {row.label} ({row.config}, {steps} steps)", flush=True)
    result = run_row(row, _WORKDIR.value, steps, _DATA_DIR.value)
    print(f"=== {row.name}: mean EPE {result['mean_epe_mm']:.1f} mm "
          f"({result['wall_s'] / 60:.1f} min)", flush=True)
    write_suite(_SUITE.value, suite, _WORKDIR.value, steps, _RESULTS.value)
  write_suite(_SUITE.value, suite, _WORKDIR.value, steps, _RESULTS.value)


if __name__ == "__main__":
  app.run(main)
