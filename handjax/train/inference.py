"""A trained method from its workdir: restore, evaluate a split, predict one image.

``experiments/evaluate.py`` and ``experiments/predict.py`` are thin flag wrappers around
:func:`evaluate_workdir` and :func:`predict_image`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

import jax
from jax.sharding import Mesh
import ml_collections
import numpy as np

from handjax.eval import plots
from handjax.hand import skeleton
from handjax.train import checkpoint as checkpoint_lib
from handjax.train import datasets
from handjax.train import evaluation
from handjax.train import images
from handjax.train import method as method_lib
from handjax.train import sharding as sharding_lib
from handjax.train import state as state_lib


@dataclasses.dataclass(frozen=True)
class Restored:
  """A trained method ready for ``predict``: its config, method, train state, mesh and step."""

  config: ml_collections.ConfigDict
  method: method_lib.Method
  state: state_lib.TrainState
  mesh: Mesh
  step: int


def example_batch(method: method_lib.Method, batch_size: int) -> dict[str, np.ndarray]:
  """Zeros shaped by ``method.input_spec`` (the keys ``init`` reads), ``batch_size`` rows."""
  if not method.input_spec:
    raise ValueError(f"Method {method.name!r} declares no input_spec; it is needed to rebuild the "
                     "parameter shapes from a checkpoint.")
  return {k: np.zeros((batch_size,) + tuple(v.shape), v.dtype)
          for k, v in method.input_spec.items()}


def restore_latest(workdir: str, devices: Sequence[jax.Device] | None = None,
                   step: int | None = None) -> Restored:
  """Loads the stored config and the latest (or given) train state of ``workdir``.

  The parameter shapes are rebuilt with ``jax.eval_shape`` from the method's ``input_spec``, and
  the checkpoint is restored directly into the replicated sharding of a mesh over ``devices``.
  Without ``step``, a damaged newest checkpoint is skipped with a warning for the newest one that
  restores (nothing is moved: a reader leaves the workdir as it is).

  Raises:
    FileNotFoundError: ``workdir`` has no checkpoint (of ``step``).
    checkpoint_lib.DamagedCheckpointError: the given ``step``, or every checkpoint, is damaged.
  """
  mesh = sharding_lib.make_mesh(devices)
  ckpt = checkpoint_lib.open_for_reading(workdir)

  def restore(at: int) -> tuple[ml_collections.ConfigDict, method_lib.Method, state_lib.TrainState]:
    config = ckpt.restore_config(at)
    method = method_lib.get_method(config)
    batch = sharding_lib.global_batch(
        example_batch(method, mesh.devices.size // jax.process_count()), mesh)
    abstract, _ = state_lib.train_state_shapes(method, config.seed, batch, mesh)
    return config, method, ckpt.restore(at, abstract, None)

  try:
    if step is None:
      found = checkpoint_lib.restore_newest(ckpt, restore)
      if found is None:
        raise FileNotFoundError(f"{ckpt.directory!r} holds no complete checkpoint.")
      step, (config, method, state) = found
    else:
      ckpt.require_step(step)
      config, method, state = restore(step)
  finally:
    ckpt.close()
  return Restored(config=config, method=method, state=state, mesh=mesh, step=int(step))


def format_table(summary: dict[str, Any], step: int, split: str) -> str:
  """Plain-text table of the scalar metrics."""
  rows = [("split", split), ("step", str(step)), ("examples", str(summary["num_examples"])),
          ("protocol", str(summary.get("protocol", "root_relative_gt_scale"))),
          ("mean EPE (mm)", f"{summary['mean_epe_mm']:.2f}"),
          ("median EPE (mm)", f"{summary['median_epe_mm']:.2f}"),
          ("mean-pose baseline EPE (mm)", f"{summary.get('mean_pose_epe_mm', float('nan')):.2f}"),
          ("AUC 20-50 mm (31 thr.)", f"{summary['auc_20_50']:.4f}"),
          ("AUC 21.05-50 mm (ref. script)", f"{summary['auc_20_50_reference']:.4f}")]
  width = max(len(r[0]) for r in rows)
  return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def write_skeleton_grid(pred: np.ndarray, gt: np.ndarray, path: str, count: int) -> None:
  """Grid of 3D views, ground truth solid and prediction dashed (handjax.eval.plots)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  count = min(count, len(pred))
  columns = min(4, count)
  rows = -(-count // columns)
  fig = plt.figure(figsize=(3 * columns, 3 * rows), dpi=100)
  for i in range(count):
    ax = fig.add_subplot(rows, columns, i + 1, projection="3d")
    plots.draw_hand_3d(ax, gt[i], pred[i])
    epe = 1000 * np.linalg.norm(pred[i] - gt[i], axis=-1).mean()
    ax.set_title(f"#{i}: {epe:.1f} mm", fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)


def evaluate_workdir(workdir: str, split: str = "test", num_skeletons: int = 8,
                     step: int | None = None) -> dict[str, Any]:
  """Restores the latest (or ``step``'s) checkpoint, evaluates ``split`` and writes the outputs.

  Returns:
    The summary; ``summary["step"]`` is the checkpoint step used.
  """
  restored = restore_latest(workdir, step=step)
  config = restored.config
  factory = datasets.resolve_dataset_factory(config)
  batches = factory(config, split, process_index=jax.process_index(),
                    process_count=jax.process_count(), seed=config.seed)
  out = evaluation.predict_split(restored.method, restored.state.params, restored.state.model_state,
                                 batches, restored.mesh,
                                 sharding_lib.local_batch_size(config.batch_size, restored.mesh),
                                 root_joint=evaluation.root_joint(config))
  summary = evaluation.summarize(out["pred_pose3d"], out["pose3d"], out.get("visible"),
                                 evaluation.eval_protocol(config))
  summary["num_examples"] = int(len(out["pose3d"]))
  summary["step"] = restored.step
  if jax.process_index() == 0:
    out_dir = os.path.join(workdir, f"eval_{split}")
    os.makedirs(out_dir, exist_ok=True)
    curve = summary.pop("pck_0_50")
    plots.plot_pck({f"{config.method} @ {restored.step}": curve}, os.path.join(out_dir, "pck.png"),
                   title=f"3D PCK, {split} split")
    write_skeleton_grid(out["pred_pose3d"], out["pose3d"], os.path.join(out_dir, "skeletons.png"),
                        num_skeletons)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
      json.dump({**summary, "pck_0_50_thresholds_m": curve[0].tolist(),
                 "pck_0_50": curve[1].tolist()}, f, indent=1)
    where = os.path.join(checkpoint_lib.checkpoint_directory(workdir), str(restored.step))
    print(f"checkpoint: step {restored.step} ({where})")
    print(format_table(summary, restored.step, split))
    print(f"Wrote {out_dir}/summary.json, pck.png, skeletons.png")
  return summary


def predict_image(workdir: str, image_path: str, side: str = "right",
                  output: str | None = None, step: int | None = None) -> dict[str, Any]:
  """Runs the method of ``workdir`` (latest or ``step``'s checkpoint) on one image; writes
  ``<output>.json`` and ``<output>.png`` (``checkpoint_step`` in the JSON names the step used)."""
  image, notes = images.load_rgb_image(image_path)  # Validate before the (slow) restore.
  restored = restore_latest(workdir, devices=jax.devices()[:1], step=step)
  spec = restored.method.input_spec.get("image")
  if spec is None or len(spec.shape) != 3 or spec.shape[-1] != 3:
    raise ValueError(f"Method {restored.method.name!r} takes no RGB image (its input_spec is "
                     f"{dict(restored.method.input_spec)}); it cannot predict from a photo.")
  if spec.shape[0] != spec.shape[1]:
    raise ValueError(f"Method input {tuple(spec.shape)} is not square; centre crop unsupported.")
  size = int(spec.shape[0])
  model_input = images.centre_crop_resize(image, size)
  if side == "left":
    model_input = model_input[:, ::-1]
  pred = jax.jit(restored.method.predict)(restored.state.params, restored.state.model_state,
                                          {"image": model_input[None]})
  pred = jax.device_get(pred)
  pose3d = np.asarray(pred["pose3d"][0], np.float64)
  uv = np.asarray(pred["uv"][0], np.float64) if "uv" in pred else None
  if side == "left":
    pose3d = skeleton.mirror_pose(pose3d)
    if uv is not None:
      uv[:, 0] = size - 1 - uv[:, 0]
  uv_image = None if uv is None else images.crop_to_image_uv(uv, image.shape, size)
  if not np.all(np.isfinite(pose3d)):
    raise ValueError("The method predicted non-finite joint positions for this image.")
  if output is None:
    stem = os.path.splitext(os.path.basename(image_path))[0]
    output = os.path.join(workdir, "predictions", stem)
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  result = {
      "image": os.path.abspath(image_path), "workdir": os.path.abspath(workdir),
      "checkpoint_step": restored.step, "method": restored.method.name, "side": side,
      "joint_names": list(skeleton.JOINT_NAMES),
      "pose3d_m": pose3d.tolist(),
      "uv_px": None if uv_image is None else uv_image.tolist(),
      "convention": ("metres, root-relative, camera frame (x right, y down, z forward); joint 0 = "
                     "wrist, then thumb..pinky base->tip; uv in original-image pixels, "
                     "u = column, v = row, pixel centres at integers"),
      "preprocessing": (f"centre crop {images.centre_crop_box(*image.shape[:2])[2]} px square, "
                        f"resized to {size}x{size}, scaled to [-0.5, 0.5]"
                        + ("; mirrored (left hand)" if side == "left" else "")),
      "notes": notes,
  }
  with open(output + ".json", "w") as f:
    json.dump(result, f, indent=1)
  _write_figure(image, pose3d, uv_image, output + ".png")
  return result


def _write_figure(image: np.ndarray, pose3d: np.ndarray, uv: np.ndarray | None, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  fig = plt.figure(figsize=(8, 4), dpi=100)
  ax = fig.add_subplot(1, 2, 1)
  plots.draw_hand_2d(ax, image, None, uv)
  ax.set_title("input" + ("" if uv is not None else " (method predicts no 2D keypoints)"),
               fontsize=8)
  ax3 = fig.add_subplot(1, 2, 2, projection="3d")
  plots.draw_hand_3d(ax3, None, pose3d)
  ax3.set_title("3D (camera frame, root-relative)", fontsize=8)
  fig.tight_layout()
  fig.savefig(path)
  plt.close(fig)
