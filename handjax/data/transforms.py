"""Host-side per-example transforms (numpy only; they run inside grain worker processes).

Every geometric transform is a change of **virtual camera**: a `View` holds a 3x3 matrix M that maps
source camera-frame points to the new camera frame (X' = M X; a rotation, times the mirror
F = diag(-1, 1, 1) after an odd number of flips), the new intrinsics K' and the output size. A
source pixel x = [u, v, 1] lands at x' ~ H x with H = K' M K^-1 (Hartley & Zisserman Sec. 8.4.2),
so crops, resizes, scale/translation jitter (changes of K only), in-plane rotation, horizontal flip
and view correction (changes of M and K) compose by matrix products and the example is resampled
once (`warp`): image bilinear, mask and depth nearest-neighbour, uv by H, pose3d / points by M,
K := K'. Projecting the new pose3d with the new K gives the new uv exactly, whatever the chain.

Conventions: OpenCV camera frame, metres, u = column, v = row, pixel centres at integers, so an
image of width W spans the continuous range [-0.5, W - 0.5].

Why numpy twins of a few `handjax.hand` / `handjax.losses` formulas (`_view_correction_rotation`,
`heatmaps`, `normalize_pose`): these functions run per example inside grain worker processes;
calling JAX there would initialise a JAX backend in every worker (on a GPU host: a CUDA context and
memory preallocation per worker) and pay dispatch per op. Each twin is tested equal to its jnp
original (tests/test_transforms.py).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from handjax.hand import pose as pose_lib
from handjax.hand import skeleton

Example = dict[str, np.ndarray]

# Mirror of the camera frame across its x = 0 plane (the horizontal flip, `flip_view`).
MIRROR_X = np.diag([-1.0, 1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class View:
  """A virtual camera relative to the source camera of an example.

  Attributes:
    M: (3, 3) X_new = M X_source for camera-frame points (det -1 after an odd number of flips).
    K: (3, 3) intrinsics of the output image.
    size: (height, width) of the output image.
  """

  M: np.ndarray
  K: np.ndarray
  size: tuple[int, int]

  @property
  def mirrored(self) -> bool:
    return bool(np.linalg.det(self.M) < 0)


def _check_example(example: Example) -> None:
  for key in ("image", "K"):
    if key not in example:
      raise ValueError(f"example needs key {key!r}; it has {sorted(example)}")
  if example["image"].ndim != 3 or example["image"].shape[-1] != 3:
    raise ValueError(f"image must be (H, W, 3), got {example['image'].shape}")
  if np.shape(example["K"]) != (3, 3):
    raise ValueError(f"K must be (3, 3), got {np.shape(example['K'])}")


def identity_view(example: Example) -> View:
  """The source camera itself: M = I, K' = K, same size."""
  _check_example(example)
  height, width = example["image"].shape[:2]
  return View(np.eye(3), np.asarray(example["K"], np.float64), (int(height), int(width)))


# --- Changes of intrinsics (pixel-space affine maps) -----------------------------------------


def affine_view(view: View, A: np.ndarray, size: tuple[int, int] | None = None) -> View:
  """Applies a pixel-space affine map x' = A x after the view: K' = A K (A's last row [0, 0, 1])."""
  A = np.asarray(A, np.float64)
  if A.shape != (3, 3) or not np.allclose(A[2], [0.0, 0.0, 1.0]):
    raise ValueError(f"A must be a (3, 3) affine matrix with last row [0, 0, 1], got {A}")
  return View(view.M, A @ view.K, tuple(size) if size is not None else view.size)


def _translation(du: float, dv: float) -> np.ndarray:
  return np.array([[1.0, 0.0, du], [0.0, 1.0, dv], [0.0, 0.0, 1.0]])


def _image_center(size: tuple[int, int]) -> np.ndarray:
  height, width = size
  return np.array([(width - 1) / 2.0, (height - 1) / 2.0])


