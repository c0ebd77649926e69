r"""Yang dissertation ch. 7, Table 7.2 ablation 'w/o contrastive loss' (lambda_c L_c dropped from
Eq. 7.7).

  python -m experiments.train --config=experiments/configs/dualmod_no_contrastive.py \
      --workdir=workdirs/dualmod_no_contrastive

Data and network: see dualmod_common.py. Run time: CPU impractical; one GPU: not yet measured.
Expected result (shifted_128 test mean EPE / AUC, RGB branch only): not yet measured at paper scale.
CPU scale (1000 steps, 7 min; RESULTS.md, Methods III): target 2D PCK@0.05 0.179, 3D EPE 165.4 mm
(mean-pose baseline 104.7) on synthetic_hands/shifted_quickstart, from `python -m experiments.tables
--suite=semihand_dualmod --rows=dualmod_no_contrastive`.
"""

import ml_collections

from experiments.configs import dualmod_common


def get_config() -> ml_collections.ConfigDict:
  """Dual-modality network, Table 7.2 row 'no_contrastive'."""
  config = dualmod_common.base_config()
  config.dualmod.use_contrastive = False
  return config
