r"""Yang dissertation ch. 6, Table 6.1 row '+vc': pre-training, then view consistency (Eq. 6.10) on
the target.

  python -m experiments.train --config=experiments/configs/semihand_vc.py \
      --workdir=workdirs/semihand_vc

Source synthetic_hands/default_64, target synthetic_hands/shifted_64 (see semihand_common.py).
Run time: CPU impractical; one GPU: not yet measured. Expected result (target-test mean EPE / AUC):
not yet measured at paper scale. CPU scale (1000 steps, 11 min; RESULTS.md, Methods III): target 2D
PCK@0.05 0.175, 3D EPE 210.0 mm (mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart,
from `python -m experiments.tables --suite=semihand_dualmod --rows=semihand_vc`.
"""

import ml_collections

from experiments.configs import semihand_common


def get_config() -> ml_collections.ConfigDict:
  """SemiHand, Table 6.1 row 'vc'."""
  config = semihand_common.base_config()
  config.semihand.use_pseudo_labels = False
  config.semihand.use_cc = False
  return config
