"""Shared test fixtures. Eight virtual CPU devices let sharding tests run in-process on any machine."""

import os

# Must be set before JAX initialises its backend (i.e. before the first test imports jax).
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def rng():
  return jax.random.key(0)


@pytest.fixture(scope="module")
def persistent_compilation_cache(tmp_path_factory):
  """A persistent JAX compilation cache for one module (restored afterwards).

  Modules that run `train_and_evaluate` many times compile the same steps again and again; with the
  cache the repeats are cheap. Use it with ``pytestmark = pytest.mark.usefixtures(...)``.
  """
  from jax.experimental.compilation_cache import compilation_cache  # pylint: disable=g-import-not-at-top
  names = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")
  old = {n: getattr(jax.config, n) for n in names}
  for name, value in zip(names, (str(tmp_path_factory.mktemp("jax_cache")), 0.0, 0)):
    jax.config.update(name, value)
  compilation_cache.reset_cache()
  yield
  for name, value in old.items():
    jax.config.update(name, value)
  compilation_cache.reset_cache()
