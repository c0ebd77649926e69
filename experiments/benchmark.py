r"""Speed and memory benchmarks: prints one markdown table per suite.

    python -m experiments.benchmark --suites=losses,data [--quick] [--json=out.json]

Suites live in experiments/bench/<suite>.py (see experiments/bench/__init__.py). Never run by tests.
"""

from __future__ import annotations

import importlib
import json
from typing import Sequence

from absl import app
from absl import flags

from experiments import cli
from experiments.bench import SUITES
from experiments.bench import timing

_SUITES = flags.DEFINE_list("suites", ["losses"], f"Suites to run, from {SUITES}.")
_QUICK = flags.DEFINE_bool("quick", False, "Small sizes: a smoke run, not figures to record.")
_JSON = flags.DEFINE_string("json", None, "Also write all rows to this JSON file.")


def markdown_table(rows: Sequence[dict[str, object]]) -> str:
  if not rows:
    return "(no rows)"
  keys = list(dict.fromkeys(k for r in rows for k in r))  # Union, in first-seen order.

  def fmt(v):
    if isinstance(v, float):
      return f"{v:.4g}"
    return str(v)

  lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
  lines += ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in rows]
  return "\n".join(lines)


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  unknown = [s for s in _SUITES.value if s not in SUITES]
  if unknown:
    raise app.UsageError(f"--suites: unknown suite(s) {unknown}; choose from {SUITES}")
  print(f"machine: {timing.machine_description()}")
  results = {}
  for suite in _SUITES.value:
    module = importlib.import_module(f"experiments.bench.{suite}")
    rows = module.run(quick=_QUICK.value)
    results[suite] = rows
    print(f"\n## {suite}\n\n{markdown_table(rows)}\n", flush=True)
  if _JSON.value:
    with open(_JSON.value, "w") as f:
      json.dump({"machine": timing.machine_description(), "suites": results}, f, indent=2)


if __name__ == "__main__":
  cli.run(main)
