r"""Stergioulas et al. (seed 004), Table 2 row Injection Decoder / Concat.

  python -m experiments.train --config=experiments/configs/stergioulas_t2_injection_concat.py:rhd \
      --workdir=workdirs/stergioulas_t2_injection_concat \
      --config.data.manual_dir=/path/to/RHD_published_v2

The argument picks the dataset (`:rhd`, default, or `:stb`). One command runs every stage of the
row in sequence (`handjax.methods.multistage`: phases with start/stop steps); stage lengths are
handjax choices (the paper trains each stage until convergence), see `stergioulas_common`.
Settings (Sec. 4.2): ResNet-18 RGB encoder, latents 128 (RGB) and 64 (pose), all betas 1e-5,
w = 1e-2, r_kcs = 1e-2, r_geo = 1e-6, Adam 1e-4, batch 64, 256 px crops, rotation +-45 deg, flips.

Run time: CPU impractical (days); one GPU: not yet measured.
Expected result: paper: 14.87 mm mean EPE on RHD; here: not yet measured at
paper scale. CPU scale (3000 steps, ~6 min; RESULTS.md, Methods II): 75.8 mm on
synthetic_hands/quickstart, from
  `python -m experiments.tables --suite=dvae_multistage --rows=stergioulas_t2_injection_concat`.
"""

import ml_collections

from experiments.configs import stergioulas_common


def get_config(arg: str = "rhd") -> ml_collections.ConfigDict:
  """Table 2 row Injection Decoder / Concat."""
  return stergioulas_common.make_config("injection_concat", arg or "rhd")
