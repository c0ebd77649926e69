r"""Latent-space figures of a trained model: walks, samples, interpolations, coherence, transfer.

    python -m experiments.synthesize --workdir=/tmp/run --mode=walk [--out=/tmp/walk.png] \
        [--num=8] [--split=test] [--indices=0,1] [--num_examples=512] [--seed=0]

Modes, by ``config.method`` of the workdir (the latest checkpoint is used):

* ``crossmodal_vae`` (Spurr et al. CVPR 2018)
  - ``walk`` (Fig. 9): two test examples (``--indices``) are encoded by the input encoder
    (``config.input_modality``) to their posterior means z^1, z^2; ``--num`` points on the line
    between them are decoded by every decoder the model has. One row per decoder (3D pose, 2D
    keypoints, RGB image, depth map) under a row showing the two inputs; the end columns are
    reconstructions of the inputs (ground truth solid, decoded dashed), the others are synthetic.
  - ``sample``: the same rows for ``--num`` draws z ~ N(0, I).
  - ``coherence`` (Fig. 8): ``--num_examples`` test examples are encoded by *every* encoder of the
    model; a 2-D PCA of the posterior means coloured by input modality (the paper uses t-SNE; PCA
    is linear, deterministic and fast), and the held-out accuracy of a linear probe predicting the
    input modality from z. Chance (1 / number of encoders, 0.5 for two) means one shared latent
    space; ~1 means each modality lives on its own manifold (Fig. 8b, no cross-training). Printed
    and written to ``<out>.json``. Needs a model with >= 2 encoders (Var. 2/4).
* ``aligned_latents`` (Yang et al. ICCV 2019)
  - ``interpolate`` (Fig. 1 / Fig. 4): two RGB crops are encoded by the RGB encoder; the codes on
    the line between them are decoded to the 3D pose and, when ``'C'`` is in ``config.decoders``,
    to the point cloud.
* ``dvae`` (Yang dissertation ch. 4; configs with an image decoder, i.e. the synthesis ones)
  - ``walk`` (Fig. 4.4 / 4.5): the factor encoders (`dvae.encode_factors`) encode two test
    examples; each factor block in turn is interpolated from example A to B with the other blocks
    fixed at A's; rows: decoded images and, when the model decodes ``pose3d``, its 3D pose.
  - ``transfer`` (Fig. 4.6): the pose block of each of ``--num`` pose sources (rows) with the
    other blocks of each of ``--num`` content sources (columns), decoded to images.
  - ``sample``: the pose block and the other blocks drawn separately from N(0, I): rows share a
    pose sample, columns a content sample, so a row shows one pose on different contents.

Decoded poses are in the normalised units of the method (root-relative, divided by the reference
scale or by ``pose_unit``); they are drawn in metres, multiplied by the ground-truth scale of the
examples (linearly interpolated along a walk) or, for samples, by ``fallback_scale``
(``pose_unit`` for the dVAE). Output: ``--out`` (default ``<workdir>/synthesis/<mode>.png``).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments import cli

MODES: dict[str, tuple[str, ...]] = {
    "crossmodal_vae": ("walk", "sample", "coherence"),
    "aligned_latents": ("interpolate",),
    "dvae": ("walk", "transfer", "sample"),
}
ALL_MODES = ("walk", "sample", "interpolate", "coherence", "transfer")
# Fig. 8 of Spurr et al. colours: blue RGB, green 3D joints, yellow 2D joints (+ grey depth).
MODALITY_COLORS = {"image": "tab:blue", "pose3d": "tab:green", "uv": "goldenrod",
                   "depth": "tab:gray"}

Batch = dict[str, np.ndarray]
# A figure cell: (kind, payload); kind in "pose3d", "uv", "image", "points"; None = blank.
Cell = tuple[str, Mapping[str, Any]] | None


class SynthesisError(ValueError):
  """A mode the workdir's model cannot draw; the message is one line naming what is needed."""


# ----------------------------------------------------------------------------------------------
# Pure numerics.


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Projection of the rows of ``x`` onto their two leading principal axes.

  PCA by the SVD of the centred data X - mean = U S V^T: the axes are the first two rows of V^T,
  the coordinates (X - mean) V[:, :2] and the explained variances S^2 / (n - 1). Each axis's sign
  is fixed so that its largest-magnitude entry is positive (SVD signs are arbitrary). With fewer
  than two dimensions the missing axis is zero; constant data give zero coordinates.

  Args:
    x: (n, d) data, n >= 1.

  Returns:
    (coordinates (n, 2), axes (2, d), explained variances (2,)).
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2 or len(x) == 0:
    raise ValueError(f"pca_2d needs an (n, d) array with n >= 1, got shape {x.shape}.")
  centred = x - x.mean(axis=0)
  _, s, vt = np.linalg.svd(centred, full_matrices=False)
  axes = np.zeros((2, x.shape[1]))
  k = min(2, len(vt))
  axes[:k] = vt[:k]
  for i in range(k):
    if axes[i, np.argmax(np.abs(axes[i]))] < 0:
      axes[i] = -axes[i]
  variance = np.zeros(2)
  variance[:k] = s[:k] ** 2 / max(len(x) - 1, 1)
  return centred @ axes.T, axes, variance


