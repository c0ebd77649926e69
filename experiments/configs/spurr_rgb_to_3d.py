r"""Spurr et al. CVPR 2018, RGB -> 3D: Table 1 (Var. 1-4, RHD and STB) and Table 2 (invariances).

  python -m experiments.train --config=experiments/configs/spurr_rgb_to_3d.py:1 \
      --workdir=workdirs/spurr_rgb_to_3d_var1 --config.data.manual_dir=/path/to/RHD_published_v2

The argument selects the row: `:<variant>[,<invariances>][,<dataset>]`, e.g. `:3` (Var. 3, RHD,
T+S+H), `:1,ts` (Table 2 "Ours (T+S)"), `:3,tsh,stb` (Var. 3 on STB, BB stereo views). Paper mean
EPE, RHD: Var. 1-4 = 19.73 / 19.99 / 20.04 / 20.35 mm; STB: 8.75 / 8.61 / 8.56 / 9.57 mm;
Table 2 RHD: T+S 20.20, T+H 22.34, T 22.53 mm; STB: T+S 10.16, T+H 9.59, T 9.49 mm.

Settings (supp. Sec. 7.1, `crossmodal_vae.default_config`): ResNet-18 encoder, DCGAN image decoder
(Table 4), 6 x Linear(512) pose networks (Table 3), 256 px crops with shifts, rotations in
[-45, 45] degrees and flips, Adam 1e-4, batch 64, beta 1 (Alg. 1: MSE + KL), latent 64 (not stated
in the paper), RHD both hands with the palm as root.

Run time: CPU impractical; one GPU: not yet measured. Result here: not yet measured.
"""

import ml_collections

from experiments.configs import spurr_common


def get_config(arg: str = "1") -> ml_collections.ConfigDict:
  """RGB -> 3D row selected by ``arg`` (see the module docstring)."""
  return spurr_common.make_config("image", arg)
