r"""Yang dissertation ch. 7, Table 7.2 'full': attention fusion, contrastive pre-training, pose
correction and self-distillation (Eq. 7.7, then Eq. 7.10).

  python -m experiments.train --config=experiments/configs/dualmod_full.py \
      --workdir=workdirs/dualmod_full

Data and network: see dualmod_common.py. Run time: CPU impractical; one GPU: not yet measured.
Expected result (shifted_128 test mean EPE / AUC, RGB branch only): not yet measured at paper scale.
CPU scale (1000 steps, 9 min; RESULTS.md, Methods III): target 2D PCK@0.05 0.183, 3D EPE 170.2 mm
(mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart, from `python -m experiments.tables
--suite=semihand_dualmod --rows=dualmod_full`.
"""

import ml_collections

from experiments.configs import dualmod_common


def get_config() -> ml_collections.ConfigDict:
  """Dual-modality network, Table 7.2 row 'full'."""
  config = dualmod_common.base_config()
  return config