def linear_probe_accuracy(z: np.ndarray, labels: np.ndarray, rng: np.random.Generator, *,
                          l2: float = 1e-3, num_iterations: int = 500) -> float:
  """Held-out accuracy of a linear (multinomial logistic) classifier predicting ``labels`` from z.

  The quantitative form of Spurr et al. CVPR 2018 Fig. 8: if the encoders of different modalities
  map into one shared space, no linear read-out tells them apart (accuracy ~ chance = 1 / K for K
  balanced modalities); separate manifolds (Fig. 8b) give ~1.

  A random half of the rows (``rng``) trains, the other half scores. Features are standardised
  with the training half's mean and deviation (a constant feature keeps deviation 1). The softmax
  cross-entropy + ``l2`` ||W||^2 / 2 (bias not penalised; the penalty keeps W finite on separable
  data) is minimised by full-batch gradient descent with step 1 / L, where
  L = ||X||_2^2 / (2 n) + l2 bounds its Hessian (softmax Jacobians have eigenvalues <= 1/2).

  Args:
    z: (n, d) codes, n >= 4.
    labels: (n,) integer class of each row, >= 2 distinct values.
    rng: numpy Generator for the split.
    l2: ridge weight.
    num_iterations: gradient steps.

  Returns:
    Accuracy on the held-out half, in [0, 1].
  """
  z = np.asarray(z, np.float64)
  labels = np.asarray(labels)
  if z.ndim != 2 or len(z) != len(labels) or len(z) < 4:
    raise ValueError(f"linear_probe_accuracy needs z (n, d) and labels (n,) with n >= 4, got "
                     f"{z.shape} and {labels.shape}.")
  classes, y = np.unique(labels, return_inverse=True)
  if len(classes) < 2:
    raise ValueError(f"linear_probe_accuracy needs >= 2 classes, got only {classes.tolist()}.")
  order = rng.permutation(len(z))
  train, test = order[:len(z) // 2], order[len(z) // 2:]
  mean, std = z[train].mean(0), z[train].std(0)
  std = np.where(std > 0, std, 1.0)
  x = np.concatenate([(z - mean) / std, np.ones((len(z), 1))], axis=1)
  xt, onehot = x[train], np.eye(len(classes))[y[train]]
  penalty = np.ones(x.shape[1])
  penalty[-1] = 0.0  # no ridge on the bias
  step = 1.0 / (np.linalg.norm(xt, 2) ** 2 / (2 * len(xt)) + l2)
  w = np.zeros((x.shape[1], len(classes)))
  for _ in range(num_iterations):
    logits = xt @ w
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    w -= step * (xt.T @ (p - onehot) / len(xt) + l2 * penalty[:, None] * w)
  return float(np.mean(np.argmax(x[test] @ w, axis=1) == y[test]))


def interpolated_scales(scale_a: float, scale_b: float, num: int) -> np.ndarray:
  """(num,) scales on the walk: (1 - t) s_a + t s_b at t = k / (num - 1), as the latents are."""
  t = np.linspace(0.0, 1.0, num)
  return (1.0 - t) * scale_a + t * scale_b


def pose_to_metres(pred: np.ndarray, scales: np.ndarray, root_joint: int) -> np.ndarray:
  """Decoded (n, 21, 3) poses in normalised units -> root-relative metres, times ``scales`` (n,)."""
  pose = np.asarray(pred, np.float64) * np.asarray(scales, np.float64)[:, None, None]
  return pose - pose[:, root_joint:root_joint + 1]


# ----------------------------------------------------------------------------------------------
# Mode checks (before the slow restore).


def check_mode(config: ml_collections.ConfigDict, mode: str) -> None:
  """Raises SynthesisError (one line) if ``mode`` cannot be drawn for the model of ``config``."""
  method = config.method
  if method not in MODES:
    supported = "; ".join(f"{m}: {', '.join(v)}" for m, v in MODES.items())
    raise SynthesisError(f"method {method!r} (config.method) has no synthesis modes; supported "
                         f"methods and modes: {supported}.")
  if mode not in MODES[method]:
    raise SynthesisError(f"--mode={mode} is not supported for method {method!r}; supported modes: "
                         f"{', '.join(MODES[method])}.")
  if method == "crossmodal_vae" and mode == "coherence":
    from handjax.methods import crossmodal_vae as cv  # pylint: disable=g-import-not-at-top
    pairs = cv.config_pairs(config)
    encoders = sorted({e for e, _ in pairs})
    if len(encoders) < 2:
      names = ", ".join(f"{e}>{d}" for e, d in pairs)
      raise SynthesisError(
          f"--mode=coherence needs >= 2 encoders; this model trains the pairs {names} (encoders: "
          f"{', '.join(encoders)}); train Var. 2 or 4 (e.g. config.variant=4) or set config.pairs "
          f"to include e.g. 'pose3d>pose3d'.")
  if method == "dvae":
    from handjax.methods import dvae  # pylint: disable=g-import-not-at-top
    targets = dvae.targets_of(config)
    if not set(targets) & set(dvae.IMAGE_KEYS):
      raise SynthesisError(
          f"dvae --mode={mode} needs an image decoder (a target in {list(dvae.IMAGE_KEYS)}, the "
          f"synthesis configs: dvae.default_config('synthesis' or 'synthesis_u')); this model "
          f"decodes {', '.join(targets)}.")


# ----------------------------------------------------------------------------------------------
# Data.


def collect_examples(config: ml_collections.ConfigDict, split: str, count: int,
                     keep: Callable[[Batch], np.ndarray] | None = None) -> Batch:
  """The first ``count`` examples of ``split`` (the method's eval pipeline) passing ``keep``."""
  from handjax.train import loop  # pylint: disable=g-import-not-at-top

  batches = loop.resolve_dataset_factory(config)(config, split, process_index=0, process_count=1,
                                                 seed=config.seed)
  parts: list[Batch] = []
  have = 0
  for batch in batches:
    batch = {k: np.asarray(v) for k, v in batch.items()}
    if keep is not None:
      mask = np.asarray(keep(batch), bool)
      batch = {k: v[mask] for k, v in batch.items()}
    parts.append(batch)
    have += len(next(iter(batch.values())))
    if have >= count:
      break
  if have == 0:
    raise SynthesisError(f"split {split!r} has no example with the modalities this mode encodes.")
  return {k: np.concatenate([p[k] for p in parts])[:count] for k in parts[0]}


def take(batch: Batch, index: Sequence[int] | np.ndarray) -> Batch:
  index = np.asarray(index)
  return {k: v[index] for k, v in batch.items()}


def _check_indices(indices: Sequence[int], available: int, split: str) -> None:
  bad = [i for i in indices if not 0 <= i < available]
  if len(indices) != 2 or bad:
    raise SynthesisError(f"--indices must be two example indices in [0, {available}) of split "
                         f"{split!r} (after skipping examples lacking a needed modality), got "
                         f"{list(indices)}.")


def _root_relative(pose: np.ndarray, root_joint: int) -> np.ndarray:
  return pose - pose[:, root_joint:root_joint + 1]


# ----------------------------------------------------------------------------------------------
# Figures (matplotlib Agg through `matplotlib.figure.Figure`, as handjax.eval.plots does).


def _draw_points(ax: Any, points: np.ndarray) -> None:
  """Scatter of an (N, 3) camera-frame cloud with plots.draw_hand_3d's axes (x, z, -y)."""
  p = np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=-1)
  ax.scatter(p[:, 0], p[:, 1], p[:, 2], s=2, c=p[:, 1], cmap="viridis")
  centre = 0.5 * (p.min(0) + p.max(0))
  half = max(0.5 * float(np.max(p.max(0) - p.min(0))), 1e-3)
  ax.set_xlim(centre[0] - half, centre[0] + half)
  ax.set_ylim(centre[1] - half, centre[1] + half)
  ax.set_zlim(centre[2] - half, centre[2] + half)
  ax.set_box_aspect((1.0, 1.0, 1.0))


