r"""Predicts the 3D hand pose in one RGB image with a trained method.

    python -m experiments.predict --workdir=/tmp/toy --image=hand.png [--side=right|left] \
        [--output=/tmp/hand_pose] [--checkpoint_step=N]

Writes ``<output>.json`` (21 joints, metres, root-relative, camera frame: x right, y down,
z forward; joint order and names of handjax/hand/skeleton.py) and ``<output>.png`` (the image with
the 2D keypoints when the method predicts them, and a 3D skeleton view).

Pre-processing: no keypoints are known for a user's image, so the hand must be roughly centred; the
image is centre-cropped to a square (side = the shorter side) and resized to the method's input
size, then scaled to [-0.5, 0.5]. Training crops are centred on the hand instead, so a hand that
fills little of the photo is predicted worse. Grey-scale, palette, 16-bit and RGBA images are
converted to RGB (alpha composited on white); EXIF rotation is applied. Models are trained on right
hands: with --side=left the image is mirrored before prediction and the pose mirrored back.
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app
from absl import flags

from experiments import cli

_WORKDIR = flags.DEFINE_string("workdir", None, "Workdir of a trained run (latest checkpoint used).")
_IMAGE = flags.DEFINE_string("image", None, "Path of an RGB image (PNG, JPEG, ...).")
_SIDE = flags.DEFINE_enum("side", "right", ["right", "left"], "Which hand the image shows.")
_OUTPUT = flags.DEFINE_string("output", None,
                              "Output path prefix (default: <workdir>/predictions/<image name>).")
_CHECKPOINT_STEP = flags.DEFINE_integer(
    "checkpoint_step", None, "Use this step's checkpoint (default: the newest that restores; a "
    "damaged newer one is skipped with a warning).")
flags.mark_flags_as_required(["workdir", "image"])


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from handjax.train import checkpoint, images, inference  # pylint: disable=g-import-not-at-top

  try:
    result = inference.predict_image(_WORKDIR.value, _IMAGE.value, _SIDE.value, _OUTPUT.value,
                                     step=_CHECKPOINT_STEP.value)
  except (checkpoint.CheckpointError, images.ImageError, FileNotFoundError, ValueError) as e:
    sys.exit(f"error: {e}")
  for note in result["notes"]:
    print(f"note: {note}")
  print(f"checkpoint: step {result['checkpoint_step']}")
  print(f"pose3d (m, root-relative) of {len(result['pose3d_m'])} joints written with the figure.")


if __name__ == "__main__":
  cli.run(main)
