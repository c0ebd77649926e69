r"""Yang dissertation ch. 6, Table 6.1 row 'target supervised' (upper bound): Eq. 6.3 on the
labelled target domain only.

  python -m experiments.train --config=experiments/configs/semihand_target_supervised.py \
      --workdir=workdirs/semihand_target_supervised

Source synthetic_hands/default_64, target synthetic_hands/shifted_64 (see semihand_common.py).
Run time: CPU impractical; one GPU: not yet measured. Expected result (target-test mean EPE / AUC):
not yet measured at paper scale. CPU scale (1000 steps, 7 min; RESULTS.md, Methods III): target 2D
PCK@0.05 0.178, 3D EPE 203.8 mm (mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart,
from `python -m experiments.tables --suite=semihand_dualmod --rows=semihand_target_supervised`.
"""

import ml_collections

from experiments.configs import semihand_common


def get_config() -> ml_collections.ConfigDict:
  """SemiHand, Table 6.1 row 'target_supervised'."""
  config = semihand_common.base_config()
  config.data.source = "pipeline"
  config.data.builder_config = "shifted_64"
  del config.data["target"]
  config.semihand.pretrain_steps = config.num_steps
  return config
