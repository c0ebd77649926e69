r"""Yang dissertation ch. 4, Sec. 4.4.4 / Fig. 4.9: dVAE pose estimation, semi-supervised on RHD.

  python -m experiments.train --config=experiments/configs/dvae_semi.py:0.1 \
      --workdir=workdirs/dvae_semi_10 --config.data.manual_dir=/path/to/RHD_published_v2

The argument is the labelled fraction m: the first m of the training set keeps 3DPose, CPose and
viewpoint, the rest only the image (the pipeline's `labelled_fraction`; `has_*` masks). The
unlabelled rows drop out of the disentangling step and of every reconstruction of the embedding
step and only enter its KL term. Fig. 4.9 varies m from 5% to 100% and reports up to 3.5% lower
mean EPE than the supervised baseline (the weak-label curve, viewpoint only, needs the pipeline to
keep `viewpoint` on unlabelled rows, which it does not yet do; the method already handles it).

Run time: CPU impractical; one GPU: not yet measured. Result here: not yet measured.
"""

import ml_collections

from experiments.configs import dvae_pose


def get_config(arg: str = "0.1") -> ml_collections.ConfigDict:
  """dVAE pose estimation with labelled fraction ``arg``."""
  fraction = float(arg)
  if not 0.0 < fraction <= 1.0:
    raise ValueError(f"dvae_semi takes a labelled fraction in (0, 1], got {arg!r}.")
  config = dvae_pose.get_config("rhd")
  config.data.labelled_fraction = fraction
  return config
