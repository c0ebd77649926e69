r"""Yang dissertation ch. 7, Table 7.2 ablation 'w/o self-distillation' (no L_f; pseudo-labels from
the RGB branch).

  python -m experiments.train --config=experiments/configs/dualmod_no_self_distillation.py \
      --workdir=workdirs/dualmod_no_self_distillation

Data and network: see dualmod_common.py. Run time: CPU impractical; one GPU: not yet measured.
Expected result (shifted_128 test mean EPE / AUC, RGB branch only): not yet measured at paper scale.
CPU scale (1000 steps, 9 min; RESULTS.md, Methods III): target 2D PCK@0.05 0.185, 3D EPE 175.5 mm
(mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart, from `python -m experiments.tables
--suite=semihand_dualmod --rows=dualmod_no_self_distillation`.
"""

import ml_collections

from experiments.configs import dualmod_common


def get_config() -> ml_collections.ConfigDict:
  """Dual-modality network, Table 7.2 row 'no_self_distillation'."""
  config = dualmod_common.base_config()
  config.dualmod.use_self_distillation = False
  return config