def _draw_cell(fig: Any, rows: int, columns: int, index: int, cell: Cell) -> Any:
  from handjax.eval import plots  # pylint: disable=g-import-not-at-top

  kind, item = cell
  if kind in ("pose3d", "points"):
    ax = fig.add_subplot(rows, columns, index, projection="3d")
    if kind == "pose3d":
      plots.draw_hand_3d(ax, item.get("gt"), item.get("pred"))
    else:
      _draw_points(ax, np.asarray(item["points"]))
    ax.set_xticklabels([])
    ax.set_yticklabels([])
    ax.set_zticklabels([])
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_zlabel("")
    return ax
  ax = fig.add_subplot(rows, columns, index)
  if kind == "uv":
    size = int(item["size"])
    plots.draw_hand_2d(ax, np.zeros((size, size)), item.get("gt"), item.get("pred"))
  elif kind == "image":
    image = np.asarray(item["image"], np.float64)
    value_range = item.get("range", (-0.5, 0.5))
    plots.draw_hand_2d(ax, image, None, None, value_range)
  else:
    raise ValueError(f"unknown cell kind {kind!r}")
  return ax


def write_grid(path: str, rows: Sequence[tuple[str, Sequence[Cell]]],
               column_titles: Sequence[str] | None = None, title: str | None = None,
               tile_px: int = 150) -> None:
  """One PNG: ``rows`` of (label, cells), all rows as long as the longest; None cells are blank."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  from matplotlib.gridspec import GridSpec  # pylint: disable=g-import-not-at-top

  num_rows = len(rows)
  columns = max(len(cells) for _, cells in rows)
  dpi = 100
  width, height = columns * tile_px / dpi + 0.3, num_rows * tile_px / dpi + 0.7  # inches
  fig = Figure(figsize=(width, height), dpi=dpi)
  FigureCanvasAgg(fig)
  fig.subplots_adjust(left=0.3 / width, right=0.99, bottom=0.01, top=1.0 - 0.7 / height,
                      wspace=0.05, hspace=0.15)
  grid = GridSpec(num_rows, columns, figure=fig)
  for r, (label, cells) in enumerate(rows):
    for c, cell in enumerate(cells):
      if cell is None:
        continue
      ax = _draw_cell(fig, num_rows, columns, r * columns + c + 1, cell)
      topmost = all(len(rows[q][1]) <= c or rows[q][1][c] is None for q in range(r))
      if topmost and column_titles is not None and c < len(column_titles):
        ax.set_title(column_titles[c], fontsize=7)
    # The row label in the left margin, centred on the row (grid geometry of subplots_adjust).
    box = grid[r, 0].get_position(fig)
    fig.text(0.005, box.y0 + 0.5 * box.height, label, rotation=90, va="center", ha="left",
             fontsize=7)
  if title:  # wrapped to the figure's width (~6 px per character at 8 pt)
    fig.suptitle(textwrap.fill(title, max(40, int(fig.get_figwidth() * dpi / 6))), fontsize=8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=dpi, format="png")


def write_scatter(path: str, coords: np.ndarray, labels: np.ndarray, names: Sequence[str],
                  title: str) -> None:
  """2-D scatter of ``coords`` coloured by ``names[labels]`` (Spurr et al. Fig. 8 colours)."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top

  fig = Figure(figsize=(5, 5), dpi=100)
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  for i, name in enumerate(names):
    sel = labels == i
    ax.scatter(coords[sel, 0], coords[sel, 1], s=6, alpha=0.6,
               color=MODALITY_COLORS.get(name, None), label=f"q(z|{name})")
  ax.set_xlabel("PC 1")
  ax.set_ylabel("PC 2")
  ax.legend(fontsize=8)
  ax.set_title(title, fontsize=8)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, format="png")


