"""The rows of `experiments/tables.py`: one `Suite` per RESULTS.md block, one `Row` per config.

A row names a paper config of `experiments/configs/` (`file.py:arg`), its own overrides on top of
`tables.cpu_scale`, and the paper's number for it, copied from the config's docstring or the paper
text (never estimated; "-" when the paper has none for that row).
"""

from __future__ import annotations

import dataclasses
from typing import Any

# (header, row.json key, format spec) of one table column.
Column = tuple[str, str, str]

# The 3D columns every row has (`inference.evaluate_workdir` on the eval split).
DEFAULT_COLUMNS: tuple[Column, ...] = (
    ("mean EPE", "mean_epe_mm", ".1f"),
    ("median EPE", "median_epe_mm", ".1f"),
    ("AUC 20-50", "auc_20_50", ".3f"),
    ("mean-pose baseline", "mean_pose_epe_mm", ".1f"),
)


@dataclasses.dataclass(frozen=True)
class Row:
  """One table row: a paper config (`file.py:arg`), its CPU-scale overrides and the paper's number."""
  name: str
  label: str
  config: str
  overrides: tuple[tuple[str, Any], ...] = ()
  paper: str = ""
  group: str = ""
  same_as: str = ""  # another row of the suite with identical switches: its result is shown
  steps: int = 0  # this row's training steps; 0: the suite's
  # Another row of the suite whose first phase (pre-training) this row shares, switch for switch:
  # that phase is trained once, from the named row's config, and this row continues from its
  # checkpoint (`tables.continue_from_trunk`). Only rows whose switches act after that phase.
  trunk: str = ""


@dataclasses.dataclass(frozen=True)
class Suite:
  title: str
  steps: int
  rows: tuple[Row, ...]
  notes: str = ""
  curves: tuple[tuple[str, str, tuple[str, ...]], ...] = ()  # (figure, title, groups)
  columns: tuple[Column, ...] = DEFAULT_COLUMNS
  # One figure per row group: test and training EPE against steps (rows with eval_every set).
  learning_curves: bool = False


# --- vae: Spurr et al. CVPR 2018, Yang et al. ICCV 2019 ----------------------------------------


def _spurr_rows() -> list[Row]:
  from experiments.configs import spurr_common  # pylint: disable=g-import-not-at-top
  rows = []
  for modality, filename, short in (("image", "spurr_rgb_to_3d.py", "RGB"),
                                    ("uv", "spurr_2d_to_3d.py", "2D"),
                                    ("depth", "spurr_depth_to_3d.py", "depth")):
    for variant in (1, 2, 3, 4):
      paper = spurr_common.TABLE1.get(f"{modality}_rhd", {}).get(variant)
      rows.append(Row(
          name=f"spurr_{modality}_v{variant}", group=f"spurr_{modality}",
          label=f"Spurr {short}->3D, Var. {variant}", config=f"{filename}:{variant}",
          paper=f"{paper:.2f} (RHD)" if paper else "-"))
  # Fig. 8's "not cross-trained" model: each modality only reconstructs itself, so the RGB and 3D
  # encoders need not share a space (its RGB->3D EPE shows what that costs).
  rows.append(Row("spurr_uncoupled", "Spurr RGB->RGB + 3D->3D, no cross pair (Fig. 8 contrast)",
                  "spurr_rgb_to_3d.py:1", (("pairs", "image>image,pose3d>pose3d"),),
                  group="spurr_uncoupled"))
  return rows


# Mean EPE [mm] on RHD, Yang et al. ICCV 2019 Table 1.
_ICCV_PAPER = {"s1": "16.61", "s2_hp": "16.10", "s2_cp": "15.91", "s2_chp": "15.49", "s3": "14.93",
               "s4": "13.14"}