def reference_crop_box(
    uv: np.ndarray,
    visible: np.ndarray | None = None,
    *,
    min_side: float = 50.0,
    max_side: float = 500.0,
    center_joint: int = skeleton.MIDDLE_MCP,
) -> tuple[np.ndarray, float]:
  """The reference crop of specs/datasets.md (RHD protocol; Zimmermann & Brox ICCV 2017, hand3d).

  centre c = uv[middle MCP];
  side = clip(2 max_{visible j, axis a} |uv_ja - c_a|, min_side, max_side)
  (twice the largest per-axis extent of the visible keypoints around c).

  Args:
    uv: (21, 2) keypoints in pixels.
    visible: (21,) bool; all visible if None. With no visible keypoint the side is `min_side`.
    min_side: smallest side in pixels (50 in the reference).
    max_side: largest side in pixels (500 in the reference).
    center_joint: joint at the crop centre.

  Returns:
    (centre (2,), side) in source pixels.
  """
  uv = np.asarray(uv, np.float64)
  if uv.shape != (skeleton.NUM_JOINTS, 2):
    raise ValueError(f"uv must be (21, 2), got {uv.shape}")
  if not 0 < min_side <= max_side:
    raise ValueError(f"need 0 < min_side <= max_side, got {min_side}, {max_side}")
  visible = np.ones(len(uv), bool) if visible is None else np.asarray(visible, bool)
  center = uv[center_joint]
  extent = np.abs(uv[visible] - center).max() if visible.any() else 0.0
  return center, float(np.clip(2.0 * extent, min_side, max_side))


def crop_view(view: View, center: np.ndarray, side: float, out_size: int) -> View:
  """Square crop of side `side` around `center`, resized to out_size x out_size: K' = T S K.

  S = diag(s, s, 1) with s = out_size / side and T translates by (out_size - 1) / 2 - s c, so the
  crop's continuous range [c - side / 2, c + side / 2] maps onto [-0.5, out_size - 0.5]
  (pixel centres at integers) and c onto the output centre.
  """
  if side <= 0 or out_size <= 0:
    raise ValueError(f"need side > 0 and out_size > 0, got {side}, {out_size}")
  s = out_size / float(side)
  half = (out_size - 1) / 2.0
  center = np.asarray(center, np.float64)
  T = _translation(half - s * center[0], half - s * center[1])
  return affine_view(view, T @ np.diag([s, s, 1.0]), (out_size, out_size))


def resize_view(view: View, size: tuple[int, int]) -> View:
  """Resizes the output to (height, width): u' + 0.5 = (u + 0.5) W' / W (pixel-edge aligned)."""
  height, width = view.size
  sx, sy = size[1] / width, size[0] / height
  A = np.array([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]])
  return affine_view(view, A, size)


def scale_view(view: View, factor: float) -> View:
  """Zooms by `factor` about the image centre (factor > 1 enlarges the hand), size kept."""
  c = _image_center(view.size)
  A = _translation(*c) @ np.diag([factor, factor, 1.0]) @ _translation(*-c)
  return affine_view(view, A)


def translate_view(view: View, du: float, dv: float) -> View:
  """Shifts the image content by (du, dv) pixels."""
  return affine_view(view, _translation(du, dv))


# --- Changes of camera orientation ------------------------------------------------------------


def rotation_z(angle: float) -> np.ndarray:
  """Rotation about the optical axis; positive angles turn the image content clockwise on screen."""
  c, s = np.cos(angle), np.sin(angle)
  return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotate_view(view: View, angle: float) -> View:
  """In-plane rotation by `angle` radians about the image centre, done as an exact 3D camera roll.

  An image rotation is a 3D rotation only about the principal point p, so: the camera rolls about
  its optical axis (M' = R_z M, points X' = R_z X), which rotates pixels about p by
  x -> K R_z K^-1 x, and then the principal point shifts by t = c - K R_z K^-1 c (K' = T(t) K) so
  that the image centre c stays fixed. For square pixels without skew (fx = fy, s = 0: every crop
  of a dataset with fx = fy) the image map is exactly the rotation about c; otherwise it is the
  exact image of the camera roll (a slight shear) and all modalities still agree.
  """
  Rz = rotation_z(angle)
  c = np.append(_image_center(view.size), 1.0)
  rolled = view.K @ Rz @ np.linalg.inv(view.K)  # affine: R_z keeps z
  moved = rolled @ c
  T = _translation(c[0] - moved[0] / moved[2], c[1] - moved[1] / moved[2])
  return View(Rz @ view.M, T @ view.K, view.size)


