r"""Yang et al. ICCV 2019, Table 1 row: S2 R2CHP (Alg. 1).

  python -m experiments.train --config=experiments/configs/iccv_s2_r2chp.py \
      --workdir=workdirs/iccv_s2_r2chp --config.data.manual_dir=/path/to/RHD_published_v2

Encoders 'R', decoders 'CHP' (R: RGB, C: point cloud, H: heat maps, P: 3D pose), alignment
'none'. Paper settings (Sec. 4-5, `aligned_latents.default_config`): latent 64, ResNet-18
RGB encoder with two FC layers, ResPEL point encoder (512 units), FoldingNet and DCGAN decoders,
lambda_heat 0.01, lambda_cloud 1, beta 1e-5 -> 1e-3 (log-linear over 100k steps), Adam 1e-4 with
two x0.1 drops (steps 200k, 260k: the paper drops "after convergence"), batch 32, 256 points,
256 px crops, view correction, middle-MCP root, scale from the ground truth (RHD protocol).

Run time: CPU impractical (days); one GPU: not yet measured.
Expected result: paper: 15.49 mm mean EPE on RHD (Table 1, RGB input at test time); here: not yet
measured.
"""

import ml_collections

from experiments.configs import iccv_common


def get_config() -> ml_collections.ConfigDict:
  """S2 R2CHP (Alg. 1)."""
  return iccv_common.make_config("R", "CHP", "none")
