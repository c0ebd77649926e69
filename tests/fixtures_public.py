"""Tiny fixtures of RHD, STB and FreiHAND written in their original on-disk formats
(../shared/specs/datasets.md), with distinctive known values the builder tests check.

Keypoints are placed so that their x coordinate encodes their index in the dataset's own order
(x = 0.001 * index metres, plus an offset per sample), so a joint order after conversion can be
read back from the built example.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib

import numpy as np
from PIL import Image
import scipy.io


def _save_png(path: str, array: np.ndarray) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path)


def dataset_keypoints(num: int, sample: int, z0: float = 0.5) -> np.ndarray:
  """(num, 3) metres: x = 0.001 * index + 0.1 * sample, a non-planar y, z around z0."""
  i = np.arange(num, dtype=np.float64)
  return np.stack([0.001 * i + 0.1 * sample, 0.01 * np.sin(i + sample), z0 + 0.002 * i], -1)


# --- RHD --------------------------------------------------------------------------------------

RHD_SIZE = 32
# (left pixels, right pixels) of each sample's mask: left wins, right wins, a tie (-> right).
RHD_COUNTS = ((40, 30), (20, 50), (25, 25))
# Depth pixel (row, col) -> (R, G) bytes written into every depth PNG.
RHD_DEPTH_BYTES = {(3, 7): (0x12, 0x34), (20, 5): (0xFF, 0xFF), (0, 0): (0, 1)}


def rhd_depth_code(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """16-bit depth code of the fixture's depth map at every pixel (a ramp over the image)."""
  return 20000 + 300 * rows + 7 * cols


def rhd_mask(sample: int) -> np.ndarray:
  """Labels: left pixels cycle over 2..17, right over 18..33, a block of person (1)."""
  n_left, n_right = RHD_COUNTS[sample]
  mask = np.zeros((RHD_SIZE, RHD_SIZE), np.uint8)
  flat = mask.reshape(-1)
  flat[0:n_left] = 2 + np.arange(n_left) % 16
  flat[100:100 + n_right] = 18 + np.arange(n_right) % 16
  flat[300:340] = 1
  return mask


def rhd_annotation(sample: int) -> dict[str, np.ndarray]:
  i = np.arange(42, dtype=np.float64)
  uv_vis = np.stack([i + 0.25, 2.0 * i + 0.5 + sample, (i % 3 != 0).astype(np.float64)], -1)
  K = np.array([[280.0 + sample, 0.0, 160.0], [0.0, 281.0 + sample, 161.0], [0.0, 0.0, 1.0]])
  return {"xyz": dataset_keypoints(42, sample).astype(np.float32),
          "uv_vis": uv_vis.astype(np.float32), "K": K.astype(np.float32)}


def write_rhd(manual_dir: str, num_train: int = 3, num_eval: int = 1) -> str:
  """RHD_published_v2/{training,evaluation} with color/mask/depth PNGs and the pickles."""
  root = os.path.join(manual_dir, "RHD_published_v2")
  rows, cols = np.mgrid[:RHD_SIZE, :RHD_SIZE]
  code = rhd_depth_code(rows, cols)
  depth_png = np.stack([code >> 8, code & 255, np.zeros_like(code)], -1)
  for (r, c), (hi, lo) in RHD_DEPTH_BYTES.items():
    depth_png[r, c] = (hi, lo, 0)
  for folder, num in (("training", num_train), ("evaluation", num_eval)):
    annos = {}
    for sample in range(num):
      name = f"{sample:05d}.png"
      colour = np.full((RHD_SIZE, RHD_SIZE, 3), (10 * sample, 50, 90), np.uint8)
      _save_png(os.path.join(root, folder, "color", name), colour)
      _save_png(os.path.join(root, folder, "mask", name), rhd_mask(sample))
      _save_png(os.path.join(root, folder, "depth", name), depth_png)
      annos[sample] = rhd_annotation(sample)
    with open(os.path.join(root, folder, f"anno_{folder}.pickle"), "wb") as f:
      pickle.dump(annos, f)
  return root


# --- STB --------------------------------------------------------------------------------------

STB_SEQUENCES = tuple(f"B{i}{kind}" for i in range(1, 7) for kind in ("Counting", "Random"))
STB_HEIGHT, STB_WIDTH = 480, 640  # STB's fixed size (its intrinsics assume it).
# SK depth pixels (row, col) -> millimetres written into every SK depth PNG.
STB_DEPTH_MM = {(240, 330): 500, (100, 200): 800}


def stb_labels(seq_index: int, frames: int) -> np.ndarray:
  """handPara (3, 21, frames) in millimetres."""
  poses = np.stack([1000.0 * dataset_keypoints(21, 10 * seq_index + f, z0=0.6)
                    for f in range(frames)])  # (frames, 21, 3)
  return np.transpose(poses, (2, 1, 0))