def _t_titles(num: int) -> list[str]:
  return [f"t = {t:.2f}" for t in np.linspace(0.0, 1.0, num)]


def _ends(num: int, first: Cell, last: Cell) -> list[Cell]:
  """A row with cells only at the two ends of a walk."""
  return [first] + [None] * (num - 2) + [last]


def _image_cell(image: np.ndarray, auto_range: bool = False) -> Cell:
  image = np.asarray(image)
  if auto_range:  # normalised depth maps: stretch the example's own range
    lo, hi = float(image.min()), float(image.max())
    return ("image", {"image": image, "range": (lo, hi if hi > lo else lo + 1.0)})
  return ("image", {"image": image})


# ----------------------------------------------------------------------------------------------
# Cross-modal VAE (Spurr et al. CVPR 2018).


class _CrossModal:
  """The encoders and decoders of a cross-modal VAE as jitted host functions."""

  def __init__(self, config: ml_collections.ConfigDict, params: Any, model_state: Any):
    from handjax.methods import common  # pylint: disable=g-import-not-at-top
    from handjax.methods import crossmodal_vae as cv  # pylint: disable=g-import-not-at-top

    self.cv, self.config = cv, config
    pairs = cv.config_pairs(config)
    self.encoders = sorted({e for e, _ in pairs})
    self.decoders = sorted({d for _, d in pairs})
    enc = {m: cv.build_encoder(m, config) for m in self.encoders}
    dec = {m: cv.build_decoder(m, config) for m in self.decoders}

    def encode(modality, batch):
      x = cv.modality_value(modality, batch, config)
      extra = common.hand_side_one_hot(batch) if config.invariances.handedness else None
      q, _ = common.apply_module(enc[modality], cv.encoder_name(modality), params, model_state,
                                 x, train=False, extra=extra)
      return q.mean

    def decode(z):
      return {m: common.apply_module(dec[m], cv.decoder_name(m), params, model_state, z,
                                     train=False)[0] for m in self.decoders}

    self.encode = jax.jit(encode, static_argnums=0)
    self.decode = jax.jit(decode)

  def inputs(self, modality: str, batch: Batch) -> dict[str, np.ndarray]:
    keys = {modality, "hand_side", "scale"} | ({"pose3d"} if modality == "pose3d" else set())
    return {k: batch[k] for k in keys if k in batch}

  def keep(self, modalities: Sequence[str]) -> Callable[[Batch], np.ndarray]:
    def keep(batch):
      mask = np.ones(len(batch["image"]), bool)
      for m in modalities:
        mask &= np.asarray(self.cv.modality_present(m, batch, self.config))
      return mask
    return keep

  def decoded_rows(self, z: np.ndarray, scales: np.ndarray,
                   gt: Mapping[int, Mapping[str, np.ndarray]] | None = None
                   ) -> list[tuple[str, list[Cell]]]:
    """One row per decoder for the codes ``z`` (n, D); ``gt[column]`` overlays ground truth."""
    config, gt = self.config, gt or {}
    out = jax.device_get(self.decode(jnp.asarray(z, jnp.float32)))
    n, size = len(z), int(config.data.image_size)
    rows: list[tuple[str, list[Cell]]] = []
    pose = pose_to_metres(out["pose3d"], scales, config.data.root_joint)
    rows.append(("3D pose", [("pose3d", {"pred": pose[i], "gt": gt.get(i, {}).get("pose3d")})
                             for i in range(n)]))
    if "uv" in out:
      uv = (np.asarray(out["uv"], np.float64) + 1.0) * (0.5 * size)  # inverse of normalized_uv
      rows.append(("2D keypoints", [("uv", {"pred": uv[i], "gt": gt.get(i, {}).get("uv"),
                                            "size": size}) for i in range(n)]))
    if "image" in out:
      rows.append(("image", [_image_cell(out["image"][i]) for i in range(n)]))
    if "depth" in out:
      rows.append(("depth", [_image_cell(out["depth"][i], True) for i in range(n)]))
    return rows


