r"""Does the dVAE synthesis model's pose block carry information? A short tiny run (issue 20, #7).

    python -m experiments.dvae_pose_kl [--steps=150] [--beta=6.25] [--unit=normalised,millimetres]

Trains the Fig. 4.2b model (Alg. 4.2, `dvae.default_config("synthesis_u")` at test sizes: 32-px
images, latent 4 + 3, 16-unit MLPs) on one fixed batch of 16 random images and random 3D poses,
disentangling and factor-pair phases every step (Adam 1e-3), and prints the KL of q(z_pose | pose)
to the prior (the pose block, nats, batch mean) every 50 steps, for each ``--unit`` of the pose
reconstruction (`dvae.pose_recon_factor`). Below ~0.01 nats the block has collapsed to the prior.
"""

from __future__ import annotations

from collections.abc import Sequence

from absl import app
from absl import flags
import numpy as np

_STEPS = flags.DEFINE_integer("steps", 150, "Training steps.")
_BETA = flags.DEFINE_float("beta", 6.25, "beta of Eq. 4.6 (6.25: the CPU-scale value).")
_UNIT = flags.DEFINE_list("unit", ["normalised", "millimetres"], "pose_recon_unit values.")


def run(unit: str, steps: int, beta: float) -> list[tuple[int, float]]:
  """(step, pose-block KL) every 50 steps and at the end."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  from handjax.methods import dvae  # pylint: disable=g-import-not-at-top
  from handjax.train import method as method_lib  # pylint: disable=g-import-not-at-top

  c = dvae.default_config("synthesis_u")
  c.data.image_size = 32
  c.factor_dims = (4, 3)
  c.model.resnet_width = 1 / 16
  c.model.resnet_stage_sizes = (1, 1, 1, 1)
  c.model.mlp_hidden = (16, 16)
  c.model.deconv_channels = (8, 8, 8)
  c.model.deconv_base_channels = 8
  c.num_steps, c.disentangle_steps = 2 * steps, steps
  c.beta, c.pose_recon_unit = beta, unit
  r = np.random.default_rng(0)
  b = 16
  batch = {"image": r.uniform(-0.5, 0.5, (b, 32, 32, 3)).astype(np.float32),
           "pose3d": (r.normal(0.0, 0.03, (b, 21, 3)) + [0.05, -0.02, 0.5]).astype(np.float32),
           "scale": r.uniform(0.03, 0.04, b).astype(np.float32),
           "has_pose3d": np.ones(b, bool), "has_scale": np.ones(b, bool)}
  method = method_lib.get_method(c)
  params, state = method.init(jax.random.key(0), batch)
  phases = [p for p in method.phases if p.name in ("disentangle", "factor_pair")]
  opts = [p.masked_optimizer(params) for p in phases]
  opt_states = [o.init(params) for o in opts]

  def make_step(ph, opt):
    @jax.jit
    def step(params, state, opt_state, rng):
      (_, (terms, new_state)), grads = jax.value_and_grad(ph.loss, has_aux=True)(
          params, state, batch, rng, jnp.int32(0))
      updates, opt_state = opt.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), new_state, opt_state, terms
    return step

  steps_fn = [make_step(p, o) for p, o in zip(phases, opts)]
  out = []
  for t in range(steps):
    for i, fn in enumerate(steps_fn):
      params, state, opt_states[i], terms = fn(params, state, opt_states[i],
                                               jax.random.fold_in(jax.random.key(1), 2 * t + i))
      if phases[i].name == "disentangle":
        kl = float(terms["kl/pose3d"])
    if (t + 1) % 50 == 0 or t + 1 == steps:
      out.append((t + 1, kl))
  return out


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  for unit in _UNIT.value:
    if unit not in ("normalised", "millimetres"):
      raise app.UsageError(f"--unit takes normalised and/or millimetres, got {unit!r}")
  for unit in _UNIT.value:
    trace = run(unit, _STEPS.value, _BETA.value)
    print(f"pose_recon_unit={unit:11s} beta={_BETA.value}: " +
          ", ".join(f"step {s}: KL {kl:.4f}" for s, kl in trace))


if __name__ == "__main__":
  app.run(main)
