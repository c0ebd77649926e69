"""Subprocess entry for the multi-process and SIGKILL tests of the train loop (not a test module).

Usage: python tests/_train_worker.py WORKDIR OUT_NPZ CONFIG_JSON [PROCESS_ID NUM_PROCESSES PORT]
[--slow]. CONFIG_JSON holds overrides of experiments/configs/toy.py. With a process id it joins a
loopback ``jax.distributed`` cluster (gloo CPU collectives, one CPU device per process); ``--slow``
sleeps 0.2 s per batch so the parent can kill or signal it mid-run. A run stopped by SIGTERM/SIGINT
prints its one line and exits with ``interrupts.EXIT_STATUS``, as ``experiments/train.py`` does.
"""

import json
import os
import sys
import time

args = [a for a in sys.argv[1:] if not a.startswith("--")]
multi = len(args) == 6
os.environ["JAX_PLATFORMS"] = "cpu"
if multi:
  os.environ["JAX_NUM_CPU_DEVICES"] = "1"
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

if multi:
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"127.0.0.1:{args[5]}",
                             num_processes=int(args[4]), process_id=int(args[3]))

from experiments.configs import toy as toy_config  # noqa: E402
from handjax.train import interrupts, loop, sharding, toy  # noqa: E402


def factory(*a, **k):
  ds = toy.toy_dataset(*a, **k)
  return ds.map(lambda b: (time.sleep(0.2), b)[1]) if "--slow" in sys.argv else ds


config = toy_config.get_config()
config.update_from_flattened_dict(json.loads(args[2]))
try:
  state = loop.train_and_evaluate(config, args[0], dataset_factory=factory)
except interrupts.Interrupted as e:  # As experiments/train.py reports it.
  print(e, flush=True)
  sys.exit(interrupts.EXIT_STATUS)
host = sharding.to_host(state)
np.savez(args[1], *jax.tree.leaves(host))
print("worker done", jax.process_index(), jax.process_count(), jax.device_count(), flush=True)
