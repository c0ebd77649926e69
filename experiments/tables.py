r"""Trains the paper-table rows at CPU scale on `synthetic_hands` and writes them into RESULTS.md.

    python -m experiments.tables --suite=vae [--rows=spurr_image_v1,iccv_s4_poe] \
        [--workdir=workdirs/tables] [--results=RESULTS.md]

Every row is a paper config of `experiments/configs/` (the file and argument are in the table)
with the overrides of `cpu_scale` (below) and the row's own: the `quickstart` builder config of
`synthetic_hands` (4000 train / 400 test, 64 px), networks a quarter of the paper's width, Adam
1e-3 with warm-up and cosine decay, and `--steps` steps (default: the suite's). The scale is chosen so
that a whole suite runs on a 2-core CPU in about 1.5 hours (2-4 minutes a row; 500 steps
were too few: every Spurr row still predicted the mean pose); it is far from the papers' budgets
(100k-300k steps at 256 px), so the rows measure orderings at a small budget, not the papers'
numbers. A row whose workdir already holds a finished result (same steps) is not retrained; the
tables are rewritten from all finished rows, between the suite's markers in RESULTS.md.

Suites (rows in `experiments/table_suites.py`): `vae` (Spurr, ICCV 2019), `dvae_multistage` (dVAE,
Stergioulas ablations; multi-phase schedules keep their proportions of `--steps`) and
`semihand_dualmod` (SemiHand, dual-modality; source `quickstart`, target `shifted_quickstart`).
Besides the 3D EPE of `inference.evaluate_workdir`, `extra_metrics` stores per-method scalars: the
dVAE's factor errors, and the domain-adaptation rows' 2D PCK@0.05 and 3D EPE on the target test
split; a suite's `columns` pick what its table shows.

Rows whose switches act only after pre-training (SemiHand adaptation, dual-modality fine-tuning
ablations) name a `trunk` row: its pre-training is trained once, in `<workdir>/_trunks/<trunk>`,
and each of them continues from that checkpoint, which is the same run as from scratch
(parameters, optimiser states and data position are restored; the slow tests compare the two bit
for bit) and gives every ablation the same pre-trained network.

Each row is reproducible alone: `python -m experiments.tables --suite=<suite> --rows=<name>`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
import time
from typing import Any, Callable, Sequence

from absl import app
from absl import flags
import ml_collections
import numpy as np

from experiments import cli
from experiments import table_suites
from experiments.table_suites import Row  # pylint: disable=unused-import (re-exported)
from experiments.table_suites import Suite



def define_flags() -> None:
  """The binary's flags, defined only when it runs (or a test calls this), so that importing this
  module for its helpers (as `experiments.convergence` does) adds no global --workdir."""
  if "suite" in flags.FLAGS:
    return
  flags.DEFINE_string("suite", "vae", "Suite of rows to train: one of SUITES.")
  flags.DEFINE_list("rows", [], "Only these rows of the suite (default: all).")
  flags.DEFINE_string("workdir", "workdirs/tables", "Parent of one workdir per row.")
  flags.DEFINE_string("results", "RESULTS.md", "Markdown file to update.")
  flags.DEFINE_integer("steps", None, "Training steps per row (default: the suite's).")
  flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds' default).")
  flags.DEFINE_bool("list", False, "Print the suite's rows and exit.")
  flags.DEFINE_bool("refresh_metrics", False,
                    "Evaluate finished rows again (new metrics), keeping their times.")


CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


# --- Configs --------------------------------------------------------------------------------


def load_config(spec: str) -> ml_collections.ConfigDict:
  """`"iccv_s1_r2p.py:vc"` -> that file's `get_config("vc")` (argument optional)."""
  filename, _, arg = spec.partition(":")
  path = os.path.join(CONFIG_DIR, filename)
  if not os.path.exists(path):
    raise FileNotFoundError(f"config file {path} (row config {spec!r}) does not exist")
  module_spec = importlib.util.spec_from_file_location(f"_tables_{filename[:-3]}", path)
  module = importlib.util.module_from_spec(module_spec)
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


def set_path(config: ml_collections.ConfigDict, dotted: str, value: Any) -> None:
  """`config.a.b = value` for `dotted = "a.b"`; an unknown field is an error (typos)."""
  *parents, leaf = dotted.split(".")
  node = config
  for p in parents:
    node = node[p]
  if leaf not in node:
    raise KeyError(f"override {dotted!r}: the config has no field {leaf!r}")
  with node.ignore_type():
    node[leaf] = value


def scale_length(length: int, total: int, steps: int) -> int:
  """`length` of `total` paper steps as a part of `steps`: 0 stays 0, all stays all, and a proper
  part stays proper (in [1, steps - 1]), so no phase of a row vanishes or swallows the others."""
  if length <= 0:
    return 0
  if length >= total:
    return steps
  return min(max(round(steps * length / total), 1), steps - 1)


def scale_stages(lengths: dict[str, int], steps: int) -> dict[str, int]:
  """Stage lengths summing to `steps` in the proportions of `lengths` (0 stays 0).

  Every enabled stage gets one step first and the rest is shared in proportion with
  largest-remainder rounding, so the sum is exact and no stage the row enables is dropped.
  """
  on = {k: int(v) for k, v in lengths.items() if int(v) > 0}
  if not on:
    raise ValueError(f"no stage is enabled: {dict(lengths)}")
  if steps < len(on):
    raise ValueError(f"--steps={steps} is fewer than the {len(on)} enabled stages {sorted(on)}")
  rest, total = steps - len(on), sum(on.values())
  exact = {k: rest * v / total for k, v in on.items()}
  out = {k: 1 + int(x) for k, x in exact.items()}
  by_remainder = sorted(on, key=lambda k: exact[k] - int(exact[k]), reverse=True)
  for k in by_remainder[:steps - sum(out.values())]:
    out[k] += 1
  return {k: out.get(k, 0) for k in lengths}