def _input_cell(modality: str, batch: Batch, i: int, size: int) -> Cell:
  if modality == "image":
    return _image_cell(batch["image"][i])
  if modality == "depth":
    depth = np.asarray(batch["depth"][i])
    return _image_cell(np.where(depth > 0, depth, depth[depth > 0].max(initial=0.0)), True)
  if modality == "uv":
    return ("uv", {"gt": batch["uv"][i], "size": size})
  return ("pose3d", {"gt": batch["pose3d"][i]})


def crossmodal_walk(config, params, model_state, *, num: int, split: str,
                    indices: Sequence[int], out: str, sample: bool = False,
                    seed: int = 0) -> dict[str, Any]:
  """Spurr et al. CVPR 2018 Fig. 9 (``sample=False``) or decoded prior samples (``sample=True``)."""
  if num < 2:
    raise SynthesisError(f"--num must be >= 2 (points on the walk / samples), got {num}.")
  model = _CrossModal(config, params, model_state)
  inp, root, size = config.input_modality, config.data.root_joint, int(config.data.image_size)
  nominal = config.fallback_scale if config.invariances.scale else config.pose_unit
  if sample:
    z = np.asarray(jax.random.normal(jax.random.key(seed), (num, config.latent_dim)))
    rows = model.decoded_rows(z, np.full(num, nominal))
    write_grid(out, rows, [f"z ~ N(0, I) #{i}" for i in range(num)],
               f"crossmodal_vae: {num} prior samples decoded by {', '.join(model.decoders)}")
    return {"latents": z}
  batch = collect_examples(config, split, max(indices) + 1, model.keep([inp]))
  _check_indices(indices, len(batch["image"]), split)
  pair = take(batch, indices)
  z_ends = np.asarray(model.encode(inp, model.inputs(inp, pair)))
  from handjax.methods import dvae  # pylint: disable=g-import-not-at-top
  z = np.asarray(dvae.latent_walk(jnp.asarray(z_ends[0]), jnp.asarray(z_ends[1]), num))
  has_pose = np.asarray(pair.get("has_pose3d", np.ones(2, bool)), bool)
  scales = (interpolated_scales(*[float(s) for s in pair["scale"]], num)
            if config.invariances.scale and has_pose.all() else np.full(num, nominal))
  gt_pose = _root_relative(np.asarray(pair["pose3d"], np.float64), root)
  gt = {0: {}, num - 1: {}}
  for end, i in ((0, 0), (num - 1, 1)):
    if has_pose[i]:
      gt[end]["pose3d"] = gt_pose[i]
    if bool(np.asarray(pair.get("has_uv", np.ones(2, bool)))[i]):
      gt[end]["uv"] = pair["uv"][i]
  rows = [(f"input ({inp})", _ends(num, _input_cell(inp, pair, 0, size),
                                   _input_cell(inp, pair, 1, size)))]
  rows += model.decoded_rows(z, scales, gt)
  write_grid(out, rows, _t_titles(num),
             f"crossmodal_vae latent walk: q(z|{inp}) of {split}[{indices[0]}] -> "
             f"{split}[{indices[1]}] (ground truth solid, decoded dashed)")
  return {"latents": z}


def crossmodal_coherence(config, params, model_state, *, split: str, num_examples: int,
                         out: str, seed: int = 0) -> dict[str, Any]:
  """Spurr et al. CVPR 2018 Fig. 8: PCA of the posterior means of every encoder + a linear probe."""
  model = _CrossModal(config, params, model_state)
  batch = collect_examples(config, split, num_examples, model.keep(model.encoders))
  n = len(batch["image"])
  codes = [np.asarray(model.encode(m, model.inputs(m, batch)), np.float64) for m in model.encoders]
  z = np.concatenate(codes)
  labels = np.repeat(np.arange(len(codes)), n)
  accuracy = linear_probe_accuracy(z, labels, np.random.default_rng(seed))
  coords, _, variance = pca_2d(z)
  chance = 1.0 / len(codes)
  write_scatter(out, coords, labels, model.encoders,
                f"crossmodal_vae latent coherence, {n} {split} examples per encoder\n"
                f"linear probe accuracy {accuracy:.3f} (chance {chance:.3f})")
  summary = {"probe_accuracy": accuracy, "chance": chance, "encoders": model.encoders,
             "num_examples": n, "split": split, "latent_dim": int(config.latent_dim),
             "pca_explained_variance": variance.tolist(),
             "total_variance": float(np.var(z, axis=0, ddof=1).sum()) if len(z) > 1 else 0.0,
             "note": ("held-out accuracy of a linear classifier predicting the encoder from the "
                      "posterior mean; chance = one shared latent space, ~1 = separate manifolds")}
  with open(os.path.splitext(out)[0] + ".json", "w") as f:
    json.dump(summary, f, indent=1)
  print(f"linear probe accuracy (encoder from z): {accuracy:.4f}; chance {chance:.4f}; "
        f"{n} examples x {len(codes)} encoders ({', '.join(model.encoders)})")
  return summary


