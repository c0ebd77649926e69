r"""Benchmark suite `conv_variants`: the ResNet-18 train step's convolutions, written four ways (issue 9).

The CPU gap to PyTorch in `train_step` is the ResNet-18 backbone (its convolutions: XLA:CPU runs
them with its own Eigen kernels, PyTorch with oneDNN). This suite times forward and forward +
backward of the handjax ResNet-18 (`handjax.models.ResNet`, BatchNorm in training mode, loss =
sum of squared features) with each way of computing its convolutions, next to the PyTorch twin
(`experiments.torch_reference.ResNet`), all interleaved in one process:

  * "lax f32": `flax.linen.Conv` as shipped (`lax.conv_general_dilated`);
  * "lax bf16": parameters and activations cast to bfloat16 (the dtype experiment);
  * "weight grad as GEMM": forward and input gradient as XLA convolutions, the kernel gradient as
    one matrix product of the im2col patches with the output gradient (`conv_gemm_weight_grad`);
  * "im2col GEMM": every convolution as patches x kernel matrix (`conv_im2col`), differentiated
    by JAX (the layout experiment: a single large GEMM instead of a spatial convolution).

XLA's library-fusion flags (`--xla_cpu_experimental_{xnn,ynn,onednn}_fusion_type=
LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION`, `--xla_cpu_use_onednn`) leave the convolutions as XLA
`convolution` instructions in jax 0.10 (checked in the compiled HLO), so they are not rows here;
`train_step`'s CPU-option rows time them on the whole step.

    python -m experiments.benchmark --suites=conv_variants [--quick]
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Any, Callable, Iterator

import flax.linen.linear as flax_linear
import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

_NHWC = ("NHWC", "HWIO", "NHWC")
Pads = tuple[tuple[int, int], tuple[int, int]]


def _patches(x: jax.Array, kh: int, kw: int, strides: tuple[int, int], pads: Pads,
             out_hw: tuple[int, int]) -> jax.Array:
  """(B, Ho, Wo, kh * kw, C): the input window of every output pixel, by strided slicing."""
  xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
  (sh, sw), (ho, wo) = strides, out_hw
  cols = [xp[:, i:i + sh * (ho - 1) + 1:sh, j:j + sw * (wo - 1) + 1:sw, :]
          for i in range(kh) for j in range(kw)]
  return jnp.stack(cols, axis=3)


def _out_hw(x: jax.Array, kh: int, kw: int, strides: tuple[int, int], pads: Pads):
  return ((x.shape[1] + sum(pads[0]) - kh) // strides[0] + 1,
          (x.shape[2] + sum(pads[1]) - kw) // strides[1] + 1)


def conv_im2col(x: jax.Array, w: jax.Array, strides: tuple[int, int], pads: Pads) -> jax.Array:
  """NHWC x HWIO convolution as (B Ho Wo, kh kw C) @ (kh kw C, O)."""
  kh, kw, c, o = w.shape
  p = _patches(x, kh, kw, strides, pads, _out_hw(x, kh, kw, strides, pads))
  return jnp.einsum("bhwkc,kco->bhwo", p, w.reshape(kh * kw, c, o))


def _lax_conv(x, w, strides, pads):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_gemm_weight_grad(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                          pads: Pads) -> jax.Array:
  """XLA's convolution, whose kernel gradient is computed as patches^T @ output gradient."""
  return _lax_conv(x, w, strides, pads)


def _gemm_fwd(x, w, strides, pads):
  return _lax_conv(x, w, strides, pads), (x, w)


def _gemm_bwd(strides, pads, residuals, g):
  x, w = residuals
  dx, = jax.vjp(lambda x: _lax_conv(x, w, strides, pads), x)[1](g)
  kh, kw, c, o = w.shape
  p = _patches(x, kh, kw, strides, pads, g.shape[1:3])
  return dx, jnp.einsum("bhwkc,bhwo->kco", p, g).reshape(kh, kw, c, o)


conv_gemm_weight_grad.defvjp(_gemm_fwd, _gemm_bwd)

VARIANTS: dict[str, Callable[..., jax.Array]] = {
    "weight grad as GEMM": conv_gemm_weight_grad, "im2col GEMM": conv_im2col}


