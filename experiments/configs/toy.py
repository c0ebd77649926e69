r"""Toy config: a BatchNorm MLP regressing 21 joints from 8x8 toy images (not a paper row).

It exercises the whole training system (sharded steps, checkpoints, resume, eval, metrics) in
seconds on a laptop CPU and needs no dataset:

  python -m experiments.train --config=experiments/configs/toy.py --workdir=/tmp/handjax_toy

``--config.method=toy_two_phase`` runs the two-player variant (alternating phases). The numbers it
reaches are meaningless for hand pose; they only show the loop works: 200 steps take ~8 s wall on a
2-core CPU shared with other jobs and reach a test mean EPE of ~43 mm (AUC 20-50 mm ~0.37), against
65 mm for predicting the zero pose. Then:

  python -m experiments.evaluate --workdir=/tmp/handjax_toy
  python -m experiments.predict --workdir=/tmp/handjax_toy --image=hand.png
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  """The toy experiment."""
  config = ml_collections.ConfigDict()
  config.method = "toy"
  config.seed = 0
  config.batch_size = 16  # Global, over all devices of all processes.
  config.num_steps = 200
  config.log_every = 20
  config.checkpoint_every = 100
  config.eval_every = 100  # 0: only at the end; -1: never.
  config.keep_checkpoints = 2
  config.toy_hidden = 32
  config.toy_nan_at_step = -1  # Tests set it to inject a NaN loss.

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 0
  config.optimizer.decay = "constant"
  config.optimizer.grad_clip = 0.0

  config.data = ml_collections.ConfigDict()
  config.data.source = "toy"
  config.data.image_size = 8
  config.data.num_train = 256
  config.data.num_test = 50
  return config
