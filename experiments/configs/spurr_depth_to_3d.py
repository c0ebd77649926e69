r"""Spurr et al. CVPR 2018, depth -> 3D (Sec. 4.5 "Depth to 3D", supp. Sec. 7.1) on RHD depth maps.

  python -m experiments.train --config=experiments/configs/spurr_depth_to_3d.py:1 \
      --workdir=workdirs/spurr_depth_to_3d --config.data.manual_dir=/path/to/RHD_published_v2

Not a row of the paper's tables: the paper evaluates depth on ICVL, NYU and MSRA (Fig. 5, PCK
curves only), for which handjax has no builders; this runs the same architecture (the RGB network
with a 1-channel input and a 1-channel DCGAN decoder) on RHD's depth maps. Depth maps are centred
on their mean valid depth and divided by `depth_unit` (3.5 cm). The argument is
`:<variant>[,<invariances>]` as for the other spurr configs.

Run time: CPU impractical; one GPU: not yet measured. Expected result: no paper number; not yet
measured.
"""

import ml_collections

from experiments.configs import spurr_common


def get_config(arg: str = "1") -> ml_collections.ConfigDict:
  """Depth -> 3D with the variant and invariances of ``arg``."""
  return spurr_common.make_config("depth", arg)