def _iccv_rows() -> list[Row]:
  spec = [("iccv_s1", "S1 R2P", "iccv_s1_r2p.py", "s1"),
          ("iccv_s2_r2hp", "S2 R2HP", "iccv_s2_r2hp.py", "s2_hp"),
          ("iccv_s2_r2cp", "S2 R2CP", "iccv_s2_r2cp.py", "s2_cp"),
          ("iccv_s2_r2chp", "S2 R2CHP", "iccv_s2_r2chp.py", "s2_chp"),
          ("iccv_s3_kl", "S3 RC2CHP, KL alignment", "iccv_s3_rc2chp_kl.py", "s3"),
          ("iccv_s4_poe", "S4 RC2CHP, product of experts", "iccv_s4_rc2chp_poe.py", "s4"),
          ("iccv_s4_moe", "S4 RC2CHP, mixture of experts (beyond the paper)",
           "iccv_s4_rc2chp_moe.py", ""),
          ("iccv_s4_mopoe", "S4 RC2CHP, mixture of products (beyond the paper)",
           "iccv_s4_rc2chp_mopoe.py", "")]
  return [Row(name, label, cfg, paper=f"{_ICCV_PAPER[k]} (RHD, Table 1)" if k else "-",
              group="iccv")
          for name, label, cfg, k in spec]


FRACTIONS = (0.1, 0.3)


def _curve_rows() -> list[Row]:
  """Labelled-fraction points: with the unlabelled rest (the method) vs the labelled m% alone."""
  rows = []
  for m in FRACTIONS:
    pct = int(round(100 * m))
    labelled_only = (("data.train_split", f"train[:{pct}%]"),)
    rows += [
        Row(f"spurr_semi_{pct}_var3", f"Spurr RGB->3D Var. 3, {pct}% labelled + unlabelled images",
            f"spurr_semisupervised.py:{m},3", group="semi_with"),
        Row(f"spurr_semi_{pct}_var1_only", f"Spurr RGB->3D Var. 1 on the {pct}% labelled alone",
            f"spurr_semisupervised.py:{m},1", (("data.labelled_fraction", 1.0),) + labelled_only,
            group="semi_only"),
        Row(f"iccv_weak_{pct}", f"ICCV S4 PoE, {pct}% labelled + RGB/cloud-only rest",
            f"iccv_weak.py:{m}", group="weak_with"),
        Row(f"iccv_weak_{pct}_only", f"ICCV S4 PoE on the {pct}% labelled alone",
            f"iccv_weak.py:{m}", (("data.labelled_fraction", 1.0),) + labelled_only,
            group="weak_only"),
    ]
  return rows


# --- dvae_multistage: Yang dissertation ch. 4 (dVAE), Stergioulas et al. (issue #10) -----------


DVAE_COLUMNS: tuple[Column, ...] = DEFAULT_COLUMNS[:3] + (
    ("dVAE 3DPose EPE", "dvae_pose3d_epe_mm", ".1f"),
    ("dVAE CPose EPE (canonical units)", "dvae_canonical_pose_epe", ".3f"),
    ("dVAE viewpoint error (deg)", "dvae_viewpoint_deg", ".1f"),
) + DEFAULT_COLUMNS[3:] + (
    ("mean-CPose baseline", "dvae_canonical_pose_baseline", ".3f"),
    ("mean-viewpoint baseline (deg)", "dvae_viewpoint_baseline_deg", ".1f"),
)