def _scale_optimizer(opt: ml_collections.ConfigDict, learning_rate: float) -> None:
  opt.learning_rate = learning_rate
  opt.warmup_steps = 50
  opt.decay = "cosine"
  opt.lr_drop_steps = ()


def _scale_domains(c: ml_collections.ConfigDict, shifted: bool) -> None:
  """SemiHand / dual-modality data: quickstart-sized source (default style) and target (shifted)."""
  d = c.data
  if shifted:  # Table 6.1 "target supervised": the labelled shifted domain alone.
    d.builder_config = "shifted_quickstart"
  if "target" in d:
    d.target.builder_config = "shifted_quickstart"


def cpu_scale(config: ml_collections.ConfigDict, steps: int) -> ml_collections.ConfigDict:
  """The shared CPU budget: quickstart data at 64 px, quarter-width networks, `steps` steps.

  Phase lengths (dVAE T1, multistage stages, SemiHand / dual-modality pre-training) keep the paper
  config's proportions of `steps`; the switches that tell a row apart are left alone.
  """
  c = config
  paper_steps = int(c.num_steps)
  shifted = str(c.data.get("builder_config") or "").startswith("shifted")
  paper_lr = float(c.optimizer.learning_rate)
  paper_px = int(c.data.image_size)
  c.num_steps = steps
  c.batch_size = 32
  c.log_every = 100
  c.checkpoint_every = steps
  c.eval_every = -1  # run_row evaluates once, with evaluate_workdir, after training
  c.eval_train_split = ""  # rows with learning curves set it (and eval_every)
  c.keep_checkpoints = 1
  _scale_optimizer(c.optimizer, 1e-3)
  d = c.data
  d.dataset = "synthetic_hands"
  d.builder_config = "quickstart"
  d.manual_dir = None
  d.image_size = 64
  # RHD's crop clip [50, 500] px is for 320 px frames; at 64 px the same share of the frame is
  # 10 px (50 clipped every quickstart crop, so hands filled a third of the network input).
  d.crop_min_side = 10.0
  d.heatmap_size = 16
  d.heatmap_sigma = 1.0
  d.read_threads = 2
  d.num_workers = 0
  m = c.model
  if "resnet_width" in m:
    m.resnet_width = 0.25
  if c.method == "crossmodal_vae":
    c.latent_dim = 32
    c.beta = 0.1  # as the quickstart; Alg. 1's beta = 1 collapses the latent at this budget
    m.mlp_hidden = (128, 128)
    m.deconv_base_channels = 64
    m.deconv_channels = (32, 16, 8)
  elif c.method == "aligned_latents":
    # Sec. 4.1's rotations in [-pi, pi] make the mean training pose ~0 and, in 1000-2000 steps,
    # the network stays there (S1: 57.1 mm against a 52.0 mm baseline, loss flat from step 200);
    # with +-30 degrees S1 learns (38.4 mm at 2000 steps). BUILD_NOTES.md, issue 17.
    d.augment.rotation_deg = min(float(d.augment.rotation_deg), 30.0)
    d.num_points = 64  # Sec. 5: 256; the EMD of three decoded clouds dominates the CPU step
    c.emd.num_iterations = 60  # 100 in the paper config; the annealing needs 44 at decay 0.9
    m.head_hidden = (128,)
    m.pointset_width = 128
    m.pose_hidden = (128, 128, 128)
    m.folding_hidden = 128
    m.deconv_base_channels = 64
    m.deconv_channels = (32, 16)
    c.beta_steps = steps
  elif c.method == "dvae":
    # Sec. 4.4.4's rotations in [-pi, pi] as for ICCV above: dvae_pose 68.2 mm at 1000 steps,
    # 61.2 with +-30 degrees (against 82.1). BUILD_NOTES.md, issue 17 (session 6).
    d.augment.rotation_deg = min(float(d.augment.rotation_deg), 30.0)
    # Latent blocks (32 + 32) and the betas / lambdas stay: they define the factorisation.
    m.mlp_hidden = (128,) * 5  # six layers of 512 in Sec. 4.4.1: same depth, quarter width
    m.deconv_base_channels = 64  # image decoders (synthesis rows only)
    m.deconv_channels = (32, 16, 8, 4)
    c.disentangle_steps = scale_length(int(c.disentangle_steps), paper_steps, steps)
    if c.whole_target == "image":
      # The image term is a sum over pixels, (64 / paper_px)^2 of the paper's at 64 px: beta and
      # beta' shrink by that factor to keep the KL / reconstruction balance of Sec. 4.4.1 (beta =
      # 100 at 64 px collapsed the posterior: KL 0.02 nats, every decoded image the mean image).
      c.beta = float(c.beta) * (d.image_size / paper_px) ** 2
      c.embed_beta = float(c.embed_beta) * (d.image_size / paper_px) ** 2
  elif c.method == "multistage":
    # Latent sizes (128 RGB = 64 pose + 64 context) stay: the discriminator splits at them.
    m.decoder_hidden = (128,) * 5
    m.pose_encoder_hidden = (128,) * 5
    m.mapper_hidden = (128, 128)
    m.discriminator_hidden = (64, 64)
    c.stages.update(scale_stages(c.stages.to_dict(), steps))
    # The paper trains Dis with the same Adam as the rest (Sec. 4.2).
    _scale_optimizer(c.discriminator_optimizer, 1e-3)
  elif c.method == "semihand":
    m.features = 32  # 128 in Sec. 6.4; two stacks of four levels stay
    # A strided stem (32 px maps; uv is still read out in image pixels): the full-resolution
    # hourglass ran 0.5 pre-training / 0.26 adaptation steps/s on the 2-core CPU, 4x slower.
    m.stem_stride = 2
    c.semihand.pretrain_steps = scale_length(int(c.semihand.pretrain_steps), paper_steps, steps)
    # Algorithm 6.1's K = 10 rounds are epochs over X_U in Sec. 6.4; 1000 CPU steps adapt ~1.3
    # epochs of the 4000 target examples, and each round begins with a labelling pass over all of
    # them (two forward passes each). Two rounds: the initial labels and one update of Eq. 6.7.
    c.semihand.pseudo_label_rounds = min(int(c.semihand.pseudo_label_rounds), 2)
    _scale_domains(c, shifted)
  elif c.method == "dual_modality":
    m.width = 0.25
    m.map_size = 16  # the config's 128 px in, 32 px out: a quarter of the input side
    m.decoder_channels = (32, 16)
    m.base_channels = 64
    m.proj_dim = 32
    c.dualmod.pretrain_steps = scale_length(int(c.dualmod.pretrain_steps), paper_steps, steps)
    if "finetune_optimizer" in c:  # Sec. 7.4 fine-tunes at a tenth of the pre-training rate.
      ratio = float(c.finetune_optimizer.learning_rate) / paper_lr
      _scale_optimizer(c.finetune_optimizer, 1e-3 * ratio)
    _scale_domains(c, shifted)
  return c


