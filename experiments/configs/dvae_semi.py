r"""Yang dissertation ch. 4, Sec. 4.4.4 / Fig. 4.9: dVAE pose estimation, semi-supervised on RHD.

  python -m experiments.train --config=experiments/configs/dvae_semi.py:0.1 \
      --workdir=workdirs/dvae_semi_10 --config.data.manual_dir=/path/to/RHD_published_v2

The argument is the labelled fraction m, optionally followed by ",weak": the first m of the
training set keeps 3DPose, CPose and viewpoint, the rest only the image (the pipeline's
`labelled_fraction`; `has_*` masks) or, with ",weak", the image and the viewpoint (the weak labels
of Fig. 4.9; `data.weak_labels`). Rows without a label drop out of the disentangling step for that
factor and of its reconstructions in the embedding step. Fig. 4.9 varies m from 5% to 100% and
reports up to 3.5% lower mean EPE than the supervised baseline.

  python -m experiments.train --config=experiments/configs/dvae_semi.py:0.1,weak ...

Run time: CPU impractical; one GPU: not yet measured. Result here: the CPU-scale rows
dvae_{semi,weak,only}_{10,30} of `python -m experiments.tables --suite=dvae_multistage`
(RESULTS.md, Methods II).
"""

import ml_collections

from experiments.configs import dvae_pose


def get_config(arg: str = "0.1") -> ml_collections.ConfigDict:
  """dVAE pose estimation with labelled fraction ``arg`` ("<m>" or "<m>,weak")."""
  parts = [p.strip() for p in arg.split(",")]
  try:
    fraction = float(parts[0])
  except ValueError:
    fraction = -1.0
  if not 0.0 < fraction <= 1.0 or len(parts) > 2 or parts[1:] not in ([], ["weak"]):
    raise ValueError(f"dvae_semi takes :<labelled fraction in (0, 1]>[,weak], got {arg!r}.")
  config = dvae_pose.get_config("rhd")
  config.data.labelled_fraction = fraction
  if parts[1:] == ["weak"]:
    config.data.weak_labels = ("viewpoint",)
  return config