def _dvae_rows() -> list[Row]:
  # dvae_pose.py: Fig. 4.7 (right) gives the CPose / 3DPose EPE only as a plot; dvae_semi.py:
  # Fig. 4.9 reports "up to 3.5% lower mean EPE than the supervised baseline" over all fractions.
  rows = [Row("dvae_pose", "dVAE, CPose + viewpoint -> 3D pose (Fig. 4.2c)", "dvae_pose.py:rhd",
              paper="- (Fig. 4.7, plot only)", group="dvae")]
  for m in FRACTIONS:
    pct = int(round(100 * m))
    rows.append(Row(f"dvae_semi_{pct}", f"dVAE, {pct}% labelled + image-only rest (Fig. 4.9)",
                    f"dvae_semi.py:{m}", paper="- (Fig. 4.9: up to 3.5% below supervised)",
                    group="dvae_semi"))
    rows.append(Row(f"dvae_weak_{pct}", f"dVAE, {pct}% labelled + viewpoint-only rest (Fig. 4.9)",
                    f"dvae_semi.py:{m},weak", paper="- (Fig. 4.9, weak-label curve)",
                    group="dvae_weak"))
    rows.append(Row(f"dvae_only_{pct}", f"dVAE on the {pct}% labelled alone (Fig. 4.9 baseline)",
                    f"dvae_semi.py:{m}", (("data.labelled_fraction", 1.0),
                                          ("data.train_split", f"train[:{pct}%]")),
                    paper="-", group="dvae_only"))
  # Figs. 4.4-4.6 models, on content groups (`groups_64`); figures by `experiments.synthesize`.
  groups = (("data.builder_config", "groups_64"),)
  rows.append(Row("dvae_synthesis_tag", "dVAE synthesis, [z_3DPose, z_content] + tag image "
                  "(Fig. 4.2a, Alg. 4.1)", "dvae_synthesis.py:tag",
                  groups + (("data.content_image", True),), paper="- (Figs. 4.4-4.6, images)",
                  group="dvae_synthesis"))
  rows.append(Row("dvae_synthesis_u", "dVAE synthesis, [z_3DPose, z_u] (Fig. 4.2b, Alg. 4.2)",
                  "dvae_synthesis.py:u", groups, paper="- (Figs. 4.4-4.6, images)",
                  group="dvae_synthesis"))
  return rows


STERGIOULAS_STEPS = 3000


def _stergioulas_rows() -> list[Row]:
  from experiments.configs import stergioulas_common as sc  # pylint: disable=g-import-not-at-top
  table1 = [("baseline", "Baseline: MLP decoder, one stage"), ("a", "A: injection decoder"),
            ("b", "B: A + disentanglement"), ("c", "C: A + alignment"),
            ("d0", "D0: B + alignment"), ("d1", "D1: D0 + KCS refinement"),
            ("d2", "D2: D0 + GEO refinement"), ("d3", "D3: D0 + alternating KCS/GEO (full)")]
  # 3000 steps, not the suite's 1000: at 1000 the Baseline's RGB->pose decoder had not left the
  # mean pose (loss plateau from step 200 to 1000; 104.2 mm vs the 104.0 mm mean-pose baseline);
  # with a 3000-step schedule it leaves the plateau near step 650 (BUILD_NOTES, Methods II).
  rows = [Row(f"stergioulas_{k}", f"Stergioulas T1 {label}", f"stergioulas_{k}.py:rhd",
              paper=f"{sc.TABLE1[k]:.2f} (RHD, Table 1)", group="stergioulas_t1",
              steps=STERGIOULAS_STEPS)
          for k, label in table1]
  table2 = [("linear_concat", "fully connected decoder, concatenated subspace"),
            ("linear_pose", "fully connected decoder, pose subspace"),
            ("injection_concat", "injection decoder, concatenated subspace"),
            ("injection_pose", "injection decoder, pose subspace (= T1 B)")]
  # The paper lists T1 B twice; its switches are identical (sc.ROWS), so the row is trained once.
  same = {"injection_pose": "stergioulas_b"}
  rows += [Row(f"stergioulas_t2_{k}", f"Stergioulas T2 {label}", f"stergioulas_t2_{k}.py:rhd",
               paper=f"{sc.TABLE2[k]:.2f} (RHD, Table 2)", group="stergioulas_t2",
               same_as=same.get(k, ""), steps=STERGIOULAS_STEPS)
           for k, label in table2]
  return rows


# --- semihand_dualmod: Yang dissertation ch. 6 (SemiHand) and ch. 7 (issue #11) -----------------


DOMAIN_COLUMNS: tuple[Column, ...] = (
    ("target mean EPE", "target_mean_epe_mm", ".1f"),
    ("target median EPE", "median_epe_mm", ".1f"),
    ("target AUC 20-50", "auc_20_50", ".3f"),
    ("target 2D PCK@0.05", "target_pck2d_005", ".3f"),
    ("source 2D PCK@0.05", "source_pck2d_005", ".3f"),
    ("mean-pose baseline", "mean_pose_epe_mm", ".1f"),
)