def row_config(row: Row, steps: int, data_dir: str | None) -> ml_collections.ConfigDict:
  config = cpu_scale(load_config(row.config), steps)
  for dotted, value in row.overrides:
    set_path(config, dotted, value)
  if data_dir:
    config.data.data_dir = data_dir
  return config


SUITES = table_suites.suites()


# --- Per-method metrics beyond the 3D EPE -----------------------------------------------------

PCK_2D_FRACTION = 0.05  # 2D PCK threshold as a fraction of the image side (64 px -> 3.2 px)


def pck_2d_at(uv_pred: np.ndarray, uv_gt: np.ndarray, visible: np.ndarray | None,
              image_size: int, fraction: float = PCK_2D_FRACTION) -> float:
  """Fraction of visible joints whose 2D error is at most ``fraction x image_size`` pixels.

  PCK (dissertation Eq. 2.8) at one threshold relative to the image side, the usual 2D-keypoint
  summary of domain-adaptation tables; NaN when no joint is visible.
  """
  from handjax.eval import metrics  # pylint: disable=g-import-not-at-top
  errors = metrics.joint_errors(uv_pred, uv_gt)
  return float(metrics.pck_curve(errors, [fraction * image_size], visible)[0])


def dvae_factor_metrics(pred: dict[str, np.ndarray], labels: dict[str, np.ndarray]
                        ) -> dict[str, float]:
  """`dvae.factor_errors` as row.json scalars: 3D pose EPE in mm, canonical-pose EPE (canonical
  units), viewpoint angle error in degrees; joints weighted by ``labels["visible"]`` if given.

  With them, the same errors of the constant predictions a model must beat: the labels' mean
  canonical pose, and their chordal mean rotation (the rotation nearest the mean matrix).
  """
  from handjax.methods import dvae  # pylint: disable=g-import-not-at-top
  visible = labels.get("visible")
  batch = {k: v for k, v in labels.items() if k != "visible"}
  errors = {k: float(v) for k, v in dvae.factor_errors(pred, batch, visible).items()}
  constant = {}
  if "canonical_pose" in batch:
    mean = np.mean(batch["canonical_pose"], axis=0, keepdims=True)
    constant["canonical_pose"] = np.broadcast_to(mean, np.shape(batch["canonical_pose"]))
  if "viewpoint" in batch:
    mean = np.asarray(dvae.nearest_rotation(np.mean(batch["viewpoint"], axis=0)))
    constant["viewpoint"] = np.broadcast_to(mean, np.shape(batch["viewpoint"]))
  baseline = {k: float(v) for k, v in dvae.factor_errors(constant, batch, visible).items()}
  out = {}
  if "epe/pose3d" in errors:
    out["dvae_pose3d_epe_mm"] = 1000.0 * errors["epe/pose3d"]
  if "epe/canonical_pose" in errors:
    out["dvae_canonical_pose_epe"] = errors["epe/canonical_pose"]
  if "epe/canonical_pose" in baseline:
    out["dvae_canonical_pose_baseline"] = baseline["epe/canonical_pose"]
  if "angle_deg/viewpoint" in errors:
    out["dvae_viewpoint_deg"] = errors["angle_deg/viewpoint"]
  if "angle_deg/viewpoint" in baseline:
    out["dvae_viewpoint_baseline_deg"] = baseline["angle_deg/viewpoint"]
  return out


