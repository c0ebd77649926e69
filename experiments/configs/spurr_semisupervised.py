r"""Spurr et al. CVPR 2018, Sec. 4.6 / Fig. 3: semi-supervised RGB -> 3D on STB, m% of 3D labels.

  python -m experiments.train --config=experiments/configs/spurr_semisupervised.py:0.1,3 \
      --workdir=workdirs/spurr_semi_10_var3 --config.data.manual_dir=/path/to/STB

The argument is `:<labelled fraction>,<variant>`: Var. 1 can only use the labelled m% (its single
pair needs 3D labels), Var. 3 also trains its RGB -> RGB pair on the unlabelled images (the
`has_pose3d` masks of the pipeline's `labelled_fraction`). Fig. 3 plots the median EPE against the
fraction; the paper reports up to 22% lower median EPE for Var. 3. Note: the pipeline keeps the
labels of the *first* m% of the source examples (STB train = sequences B2-B6 in order), not a
random m%.

Run time: CPU impractical; one GPU: not yet measured. Result here: not yet measured.
"""

import ml_collections

from experiments.configs import spurr_common


def get_config(arg: str = "0.1,3") -> ml_collections.ConfigDict:
  """Fig. 3 point selected by ``arg`` (see the module docstring)."""
  parts = [p.strip() for p in arg.split(",")]
  if len(parts) != 2:
    raise ValueError(f"spurr_semisupervised takes :<fraction>,<variant>, got {arg!r}.")
  config = spurr_common.make_config("image", parts[1], default_dataset="stb")
  config.data.labelled_fraction = float(parts[0])
  config.expected_paper_epe = "Fig. 3 median EPE curve (no table number)"
  return config
