"""Shared settings of the SemiHand configs (Yang dissertation ch. 6, Table 6.1); not a table row.

Source domain: synthetic_hands/default_64 (labelled); target domain: synthetic_hands/shifted_64
(the renderer's shifted style, unlabelled), mixed half and half in every batch by
`handjax.data.domains.make_mixed_dataset` (``config.data.source = "domains"``); evaluation is on the
target test split. Network: two-stack hourglass, 64x64 in and out (Sec. 6.4).
"""

import ml_collections

from handjax.data import domains
from handjax.methods import semihand


def base_config() -> ml_collections.ConfigDict:
  """The full SemiHand model (Eq. 6.1) on default_64 -> shifted_64; rows override fields."""
  config = ml_collections.ConfigDict()
  config.method = "semihand"
  config.seed = 0
  config.batch_size = 32  # Global: 16 source + 16 target rows.
  config.num_steps = 60_000
  config.log_every = 100
  config.checkpoint_every = 5_000
  config.eval_every = 10_000
  config.keep_checkpoints = 2

  config.data = domains.default_data_config(64)

  config.model = ml_collections.ConfigDict()
  config.model.features = 128
  config.model.num_stacks = 2
  config.model.levels = 4
  config.model.stem_stride = 1

  config.semihand = semihand.default_semihand_config()
  config.semihand.pretrain_steps = 40_000

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2.5e-4
  config.optimizer.warmup_steps = 0
  config.optimizer.decay = "cosine"
  config.optimizer.grad_clip = 0.0
  return config