def jitted_predict(method: Any, keys: Sequence[str]) -> Callable[..., dict[str, Any]]:
  """jit of ``method.predict`` keeping ``keys``: (params, model_state, batch) -> outputs."""
  import jax  # pylint: disable=g-import-not-at-top
  keys = tuple(keys)

  @jax.jit
  def predict(params, model_state, batch):
    out = method.predict(params, model_state, batch)
    return {k: out[k] for k in keys}

  return predict


def predict_outputs(restored: Any, batches: Sequence[dict[str, np.ndarray]],
                    keys: Sequence[str],
                    predict: Callable[..., dict[str, Any]] | None = None) -> dict[str, np.ndarray]:
  """``method.predict``'s ``keys`` over ``batches`` on the restored mesh (one process), as
  `evaluation.predict_split` runs it for ``pose3d`` alone: batches padded to the per-process batch
  size, padding rows dropped. ``predict``: a `jitted_predict` of the same method and keys to reuse
  (its compiled code serves every checkpoint of one run)."""
  from handjax.train import evaluation  # pylint: disable=g-import-not-at-top
  from handjax.train import sharding as sharding_lib  # pylint: disable=g-import-not-at-top

  size = sharding_lib.local_batch_size(restored.config.batch_size, restored.mesh)
  predict = predict or jitted_predict(restored.method, keys)
  collected: dict[str, list[np.ndarray]] = {k: [] for k in keys}
  for batch in batches:
    local = evaluation._pad(dict(batch), size)  # pylint: disable=protected-access
    valid = local.pop(evaluation.VALID_KEY)
    out = sharding_lib.to_host(predict(restored.state.params, restored.state.model_state,
                                       sharding_lib.global_batch(local, restored.mesh)))
    for k in keys:
      collected[k].append(np.asarray(out[k])[valid])
  return {k: np.concatenate(v) for k, v in collected.items()}


def _labels(batches: Sequence[dict[str, np.ndarray]], keys: Sequence[str]) -> dict[str, np.ndarray]:
  return {k: np.concatenate([np.asarray(b[k]) for b in batches]) for k in keys if k in batches[0]}


