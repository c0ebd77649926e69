r"""Yang dissertation ch. 7, Table 7.2 'full': attention fusion, contrastive pre-training, pose
correction and self-distillation (Eq. 7.7, then Eq. 7.10).

  python -m experiments.train --config=experiments/configs/dualmod_full.py \
      --workdir=workdirs/dualmod_full

Data and network: see dualmod_common.py. Run time: CPU impractical; one GPU: not yet measured.
Expected result (shifted_128 test mean EPE / AUC, RGB branch only): not yet measured.
"""

import ml_collections

from experiments.configs import dualmod_common


def get_config() -> ml_collections.ConfigDict:
  """Dual-modality network, Table 7.2 row 'full'."""
  config = dualmod_common.base_config()
  return config