def write_stb(manual_dir: str, frames: int = 1, size: tuple[int, int] = (STB_HEIGHT, STB_WIDTH)
              ) -> str:
  """images/<seq>/{SK_color,SK_depth,BB_left,BB_right}_%d.png and labels/<seq>_{SK,BB}.mat."""
  height, width = size
  depth = np.zeros((height, width, 3), np.uint8)
  for (r, c), mm in STB_DEPTH_MM.items():
    if r < height and c < width:
      depth[r, c] = (mm % 256, mm // 256, 0)  # depth_mm = R + 256 G.
  for s, seq in enumerate(STB_SEQUENCES):
    for f in range(frames):
      folder = os.path.join(manual_dir, "images", seq)
      colour = np.full((height, width, 3), (s, f, 7), np.uint8)
      _save_png(os.path.join(folder, f"SK_color_{f}.png"), colour)
      _save_png(os.path.join(folder, f"SK_depth_{f}.png"), depth)
      _save_png(os.path.join(folder, f"BB_left_{f}.png"), colour)
      _save_png(os.path.join(folder, f"BB_right_{f}.png"), colour + 1)
    os.makedirs(os.path.join(manual_dir, "labels"), exist_ok=True)
    for cam, offset in (("SK", 0.0), ("BB", 5.0)):
      scipy.io.savemat(os.path.join(manual_dir, "labels", f"{seq}_{cam}.mat"),
                       {"handPara": stb_labels(s, frames) + offset})
  return manual_dir


# --- FreiHAND ---------------------------------------------------------------------------------

FREIHAND_SIZE = 224  # FreiHAND's fixed size.


def freihand_K(sample: int) -> np.ndarray:
  return np.array([[500.0 + sample, 0.0, 112.0], [0.0, 501.0, 113.0 + sample], [0.0, 0.0, 1.0]])


def freihand_mano(sample: int) -> list[list[float]]:
  return [[float(sample) + 0.01 * k for k in range(61)]]  # nested as in training_mano.json.


def freihand_mask(sample: int, size: int = FREIHAND_SIZE) -> np.ndarray:
  """A white square (the hand) whose side depends on the sample."""
  mask = np.zeros((size, size), np.uint8)
  side = 20 + 10 * sample
  mask[50:50 + side, 60:60 + side] = 255
  return mask


def write_freihand(manual_dir: str, num: int = 2, num_eval: int = 1, eval_xyz: bool = True,
                   size: int = FREIHAND_SIZE) -> str:
  """training/{rgb,mask}, training_{K,xyz,mano}.json, evaluation/rgb, evaluation_{K,xyz}.json."""
  root = os.path.join(manual_dir, "FreiHAND_pub_v2")
  for split, n in (("training", num), ("evaluation", num_eval)):
    os.makedirs(os.path.join(root, split, "rgb"), exist_ok=True)
    versions = 4 if split == "training" else 1
    for v in range(versions):
      for i in range(n):
        image = np.full((size, size, 3), (40 * v, 10 * i, 200), np.uint8)
        Image.fromarray(image).save(os.path.join(root, split, "rgb", f"{i + n * v:08d}.jpg"),
                                    quality=95)
    xyz = [dataset_keypoints(21, i + (10 if split == "evaluation" else 0)).tolist()
           for i in range(n)]
    files = {"K": [freihand_K(i).tolist() for i in range(n)]}
    if split == "training" or eval_xyz:
      files["xyz"] = xyz
    if split == "training":
      files["mano"] = [freihand_mano(i) for i in range(n)]
      os.makedirs(os.path.join(root, split, "mask"), exist_ok=True)
      for i in range(n):
        Image.fromarray(freihand_mask(i, size)).save(
            os.path.join(root, split, "mask", f"{i:08d}.jpg"), quality=95)
    for name, value in files.items():
      with open(os.path.join(root, f"{split}_{name}.json"), "w") as f:
        json.dump(value, f)
  return root


def truncate(path: str, keep: float = 0.5) -> None:
  """Cuts a file to a fraction of its bytes (a broken download)."""
  with open(path, "rb") as f:
    data = f.read()
  with open(path, "wb") as f:
    f.write(data[:int(len(data) * keep)])


def write_bomb_png(path: str, width: int, height: int) -> int:
  """A valid black 1-bit grey-scale PNG of width x height, written row by row (a decompression
  bomb: a 15000 x 15000 one is 28 KB on disk) without allocating its pixels. Returns its bytes."""

  def chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

  row = b"\0" * (1 + (width + 7) // 8)  # filter type 0, then width bits of 0 (black).
  compressor = zlib.compressobj(9)
  idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
  ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey, no interlace.
  data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)
  return len(data)


def prepare(builder_cls, config: str, manual_dir, data_dir):
  """Builds `builder_cls(config)` into data_dir from manual_dir (ArrayRecord) and returns it."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  builder = builder_cls(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(manual_dir)))
  return builder


def is_prepared(builder_cls, config: str, data_dir) -> bool:
  """Whether a fresh builder instance finds a complete dataset in data_dir."""
  return builder_cls(config=config, data_dir=os.fspath(data_dir),
                     file_format="array_record").is_prepared()
