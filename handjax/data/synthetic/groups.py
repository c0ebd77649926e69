"""Groups of synthetic examples that share appearance: factor labels for the disentangled VAE.

Yang dissertation Sec. 4.3.3 supervises the image factors with *tag images*: images that share the
content (background, skin, lighting) but not the pose. The generator makes this exact by
construction: the members of group g share one appearance key and draw their hands, poses and cameras
from their own keys, so the content id g is a true label, not an estimate.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from handjax.data.synthetic import render


@functools.lru_cache(maxsize=None)
def _compiled(resolution: int, style_name: str, group_size: int, max_per_tile: int,
              num_points: int, sparse: bool):
  style = render.STYLES[style_name]

  @jax.jit
  def render_fn(seed, scene_split, content_split, groups):
    members = groups[:, None] * group_size + jnp.arange(group_size, dtype=jnp.uint32)  # (G, S)
    scene_keys = jax.vmap(jax.vmap(lambda i: render.example_key(seed, scene_split, i)))(members)
    content_keys = jax.vmap(lambda g: render.example_key(seed, content_split, g))(groups)
    def per_group(keys_and_content):
      keys, content = keys_and_content
      one = lambda k: render.render_example(k, resolution, style, max_per_tile, num_points,
                                            sparse, appearance_key=content)
      return render.map_examples(one, keys, sparse)

    return render.map_examples(per_group, (scene_keys, content_keys), sparse)

  return render_fn


def render_groups(seed: int, start_group: int, num_groups: int, group_size: int, resolution: int,
                  style: str = "default", split: str = "train", *, max_per_tile: int = 12,
                  num_points: int = render.NUM_POINTS) -> dict[str, np.ndarray]:
  """Renders groups start_group .. start_group + num_groups - 1 of `split`, `group_size` each.

  Member m of group g is example g * group_size + m; its hand, pose and camera are keyed by
  ("groups/<split>", that index), the group's appearance by ("groups_content/<split>", g).

  Returns:
    The keys of `render.render_batch`, flattened to (num_groups * group_size, ...), group-major, plus
    `content_id` (the group index: examples with equal ids share background, skin tone, lighting and
    camera noise) and the pose factors already in the record (`pose3d`, `canonical_pose`,
    `viewpoint`).
  """
  if style not in render.STYLES:
    raise ValueError(f"style must be one of {sorted(render.STYLES)}, got {style!r}")
  if num_groups < 1 or group_size < 1 or start_group < 0:
    raise ValueError(f"need start_group >= 0, num_groups >= 1 and group_size >= 1, got "
                     f"{start_group}, {num_groups}, {group_size}")
  sparse = jax.default_backend() == "cpu"
  fn = _compiled(resolution, style, group_size, min(max_per_tile, render.hand_model.NUM_PRIMITIVES),
                 num_points, sparse)
  groups = jnp.arange(start_group, start_group + num_groups, dtype=jnp.uint32)
  out = fn(jnp.uint32(seed), jnp.uint32(render.split_id(f"groups/{split}")),
           jnp.uint32(render.split_id(f"groups_content/{split}")), groups)
  flat = {k: np.asarray(v).reshape((num_groups * group_size,) + v.shape[2:]) for k, v in out.items()}
  flat["content_id"] = np.repeat(np.arange(start_group, start_group + num_groups), group_size)
  return flat
