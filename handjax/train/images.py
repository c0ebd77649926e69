"""Loading and validating a user's image for prediction: RGB conversion and centre crop + resize.

No keypoints are known for a user's image, so the hand must be roughly centred: the image is
centre-cropped to a square (side = the shorter side) and resized to the method's input size, then
scaled to [-0.5, 0.5] (the project's image range). Grey-scale, palette, 16-bit and RGBA images are
converted to RGB (alpha composited on white); EXIF rotation is applied; files that are missing,
unreadable or too small raise :class:`ImageError` with the reason.
"""

from __future__ import annotations

import os

import numpy as np

MIN_SIDE = 16  # Pixels; smaller images carry too little to crop and resize meaningfully.
MAX_ASPECT = 4.0  # Beyond this the centre crop keeps under a quarter of the image: warn.


class ImageError(ValueError):
  """A user image that cannot be used, with the reason."""


def load_rgb_image(path: str) -> tuple[np.ndarray, list[str]]:
  """Reads an image file as (H, W, 3) uint8 RGB, converting other modes; notes what was converted.

  Raises:
    ImageError: missing, unreadable/corrupt, or smaller than ``MIN_SIDE`` pixels.
  """
  from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=g-import-not-at-top

  if not os.path.exists(path):
    raise ImageError(f"Image {path!r} does not exist.")
  if os.path.isdir(path):
    raise ImageError(f"Image path {path!r} is a directory, not an image file.")
  try:
    with Image.open(path) as img:
      img.load()
      img = ImageOps.exif_transpose(img)
  except UnidentifiedImageError as e:
    raise ImageError(f"{path!r} is not an image format Pillow can read ({e}).") from e
  except (OSError, SyntaxError, ValueError) as e:
    raise ImageError(f"{path!r} could not be decoded (corrupt or truncated file?): {e}") from e
  notes = []
  if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
    mode = img.mode
    values = np.asarray(img, np.float64)
    top = values.max() if values.max() > 0 else 1.0
    img = Image.fromarray(np.round(255.0 * np.clip(values, 0, None) / top).astype(np.uint8))
    notes.append(f"grey-scale image of mode {mode} rescaled to 8 bits (max -> 255)")
  if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    img = Image.alpha_composite(background, rgba).convert("RGB")
    notes.append("alpha channel composited on white")
  elif img.mode != "RGB":
    notes.append(f"converted from mode {img.mode} to RGB")
    img = img.convert("RGB")
  image = np.asarray(img, np.uint8)
  height, width = image.shape[:2]
  if min(height, width) < MIN_SIDE:
    raise ImageError(f"Image {path!r} is {width}x{height} pixels; need at least {MIN_SIDE} on the "
                     "shorter side.")
  if max(height, width) / min(height, width) > MAX_ASPECT:
    notes.append(f"very elongated image ({width}x{height}): the centre crop keeps only its middle")
  return image, notes


def centre_crop_box(height: int, width: int) -> tuple[int, int, int]:
  """(x0, y0, side) of the central square crop."""
  side = min(height, width)
  return (width - side) // 2, (height - side) // 2, side


def centre_crop_resize(image: np.ndarray, size: int) -> np.ndarray:
  """Central square crop resized to ``size`` x ``size`` (bilinear), float32 in [-0.5, 0.5]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  x0, y0, side = centre_crop_box(*image.shape[:2])
  crop = Image.fromarray(image[y0:y0 + side, x0:x0 + side])
  resized = np.asarray(crop.resize((size, size), Image.Resampling.BILINEAR), np.float32)
  return resized / 255.0 - 0.5


def crop_to_image_uv(uv: np.ndarray, image_shape: tuple[int, ...], size: int) -> np.ndarray:
  """Maps keypoints from the resized crop back to original pixels (pixel centres at integers).

  A crop pixel ``u`` covers ``[u - 0.5, u + 0.5]``, i.e. original ``x0 + (u + 0.5) * side / size
  - 0.5``.
  """
  x0, y0, side = centre_crop_box(*image_shape[:2])
  scale = side / size
  return (np.asarray(uv, np.float64) + 0.5) * scale - 0.5 + np.array([x0, y0])