# Mean EPE [mm] on the STB test set, dissertation Table 6.1 (RHD labelled -> STB), per row.
_SEMIHAND_PAPER = {"source_only": "23.83", "target_supervised": "18.04", "mix_and_train": "7.32",
                   "vc": "21.03", "cc": "20.92", "vc_cc": "19.93", "pseudo": "16.31",
                   "full": "14.60"}
# Mean EPE [mm] on STB, dissertation Table 7.2(a) (components added in turn): pre-training with
# L_c is "+ L_c", fine-tuning without L_f is "+ L_l", the full model "+ L_f". The other ablations
# (attention, correction, contrastive loss off with the fine-tuning on) are not in the table.
_DUALMOD_PAPER = {"pretrain_only": "16.37 (STB, Table 7.2a '+ L_c')",
                  "no_self_distillation": "12.59 (STB, Table 7.2a '+ L_l')",
                  "full": "11.99 (STB, Table 7.2a '+ L_f')"}


def _semihand_rows() -> list[Row]:
  spec = [("source_only", "source only (lower bound)"),
          ("target_supervised", "target supervised (labelled shifted only)"),
          ("mix_and_train", "mix-and-train (labelled source + labelled target)"),
          ("vc", "+ view consistency"), ("cc", "+ cross-modal consistency"),
          ("vc_cc", "+ vc + cc"), ("pseudo", "+ pseudo-labels"),
          ("full", "full: pseudo-labels + vc + cc")]
  # The adaptation rows differ only in what Eq. 6.1 adds after pre-training (Eq. 6.3): they share
  # the full row's pre-training. The full row keeps a checkpoint every 50 adaptation steps for the
  # pseudo-label convergence figure (experiments/convergence.py, Fig. 6.9).
  adapt = {"vc", "cc", "vc_cc", "pseudo", "full"}
  keep = (("checkpoint_every", 50), ("keep_checkpoints", 12))
  return [Row(f"semihand_{k}", f"SemiHand {label}", f"semihand_{k}.py",
              overrides=keep if k == "full" else (),
              paper=f"{_SEMIHAND_PAPER[k]} (RHD->STB test, Table 6.1)", group="semihand",
              trunk="semihand_full" if k in adapt else "")
          for k, label in spec]


def _dualmod_rows() -> list[Row]:
  spec = [("pretrain_only", "pre-training only (Eq. 7.7)"), ("full", "full (Eq. 7.7, then 7.10)"),
          ("no_attention", "w/o attention fusion"), ("no_contrastive", "w/o contrastive loss"),
          ("no_correction", "w/o pose correction"),
          ("no_self_distillation", "w/o self-distillation")]
  # Correction and self-distillation act in fine-tuning only (Eq. 7.10): those rows share the full
  # row's pre-training (Eq. 7.7). Attention and the contrastive loss change pre-training itself.
  shared = {"full", "no_correction", "no_self_distillation"}
  return [Row(f"dualmod_{k}", f"Dual-modality {label}", f"dualmod_{k}.py",
              paper=_DUALMOD_PAPER.get(k, "-"), group="dualmod",
              trunk="dualmod_full" if k in shared else "")
          for k, label in spec]


# --- diagnostics: what limits accuracy at CPU scale (issue 17) ---------------------------------

# Test and training EPE every 500 steps (`loop`'s eval_train_split): the learning curves.
_CURVES = (("eval_every", 500), ("eval_train_split", "train[:400]"))
TRAIN_COLUMNS: tuple[Column, ...] = DEFAULT_COLUMNS + (
    ("train EPE", "train_mean_epe_mm", ".1f"),
    ("EPE / baseline", "epe_over_baseline", ".2f"),
    ("2D error of the projected prediction (px)", "projected_2d_px", ".2f"),
    ("2D error of the keypoint read-out (px)", "keypoint_2d_px", ".2f"),
    ("mean-2D baseline (px)", "mean_uv_2d_px", ".2f"),
)