# ----------------------------------------------------------------------------------------------
# Aligned latent spaces (Yang et al. ICCV 2019).


def aligned_interpolate(config, params, model_state, *, num: int, split: str,
                        indices: Sequence[int], out: str) -> dict[str, Any]:
  """Yang et al. ICCV 2019 Fig. 1 / Fig. 4: decoded pose (and point cloud) along an RGB walk."""
  from handjax.methods import aligned_latents as al  # pylint: disable=g-import-not-at-top
  from handjax.methods import common  # pylint: disable=g-import-not-at-top
  from handjax.methods import dvae  # pylint: disable=g-import-not-at-top

  if num < 2:
    raise SynthesisError(f"--num must be >= 2 (points on the interpolation), got {num}.")
  nets = al.build_networks(config)
  decoders = [n for n in ("decoder_pose3d", "decoder_points") if n in nets]

  @jax.jit
  def encode(image):
    q, _ = common.apply_module(nets["encoder_image"], "encoder_image", params, model_state,
                               image, train=False)
    return q.mean

  @jax.jit
  def decode(z):
    return {n: common.apply_module(nets[n], n, params, model_state, z, train=False)[0]
            for n in decoders}

  batch = collect_examples(config, split, max(indices) + 1)
  _check_indices(indices, len(batch["image"]), split)
  pair = take(batch, indices)
  z_ends = np.asarray(encode(jnp.asarray(pair["image"], jnp.float32)))
  z = dvae.latent_walk(jnp.asarray(z_ends[0]), jnp.asarray(z_ends[1]), num)
  pred = jax.device_get(decode(z))
  root = config.data.root_joint
  has_pose = np.asarray(pair.get("has_pose3d", np.ones(2, bool)), bool)
  scales = (interpolated_scales(*[float(s) for s in pair["scale"]], num) if has_pose.all()
            else np.full(num, config.fallback_scale))
  pose = pose_to_metres(pred["decoder_pose3d"], scales, root)
  gt_pose = _root_relative(np.asarray(pair["pose3d"], np.float64), root)
  gt = {0: gt_pose[0] if has_pose[0] else None, num - 1: gt_pose[1] if has_pose[1] else None}
  rows = [("input (RGB)", _ends(num, _image_cell(pair["image"][0]),
                                _image_cell(pair["image"][1]))),
          ("3D pose", [("pose3d", {"pred": pose[i], "gt": gt.get(i)}) for i in range(num)])]
  if "decoder_points" in pred:
    cloud = np.asarray(pred["decoder_points"], np.float64) * config.cloud_unit
    rows.append(("point cloud", [("points", {"points": cloud[i]}) for i in range(num)]))
  write_grid(out, rows, _t_titles(num),
             f"aligned_latents interpolation: q(z|RGB) of {split}[{indices[0]}] -> "
             f"{split}[{indices[1]}] (ground truth solid, decoded dashed)")
  return {"latents": np.asarray(z)}


# ----------------------------------------------------------------------------------------------
# Disentangled VAE (Yang dissertation ch. 4).


