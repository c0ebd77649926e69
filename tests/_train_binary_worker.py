"""Subprocess entry for the interruption tests: ``experiments.train`` with slowed-down data.

Usage: python tests/_train_binary_worker.py [experiments.train flags]. The train binary runs
unchanged (its flags, messages and exit status), except that every batch its dataset factory
returns sleeps 0.2 s, so the parent can signal it mid-run (not a test module).
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app  # noqa: E402

from experiments import train  # noqa: E402
from handjax.train import loop  # noqa: E402

_resolve = loop.resolve_dataset_factory


def _slow_factory(config):
  factory = _resolve(config)
  return lambda *a, **k: factory(*a, **k).map(lambda b: (time.sleep(0.2), b)[1])


loop.resolve_dataset_factory = _slow_factory
if __name__ == "__main__":
  app.run(train.main, flags_parser=train.parse_flags)