def _diagnostic_rows() -> list[Row]:
  """One factor at a time against the direct regressor on the natural quickstart scenes.

  Groups are the learning-curve figures; the first row of each group is its reference (the
  "natural" row is every group's reference and is drawn in each figure).
  """
  reg, vae = "regression.py", "quickstart.py"
  spec = [
      # (name, label, config, overrides, group)
      ("natural", "regressor, natural scenes (builder 1.3.0 quickstart)", reg, (), "scene"),
      ("uniform_scenes", "builder 1.2.0 scenes (uniform views, small hands), crop clip 50 px",
       reg, (("data.builder_config", "uniform_quickstart"), ("data.crop_min_side", 50.0)),
       "scene"),
      ("uniform_view", "natural, but views as 1.2.0 (half uniform on SO(3))", reg,
       (("data.builder_config", "diag_natural_uniform_view"),), "scene"),
      ("small_hand", "natural, but hands as small as 1.2.0's (depth 0.25-0.7 m)", reg,
       (("data.builder_config", "diag_natural_small_hand"),), "scene"),
      ("any_roll", "natural, but any in-plane roll", reg,
       (("data.builder_config", "diag_natural_any_roll"),), "scene"),
      ("clean", "natural, grey backgrounds, no blur / noise, fixed light", reg,
       (("data.builder_config", "diag_natural_clean"),), "scene"),
      ("long", "regressor, 6000 steps", reg, (("num_steps", 6000),), "optimisation"),
      ("lr_3e-3", "regressor, Adam 3e-3", reg, (("optimizer.learning_rate", 3e-3),),
       "optimisation"),
      ("euclidean_loss", "regressor, 3D loss the sum of per-joint Euclidean distances (EPE) "
       "instead of squares", reg, (("pose_loss", "euclidean"),), "optimisation"),
      ("batch_16", "regressor, batch 16 for 4000 steps (the same images seen)", reg,
       (("batch_size", 16), ("num_steps", 4000)), "optimisation"),
      ("width_0.5", "regressor, half-width ResNet-18", reg, (("model.resnet_width", 0.5),),
       "capacity"),
      ("flattened_head", "regressor, head reads the 2 x 2 conv5_x map flattened, not pooled", reg,
       (("model.head_features", "flattened"),), "capacity"),
      ("head_512x3", "regressor, head of three hidden layers of 512 (the 2D -> 3D lifter's "
       "width) instead of one of 128", reg, (("model.head_hidden", (512, 512, 512)),), "capacity"),
      ("no_augment", "regressor, no augmentation", reg, (("data.augment.enabled", False),),
       "augmentation"),
      ("strong_augment", "regressor, rotation 60 deg, scale 0.2, shift 0.1", reg,
       (("data.augment.rotation_deg", 60.0), ("data.augment.scale", 0.2),
        ("data.augment.translate", 0.1)), "augmentation"),
      ("train_1000", "regressor, 1000 training examples", reg,
       (("data.train_split", "train[:1000]"),), "data size"),
      ("train_20k", "regressor, 20,000 training examples (`default_64`; its own 2000 test crops)",
       reg, (("data.builder_config", "default_64"),), "data size"),
      # The quickstart scenes rendered at 128 px; crop clip 20 px, the 64 px rows' 10 px share.
      ("res_96", "regressor, 96 px input (scenes rendered at 128 px)", reg,
       (("data.builder_config", "diag_natural_128"), ("data.image_size", 96),
        ("data.crop_min_side", 20.0)), "resolution"),
      ("res_128", "regressor, 128 px input (scenes rendered at 128 px)", reg,
       (("data.builder_config", "diag_natural_128"), ("data.image_size", 128),
        ("data.crop_min_side", 20.0)), "resolution"),
      ("keypoints", "regressor + stride-4 keypoint read-out, 2D loss (weight 10) and heat-map "
       "cross-entropy (weight 1)", reg, (("model.keypoints", True), ("keypoint_weight", 10.0),
                                        ("heatmap_weight", 1.0)), "2D supervision"),
      ("keypoints_2d_only", "keypoint read-out, 2D terms only (3D loss weight 0: read its 2D "
       "columns, its 3D ones are untrained)", reg,
       (("model.keypoints", True), ("keypoint_weight", 10.0), ("heatmap_weight", 1.0),
        ("pose_weight", 0.0)), "2D supervision"),
      ("lift_2d", "ground-truth 2D keypoints -> 3D (Spurr 2D->3D Var. 1): the 2D-only floor",
       "spurr_2d_to_3d.py:1", (), "depth ambiguity"),
      ("vae", "cross-modal VAE (quickstart: beta 0.1, latent 32)", vae, (), "vae"),
      ("vae_warmup", "cross-modal VAE, beta warmed up over 1000 steps", vae,
       (("beta_warmup_steps", 1000),), "vae"),
      ("vae_beta_0.01", "cross-modal VAE, beta 0.01", vae, (("beta", 0.01),), "vae"),
  ]
  rows = []
  for name, label, config, overrides, group in spec:
    steps = dict(overrides).get("num_steps", 0)
    overrides = tuple((k, v) for k, v in overrides if k != "num_steps") + _CURVES
    rows.append(Row(f"diag_{name}", label, config, overrides, group=group, steps=steps))
  return rows


