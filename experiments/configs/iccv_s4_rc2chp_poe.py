r"""Yang et al. ICCV 2019, Table 1 row: S4 RC2CHP, product of Gaussian experts (Eq. 4-6, Alg. 3).

  python -m experiments.train --config=experiments/configs/iccv_s4_rc2chp_poe.py:rhd \
      --workdir=workdirs/iccv_s4_rc2chp_poe --config.data.manual_dir=/path/to/RHD_published_v2

Table 2 runs the same model on STB with `:stb` (paper: 7.05 mm mean EPE on STB; RHD 13.14 mm).

Encoders 'RC', decoders 'CHP' (R: RGB, C: point cloud, H: heat maps, P: 3D pose), alignment
'experts', fusion 'poe'. Paper settings (Sec. 4-5, `aligned_latents.default_config`): latent 64,
ResNet-18 RGB encoder with two FC layers, ResPEL point encoder (512 units), FoldingNet and DCGAN
decoders, lambda_heat 0.01, lambda_cloud 1, beta 1e-5 -> 1e-3 (log-linear over 100k steps), Adam
1e-4 with two x0.1 drops (steps 200k, 260k: the paper drops "after convergence"), batch 32,
256 points, 256 px crops, view correction, middle-MCP root, ground-truth scale (RHD protocol).

Run time: CPU impractical (days); one GPU: not yet measured.
Expected result: paper: 13.14 mm mean EPE on RHD (Table 1, RGB input at test time); here: not yet
measured.
"""

import ml_collections

from experiments.configs import iccv_common


def get_config(arg: str = "rhd") -> ml_collections.ConfigDict:
  """S4 RC2CHP, product of Gaussian experts (Eq. 4-6, Alg. 3)."""
  config = iccv_common.make_config("RC", "CHP", "experts")
  if arg not in ("rhd", "stb"):
    raise ValueError(f"iccv_s4_rc2chp_poe takes :rhd or :stb, got {arg!r}.")
  if arg == "stb":
    # STB with its palm moved to the wrist (Sec. 5.1), SK colour + depth for the point clouds.
    config.data.dataset = "stb"
    config.data.builder_config = "sk_wrist"
  return config
