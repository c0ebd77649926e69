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
