"""Shared pieces of the stergioulas_*.py configs (not a config itself): the ablation rows of
Stergioulas et al. (seed 004) Tables 1-2 as switches of `handjax.methods.multistage`.

A row sets the decoder (injection or a fully connected stack), whether stage 1 disentangles the RGB
latent (discriminator, context block), which subspace ID_RGB decodes, and which stages run. Stage
lengths are not in the paper (it trains each stage "until convergence"); the defaults of
`multistage.default_config` are handjax choices: 100k disentanglement, 50k + 50k alignment (frozen
encoders, then fine-tuning), 50k refinement steps at batch 64.

One command runs the whole schedule; a stage can also run alone from the previous stage's
checkpoint, e.g. stage 2 + 3 after a stage-1 run in workdirs/s1:

  python -m experiments.train --config=experiments/configs/stergioulas_d3.py \
      --workdir=workdirs/s23 --config.init_from=workdirs/s1 --config.stages.disentangle=0 \
      --config.num_steps=150000
"""

import ml_collections

from handjax.methods import multistage

# Mean EPE [mm] on RHD, Stergioulas et al. Table 1 (ablation) and Table 2 (decoder x subspace).
TABLE1 = {"baseline": 15.71, "a": 15.08, "b": 14.77, "c": 14.82, "d0": 14.36, "d1": 13.93,
          "d2": 13.99, "d3": 13.88}
TABLE2 = {"linear_concat": 15.12, "linear_pose": 15.13, "injection_concat": 14.87,
          "injection_pose": 14.77}
DATASETS = {"rhd": ("rhd", "both_hands_palm"), "stb": ("stb", "bb")}

# row -> (decoder, disentangle, decode_subspace, alignment, refinement mode or None)
ROWS = {
    "baseline": ("mlp", False, "pose", False, None),
    "a": ("injection", False, "pose", False, None),
    "b": ("injection", True, "pose", False, None),
    "c": ("injection", False, "pose", True, None),
    "d0": ("injection", True, "pose", True, None),
    "d1": ("injection", True, "pose", True, "kcs"),
    "d2": ("injection", True, "pose", True, "geo"),
    "d3": ("injection", True, "pose", True, "alternate"),
    "linear_concat": ("mlp", True, "concat", False, None),
    "linear_pose": ("mlp", True, "pose", False, None),
    "injection_concat": ("injection", True, "concat", False, None),
    "injection_pose": ("injection", True, "pose", False, None),
}


def make_config(row: str, dataset: str = "rhd") -> ml_collections.ConfigDict:
  """The paper's settings (Sec. 4.2) for one ablation row on ``dataset`` ("rhd" or "stb")."""
  if row not in ROWS:
    raise ValueError(f"unknown Stergioulas row {row!r}; rows: {sorted(ROWS)}.")
  if dataset not in DATASETS:
    raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}.")
  decoder, disentangle, subspace, align, refine = ROWS[row]
  config = multistage.default_config()
  config.model.decoder = decoder
  config.disentangle = disentangle
  config.decode_subspace = subspace
  if not align:
    config.stages.align_frozen = 0
    config.stages.align_finetune = 0
  if refine is None:
    config.stages.refine = 0
  else:
    config.refine.mode = refine
  st = config.stages
  config.num_steps = st.disentangle + st.align_frozen + st.align_finetune + st.refine
  config.data.dataset, config.data.builder_config = DATASETS[dataset]
  config.data.augment.flip_prob = 0.5  # Sec. 4.2: random flips with probability 0.5
  number = TABLE1.get(row, TABLE2.get(row))
  config.expected_paper_epe = (f"{number:.2f} mm on RHD" if dataset == "rhd" and number else
                               "6.71 mm on STB (Table 3, full model)" if row == "d3" else
                               "no number in the paper for this combination")
  return config