def flip_view(view: View) -> View:
  """Horizontal flip as a mirror of the 3D scene across the camera's x = 0 plane.

  Points X' = F X with F = diag(-1, 1, 1) (pose3d, points: x -> -x; a left hand becomes a right
  hand), image columns u' = W - 1 - u, and
  K' = P K F = [[fx, -s, W - 1 - cx], [0, fy, cy], [0, 0, 1]] with P the pixel flip, so that
  K' F X projects to W - 1 - u. Depth (z) is unchanged. Flipping
  twice is the identity.
  """
  width = view.size[1]
  P = np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  return View(MIRROR_X @ view.M, P @ view.K @ MIRROR_X, view.size)


def _view_correction_rotation(center_uv: np.ndarray, K: np.ndarray) -> np.ndarray:
  """numpy twin of `handjax.hand.viewpoint.view_correction_rotation` (see the module docstring).

  Yang et al. ICCV 2019 Sec. 4.1: f = K^-1 [u, v, 1] / ||.||, a = f x (0, 0, 1),
  R = I + [a]_x + [a]_x^2 / (1 + f_z), so that R f = (0, 0, 1).
  """
  ray = np.linalg.solve(K, np.array([center_uv[0], center_uv[1], 1.0]))
  f = ray / np.linalg.norm(ray)
  a = np.array([f[1], -f[0], 0.0])
  skew = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
  return np.eye(3) + skew + skew @ skew / (1.0 + f[2])


def view_correct_view(view: View, center_uv: np.ndarray | None = None) -> View:
  """View correction (Yang et al. ICCV 2019 Sec. 4.1; Li & Lee CVPR 2019).

  R = view_correction_rotation(c, K) turns the ray through the crop centre c (default: the image
  centre) onto the optical axis; points X' = R X. The homography of the issue, K R K^-1, would put c
  on the principal point, which after an off-centre crop is not the image centre; we use
  K' = K with (cx, cy) := c, i.e. K R K^-1 followed by the translation that keeps the hand at the
  image centre (a change of intrinsics only, so still exact). The corrected image is what a camera
  looking straight at the hand, with its principal point at the image centre, sees.
  """
  c = _image_center(view.size) if center_uv is None else np.asarray(center_uv, np.float64)
  R = _view_correction_rotation(c, view.K)
  K = view.K.copy()
  K[0, 2], K[1, 2] = c
  return View(R @ view.M, K, view.size)


# --- Resampling ---------------------------------------------------------------------------------


def _pixel_grid(size: tuple[int, int]) -> np.ndarray:
  """(H, W, 3) homogeneous pixel centres [u, v, 1]."""
  height, width = size
  v, u = np.mgrid[0:height, 0:width].astype(np.float64)
  return np.stack([u, v, np.ones_like(u)], -1)


def _bilinear(image: np.ndarray, us: np.ndarray, vs: np.ndarray, valid: np.ndarray) -> np.ndarray:
  """Bilinear sample of an (H, W, C) image at float pixel coordinates; zeros outside.

  Each of the four corners is one gather from the flattened image; a corner outside the image (or
  a sample that is not `valid`) gets weight 0, so a sample straddling the border blends with zeros.
  """
  height, width = image.shape[:2]
  flat = image.reshape((height * width,) + image.shape[2:])
  u0, v0 = np.floor(us), np.floor(vs)
  wu, wv = us - u0, vs - v0
  u0, v0 = u0.astype(np.int64), v0.astype(np.int64)
  out = np.zeros(us.shape + image.shape[2:], np.float64)
  for du, dv, w in ((0, 0, (1 - wu) * (1 - wv)), (1, 0, wu * (1 - wv)),
                    (0, 1, (1 - wu) * wv), (1, 1, wu * wv)):
    uu, vv = u0 + du, v0 + dv
    inside = valid & (uu >= 0) & (uu < width) & (vv >= 0) & (vv < height)
    weight = (w * inside).reshape(us.shape + (1,) * (image.ndim - 2))
    out += weight * flat[np.where(inside, vv * width + uu, 0)]
  return out


def _apply_homography(H: np.ndarray, uv: np.ndarray) -> np.ndarray:
  q = uv @ H[:, :2].T + H[:, 2]
  return q[..., :2] / q[..., 2:3]


