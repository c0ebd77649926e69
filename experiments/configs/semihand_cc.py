r"""Yang dissertation ch. 6, Table 6.1 row '+cc': pre-training, then cross-modal consistency (Eq.
6.11-6.14) on the target.

  python -m experiments.train --config=experiments/configs/semihand_cc.py \
      --workdir=workdirs/semihand_cc

Source synthetic_hands/default_64, target synthetic_hands/shifted_64 (see semihand_common.py).
Run time: CPU impractical; one GPU: not yet measured. Expected result (target-test mean EPE / AUC):
not yet measured at paper scale. CPU scale (1000 steps, 8 min; RESULTS.md, Methods III): target 2D
PCK@0.05 0.175, 3D EPE 184.5 mm (mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart,
from `python -m experiments.tables --suite=semihand_dualmod --rows=semihand_cc`.
"""

import ml_collections

from experiments.configs import semihand_common


def get_config() -> ml_collections.ConfigDict:
  """SemiHand, Table 6.1 row 'cc'."""
  config = semihand_common.base_config()
  config.semihand.use_pseudo_labels = False
  config.semihand.use_vc = False
  return config
