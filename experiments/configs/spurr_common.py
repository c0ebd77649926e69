"""Shared pieces of the spurr_*.py configs (not a config itself): paper numbers, argument parsing.

A spurr config takes ``:<variant>[,<invariances>][,<dataset>]``, e.g. ``:3``, ``:1,ts`` or
``:3,tsh,stb``: the variant of Sec. 4 (1-4), the invariances of Sec. 4.5 as letters (t:
translation, s: scale, h: handedness; default "tsh") and the dataset.
"""

import ml_collections

from handjax.methods import crossmodal_vae

# Mean EPE [mm], Spurr et al. CVPR 2018 Table 1 (variants, all with T+S+H) and Table 2
# (invariances, best variant per column).
TABLE1 = {"uv_rhd": {1: 17.23, 2: 17.82, 3: 17.14, 4: 17.63},
          "image_rhd": {1: 19.73, 2: 19.99, 3: 20.04, 4: 20.35},
          "image_stb": {1: 8.75, 2: 8.61, 3: 8.56, 4: 9.57}}
TABLE2 = {"uv_rhd": {"tsh": 17.14, "ts": 18.90, "th": 19.69, "t": 21.15},
          "image_rhd": {"tsh": 19.73, "ts": 20.20, "th": 22.34, "t": 22.53},
          "image_stb": {"tsh": 8.56, "ts": 10.16, "th": 9.59, "t": 9.49}}
DATASETS = {"rhd": ("rhd", "both_hands_palm"), "stb": ("stb", "bb")}


def parse_arg(arg: str, default_dataset: str = "rhd") -> tuple[int, str, str]:
  """"<variant>[,<invariances>][,<dataset>]" -> (variant, invariance letters, dataset)."""
  parts = [p.strip() for p in arg.split(",") if p.strip()]
  if not parts or parts[0] not in ("1", "2", "3", "4"):
    raise ValueError(f"spurr config argument must start with the variant 1-4, got {arg!r}.")
  variant, letters, dataset = int(parts[0]), "tsh", default_dataset
  for p in parts[1:]:
    if p in DATASETS:
      dataset = p
    elif p and set(p) <= set("tsh"):
      letters = p
    else:
      raise ValueError(f"unknown part {p!r} in {arg!r}: use invariance letters from 'tsh' or a "
                       f"dataset in {sorted(DATASETS)}.")
  return variant, letters, dataset


def paper_epe(modality: str, dataset: str, variant: int, letters: str) -> str:
  """The paper's mean EPE for the row, or a note that the paper has none."""
  key = f"{modality}_{dataset}"
  if letters == "tsh" and variant in TABLE1.get(key, {}):
    return f"{TABLE1[key][variant]:.2f} mm (Table 1)"
  if letters != "tsh" and letters in TABLE2.get(key, {}):
    return f"{TABLE2[key][letters]:.2f} mm (Table 2, with the column's best variant)"
  return "no number in the paper for this combination"


def make_config(modality: str, arg: str, default_dataset: str = "rhd") -> ml_collections.ConfigDict:
  """The paper's settings (supp. Sec. 7.1) for one table row."""
  variant, letters, dataset = parse_arg(arg, default_dataset)
  config = crossmodal_vae.default_config()
  config.input_modality = modality
  config.variant = variant
  config.invariances.translation = "t" in letters
  config.invariances.scale = "s" in letters
  config.invariances.handedness = "h" in letters
  config.data.dataset, config.data.builder_config = DATASETS[dataset]
  config.data.augment.flip_prob = 0.5  # supp. Sec. 7.1: random flips along the y-axis
  config.data.augment.rotation_deg = 45.0
  config.expected_paper_epe = paper_epe(modality, dataset, variant, letters)
  return config
