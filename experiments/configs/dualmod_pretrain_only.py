r"""Yang dissertation ch. 7, Table 7.2 baseline: pre-training only (Eq. 7.7, synthetic), no fine-
tuning.

  python -m experiments.train --config=experiments/configs/dualmod_pretrain_only.py \
      --workdir=workdirs/dualmod_pretrain_only

Data and network: see dualmod_common.py. Run time: CPU impractical; one GPU: not yet measured.
Expected result (shifted_128 test mean EPE / AUC, RGB branch only): not yet measured at paper scale.
CPU scale (1000 steps, 8 min; RESULTS.md, Methods III): target 2D PCK@0.05 0.187, 3D EPE 150.6 mm
(mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart, from `python -m experiments.tables
--suite=semihand_dualmod --rows=dualmod_pretrain_only`.
"""

import ml_collections

from experiments.configs import dualmod_common


def get_config() -> ml_collections.ConfigDict:
  """Dual-modality network, Table 7.2 row 'pretrain_only'."""
  config = dualmod_common.base_config()
  config.dualmod.pretrain_steps = config.num_steps
  return config