def warp(example: Example, view: View) -> Example:
  """Resamples every modality of `example` into `view` (one interpolation for a whole chain).

  With H = K' M K^-1 and its inverse map x -> q = K M^-1 K'^-1 x' (source pixel q / q_z):
    image  bilinear at q (zeros outside);  mask  nearest at q;
    depth  nearest source depth d at q, re-expressed in the new frame: the new pixel's ray
           r' = K'^-1 x' meets source-depth d at z' = d / (M^-1 r')_z = d / q_z (exact when the
           surface is fronto-parallel over one pixel; exact for K-only changes and rolls);
    uv     H uv;  pose3d, points  X M^T (zero rows, i.e. padding, stay zero);  K  K';
    viewpoint  M V (times diag(1, 1, -1) when mirrored: the canonical frame's z flips with the
           hand, `viewpoint.canonicalize`);  canonical_pose unchanged;
    hand_side  swapped when mirrored.

  Args:
    example: dict with at least `image` (H, W, 3) and `K`; other keys are optional.
    view: the target camera.

  Returns:
    A new example dict (unknown keys are copied unchanged).
  """
  _check_example(example)
  K_src = np.asarray(example["K"], np.float64)
  M_inv = np.linalg.inv(view.M)
  back = K_src @ M_inv @ np.linalg.inv(view.K)  # target pixel -> source pixel (homogeneous)
  q = _pixel_grid(view.size) @ back.T
  in_front = q[..., 2] > 1e-12
  qz = np.where(in_front, q[..., 2], 1.0)
  us, vs = q[..., 0] / qz, q[..., 1] / qz
  height, width = example["image"].shape[:2]
  iu, iv = np.rint(us).astype(np.int64), np.rint(vs).astype(np.int64)
  near_ok = in_front & (iu >= 0) & (iu < width) & (iv >= 0) & (iv < height)
  iu, iv = np.clip(iu, 0, width - 1), np.clip(iv, 0, height - 1)

  out = dict(example)
  image = _bilinear(example["image"].astype(np.float64), us, vs, in_front)
  if example["image"].dtype == np.uint8:
    out["image"] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
  else:
    out["image"] = image.astype(example["image"].dtype)
  if "mask" in example:
    mask = np.asarray(example["mask"])
    ok = near_ok.reshape(near_ok.shape + (1,) * (mask.ndim - 2))
    out["mask"] = np.where(ok, mask[iv, iu], 0).astype(mask.dtype)
  if "depth" in example:
    depth = np.asarray(example["depth"])
    src = depth[iv, iu].reshape(view.size + depth.shape[2:])
    scale = (1.0 / qz).reshape(view.size + (1,) * (depth.ndim - 2))
    ok = near_ok.reshape(near_ok.shape + (1,) * (depth.ndim - 2))
    out["depth"] = np.where(ok, src * scale, 0.0).astype(depth.dtype)
  H = view.K @ view.M @ np.linalg.inv(K_src)
  if "uv" in example:
    out["uv"] = _apply_homography(H, np.asarray(example["uv"], np.float64)).astype(np.float32)
  for key in ("pose3d", "points"):
    if key in example:
      out[key] = (np.asarray(example[key], np.float64) @ view.M.T).astype(np.float32)
  if "viewpoint" in example:
    vp = view.M @ np.asarray(example["viewpoint"], np.float64)
    out["viewpoint"] = (vp @ np.diag([1.0, 1.0, -1.0]) if view.mirrored else vp).astype(np.float32)
  if "hand_side" in example and view.mirrored:
    side = np.asarray(example["hand_side"])
    out["hand_side"] = (1 - side).astype(side.dtype)
  out["K"] = view.K.astype(np.float32)
  return out


# --- One-call geometric transforms (each resamples once) --------------------------------------


def reference_crop(example: Example, out_size: int = 256, *, min_side: float = 50.0,
                   max_side: float = 500.0) -> Example:
  """The reference crop of specs/datasets.md (`reference_crop_box`, `crop_view`), resampled."""
  center, side = reference_crop_box(example["uv"], example.get("visible"), min_side=min_side,
                                    max_side=max_side)
  return warp(example, crop_view(identity_view(example), center, side, out_size))


def resize(example: Example, size: tuple[int, int]) -> Example:
  return warp(example, resize_view(identity_view(example), size))


