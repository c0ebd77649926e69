r"""Yang dissertation ch. 6, Table 6.1 row 'source only' (lower bound): supervised pre-training on
the labelled source only.

  python -m experiments.train --config=experiments/configs/semihand_source_only.py \
      --workdir=workdirs/semihand_source_only

Source synthetic_hands/default_64, target synthetic_hands/shifted_64 (see semihand_common.py).
Run time: CPU impractical; one GPU: not yet measured. Expected result (target-test mean EPE / AUC):
not yet measured at paper scale. CPU scale (1000 steps, 6 min; RESULTS.md, Methods III): target 2D
PCK@0.05 0.167, 3D EPE 192.2 mm (mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart,
from `python -m experiments.tables --suite=semihand_dualmod --rows=semihand_source_only`.
"""

import ml_collections

from experiments.configs import semihand_common


def get_config() -> ml_collections.ConfigDict:
  """SemiHand, Table 6.1 row 'source_only'."""
  config = semihand_common.base_config()
  config.semihand.pretrain_steps = config.num_steps  # Eq. 6.3 only; target rows unused.
  return config
