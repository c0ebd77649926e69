r"""Benchmark suite `conv_variants`: the ResNet-18 train step's convolutions, written several ways (issue 9).

The CPU gap to PyTorch in `train_step` is the ResNet-18 backbone (its convolutions: XLA:CPU runs
them with its own Eigen kernels, PyTorch with oneDNN). This suite times forward and forward +
backward of the handjax ResNet-18 (`handjax.models.ResNet`, BatchNorm in training mode, loss =
sum of squared features) with each way of computing its convolutions, next to the PyTorch twin
(`experiments.torch_reference.ResNet`), all interleaved in one process:

  * "as shipped f32": `handjax.models.conv.conv2d` (XLA's convolution, one GEMM on output maps
    of at most `SMALL_MAP_PIXELS` pixels);
  * "as shipped bf16": parameters and activations cast to bfloat16 (the dtype experiment);
  * "lax everywhere": `lax.conv_general_dilated` for every map (the backbone before session 15);
  * "weight grad as GEMM": forward and input gradient as XLA convolutions, the kernel gradient as
    one matrix product of the im2col patches with the output gradient (`conv_gemm_weight_grad`);
  * "im2col GEMM": every convolution as patches x kernel matrix (`conv_im2col`), differentiated
    by JAX (the layout experiment: a single large GEMM instead of a spatial convolution).

XLA's library-fusion flags (`--xla_cpu_experimental_{xnn,ynn,onednn}_fusion_type=
LIBRARY_FUSION_TYPE_INDIVIDUAL_CONVOLUTION`, `--xla_cpu_use_onednn`) leave the convolutions as XLA
`convolution` instructions in jax 0.10 (checked in the compiled HLO), so they are not rows here;
`train_step`'s CPU-option rows time them on the whole step.

Two settings: the papers' (128 px, full width) and the CPU recipes' (64 px, quarter width, whose
conv5_x maps are 2 x 2), both at batch 32; `--quick` runs one tiny setting.

    python -m experiments.benchmark --suites=conv_variants [--quick]
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from handjax.models import conv as conv_lib


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_gemm_weight_grad(x: jax.Array, w: jax.Array, strides: conv_lib.Strides,
                          pads: conv_lib.Pads) -> jax.Array:
  """XLA's convolution, whose kernel gradient is computed as patches^T @ output gradient."""
  return conv_lib.conv_lax(x, w, strides, pads)


def _gemm_fwd(x, w, strides, pads):
  return conv_lib.conv_lax(x, w, strides, pads), (x, w)


def _gemm_bwd(strides, pads, residuals, g):
  x, w = residuals
  dx, = jax.vjp(lambda x: conv_lib.conv_lax(x, w, strides, pads), x)[1](g)
  kh, kw, c, o = w.shape
  p = conv_lib.patches(x, (kh, kw), strides, pads)
  return dx, jnp.einsum("bhwkc,bhwo->kco", p, g).reshape(kh, kw, c, o)


conv_gemm_weight_grad.defvjp(_gemm_fwd, _gemm_bwd)

VARIANTS: dict[str, Callable[..., jax.Array]] = {
    "lax everywhere": conv_lib.conv_lax, "weight grad as GEMM": conv_gemm_weight_grad,
    "im2col GEMM": conv_lib.conv_im2col}


@contextlib.contextmanager
def convolutions_as(conv: Callable[..., jax.Array]) -> Iterator[None]:
  """Within the block, the ResNet's convolutions (`handjax.models.conv.conv2d`) trace as `conv`."""
  shipped = conv_lib.conv2d
  conv_lib.conv2d = conv
  try:
    yield
  finally:
    conv_lib.conv2d = shipped


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
  settings = [(64, 8, 0.25, 3)] if quick else [(128, 32, 1.0, 5), (64, 32, 0.25, 20)]
  rows = []
  for px, batch, width, repeats in settings:
    rows += _run_setting(px, batch, width, repeats)
  return rows


def _run_setting(px: int, batch: int, width: float, repeats: int) -> list[dict[str, object]]:
  import torch  # pylint: disable=g-import-not-at-top

  from experiments import torch_reference as tr  # pylint: disable=g-import-not-at-top
  from handjax.models.resnet import ResNet  # pylint: disable=g-import-not-at-top

  net = ResNet(18, width)
  x_np = np.random.default_rng(0).uniform(size=(batch, px, px, 3)).astype(np.float32)
  x = jnp.asarray(x_np)
  variables = net.init(jax.random.key(0), x, train=True)
  fns: dict[str, tuple[Callable[[], Any], Callable[[], Any]]] = {
      "as shipped f32": _jax_fns(net, variables, x, jnp.float32, None),
      "as shipped bf16": _jax_fns(net, variables, x, jnp.bfloat16, None)}
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
