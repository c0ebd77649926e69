r"""Quickstart: a small RGB -> 3D cross-modal VAE on `synthetic_hands` at 64 px (not a paper row).

The README's first command; it needs no download (the dataset is rendered on first use):

  python -m experiments.train --config=experiments/configs/quickstart.py \
      --workdir=workdirs/quickstart

What it trains: Spurr et al. CVPR 2018, Var. 1 (RGB -> 3D), with translation and scale
invariance (root-relative pose over the ground-truth middle-finger bone, as the RHD/STB protocol)
and the handedness flag, on the `synthetic_hands/quickstart` builder config (4000 train / 400 test
crops, 64 px). The ResNet-18 has a quarter of the paper's width and the MLP decoder 2 x 128 units,
so a 2-core CPU runs it in minutes.

Departures from the paper, for a short CPU run: Adam 1e-3 with cosine decay (paper: 1e-4
constant), KL weight beta = 0.1 (Alg. 1: 1), latent 32 (paper: 64), 64 px crops (paper: 256) and a
crop clip of 10 px (RHD's 50 px is for 320 px frames).

Run time and result, measured 2026-12-03 from a clean clone in a fresh virtual environment with an
empty tfds data_dir, on the project's 2-core CPU with nothing else running: the whole command
(install, rendering 4000 + 400 images of builder 1.3.0 in 42 s, 5000 steps at ~13 steps/s,
evaluation) took 7 min 40 s. Test split (400 crops), root-relative: test mean EPE 46.2 mm, median
42.2 mm, AUC 20-50 mm 0.388 (reference thresholds 0.397), against 82.1 mm for the mean-pose
baseline (0.56 x). Builder 1.2.0's scenes (uniform views, small hands; now `uniform_quickstart`)
gave 68.4 mm against 104.0 mm at 2000 steps. What limits it: RESULTS.md, "What limits accuracy at
CPU scale". GPU: not measured (no GPU was lent to this task).
"""

import ml_collections

from handjax.methods import crossmodal_vae


def get_config() -> ml_collections.ConfigDict:
  """The quickstart experiment."""
  config = crossmodal_vae.default_config()
  config.batch_size = 32
  config.num_steps = 5000
  config.log_every = 100
  config.checkpoint_every = 2500
  config.eval_every = 0  # only at the end

  config.input_modality = "image"
  config.variant = 1
  config.latent_dim = 32
  config.beta = 0.1

  config.model.resnet_width = 0.25
  config.model.mlp_hidden = (128, 128)

  config.optimizer.learning_rate = 1e-3
  config.optimizer.warmup_steps = 50
  config.optimizer.decay = "cosine"

  config.data.dataset = "synthetic_hands"
  config.data.builder_config = "quickstart"
  config.data.image_size = 64
  # RHD's crop clip of [50, 500] px is for 320 px frames; 10 px is the same share of a 64 px one.
  config.data.crop_min_side = 10.0
  config.data.heatmap_size = 16
  config.data.num_points = 64
  config.data.augment.rotation_deg = 30.0
  config.data.read_threads = 2
  return config