class _LaxWith:
  """`jax.lax` with `conv_general_dilated` replaced for plain 2-D NHWC convolutions."""

  def __init__(self, conv: Callable[..., jax.Array]):
    self._conv = conv

  def conv_general_dilated(self, lhs, rhs, window_strides, padding, lhs_dilation=None,
                           rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                           **kwargs):
    plain = (lhs.ndim == 4 and feature_group_count == 1
             and all(d == 1 for d in (lhs_dilation or ())) and all(d == 1 for d in (rhs_dilation or ()))
             and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
    if not plain:
      return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                      rhs_dilation, dimension_numbers, feature_group_count, **kwargs)
    strides = tuple(window_strides)
    if isinstance(padding, str):
      padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
    return self._conv(lhs, rhs, strides, tuple(tuple(p) for p in padding))

  def __getattr__(self, name: str) -> Any:
    return getattr(lax, name)


@contextlib.contextmanager
def convolutions_as(conv: Callable[..., jax.Array]) -> Iterator[None]:
  """Within the block, `flax.linen.Conv` traces its convolutions with `conv`."""
  saved = flax_linear.lax
  flax_linear.lax = _LaxWith(conv)
  try:
    yield
  finally:
    flax_linear.lax = saved


def _jax_fns(net, variables, x, dtype, conv) -> tuple[Callable[[], Any], Callable[[], Any]]:
  def loss(params, stats, x):
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    out, updates = net.apply({"params": params, "batch_stats": stats}, x.astype(dtype),
                             train=True, mutable=["batch_stats"])
    return jnp.sum(jnp.square(out.astype(jnp.float32))), updates

  context = convolutions_as(conv) if conv is not None else contextlib.nullcontext()
  with context:  # tracing happens at the first call, so trace both inside the context
    fwd = jax.jit(loss).lower(variables["params"], variables["batch_stats"], x).compile()
    grad = jax.jit(jax.grad(loss, has_aux=True)).lower(
        variables["params"], variables["batch_stats"], x).compile()
  args = (variables["params"], variables["batch_stats"], x)
  return (lambda: jax.block_until_ready(fwd(*args)),
          lambda: jax.block_until_ready(grad(*args)))


def run(quick: bool) -> list[dict[str, object]]:
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see train_step.TORCH_THREADS_ENV
  import torch  # pylint: disable=g-import-not-at-top

  from experiments import torch_reference as tr  # pylint: disable=g-import-not-at-top
  from handjax.models.resnet import ResNet  # pylint: disable=g-import-not-at-top

  px, batch, width, repeats = (64, 8, 0.25, 3) if quick else (128, 32, 1.0, 5)
  net = ResNet(18, width)
  x_np = np.random.default_rng(0).uniform(size=(batch, px, px, 3)).astype(np.float32)
  x = jnp.asarray(x_np)
  variables = net.init(jax.random.key(0), x, train=True)
  fns: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
      "lax f32": _jax_fns(net, variables, x, jnp.float32, None),
      "lax bf16": _jax_fns(net, variables, x, jnp.bfloat16, None)}
  for name, conv in VARIANTS.items():
    fns[name] = _jax_fns(net, variables, x, jnp.float32, conv)
  twin = tr.ResNet(width)
  twin.train()
  tx = torch.from_numpy(x_np)

  def torch_fwd():
    with torch.no_grad():
      return float(torch.square(twin(tx)).sum())

  def torch_grad():
    twin.zero_grad()
    loss = torch.square(twin(tx)).sum()
    loss.backward()
    return float(loss)

  fns["PyTorch twin"] = (torch_fwd, torch_grad)
  calls = {(name, part): pair[part] for name, pair in fns.items() for part in (0, 1)}
  for fn in calls.values():  # warm-up
    fn()
  times: dict[tuple[str, int], list[float]] = {k: [] for k in calls}
  for _ in range(repeats):  # interleaved: every variant sees the same machine load
    for key, fn in calls.items():
      start = time.perf_counter()
      fn()
      times[key].append(time.perf_counter() - start)
  med = {k: float(np.median(v)) for k, v in times.items()}
  torch_step = med[("PyTorch twin", 1)]
  return [{"ResNet-18 convolutions": name, "px": px, "batch": batch, "width": width,
           "forward s": med[(name, 0)], "forward+backward s": med[(name, 1)],
           "PyTorch / this (fwd+bwd)": torch_step / med[(name, 1)],
           "torch threads": torch.get_num_threads()} for name in fns]
