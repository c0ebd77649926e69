"""Opening image files from elsewhere: one pixel limit, checked from the header before decoding.

Every image a binary or builder reads (`handjax.train.images` for `experiments.predict`,
`handjax.data.builders._common.read_image` for RHD, STB and FreiHAND) is opened through
:func:`open_image`. Pillow's `Image.open` is lazy: it parses the header (format, mode, size) and
decodes nothing until `.load()` / `.convert()`; the size is checked in between, so a
decompression bomb (a 15000 x 15000 black PNG is 655 KB on disk and 675 MB decoded as RGB) is
refused without allocating its pixels.

Why a limit of our own: Pillow warns above `Image.MAX_IMAGE_PIXELS` (89.5 MP) and raises
`DecompressionBombError` only above twice that, an exception no caller here caught (a traceback
from `predict`). :data:`MAX_PIXELS` is well below both and far above any dataset frame (RHD
320 x 320, STB 640 x 480, FreiHAND 224 x 224): 40 MP is a 7300 x 5470 photo, larger than the
12-24 MP a phone or DSLR writes by default; decoded to RGB it is 120 MB.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator
import warnings

from PIL import Image

# Largest width * height that is decoded (see the module docstring for the choice).
MAX_PIXELS = 40_000_000

# PIL modes in words, for messages (https://pillow.readthedocs.io/en/stable/handbook/concepts.html).
_MODE_WORDS = {
    "1": "1-bit black and white",
    "L": "8-bit grey-scale",
    "LA": "8-bit grey-scale with alpha",
    "P": "8-bit palette",
    "PA": "8-bit palette with alpha",
    "RGB": "8-bit RGB",
    "RGBA": "8-bit RGB with alpha",
    "RGBX": "8-bit RGB with padding",
    "CMYK": "CMYK (print colours)",
    "YCbCr": "YCbCr colour",
    "LAB": "CIE L*a*b* colour",
    "HSV": "HSV colour",
    "I": "32-bit integer grey-scale",
    "F": "32-bit float grey-scale",
    "I;16": "16-bit grey-scale",
    "I;16L": "16-bit grey-scale",
    "I;16B": "16-bit grey-scale",
    "I;16N": "16-bit grey-scale",
}


class ImageTooLargeError(ValueError):
  """An image whose header declares more than MAX_PIXELS pixels (it was not decoded)."""


def describe_mode(mode: str) -> str:
  """A PIL mode in words, e.g. "16-bit grey-scale (PIL mode I;16)"."""
  words = _MODE_WORDS.get(mode)
  return f"{words} (PIL mode {mode})" if words else f"PIL mode {mode}"


def check_pixels(path: os.PathLike | str, width: int, height: int) -> None:
  """Refuses an image of more than MAX_PIXELS pixels; call it before decoding.

  Args:
    path: the file, for the message.
    width: pixels, from the header (`Image.open(path).size[0]`).
    height: pixels, likewise.

  Raises:
    ImageTooLargeError: width * height > MAX_PIXELS, naming the file, its size and the limit.
  """
  if width * height > MAX_PIXELS:
    raise ImageTooLargeError(
        f"Image {os.fspath(path)!r} is {width}x{height} = {width * height} pixels, above the "
        f"limit of {MAX_PIXELS} ({MAX_PIXELS / 1e6:g} MP); it was not decoded. Downscale it "
        "first (a possible decompression bomb otherwise).")


def _pillow_bomb_message(path: os.PathLike | str, error: Exception) -> str:
  """ImageTooLargeError's message for Pillow's own refusal (above 2 x Image.MAX_IMAGE_PIXELS).

  Pillow raises inside `Image.open` and gives only the pixel count (in its message), not the
  width and height.
  """
  found = re.search(r"\((\d+) pixels\)", str(error))
  size = f"{found.group(1)} pixels" if found else f"more than {2 * Image.MAX_IMAGE_PIXELS} pixels"
  return (f"Image {os.fspath(path)!r} is {size}, above the limit of {MAX_PIXELS} "
          f"({MAX_PIXELS / 1e6:g} MP); it was not decoded. Downscale it first (a possible "
          "decompression bomb otherwise).")


@contextlib.contextmanager
def open_image(path: os.PathLike | str) -> Iterator[Image.Image]:
  """`PIL.Image.open(path)` with its size checked (`check_pixels`); nothing is decoded yet.

  Pillow's DecompressionBombWarning is silenced here (the stricter limit above applies) and its
  DecompressionBombError becomes ImageTooLargeError. Other errors of `Image.open`
  (FileNotFoundError, `UnidentifiedImageError`, OSError) pass through for the caller to word.

  Yields:
    The lazily opened image; the caller decodes it (`.load()`, `.convert()`) inside the block.
  """
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    try:
      image = Image.open(path)
    except Image.DecompressionBombError as e:
      raise ImageTooLargeError(_pillow_bomb_message(path, e)) from None
  with image:
    check_pixels(path, *image.size)
    yield image