def rotate(example: Example, angle: float) -> Example:
  return warp(example, rotate_view(identity_view(example), angle))


def scale(example: Example, factor: float) -> Example:
  return warp(example, scale_view(identity_view(example), factor))


def translate(example: Example, du: float, dv: float) -> Example:
  return warp(example, translate_view(identity_view(example), du, dv))


def flip(example: Example) -> Example:
  return warp(example, flip_view(identity_view(example)))


def view_correct(example: Example, center_uv: np.ndarray | None = None) -> Example:
  return warp(example, view_correct_view(identity_view(example), center_uv))


# --- Photometric ------------------------------------------------------------------------------


def hue_rotation_matrix(angle: float) -> np.ndarray:
  """RGB -> RGB hue rotation by `angle` radians: rotates the chroma (I, Q) of YIQ, keeps luma Y."""
  rgb_to_yiq = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
  c, s = np.cos(angle), np.sin(angle)
  rot = np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
  return np.linalg.inv(rgb_to_yiq) @ rot @ rgb_to_yiq


def color_jitter(image: np.ndarray, hue: float, brightness: float) -> np.ndarray:
  """Hue rotation by `hue` radians, then multiplication by `brightness`; uint8 in, uint8 out."""
  x = image.astype(np.float64) @ hue_rotation_matrix(hue).T * brightness
  return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def normalize_image(image: np.ndarray) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-0.5, 0.5]: x / 255 - 0.5."""
  return (np.asarray(image, np.float32) / 255.0 - 0.5).astype(np.float32)


# --- Targets ------------------------------------------------------------------------------------


def heatmaps(uv: np.ndarray, image_size: tuple[int, int], heatmap_size: tuple[int, int],
             sigma: float) -> np.ndarray:
  """Gaussian heat maps at uv (numpy twin of `handjax.losses.heatmap.gaussian_heatmaps`).

  Yang dissertation Eq. 2.1: h_p = exp(-||p - J||^2 / (2 sigma^2)), with J the keypoint moved from
  image pixels to heat-map pixels edge-aligned: J + 0.5 = (uv + 0.5) * h / H.

  Returns:
    (h, w, 21) float32.
  """
  uv = np.asarray(uv, np.float64)
  hm_h, hm_w = heatmap_size
  ratio = np.array([hm_w / image_size[1], hm_h / image_size[0]])
  j = (uv + 0.5) * ratio - 0.5
  du = np.arange(hm_w)[:, None] - j[:, 0]  # (w, K)
  dv = np.arange(hm_h)[:, None] - j[:, 1]  # (h, K)
  return np.exp(-(dv[:, None, :] ** 2 + du[None, :, :] ** 2) / (2.0 * sigma**2)).astype(np.float32)


def normalize_pose(
    pose: np.ndarray, root: int = skeleton.WRIST
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """numpy twin of `handjax.hand.pose.normalize_pose`: (pose - pose[root]) / max(scale, SCALE_EPS).

  scale = ||pose[middle PIP] - pose[middle MCP]|| (specs/datasets.md, "Reference scale").

  Returns:
    (normalized (21, 3), root position (3,), scale ()) float32.
  """
  pose = np.asarray(pose, np.float64)
  b0, b1 = skeleton.REFERENCE_SCALE_BONE
  scale = max(float(np.linalg.norm(pose[b1] - pose[b0])), pose_lib.SCALE_EPS)
  rel = (pose - pose[root]) / scale
  return rel.astype(np.float32), pose[root].astype(np.float32), np.float32(scale)


def sample_points(
    points: np.ndarray, num_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, bool]:
  """A fixed-size random subset of the valid points (z > 0): without replacement when there are
  at least `num_points`, with replacement otherwise. A fresh subset for every generator state.

  Returns:
    ((num_points, 3) float32, whether any valid point existed; zeros if not).
  """
  points = np.asarray(points, np.float32)
  if points.ndim != 2 or points.shape[-1] != 3:
    raise ValueError(f"points must be (P, 3), got {points.shape}")
  valid = np.flatnonzero(np.isfinite(points).all(-1) & (points[:, 2] > 0))
  if len(valid) == 0:
    return np.zeros((num_points, 3), np.float32), False
  idx = rng.choice(valid, num_points, replace=len(valid) < num_points)
  return points[idx], True
