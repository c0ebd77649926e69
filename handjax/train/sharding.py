"""One data-parallel device mesh over every device of every process, and global batches on it.

Data parallelism is a single ``jax.jit`` over a 1-D mesh named ``data``: the train state is
replicated (``P()``), the batch is sharded on its leading axis (``P('data')``) and XLA inserts the
gradient all-reduce. Because the loss is computed on the *global* batch array, BatchNorm statistics
are those of the global batch with no explicit collective. ``jax.pmap`` is not used (maintenance mode
since JAX 0.8, implemented on top of jit/shard_map).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

DATA_AXIS = "data"
log = logging.getLogger(__name__)

# Environment variables by which a cluster launcher asks for a multi-process run.
_CLUSTER_ENV = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS", "SLURM_NTASKS",
                "OMPI_COMM_WORLD_SIZE", "TPU_WORKER_HOSTNAMES", "MEGASCALE_COORDINATOR_ADDRESS")


def maybe_initialize_distributed(force: bool = False) -> bool:
  """Calls ``jax.distributed.initialize()`` when asked to or when a cluster environment is detected.

  Must run before anything touches a JAX backend. Returns whether it initialised. A single-task
  SLURM/MPI job (size 1) is not treated as multi-process.
  """
  env = {k: os.environ[k] for k in _CLUSTER_ENV if k in os.environ}
  sizes = [env.get("SLURM_NTASKS"), env.get("OMPI_COMM_WORLD_SIZE")]
  multi = any(k for k in env if k not in ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE")) or any(
      s is not None and s != "1" for s in sizes)
  if not (force or multi):
    return False
  if jax.distributed.is_initialized():
    return True
  jax.distributed.initialize()
  log.info("jax.distributed initialised: process %d of %d, %d global devices.",
           jax.process_index(), jax.process_count(), jax.device_count())
  return True


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A 1-D ``data`` mesh over ``devices`` (default: every device of every process).

  The axis is ``AxisType.Auto``: the compiler propagates shardings (and inserts the gradient
  all-reduce). ``jax.make_mesh`` defaults to ``Explicit`` axes since JAX 0.7, under which library code
  that is not sharding-aware (ott-jax's Sinkhorn, used by the EMD loss) fails to trace with a
  batch-sharded input ("Resource axis: data ... is not found in mesh").
  """
  auto = (jax.sharding.AxisType.Auto,)
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=auto)
  return Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=auto)


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding of the train state: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding of a batch: leading axis split over the ``data`` axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def local_batch_size(global_batch_size: int, mesh: Mesh) -> int:
  """Examples this process feeds per step; checks divisibility with a clear message."""
  n_dev = mesh.devices.size
  if global_batch_size % n_dev:
    raise ValueError(f"config.batch_size={global_batch_size} is not divisible by the {n_dev} devices "
                     "of the mesh; use a multiple.")
  local_devices = sum(d.process_index == jax.process_index() for d in mesh.devices.flat)
  return global_batch_size * local_devices // n_dev


def global_batch(local: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles a globally sharded batch from this process's local numpy batch.

  ``jax.make_array_from_process_local_data`` places each process's rows on its own devices; the
  global leading dimension is the local one times the number of data-feeding processes.
  """
  sharding = batch_sharded(mesh)
  n_proc = len({d.process_index for d in mesh.devices.flat})
  out = {}
  for key, value in local.items():
    value = np.asarray(value)
    global_shape = (value.shape[0] * n_proc,) + value.shape[1:]
    out[key] = jax.make_array_from_process_local_data(sharding, value, global_shape)
  return out


def to_host(tree: Any) -> Any:
  """numpy copy of a (replicated or fully addressable) pytree, valid on every process."""

  def fetch(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if x.sharding.is_fully_replicated:
        return np.asarray(x.addressable_data(0))
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))

  return jax.tree.map(fetch, tree)
