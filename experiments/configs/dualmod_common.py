"""Shared settings of the dual-modality configs (Yang dissertation ch. 7, Table 7.2); not a row.

Pre-training (Eq. 7.7) on labelled synthetic_hands/default_128 (RGB + depth map + mask + pose),
then fine-tuning (Eq. 7.10) on default_128 (labelled) + shifted_128 (unlabelled, the "real" domain),
mixed half and half by `handjax.data.domains.make_mixed_dataset`; evaluation on the shifted test
split with the RGB branch only. ResNet-18 instead of the dissertation's ImageNet ResNet-101
(no downloaded weights); 128 px in, 32 px out (256 / 64 there).
"""

import ml_collections

from handjax.data import domains
from handjax.methods import dual_modality


def base_config() -> ml_collections.ConfigDict:
  """The full dual-modality network; ablation rows override ``config.dualmod`` switches."""
  config = ml_collections.ConfigDict()
  config.method = "dual_modality"
  config.seed = 0
  config.batch_size = 32  # Global: 16 source + 16 target rows.
  config.num_steps = 60_000
  config.log_every = 100
  config.checkpoint_every = 5_000
  config.eval_every = 10_000
  config.keep_checkpoints = 2

  config.data = domains.default_data_config(128)

  config.model = ml_collections.ConfigDict()
  config.model.depth = 18
  config.model.width = 1.0
  config.model.stage_sizes = None
  config.model.map_size = 32
  config.model.decoder_channels = (128, 64)
  config.model.base_channels = 256
  config.model.proj_dim = 128

  config.dualmod = dual_modality.default_dualmod_config()
  config.dualmod.pretrain_steps = 50_000  # Sec. 7.4: pre-train, then fine-tune jointly.

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2.5e-4  # Sec. 7.4, pre-training.
  config.optimizer.warmup_steps = 0
  config.optimizer.decay = "cosine"
  config.optimizer.grad_clip = 0.0
  config.finetune_optimizer = ml_collections.ConfigDict(config.optimizer.to_dict())
  config.finetune_optimizer.learning_rate = 2.5e-5  # Sec. 7.4
  return config
