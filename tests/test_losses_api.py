"""`from handjax import losses` must work in a researcher's process with only jax, numpy, chex, scipy
and ott-jax: it may load nothing beyond what those packages load themselves (ott-jax 0.6.0 itself
imports optax, flax and matplotlib, so those are allowed only through it)."""

import subprocess
import sys
import textwrap


def test_losses_import_adds_no_package_beyond_jax_chex_scipy_ott():
  code = textwrap.dedent("""
      import sys
      import chex, jax, numpy, scipy.optimize
      from ott.geometry import costs, epsilon_scheduler, pointcloud
      from ott.problems.linear import linear_problem
      from ott.solvers.linear import sinkhorn
      before = {m.split(".")[0] for m in sys.modules}
      from handjax import losses
      added = {m.split(".")[0] for m in sys.modules} - before
      assert added == {"handjax"}, sorted(added)
      print("ok")
  """)
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  assert out.stdout.strip().endswith("ok")


def test_public_names_are_the_module_functions():
  from handjax import losses
  from handjax.losses import elbo, gaussian, pointcloud

  assert losses.product_of_experts is gaussian.product_of_experts
  assert losses.poe_alignment_objective is elbo.poe_alignment_objective
  assert losses.earth_movers_distance is pointcloud.earth_movers_distance
