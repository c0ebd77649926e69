r"""Yang dissertation ch. 7, Table 7.2 ablation 'w/o correction' (pseudo-labels averaged from
uncorrected poses).

  python -m experiments.train --config=experiments/configs/dualmod_no_correction.py \
      --workdir=workdirs/dualmod_no_correction

Data and network: see dualmod_common.py. Run time: CPU impractical; one GPU: not yet measured.
Expected result (shifted_128 test mean EPE / AUC, RGB branch only): not yet measured.
"""

import ml_collections

from experiments.configs import dualmod_common


def get_config() -> ml_collections.ConfigDict:
  """Dual-modality network, Table 7.2 row 'no_correction'."""
  config = dualmod_common.base_config()
  config.dualmod.use_correction = False
  return config
