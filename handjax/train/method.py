"""The method interface every handjax system plugs into the generic loop, and the method registry.

A *method* is a bundle of pure functions (no Flax objects cross this boundary):

- ``init(rng, batch) -> (params, model_state)``: parameters and non-trained collections such as
  BatchNorm ``batch_stats`` (``{}`` when there are none);
- ``phases``: one or more :class:`Phase` objects. A phase names a loss, the subset of parameters that
  loss updates (a boolean pytree mask, optax ``multi_transform`` style), its own optimiser and the
  steps at which it runs. A method with one loss uses :func:`single_phase`. Alternating schemes need
  no special code in the loop: Spurr et al. CVPR 2018 Alg. 1 is one phase per (encoder, decoder)
  pair, each with ``every=len(pairs)`` and its own ``offset``; an adversarial method is a
  discriminator phase and a generator phase; a two-stage schedule (fix the decoders after step N) is
  two phases with ``start``/``stop``;
- ``predict(params, model_state, batch) -> dict`` with at least ``pose3d`` (B, 21, 3), root-relative,
  metres, camera frame, used by the generic evaluator;
- ``input_spec``: per-example shapes/dtypes of the batch keys the method reads; checked against the
  first batch at start-up so a config/data mismatch fails naming the key.
- ``label_rounds`` (optional): per-example labels the loop makes at the start of each round and
  attaches to the batches of that round (:class:`LabelRounds`; SemiHand's pseudo-labels).

Every loss has the signature ``loss(params, model_state, batch, rng, step) -> (loss, (metrics,
new_model_state))`` where ``metrics`` is a flat dict of scalar terms (reported and checked for
non-finite values) and ``step`` is a traced int32 scalar.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import jax
import ml_collections
import optax

PyTree = Any
Batch = Mapping[str, jax.Array]
LossFn = Callable[[PyTree, PyTree, Batch, jax.Array, jax.Array],
                  tuple[jax.Array, tuple[dict, PyTree]]]
InitFn = Callable[[jax.Array, Batch], tuple[PyTree, PyTree]]
PredictFn = Callable[[PyTree, PyTree, Batch], dict]
MaskFn = Callable[[PyTree], PyTree]


def all_params(params: PyTree) -> PyTree:
  """Parameter mask selecting every leaf (the default for a single-phase method)."""
  return jax.tree.map(lambda _: True, params)


def subtree_mask(*prefixes: str) -> MaskFn:
  """Mask function selecting the leaves whose path starts with any of ``prefixes``.

  A path is the ``/``-joined dict keys from the root, e.g. ``"params/encoder_rgb/Dense_0/kernel"``
  for ``params['params']['encoder_rgb']['Dense_0']['kernel']``; ``subtree_mask("params/encoder_rgb",
  "params/decoder_pose")`` selects one (encoder, decoder) pair as in Spurr et al. CVPR 2018, Alg. 1.
  Leaves are matched by whole path components ("params/enc" does not select "params/encoder").
  """

  def mask_fn(params: PyTree) -> PyTree:
    def leaf_mask(path, _):
      name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k))))
                      for k in path)
      return any(name == p or name.startswith(p.rstrip("/") + "/") for p in prefixes)

    mask = jax.tree_util.tree_map_with_path(leaf_mask, params)
    if not any(jax.tree.leaves(mask)):
      raise ValueError(f"subtree_mask{prefixes} selects no parameter; check the module names.")
    return mask

  return mask_fn


@dataclasses.dataclass(frozen=True)
class Phase:
  """One loss updating one parameter subset with its own optimiser on a schedule.

  The phase runs at loop step ``s`` (0-based count of loop iterations) iff
  ``start <= s < stop`` and ``(s - start) % every == offset``. Several phases may run at the same
  step; they then run in declaration order, each seeing the parameters the previous one produced.

  Attributes:
    name: unique name; also the key of this phase's optimiser state in the train state.
    loss: ``loss(params, model_state, batch, rng, step) -> (loss, (metrics, new_model_state))``.
    optimizer: the optax transformation for the selected leaves.
    trainable: ``params -> bool pytree``; True leaves are updated, the others stay bit-identical.
    every, offset, start, stop: the schedule (``stop=None`` means forever).
  """

  name: str
  loss: LossFn
  optimizer: optax.GradientTransformation
  trainable: MaskFn = all_params
  every: int = 1
  offset: int = 0
  start: int = 0
  stop: int | None = None

  def __post_init__(self):
    if self.every < 1 or not 0 <= self.offset < self.every:
      raise ValueError(f"Phase {self.name!r}: need every >= 1 and 0 <= offset < every, got "
                       f"every={self.every}, offset={self.offset}.")

  def runs_at(self, step: int) -> bool:
    """Whether this phase runs at loop step ``step``."""
    if step < self.start or (self.stop is not None and step >= self.stop):
      return False
    return (step - self.start) % self.every == self.offset

  def masked_optimizer(self, params: PyTree) -> optax.GradientTransformation:
    """The phase optimiser on its trainable leaves and ``set_to_zero`` on the rest.

    optax ``multi_transform`` keeps optimiser state only for the trainable leaves (Adam moments of
    frozen leaves would otherwise cost memory and be checkpointed for nothing).
    """
    labels = jax.tree.map(lambda m: "train" if m else "frozen", self.trainable(params))
    return optax.multi_transform({"train": self.optimizer, "frozen": optax.set_to_zero()}, labels)


LabelFn = Callable[[PyTree, PyTree, Batch, jax.Array], dict]


@dataclasses.dataclass(frozen=True)
class LabelRounds:
  """Labels of the training examples made at the start of each round and fixed within it.

  Self-training in rounds (Yang dissertation Algorithm 6.1: label X_U, train an epoch with the
  labels fixed, update the labels). At loop step ``starts[k]`` the loop runs ``label`` over one
  ordered, unaugmented pass of the training split (the dataset factory's ``"label"`` role), keeps
  the values of the rows ``rows`` selects in a :class:`handjax.train.label_store.LabelStore` keyed
  by the example index, saves it with every checkpoint, and attaches the stored values of each
  training row to its batch as ``stored_<name>`` plus ``has_stored`` (B,) until the next round.

  Attributes:
    starts: increasing loop steps at which a round starts.
    label: ``label(params, model_state, batch, rng) -> {name: (B, ...)}`` with the names of
      ``spec``; ``batch`` carries the previous round's stored values (``has_stored`` False in round
      0, and for a row the previous round did not store); ``rng`` is the round's key (fold in the
      example index for per-example draws, so a label does not depend on the batch it is in).
    spec: per-example shape and dtype of each stored value.
    rows: ``rows(numpy batch) -> (B,) bool``: the rows that are labelled and read a label.
  """

  starts: Sequence[int]
  label: LabelFn
  spec: Mapping[str, jax.ShapeDtypeStruct]
  rows: Callable[[Mapping[str, Any]], Any]

  def __post_init__(self):
    starts = list(self.starts)
    if not starts or any(b <= a for a, b in zip(starts, starts[1:])) or starts[0] < 0:
      raise ValueError(f"LabelRounds.starts must be non-empty, increasing and >= 0, got {starts}.")

  def round_at(self, step: int) -> int | None:
    """The round of step ``step`` (the last start <= step), or None before the first."""
    k = None
    for i, start in enumerate(self.starts):
      if start <= step:
        k = i
    return k


@dataclasses.dataclass(frozen=True)
class Method:
  """A trainable system: see the module docstring for the contract of each field."""

  name: str
  init: InitFn
  phases: Sequence[Phase]
  predict: PredictFn
  input_spec: Mapping[str, jax.ShapeDtypeStruct] = dataclasses.field(default_factory=dict)
  label_rounds: LabelRounds | None = None

  def __post_init__(self):
    names = [p.name for p in self.phases]
    if not names:
      raise ValueError(f"Method {self.name!r} declares no phase.")
    if len(set(names)) != len(names):
      raise ValueError(f"Method {self.name!r} has duplicate phase names: {names}.")


def single_phase(loss: LossFn, optimizer: optax.GradientTransformation) -> list[Phase]:
  """The phase list of a method with one loss updating all parameters at every step."""
  return [Phase(name="main", loss=loss, optimizer=optimizer)]


MethodFactory = Callable[[ml_collections.ConfigDict], Method]
_REGISTRY: dict[str, MethodFactory] = {}


def register_method(name: str) -> Callable[[MethodFactory], MethodFactory]:
  """Decorator registering ``factory(config) -> Method`` under ``name`` (``config.method``)."""

  def wrap(factory: MethodFactory) -> MethodFactory:
    existing = _REGISTRY.get(name)
    if existing is not None and existing is not factory and (
        existing.__module__, existing.__qualname__) != (factory.__module__, factory.__qualname__):
      raise ValueError(f"Method name {name!r} is already registered by {existing.__module__}.")
    _REGISTRY[name] = factory
    return factory

  return wrap


def get_method(config: ml_collections.ConfigDict) -> Method:
  """Builds the method named by ``config.method`` from the registry.

  Importing ``handjax.methods`` (if present) registers the published systems; the toy methods of
  ``handjax.train.toy`` are always registered.
  """
  import importlib  # pylint: disable=g-import-not-at-top

  for module in ("handjax.train.toy", "handjax.methods"):
    try:
      importlib.import_module(module)
    except ModuleNotFoundError as e:
      if e.name != module:
        raise
  name = config.method
  if name not in _REGISTRY:
    raise ValueError(f"Unknown method {name!r} (config.method); registered: {sorted(_REGISTRY)}.")
  return _REGISTRY[name](config)


def make_optimizer(opt_config: ml_collections.ConfigDict,
                   num_steps: int) -> optax.GradientTransformation:
  """optax optimiser from a config block.

  Fields: ``name`` (adam, adamw, sgd), ``learning_rate``, ``warmup_steps``, ``decay``
  (constant, cosine), ``grad_clip`` (global norm, 0 = off), ``weight_decay``, ``momentum``.

  The learning rate follows linear warm-up then cosine decay to zero when ``decay == 'cosine'``,
  otherwise it is constant after warm-up.
  """
  lr = float(opt_config.learning_rate)
  warmup = int(opt_config.get("warmup_steps", 0))
  if opt_config.get("decay", "constant") == "cosine":
    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1),
                                                  max(num_steps, warmup + 1))
  elif warmup > 0:
    schedule = optax.join_schedules(
        [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup])
  else:
    schedule = lr
  name = opt_config.get("name", "adam")
  if name == "adam":
    opt = optax.adam(schedule)
  elif name == "adamw":
    opt = optax.adamw(schedule, weight_decay=float(opt_config.get("weight_decay", 1e-4)))
  elif name == "sgd":
    opt = optax.sgd(schedule, momentum=opt_config.get("momentum", None))
  else:
    raise ValueError(f"Unknown optimizer {name!r} (config.optimizer.name); use adam, adamw or sgd.")
  clip = opt_config.get("grad_clip", 0.0)
  return optax.chain(optax.clip_by_global_norm(clip), opt) if clip else opt
