"""Loading and validating a user's image for prediction: RGB conversion and centre crop + resize.

No keypoints are known for a user's image, so the hand must be roughly centred: the image is
centre-cropped to a square (side = the shorter side) and resized to the method's input size, then
scaled to [-0.5, 0.5] (the project's image range). Grey-scale, palette, 16-bit, CMYK and RGBA
images are converted to RGB (alpha composited on white); EXIF rotation is applied; files that are
missing, unreadable, too small or above `handjax.image_files.MAX_PIXELS` (checked from the header,
before decoding) raise :class:`ImageError` with the reason.
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

  The size is checked from the header before anything is decoded (`handjax.image_files`, at most
  `MAX_PIXELS` pixels). Modes: 16/32-bit integer and float grey-scale are rescaled to 8 bits (max
  -> 255); alpha is composited on white; CMYK, palette, grey-scale and the other colour spaces
  Pillow converts become RGB, each with a note.

  Raises:
    ImageError: missing, unreadable/corrupt, too large, of a mode Pillow cannot convert to RGB,
      or smaller than ``MIN_SIDE`` pixels.
  """
  from PIL import Image, ImageOps, UnidentifiedImageError  # pylint: disable=g-import-not-at-top
  from handjax import image_files  # pylint: disable=g-import-not-at-top

  if not os.path.exists(path):
    raise ImageError(f"Image {path!r} does not exist.")
  if os.path.isdir(path):
    raise ImageError(f"Image path {path!r} is a directory, not an image file.")
  try:
    with image_files.open_image(path) as img:
      img.load()
      img = ImageOps.exif_transpose(img)
  except image_files.ImageTooLargeError as e:
    raise ImageError(str(e)) from None
  except UnidentifiedImageError as e:
    raise ImageError(f"{path!r} is not an image format Pillow can read ({e}).") from e
  except (OSError, SyntaxError, ValueError) as e:
    raise ImageError(f"{path!r} could not be decoded (corrupt or truncated file?): {e}") from e
  notes = []
  if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
    mode = img.mode
    values = np.asarray(img, np.float64)
    top = values.max() if values.max() > 0 else 1.0
    img = Image.fromarray(np.round(255.0 * np.clip(values, 0, None) / top).astype(np.uint8))
    notes.append(f"{image_files.describe_mode(mode)} image rescaled to 8 bits (max -> 255)")
  if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    img = Image.alpha_composite(background, rgba).convert("RGB")
    notes.append("alpha channel composited on white")
  elif img.mode != "RGB":
    mode = img.mode
    try:
      img = img.convert("RGB")
    except ValueError as e:
      raise ImageError(f"Image {path!r} is {image_files.describe_mode(mode)}, which cannot be "
                       f"converted to RGB ({e}); save it as an 8-bit RGB PNG or JPEG.") from e
    note = f"converted from {image_files.describe_mode(mode)} to RGB"
    if mode == "CMYK":
      note += " without a colour profile (colours may be off)"
    notes.append(note)
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
