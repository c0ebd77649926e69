r"""Yang dissertation ch. 4, Sec. 4.4.3 / Figs. 4.4-4.6: dVAE image synthesis (transfer, walks).

  python -m experiments.train --config=experiments/configs/dvae_synthesis.py:u \
      --workdir=workdirs/dvae_synthesis_u --config.data.manual_dir=/path/to/STB

The argument picks the model: `:u` (Fig. 4.2b, Alg. 4.2: z = [z_3DPose, z_u], z_u encoded from the
image, one factor-pair update per disentangling update) or `:tag` (Fig. 4.2a, Alg. 4.1: z =
[z_3DPose, z_content] with a content tag image per example in `batch["content_image"]`: another
image of the same background, skin and lighting, which only synthetic content groups give:
`--config.data.dataset=synthetic_hands --config.data.builder_config=groups_64
--config.data.content_image=True`; see `handjax.data.synthetic.groups`). beta = 100
(Sec. 4.4.1), lambda_x = 1, lambda_y = 0.01, d = 64 = 32 + 32, Adam 1e-4, batch 32, STB.
Synthesis after training: `dvae.synthesize` (pose transfer), `dvae.latent_walk` and
`dvae.decode_blocks`.

Run time: CPU impractical; one GPU: not yet measured.
Expected result: qualitative only in the paper (Figs. 4.4-4.6); here: CPU-scale rows
dvae_synthesis_tag / dvae_synthesis_u of `python -m experiments.tables --suite=dvae_multistage` and
their grids in RESULTS.md (Methods II): the pose block collapsed at that budget.
"""

import ml_collections

from handjax.methods import dvae


def get_config(arg: str = "u") -> ml_collections.ConfigDict:
  """dVAE synthesis model ``arg`` ("u" or "tag")."""
  if arg not in ("u", "tag"):
    raise ValueError(f"dvae_synthesis takes :u or :tag, got {arg!r}.")
  config = dvae.default_config("synthesis_u" if arg == "u" else "synthesis")
  config.data.dataset, config.data.builder_config = "stb", "bb"
  return config