def _dvae_extras(restored: Any, batches: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
  from handjax.methods import dvae  # pylint: disable=g-import-not-at-top
  # The factors this model decodes (a synthesis model predicts pose3d alone).
  keys = tuple(k for k in ("pose3d", "canonical_pose", "viewpoint")
               if k in dvae.targets_of(restored.config))
  return dvae_factor_metrics(predict_outputs(restored, batches, keys),
                             _labels(batches, keys + ("visible",)))


def _domain_extras(restored: Any, batches: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
  """2D PCK@0.05 and 3D mean EPE on the target-domain test split (`extra_metrics`)."""
  from handjax.eval import metrics  # pylint: disable=g-import-not-at-top
  from handjax.train import evaluation  # pylint: disable=g-import-not-at-top
  from handjax.train import sharding as sharding_lib  # pylint: disable=g-import-not-at-top
  config = restored.config
  out3d = evaluation.predict_split(
      restored.method, restored.state.params, restored.state.model_state, batches, restored.mesh,
      sharding_lib.local_batch_size(config.batch_size, restored.mesh),
      root_joint=evaluation.root_joint(config))
  epe = metrics.mean_epe(metrics.joint_errors(out3d["pred_pose3d"], out3d["pose3d"]),
                         out3d["visible"])
  predict_uv = jitted_predict(restored.method, ("uv",))  # compiled once for both domains
  out = {"target_mean_epe_mm": 1000.0 * epe,
         "target_pck2d_005": _pck_2d(restored, batches, predict_uv)}
  if "target" in config.data:  # the source domain's own test split: how large the domain gap is
    out["source_pck2d_005"] = _pck_2d(restored, _test_batches(source_data_config(config)),
                                      predict_uv)
  return out


def projected_2d_errors(pred_rel: np.ndarray, labels: dict[str, np.ndarray],
                        root_joint: int, image_size: int) -> dict[str, float]:
  """2D error of a root-relative 3D prediction placed at the true root and projected with K.

  What a 3D prediction says about the image: uv_hat = pi(K (pred + P_root)). Returns the mean
  pixel error over visible joints (``projected_2d_px``) and 2D PCK@0.05 of the image side
  (``projected_pck2d_005``), comparable with the 2.5D methods' ``target_pck2d_005``.
  """
  from handjax.hand import viewpoint  # pylint: disable=g-import-not-at-top
  gt = labels["pose3d"]
  cam = pred_rel - pred_rel[:, root_joint:root_joint + 1] + gt[:, root_joint:root_joint + 1]
  uv = np.asarray(viewpoint.project(cam, labels["K"]))
  visible = labels.get("visible", np.ones(uv.shape[:2], bool)).astype(bool)
  err = np.linalg.norm(uv - labels["uv"], axis=-1)
  return {"projected_2d_px": float(err[visible].mean()),
          "projected_pck2d_005": pck_2d_at(uv, labels["uv"], visible, image_size)}


def mean_2d_baseline(labels: dict[str, np.ndarray], image_size: int) -> dict[str, float]:
  """The 2D counterpart of the mean-pose baseline: the split's mean keypoints for every crop.

  Returns its mean pixel error over visible joints (``mean_uv_2d_px``) and its 2D PCK@0.05
  (``mean_uv_pck2d_005``): a 2D column near these has learned no localisation.
  """
  visible = labels.get("visible", np.ones(labels["uv"].shape[:2], bool)).astype(bool)
  mean = np.broadcast_to(labels["uv"].mean(axis=0), labels["uv"].shape)
  err = np.linalg.norm(mean - labels["uv"], axis=-1)
  return {"mean_uv_2d_px": float(err[visible].mean()),
          "mean_uv_pck2d_005": pck_2d_at(mean, labels["uv"], visible, image_size)}


def _projected_extras(restored: Any, batches: Sequence[dict[str, np.ndarray]]) -> dict[str, float]:
  """RGB -> 3D models: `projected_2d_errors` on the test split (how much is 2D localisation),
  the split's `mean_2d_baseline`, and the 2D error of a keypoint read-out where the method
  predicts ``uv`` (``keypoint_2d_px``, ``keypoint_pck2d_005``)."""
  config = restored.config
  if config.get("input_modality", "image") != "image":
    return {}
  size = int(config.data.image_size)
  keys = ("pose3d", "uv") if config.get("model", {}).get("keypoints", False) else ("pose3d",)
  pred = predict_outputs(restored, batches, keys)
  labels = _labels(batches, ("pose3d", "uv", "K", "visible"))
  out = {**projected_2d_errors(pred["pose3d"], labels, int(config.data.root_joint), size),
         **mean_2d_baseline(labels, size)}
  if "uv" in pred:
    visible = labels.get("visible", np.ones(labels["uv"].shape[:2], bool)).astype(bool)
    err = np.linalg.norm(pred["uv"] - labels["uv"], axis=-1)
    out["keypoint_2d_px"] = float(err[visible].mean())
    out["keypoint_pck2d_005"] = pck_2d_at(pred["uv"], labels["uv"], visible, size)
  return out


def _pck_2d(restored: Any, batches: Sequence[dict[str, np.ndarray]],
            predict_uv: Callable[..., dict[str, Any]]) -> float:
  uv = predict_outputs(restored, batches, ("uv",), predict_uv)["uv"]
  labels = _labels(batches, ("uv", "visible"))
  return pck_2d_at(uv, labels["uv"], labels.get("visible"), int(restored.config.data.image_size))


def source_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A domain config reading only its (labelled) source domain: ``data.target`` dropped."""
  out = ml_collections.ConfigDict(config.to_dict())
  del out.data["target"]
  out.data.source = "pipeline"
  out.data.labelled_fraction = 1.0
  return out


def _test_batches(config: ml_collections.ConfigDict, split: str = "test"
                  ) -> list[dict[str, np.ndarray]]:
  import jax  # pylint: disable=g-import-not-at-top
  from handjax.train import loop  # pylint: disable=g-import-not-at-top
  factory = loop.resolve_dataset_factory(config)
  return [dict(b) for b in factory(config, split, process_index=jax.process_index(),
                                   process_count=jax.process_count(), seed=config.seed)]


EXTRAS = {"dvae": _dvae_extras, "semihand": _domain_extras, "dual_modality": _domain_extras,
          "regression": _projected_extras, "crossmodal_vae": _projected_extras}


def eval_data_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config`` with every label kept on the eval split: the pipeline marks only the first
  ``labelled_fraction`` of *every* split labelled, which would score a semi-supervised row on a
  few test examples. Domain configs already evaluate on the target (shifted) pipeline."""
  out = ml_collections.ConfigDict(config.to_dict())
  out.data.labelled_fraction = 1.0
  return out


def extra_metrics(config: ml_collections.ConfigDict, workdir: str,
                  split: str = "test") -> dict[str, float]:
  """Method-specific scalars of the trained row in ``workdir`` (`EXTRAS`; {} for other methods).

  dvae: `dvae.factor_errors` (3D pose, canonical pose, viewpoint); semihand / dual_modality: 2D
  PCK@0.05 and 3D mean EPE on the target-domain test split.
  """
  fn = EXTRAS.get(config.method)
  if fn is None:
    return {}
  from handjax.train import inference  # pylint: disable=g-import-not-at-top
  restored = inference.restore_latest(workdir)
  return fn(restored, _test_batches(eval_data_config(restored.config), split))


# --- Running --------------------------------------------------------------------------------


def command(suite: str, row: Row) -> str:
  return f"python -m experiments.tables --suite={suite} --rows={row.same_as or row.name}"


def learning_curve(workdir: str) -> dict[str, list[tuple[int, float]]]:
  """(step, mean EPE mm) of the row's periodic evaluations: ``test`` and, with
  ``eval_train_split``, ``train`` (from ``metrics.jsonl``)."""
  curves: dict[str, list[tuple[int, float]]] = {"test": [], "train": []}
  path = os.path.join(workdir, "metrics.jsonl")
  if not os.path.exists(path):
    return curves
  with open(path) as f:
    for line in f:
      record = json.loads(line)
      for name, key in (("test", "eval/mean_epe_mm"), ("train", "train_eval/mean_epe_mm")):
        if key in record:
          curves[name].append((int(record["step"]), float(record[key])))
  return curves


def _evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  from handjax.train import inference  # pylint: disable=g-import-not-at-top
  summary = inference.evaluate_workdir(workdir, "test", num_skeletons=8)
  summary.update(extra_metrics(config, workdir))
  train = learning_curve(workdir)["train"]
  if train:
    summary["train_mean_epe_mm"] = train[-1][1]
  if summary.get("mean_pose_epe_mm"):
    summary["epe_over_baseline"] = summary["mean_epe_mm"] / summary["mean_pose_epe_mm"]
  return {k: v for k, v in summary.items() if isinstance(v, (int, float, str))}


TRUNKS = "_trunks"  # <root>/_trunks/<row>: first phases shared by several rows (`Row.trunk`)


def first_phase_end(config: ml_collections.ConfigDict) -> int:
  """The step at which ``config``'s first training phase (its pre-training) stops.

  Raises:
    ValueError: the first phase runs to the end of training, so no later phase continues from it.
  """
  from handjax.train import method as method_lib  # pylint: disable=g-import-not-at-top
  stop = method_lib.get_method(config).phases[0].stop
  if stop is None or not 0 < stop < int(config.num_steps):
    raise ValueError(f"{config.method}: the first phase stops at {stop} of {config.num_steps} "
                     "steps; a row can only share a first phase that a later phase follows")
  return int(stop)


def continue_from_trunk(config: ml_collections.ConfigDict, trunk: Row, root: str, steps: int,
                        data_dir: str | None, workdir: str) -> float:
  """Seeds ``workdir`` with the checkpoint that ends ``trunk``'s first phase; returns its time [s].

  The trunk is ``trunk``'s row config trained up to the end of its first phase, once, in
  ``<root>/_trunks/<trunk.name>`` (a `trunk.json` marks it finished for ``steps``). A row whose
  switches act only after that phase (``config``) resumes from that checkpoint (parameters,
  optimiser states, data position) and so is the run it would have been from scratch: the slow
  test in tests/test_tables.py compares the two.
  """
  from handjax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from handjax.train import loop  # pylint: disable=g-import-not-at-top
  trunk_config = row_config(trunk, steps, data_dir)
  end, own_end = first_phase_end(trunk_config), first_phase_end(config)
  if own_end != end:
    raise ValueError(f"Row.trunk={trunk.name!r}: its first phase ends at step {end}, this row's at "
                     f"{own_end}")
  trunk_dir = os.path.join(root, TRUNKS, trunk.name)
  record_path = os.path.join(trunk_dir, "trunk.json")
  record = {}
  if os.path.exists(record_path):
    with open(record_path) as f:
      record = json.load(f)
  if (record.get("steps"), record.get("end")) != (steps, end):
    shutil.rmtree(trunk_dir, ignore_errors=True)  # another budget's trunk, or an unfinished one
    trunk_config.checkpoint_every = end
    trunk_config.keep_checkpoints = 1
    start = time.perf_counter()
    loop.train_and_evaluate(trunk_config, trunk_dir, stop_at_step=end)
    record = {"trunk": trunk.name, "steps": steps, "end": end,
              "wall_s": time.perf_counter() - start}
    with open(record_path, "w") as f:
      json.dump(record, f, indent=1)
  target = os.path.join(workdir, checkpoint_lib.CHECKPOINT_DIR)
  if not os.path.isdir(target):  # else: a continuation that was interrupted resumes as it is
    os.makedirs(workdir, exist_ok=True)
    shutil.rmtree(target + ".tmp", ignore_errors=True)  # a copy that was interrupted
    shutil.copytree(os.path.join(trunk_dir, checkpoint_lib.CHECKPOINT_DIR), target + ".tmp")
    os.replace(target + ".tmp", target)
  return float(record["wall_s"])


def run_row(row: Row, root: str, steps: int, data_dir: str | None,
            refresh: bool = False, trunk: Row | None = None) -> dict[str, Any]:
  """Trains and evaluates one row unless its workdir holds a finished result for `steps`.

  ``refresh``: a finished row is evaluated again from its checkpoint (metrics added since it ran),
  keeping its training time. ``trunk``: the row named by ``row.trunk``, whose first phase this row
  continues from (`continue_from_trunk`); the row's ``wall_s`` then includes the trunk's time.
  """
  from handjax.train import loop  # pylint: disable=g-import-not-at-top

  workdir = os.path.join(root, row.name)
  result_path = os.path.join(workdir, "row.json")
  done = None
  if os.path.exists(result_path):
    with open(result_path) as f:
      done = json.load(f)
    if done.get("steps") != steps:
      done = None
    elif not refresh:
      return done
  config = row_config(row, steps, data_dir)
  if done is not None:
    result = {**done, **_evaluate(config, workdir)}
  else:
    trunk_s = 0.0
    if trunk is not None:
      trunk_s = continue_from_trunk(config, trunk, root, steps, data_dir, workdir)
    start = time.perf_counter()
    loop.train_and_evaluate(config, workdir)
    evaluated = _evaluate(config, workdir)
    result = {"row": row.name, "steps": steps,
              "wall_s": trunk_s + time.perf_counter() - start, **evaluated}
    if trunk is not None:
      result.update(trunk=trunk.name, trunk_wall_s=trunk_s)
  tmp = result_path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, result_path)  # A row is finished only once its result is complete.
  return result


def row_steps(row: Row, suite: Suite, override: int | None = None) -> int:
  """Training steps of ``row``: ``--steps`` if given, else the row's own budget or the suite's."""
  return override or row.steps or suite.steps


def _finished(root: str, rows: Sequence[Row],
              steps: int | Callable[[Row], int]) -> dict[str, dict[str, Any]]:
  """Finished results (trained for ``steps``, a number or one per row) by row name; a `same_as`
  row shows the result of the row it names."""
  budget = steps if callable(steps) else lambda row: steps
  out = {}
  for row in rows:
    path = os.path.join(root, row.same_as or row.name, "row.json")
    if os.path.exists(path):
      with open(path) as f:
        result = json.load(f)
      if result.get("steps") == budget(row):
        out[row.name] = result
  return out


def _fmt(x: Any, spec: str) -> str:
  return "-" if x is None else format(x, spec)


# Overrides that only record learning curves (the suite's notes say so), not shown per row.
CURVE_FIELDS = ("eval_every", "eval_train_split")


def previous_lines(path: str, suite_name: str, suite: Suite) -> dict[str, list[str]]:
  """The suite's table lines already in ``path``, by row name: the row's own line (its label and
  its exact command), then any `--steps` variants of it (``--rows=<name> --steps=N``), so that a
  run of some rows in a fresh workdir keeps the lines of the rows it did not run."""
  if not os.path.exists(path):
    return {}
  text = open(path).read()
  begin, end = f"<!-- tables:{suite_name}:begin -->", f"<!-- tables:{suite_name}:end -->"
  if begin not in text or end not in text:
    return {}
  lines = [l for l in text[text.index(begin):text.index(end)].splitlines() if l.startswith("| ")]
  out = {}
  for row in suite.rows:
    run = command(suite_name, row)
    own = [l for l in lines if l.startswith(f"| {row.label} |") and f"| `{run}`" in l]
    variants = [] if row.same_as else [l for l in lines if f"| `{run} --steps=" in l]
    if own or variants:
      out[row.name] = own[:1] + variants
  return out


def render_table(suite_name: str, suite: Suite, results: dict[str, dict[str, Any]],
                 previous: dict[str, list[str]] | None = None) -> str:
  """The suite's markdown table: finished rows from ``results``; a row without one keeps its line
  from ``previous`` (`previous_lines`) if it has one, else reads "not run"; `--steps` variant lines
  of ``previous`` follow their row."""
  previous = previous or {}
  headers = [h for h, _, _ in suite.columns]
  lines = ["| row | config | " + " | ".join(headers) + " | paper | train+eval time | command |",
           "|---" * (len(headers) + 5) + "|"]
  for row in suite.rows:
    r = results.get(row.name)
    if r is None:
      cells, time_cell = ["not run"] * len(headers), "not run"
    else:
      cells = [_fmt(r.get(key), spec) for _, key, spec in suite.columns]
      time_cell = f"{r['wall_s'] / 60:.1f} min"
      if r.get("steps") != suite.steps:
        time_cell += f" ({r['steps']} steps)"
      if r.get("trunk"):
        time_cell += f" (incl. {r['trunk_wall_s'] / 60:.1f} min shared pre-training)"
    overrides = "".join(f" `{k}={v}`" for k, v in row.overrides if k not in CURVE_FIELDS)
    run = f"`{command(suite_name, row)}`"
    if row.same_as:
      time_cell, run = f"the {row.same_as} row", f"{run} (same switches as {row.same_as})"
    if row.trunk:
      run += f" (continues {row.trunk}'s pre-training)"
    kept = previous.get(row.name, [])
    own_kept = kept[:1] if kept and kept[0].startswith(f"| {row.label} |") else []
    if r is None and own_kept:
      lines.append(own_kept[0])
    else:
      lines.append(f"| {row.label} | `{row.config}`{overrides} | {' | '.join(cells)} | "
                   f"{row.paper or '-'} | {time_cell} | {run} |")
    lines.extend(kept[len(own_kept):])
  return "\n".join(lines)


def plot_curves(path: str, title: str, groups: Sequence[str], suite: Suite,
                results: dict[str, dict[str, Any]]) -> bool:
  """Mean EPE against the labelled fraction, one line per group; False if nothing to plot."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=100)
  plotted = False
  for group in groups:
    points = []
    for row in suite.rows:
      if row.group == group and row.name in results:
        pct = int(re.search(r"_(\d+)(_|$)", row.name).group(1))
        points.append((pct, results[row.name]["mean_epe_mm"]))
    if points:
      points.sort()
      ax.plot(*zip(*points), marker="o", label=group.replace("_", " "))
      plotted = True
  if plotted:
    ax.set_xlabel("labelled fraction of the training set (%)")
    ax.set_ylabel("mean EPE (mm), test split")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
  plt.close(fig)
  return plotted


def plot_learning_curves(path: str, title: str, rows: Sequence[Row], root: str) -> bool:
  """Test (solid) and training (dashed) mean EPE against steps, one colour per row."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  fig, ax = plt.subplots(figsize=(6.0, 4.0), dpi=100)
  plotted = False
  for i, row in enumerate(rows):
    curves = learning_curve(os.path.join(root, row.name))
    if not curves["test"]:
      continue
    colour = f"C{i % 10}"
    ax.plot(*zip(*curves["test"]), color=colour, marker="o", ms=3, label=row.label)
    if curves["train"]:
      ax.plot(*zip(*curves["train"]), color=colour, ls="--", marker=".", ms=3)
    plotted = True
  if plotted:
    ax.set_xlabel("training step")
    ax.set_ylabel("mean EPE (mm): test solid, train dashed")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5)
    fig.tight_layout()
    fig.savefig(path)
  plt.close(fig)
  return plotted