def suites() -> dict[str, Suite]:
  return {
      "vae": Suite(
          title="Methods I: Spurr et al. CVPR 2018 and Yang et al. ICCV 2019",
          steps=1000,
          rows=tuple(_spurr_rows() + _iccv_rows() + _curve_rows()),
          curves=(("labelled_fraction.png", "Labelled-fraction curves",
                   ("semi_with", "semi_only", "weak_with", "weak_only")),)),
      "dvae_multistage": Suite(
          title="Methods II: dVAE (Yang & Yao CVPR 2019) and Stergioulas et al. multi-stage",
          steps=1000,
          rows=tuple(_dvae_rows() + _stergioulas_rows()),
          columns=DVAE_COLUMNS,
          curves=(("labelled_fraction.png", "dVAE labelled-fraction curves (Fig. 4.9)",
                   ("dvae_semi", "dvae_weak", "dvae_only")),),
          notes=("dVAE columns (`dvae.factor_errors` on the test split, every label kept): 3D "
                 "pose EPE from the whole latent, canonical-pose EPE in canonical units, "
                 "viewpoint rotation angle error; their baselines predict the test split's "
                 "mean canonical pose and its chordal mean rotation for every example (a uniformly "
                 "random rotation is off by 126.5 deg on average). Stergioulas stage lengths are scaled to the "
                 "budget in the proportions of `multistage.default_config` (the paper trains "
                 "each stage to convergence). The papers' numbers are on RHD at 256 px.")),
      "diagnostics": Suite(
          title="Diagnostics: what limits accuracy at CPU scale",
          steps=2000,
          rows=tuple(_diagnostic_rows()),
          columns=TRAIN_COLUMNS,
          learning_curves=True,
          notes=("One factor at a time against the direct regressor (`regression.py`: "
                 "quarter-width ResNet-18, Adam 1e-3 with cosine decay, batch 32) on the "
                 "natural quickstart scenes; `diag_*` builder configs undo one property of "
                 "those scenes. train EPE: the first 400 training examples, unaugmented. "
                 "Learning curves (test solid, training dashed) per group below.")),
      "semihand_dualmod": Suite(
          title="Methods III: SemiHand (dissertation ch. 6) and the dual-modality network (ch. 7)",
          steps=1000,
          rows=tuple(_semihand_rows() + _dualmod_rows()),
          columns=DOMAIN_COLUMNS,
          notes=("Source domain `synthetic_hands/quickstart` (labelled), target "
                 "`synthetic_hands/shifted_quickstart` (the renderer's shifted style, 64 px, "
                 "4000 / 400, unlabelled unless the row says so); every column is on the target "
                 "test split except the source one: the source domain's test split, for rows "
                 "trained on both domains (it shows the domain gap). 2D PCK@0.05: fraction of "
                 "visible joints within 0.05 x 64 px = 3.2 px. The papers' numbers are RHD -> STB "
                 "transfer (real images).")),
  }
