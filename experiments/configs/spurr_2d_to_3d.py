r"""Spurr et al. CVPR 2018, 2D -> 3D lifting on RHD: Table 1 (Var. 1-4) and Table 2 (invariances).

  python -m experiments.train --config=experiments/configs/spurr_2d_to_3d.py:3 \
      --workdir=workdirs/spurr_2d_to_3d_var3 --config.data.manual_dir=/path/to/RHD_published_v2

The argument selects the row: `:<variant>[,<invariances>]`, e.g. `:3` (Var. 3, T+S+H, the best
lifting variant) or `:3,ts` (Table 2 "Ours (T+S)"). The input is the ground-truth 2D keypoints of
the crop. Paper mean EPE: Var. 1-4 = 17.23 / 17.82 / 17.14 / 17.63 mm; Table 2: T+S 18.90,
T+H 19.69, T 21.15 mm.

Settings: 6 x Linear(512) encoders and decoders (supp. Table 3), Adam 1e-4, batch 64, beta 1.

Run time: CPU not yet measured (MLPs only: feasible); one GPU: not yet measured. Result here: not
yet measured.
"""

import ml_collections

from experiments.configs import spurr_common


def get_config(arg: str = "3") -> ml_collections.ConfigDict:
  """2D -> 3D row selected by ``arg`` (see the module docstring)."""
  return spurr_common.make_config("uv", arg)