def update_results(path: str, suite_name: str, text: str) -> None:
  """Replaces the suite's block (between its markers) in `path`, or appends it."""
  begin, end = f"<!-- tables:{suite_name}:begin -->", f"<!-- tables:{suite_name}:end -->"
  block = f"{begin}\n{text}\n{end}"
  old = open(path).read() if os.path.exists(path) else "# Results\n"
  if begin in old and end in old:
    new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
  else:
    new = old.rstrip("\n") + "\n\n" + block + "\n"
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    f.write(new)
  os.replace(tmp, path)


def _builder_version() -> str:
  from handjax.data.builders import synthetic_hands  # pylint: disable=g-import-not-at-top
  return str(synthetic_hands.SyntheticHands.VERSION)


def _figure_link(figure: str, caption: str, results_path: str, root: str,
                 missing: Sequence[str], draw: Callable[[], bool]) -> list[str]:
  """RESULTS.md lines linking ``figure``: drawn by ``draw`` (False: nothing to plot, no link), or
  kept as it is when it exists and some of its rows (``missing``) have nothing under ``root``, so
  that a figure drawn from an earlier, fuller workdir is not replaced by a partial one."""
  if missing and os.path.exists(figure):
    print(f"{figure}: kept; nothing under {root} for {', '.join(missing)}", flush=True)
  elif not draw():
    return []
  rel = os.path.relpath(figure, os.path.dirname(os.path.abspath(results_path)))
  return ["", f"![{caption}]({rel})"]


