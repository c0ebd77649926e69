r"""The quickstart's longer CPU recipe: the same cross-modal VAE, 20,000 images, 24,000 steps.

  python -m experiments.train --config=experiments/configs/quickstart_long.py \
      --workdir=workdirs/quickstart_long

Everything as `quickstart.py` (Spurr et al. CVPR 2018 Var. 1 RGB -> 3D, quarter-width ResNet-18,
latent 32, beta 0.1, Adam 1e-3 with cosine decay, batch 32, 64 px) but on
`synthetic_hands/default_64` (20,000 train / 2,000 test crops of builder 1.3.0's natural scenes)
for 24,000 steps. At the quickstart's 5000 steps the extra images change nothing (48.5 mm against
46.2 on 4000 images: the model underfits); over 24,000 steps they keep the test error close to
the training error (RESULTS.md, "What limits accuracy at CPU scale").

Measured 2026-12-03 from a clean clone on the project's 2-core CPU with nothing else running
(virtual environment already installed, empty tfds data_dir): rendering 22,000 images, 24,000
steps at ~14-16 steps/s and evaluation in 29 min 19 s; test mean EPE 32.1 mm (median 27.4,
AUC 20-50 0.614) against 82.0 mm for the mean-pose baseline (0.39 x; training crops 28.0).
Issue 17's target for this recipe (<= 25 mm in <= 60 min) is not met. GPU: not measured.
"""

import ml_collections

from experiments.configs import quickstart


def get_config() -> ml_collections.ConfigDict:
  """The quickstart on 20,000 images for 24,000 steps."""
  config = quickstart.get_config()
  config.num_steps = 24_000
  config.checkpoint_every = 4_000
  config.data.builder_config = "default_64"
  return config
