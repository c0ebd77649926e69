r"""Yang dissertation ch. 4 (Yang & Yao CVPR 2019), Sec. 4.4.4 / Fig. 4.7: dVAE 3D pose estimation.

  python -m experiments.train --config=experiments/configs/dvae_pose.py:rhd \
      --workdir=workdirs/dvae_pose_rhd --config.data.manual_dir=/path/to/RHD_published_v2

The argument picks the dataset (`:rhd`, default, or `:stb`). Fig. 4.2c / Fig. 4.3 right:
z = [z_CPose (32), z_viewpoint (32)]; the factor VAEs and the 3D pose decoder p(3DPose|z) train in
the disentangling step (Eq. 4.2, steps [0, 100k)), then the RGB encoder in the embedding step
(Eq. 4.8, beta''' = 0.01, decoders fixed). lambda_x = 1, lambda_y = 0.01, Adam 1e-4, batch 32,
ResNet-18 encoder, 6 x 512 pose MLPs (Sec. 4.4.1); rotation +-180 deg and flips (Sec. 4.4.4).
`predict` returns pose3d, canonical_pose and viewpoint; `dvae.factor_errors` gives the EPE of each.

Run time: CPU impractical (days); one GPU: not yet measured.
Expected result: paper: mean EPE of CPose and 3DPose in Fig. 4.7 (right), given only as a plot;
here: not yet measured at paper scale. CPU scale (1000 steps, ~2 min; RESULTS.md, Methods II): 3D
pose 82.2 mm on synthetic_hands/quickstart (factor errors in RESULTS.md), from
`python -m experiments.tables --suite=dvae_multistage --rows=dvae_pose`.
"""

import ml_collections

from handjax.methods import dvae

DATASETS = {"rhd": ("rhd", "both_hands_palm"), "stb": ("stb", "bb")}


def get_config(arg: str = "rhd") -> ml_collections.ConfigDict:
  """dVAE pose estimation (CPose + viewpoint factors) on ``arg``."""
  if arg not in DATASETS:
    raise ValueError(f"dvae_pose takes :rhd or :stb, got {arg!r}.")
  config = dvae.default_config("pose")
  config.data.dataset, config.data.builder_config = DATASETS[arg]
  config.data.augment.rotation_deg = 180.0  # Sec. 4.4.4
  config.data.augment.flip_prob = 0.5
  return config
