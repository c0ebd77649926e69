r"""Direct RGB -> 3D regression at CPU scale: the deterministic baseline (not a paper row).

  python -m experiments.train --config=experiments/configs/regression.py \
      --workdir=workdirs/regression

Quarter-width ResNet-18 + one hidden layer of 128, L2 on the normalised pose (handjax.methods.regression),
Adam 1e-3 with cosine decay, batch 32, `synthetic_hands/quickstart` (builder 1.3.0, 64 px).
Measured on the 2-core CPU while other jobs shared it (the diagnostics suite's reference row,
`python -m experiments.tables --suite=diagnostics --rows=diag_natural`, same settings): 2000 steps
in 5.9 min, test mean EPE 47.8 mm (training 45.1 mm) against a mean-pose baseline of 82.1 mm;
6000 steps: 40.2 mm (training 30.8 mm). GPU: not measured.
"""

import ml_collections

from handjax.methods import regression


def get_config() -> ml_collections.ConfigDict:
  """The CPU-scale regressor on `synthetic_hands/quickstart`."""
  config = regression.default_config()
  config.batch_size = 32
  config.num_steps = 2000
  config.log_every = 100
  config.checkpoint_every = 1000
  config.eval_every = 0

  config.model.resnet_width = 0.25
  config.model.head_hidden = (128,)

  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 50
  config.optimizer.decay = "cosine"

  config.data.dataset = "synthetic_hands"
  config.data.builder_config = "quickstart"
  config.data.image_size = 64
  config.data.crop_min_side = 10.0  # as quickstart.py
  config.data.heatmap_size = 16
  config.data.num_points = 64
  config.data.augment.rotation_deg = 30.0
  config.data.read_threads = 2
  return config
