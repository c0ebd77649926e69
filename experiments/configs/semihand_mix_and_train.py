r"""Yang dissertation ch. 6, Table 6.1 row 'mix-and-train' (upper bound): Eq. 6.3 on labelled source
+ labelled target.

  python -m experiments.train --config=experiments/configs/semihand_mix_and_train.py \
      --workdir=workdirs/semihand_mix_and_train

Source synthetic_hands/default_64, target synthetic_hands/shifted_64 (see semihand_common.py).
Run time: CPU impractical; one GPU: not yet measured. Expected result (target-test mean EPE / AUC):
not yet measured at paper scale. CPU scale (1000 steps, 7 min; RESULTS.md, Methods III): target 2D
PCK@0.05 0.188, 3D EPE 197.6 mm (mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart,
from `python -m experiments.tables --suite=semihand_dualmod --rows=semihand_mix_and_train`.
"""

import ml_collections

from experiments.configs import semihand_common


def get_config() -> ml_collections.ConfigDict:
  """SemiHand, Table 6.1 row 'mix_and_train'."""
  config = semihand_common.base_config()
  config.data.target.labelled = True
  config.semihand.pretrain_steps = config.num_steps
  return config
