r"""Yang et al. ICCV 2019, Sec. 5.3 / Fig. 8: weakly supervised S4 (RC2CHP, PoE) on RHD.

  python -m experiments.train --config=experiments/configs/iccv_weak.py:0.1 \
      --workdir=workdirs/iccv_weak_10 --config.data.manual_dir=/path/to/RHD_published_v2

The argument is the labelled fraction m: the first m of the training set keeps RGB, point cloud
and 3D pose; the rest keeps RGB and point cloud only. Both share every batch; `has_pose3d` masks
make the unlabelled rows train only the "RC2C" parts (point-cloud reconstructions from z_rgb,
z_cloud and their product, and the KL terms). Heat maps of unlabelled rows are dropped too
(`heatmaps_need_pose_label`). Fig. 8 varies m from 5% to 100% and reports up to 6% lower mean EPE
than training on the m% alone (the supervised-only curve of Fig. 8 is not a config here).
Fusion can be switched for the side-by-side rows: `--config.fusion=moe` or `mopoe`.

Run time: CPU impractical; one GPU: not yet measured. Result here: not yet measured.
"""

import ml_collections

from experiments.configs import iccv_common


def get_config(arg: str = "0.1") -> ml_collections.ConfigDict:
  """S4 RC2CHP with labelled fraction ``arg``."""
  fraction = float(arg)
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"iccv_weak takes a labelled fraction in (0, 1], got {arg!r}.")
  config = iccv_common.make_config("RC", "CHP", "experts")
  config.data.labelled_fraction = fraction
  return config