class _DVAE:
  """Factor encoders and the decoders of a dVAE as jitted host functions."""

  def __init__(self, config: ml_collections.ConfigDict, params: Any, model_state: Any):
    from handjax.methods import dvae  # pylint: disable=g-import-not-at-top

    self.dvae, self.config = dvae, config
    self.blocks = dvae.factor_blocks(config)
    self.pose_block = self.blocks[0][0]  # the first factor is the pose (Fig. 4.2a/b: y_1)
    self.image_key = next(k for k in (config.whole_target,) + tuple(dvae.targets_of(config))
                          if k in dvae.IMAGE_KEYS)
    nets = dvae.build_networks(config)
    self.encode = jax.jit(lambda batch: {k: q.mean for k, q in dvae.encode_factors(
        config, params, model_state, batch, nets=nets)[0].items()})
    self.decode = jax.jit(lambda blocks: dvae.decode_blocks(config, params, model_state, blocks,
                                                            nets=nets))

  def sources(self) -> list[str]:
    """The batch keys the factor encoders read (z_u reads the whole target x)."""
    return [self.config.whole_target if n == self.dvae.UNEXPLAINED else n for n, _ in self.blocks]

  def keep(self, batch: Batch) -> np.ndarray:
    mask = np.ones(len(batch["image"]), bool)
    for key in self.sources():
      mask &= np.asarray(self.dvae.modality_present(key, batch, self.config))
    return mask

  def inputs(self, batch: Batch) -> dict[str, np.ndarray]:
    keys = set(self.sources()) | {"scale"}
    return {k: jnp.asarray(batch[k]) for k in keys if k in batch}

  def content_source(self) -> str:
    """The image that specifies the content: the tag image (Fig. 4.2a) or x itself (z_u)."""
    others = [n for n, _ in self.blocks if n != self.pose_block]
    return "content_image" if "content_image" in others else self.config.whole_target

  def pose_metres(self, pred: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return pose_to_metres(pred, scales, self.config.data.root_joint)

  def nominal_scale(self) -> float:
    config = self.config
    return float(config.get("fallback_scale", config.pose_unit) if config.invariances.scale
                 else config.pose_unit)


def dvae_walk(config, params, model_state, *, num: int, split: str, indices: Sequence[int],
              out: str) -> dict[str, Any]:
  """Dissertation Fig. 4.4 / 4.5: walk on each factor block in turn, the others fixed at A's."""
  if num < 2:
    raise SynthesisError(f"--num must be >= 2 (points on the walk), got {num}.")
  model = _DVAE(config, params, model_state)
  batch = collect_examples(config, split, max(indices) + 1, model.keep)
  _check_indices(indices, len(batch["image"]), split)
  pair = take(batch, indices)
  codes = jax.device_get(model.encode(model.inputs(pair)))
  has_pose = "pose3d" in model.dvae.targets_of(config)
  scale_ab = ([float(s) for s in pair["scale"]] if config.invariances.scale
              else [config.pose_unit] * 2)
  source = model.content_source()
  gt_pose = _root_relative(np.asarray(pair["pose3d"], np.float64), config.data.root_joint)
  rows: list[tuple[str, list[Cell]]] = [
      (f"inputs ({source})", _ends(num, _image_cell(pair[source][0]),
                                   _image_cell(pair[source][1])))]
  walks = {}
  for name, _ in model.blocks:
    walk = np.asarray(model.dvae.latent_walk(jnp.asarray(codes[name][0]),
                                             jnp.asarray(codes[name][1]), num))
    blocks = {n: (walk if n == name else np.repeat(codes[n][:1], num, axis=0))
              for n, _ in model.blocks}
    walks[name] = walk
    decoded = jax.device_get(model.decode(blocks))
    rows.append((f"image, walk z_{name}", [_image_cell(im) for im in decoded[model.image_key]]))
    if has_pose:
      scales = (interpolated_scales(*scale_ab, num) if name == model.pose_block
                else np.full(num, scale_ab[0]))
      pose = model.pose_metres(decoded["pose3d"], scales)
      gt = ({0: gt_pose[0], num - 1: gt_pose[1]} if name == model.pose_block else {})
      rows.append((f"3D pose, walk z_{name}", [("pose3d", {"pred": p, "gt": gt.get(i)})
                                               for i, p in enumerate(pose)]))
  write_grid(out, rows, _t_titles(num),
             f"dvae latent walks {split}[{indices[0]}] -> {split}[{indices[1]}], one block at a "
             f"time (others fixed at the first example's)")
  return {"latents": walks}


def dvae_transfer(config, params, model_state, *, num: int, split: str,
                  out: str) -> dict[str, Any]:
  """Dissertation Fig. 4.6: pose block of each row's source with the content of each column's."""
  model = _DVAE(config, params, model_state)
  batch = collect_examples(config, split, 2 * num, model.keep)
  k = min(num, len(batch["image"]) // 2)
  if k < 1:
    raise SynthesisError(f"--mode=transfer needs >= 2 usable examples in split {split!r}, got "
                         f"{len(batch['image'])}.")
  poses, contents = take(batch, np.arange(k)), take(batch, np.arange(k, 2 * k))
  pose_codes = jax.device_get(model.encode(model.inputs(poses)))
  content_codes = jax.device_get(model.encode(model.inputs(contents)))
  # All k x k combinations in one decoder call: row i, column j at i * k + j.
  blocks = {n: (np.repeat(pose_codes[n], k, axis=0) if n == model.pose_block
                else np.tile(content_codes[n], (k, 1))) for n, _ in model.blocks}
  images = np.asarray(jax.device_get(model.decode(blocks))[model.image_key])
  source = model.content_source()
  root = config.data.root_joint
  gt = _root_relative(np.asarray(poses["pose3d"], np.float64), root)
  rows = [("content", [None, None] + [_image_cell(im) for im in contents[source]])]
  for i in range(k):
    rows.append((f"pose {i}", [_image_cell(poses["image"][i]), ("pose3d", {"gt": gt[i]})]
                 + [_image_cell(images[i * k + j]) for j in range(k)]))
  write_grid(out, rows, None, f"dvae pose transfer on {split}: row = pose source (image, ground "
                              f"truth), column = content source")
  return {"images": images.reshape((k, k) + images.shape[1:])}


def dvae_sample(config, params, model_state, *, num: int, out: str,
                seed: int = 0) -> dict[str, Any]:
  """Pose block and content blocks drawn separately from N(0, I): rows share a pose sample."""
  model = _DVAE(config, params, model_state)
  keys = jax.random.split(jax.random.key(seed), len(model.blocks))
  samples = {n: np.asarray(jax.random.normal(key, (num, size)))
             for key, (n, size) in zip(keys, model.blocks)}
  blocks = {n: (np.repeat(samples[n], num, axis=0) if n == model.pose_block
                else np.tile(samples[n], (num, 1))) for n, _ in model.blocks}
  decoded = jax.device_get(model.decode(blocks))
  images = np.asarray(decoded[model.image_key])
  has_pose = "pose3d" in decoded
  if has_pose:
    pose = model.pose_metres(decoded["pose3d"], np.full(num * num, model.nominal_scale()))
  rows = []
  for i in range(num):
    head = [("pose3d", {"pred": pose[i * num]})] if has_pose else []
    rows.append((f"z_{model.pose_block} #{i}",
                 head + [_image_cell(images[i * num + j]) for j in range(num)]))
  titles = (["pose"] if has_pose else []) + [f"content #{j}" for j in range(num)]
  write_grid(out, rows, titles, f"dvae: {num} pose samples x {num} content samples, z ~ N(0, I)")
  return {"images": images.reshape((num, num) + images.shape[1:])}


# ----------------------------------------------------------------------------------------------
# Entry points.


def run(mode: str, workdir: str, out: str | None = None, *, num: int = 8, split: str = "test",
        indices: Sequence[int] = (0, 1), num_examples: int = 512, seed: int = 0) -> dict[str, Any]:
  """Draws ``mode`` for the latest checkpoint of ``workdir``; returns the mode's numbers.

  Raises:
    SynthesisError: the mode is not available for the model (checked before restoring it).
    FileNotFoundError: ``workdir`` has no checkpoint.
  """
  from handjax.train import checkpoint as checkpoint_lib  # pylint: disable=g-import-not-at-top
  from handjax.train import inference  # pylint: disable=g-import-not-at-top

  if mode not in ALL_MODES:
    raise SynthesisError(f"--mode must be one of {', '.join(ALL_MODES)}, got {mode!r}.")
  check_mode(checkpoint_lib.load_config(workdir), mode)
  restored = inference.restore_latest(workdir, devices=jax.devices()[:1])
  config = restored.config
  params, model_state = restored.state.params, restored.state.model_state
  out = out or os.path.join(workdir, "synthesis", f"{mode}.png")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  indices = [int(i) for i in indices]
  kwargs = dict(num=num, split=split, indices=indices, out=out)
  method = config.method
  if method == "crossmodal_vae":
    if mode == "coherence":
      result = crossmodal_coherence(config, params, model_state, split=split,
                                    num_examples=num_examples, out=out, seed=seed)
    else:
      result = crossmodal_walk(config, params, model_state, sample=mode == "sample", seed=seed,
                               **kwargs)
  elif method == "aligned_latents":
    result = aligned_interpolate(config, params, model_state, **kwargs)
  elif mode == "walk":
    result = dvae_walk(config, params, model_state, **kwargs)
  elif mode == "transfer":
    result = dvae_transfer(config, params, model_state, num=num, split=split, out=out)
  else:
    result = dvae_sample(config, params, model_state, num=num, out=out, seed=seed)
  print(f"Wrote {out} ({method} @ step {restored.step}, mode {mode})")
  return {**result, "out": out, "step": restored.step}


def _define_flags() -> None:
  # Defined only when run as a binary, so importing this module (tests) adds no global flags that
  # could clash with another binary's --workdir.
  flags.DEFINE_string("workdir", None, "Workdir of a trained run (latest checkpoint used).")
  flags.DEFINE_enum("mode", None, list(ALL_MODES), "Figure to draw (see the module docstring).")
  flags.DEFINE_string("out", None, "Output PNG (default <workdir>/synthesis/<mode>.png).")
  flags.DEFINE_integer("num", 8, "Points on a walk, samples, or transfer sources per side.")
  flags.DEFINE_string("split", "test", "Split the encoded examples come from.")
  flags.DEFINE_list("indices", ["0", "1"], "The two examples of --split a walk joins.")
  flags.DEFINE_integer("num_examples", 512, "coherence: examples encoded by every encoder.")
  flags.DEFINE_integer("seed", 0, "Seed of the prior samples and of the probe's split.")
  flags.mark_flags_as_required(["workdir", "mode"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    run(f.mode, f.workdir, f.out, num=f.num, split=f.split,
        indices=[int(i) for i in f.indices], num_examples=f.num_examples, seed=f.seed)
  except (SynthesisError, FileNotFoundError, ValueError, KeyError) as e:
    sys.exit(f"error: {e}")


if __name__ == "__main__":
  _define_flags()
  cli.run(main)
