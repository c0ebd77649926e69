r"""Yang dissertation ch. 6, Table 6.1 row '+vc+cc': pre-training, then both consistencies (Eq.
6.9).

  python -m experiments.train --config=experiments/configs/semihand_vc_cc.py \
      --workdir=workdirs/semihand_vc_cc

Source synthetic_hands/default_64, target synthetic_hands/shifted_64 (see semihand_common.py).
Run time: CPU impractical; one GPU: not yet measured. Expected result (target-test mean EPE / AUC):
not yet measured at paper scale. CPU scale (1000 steps, 9 min; RESULTS.md, Methods III): target 2D
PCK@0.05 0.174, 3D EPE 184.2 mm (mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart,
from `python -m experiments.tables --suite=semihand_dualmod --rows=semihand_vc_cc`.
"""

import ml_collections

from experiments.configs import semihand_common


def get_config() -> ml_collections.ConfigDict:
  """SemiHand, Table 6.1 row 'vc_cc'."""
  config = semihand_common.base_config()
  config.semihand.use_pseudo_labels = False
  return config