def write_suite(suite_name: str, suite: Suite, root: str, override: int | None,
                results_path: str) -> None:
  """The suite's RESULTS.md block; ``override``: the ``--steps`` every row was trained for."""
  results = _finished(root, suite.rows, lambda row: row_steps(row, suite, override))
  figure_dir = os.path.join(os.path.dirname(os.path.abspath(results_path)), "docs", "results")
  steps = f"{override or suite.steps} steps"
  if not override and any(row.steps for row in suite.rows):
    steps += " (a row trained for another budget says so in its time column)"
  parts = [f"## {suite.title}", "",
           f"CPU scale (`experiments/tables.py`, `cpu_scale`): {steps}, batch 32, "
           f"seed 0 (the configs' `seed`), `synthetic_hands/quickstart` (builder {_builder_version()}, "
           "64 px, 4000 train / 400 test), quarter-width networks. EPE in mm, root-relative test "
           "split, AUC over 20-50 mm.",
           ""]
  if suite.notes:
    parts += [suite.notes, ""]
  parts.append(render_table(suite_name, suite, results,
                            previous_lines(results_path, suite_name, suite)))
  for filename, title, groups in suite.curves:
    os.makedirs(figure_dir, exist_ok=True)
    figure = os.path.join(figure_dir, f"{suite_name}_{filename}")
    missing = [r.name for r in suite.rows if r.group in groups and r.name not in results]
    parts += _figure_link(figure, title, results_path, root, missing,
                          lambda: plot_curves(figure, title, groups, suite, results))
  if suite.learning_curves:
    groups = list(dict.fromkeys(row.group for row in suite.rows))
    reference = suite.rows[0]
    for group in groups:
      rows = [row for row in suite.rows if row.group == group]
      if reference not in rows:
        rows.insert(0, reference)
      os.makedirs(figure_dir, exist_ok=True)
      figure = os.path.join(figure_dir, f"{suite_name}_{group.replace(' ', '_')}.png")
      missing = [r.name for r in rows if not learning_curve(os.path.join(root, r.name))["test"]]
      title = f"{suite.title.split(':')[0]}: {group}"
      parts += _figure_link(figure, group, results_path, root, missing,
                            lambda: plot_learning_curves(figure, title, rows, root))
  update_results(results_path, suite_name, "\n".join(parts))


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if f.suite not in SUITES:
    sys.exit(f"error: --suite={f.suite!r}: expected one of {sorted(SUITES)}")
  suite = SUITES[f.suite]
  names = {r.name for r in suite.rows}
  unknown = sorted(set(f.rows) - names)
  if unknown:
    sys.exit(f"error: --rows: {unknown} not in suite {f.suite!r}; rows: {sorted(names)}")
  if f.list:
    for row in suite.rows:
      print(f"{row.name:24s} {row.config:32s} {row.label}")
    return
  from handjax.train import config_checks  # pylint: disable=g-import-not-at-top
  for row in suite.rows:
    if f.rows and row.name not in f.rows:
      continue
    if row.same_as:  # identical switches: train (or reuse) the row it names
      print(f"=== {row.name}: the {row.same_as} row (identical switches)", flush=True)
      row = next(r for r in suite.rows if r.name == row.same_as)
    steps = row_steps(row, suite, f.steps)
    print(f"=== {row.name}: {row.label} ({row.config}, {steps} steps)", flush=True)
    trunk = next(r for r in suite.rows if r.name == row.trunk) if row.trunk else None
    try:
      result = run_row(row, f.workdir, steps, f.data_dir, f.refresh_metrics, trunk)
    except config_checks.ConfigError as e:  # e.g. --steps=0; raised before the row does any work
      sys.exit(f"error: row {row.name}: {e}")
    print(f"=== {row.name}: mean EPE {result['mean_epe_mm']:.1f} mm "
          f"({result['wall_s'] / 60:.1f} min)", flush=True)
    write_suite(f.suite, suite, f.workdir, f.steps, f.results)
  write_suite(f.suite, suite, f.workdir, f.steps, f.results)


if __name__ == "__main__":
  define_flags()
  cli.run(main)
