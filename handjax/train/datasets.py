"""Which dataset a config trains and evaluates on: ``config.data.source`` -> a dataset factory.

Its own module (not the loop's) so that :mod:`handjax.train.inference` can build the evaluation
data without importing :mod:`handjax.train.loop`: the loop imports ``warm_start``, which restores
through ``inference``, and dependencies inside ``handjax.train`` point one way
(loop -> warm_start -> inference -> datasets).
"""

from __future__ import annotations

from typing import Any, Callable

import ml_collections

DatasetFactory = Callable[..., Any]
# The split role of the pseudo-labelling pass (`Method.label_rounds`): the training examples once,
# in order, unaugmented (`pipeline.make_dataset(..., labelling_pass=True)`).
LABEL_ROLE = "label"


def resolve_dataset_factory(config: ml_collections.ConfigDict) -> DatasetFactory:
  """The dataset factory for ``config.data.source``.

  ``'toy'``: the in-memory toy data of :mod:`handjax.train.toy`. ``'domains'``: labelled source +
  unlabelled target batches (:func:`handjax.data.domains.make_mixed_dataset`; SemiHand and the
  dual-modality network). The role ``'label'`` (:data:`LABEL_ROLE`) is the labelling pass over the
  (target) training examples. Otherwise ``config.data`` is a
  ``handjax.data.pipeline.default_data_config()`` block, read by ``pipeline.make_dataset`` with the
  experiment's global ``config.batch_size`` (one batch size per run, not two that can disagree).
  """
  source = config.data.get("source", "pipeline")
  if source == "toy":
    from handjax.train import toy  # pylint: disable=g-import-not-at-top
    return toy.toy_dataset
  if source == "domains":
    from handjax.data import domains  # pylint: disable=g-import-not-at-top
    return domains.make_mixed_dataset
  from handjax.data import pipeline  # pylint: disable=g-import-not-at-top

  def factory(cfg: ml_collections.ConfigDict, split: str, **kwargs: Any) -> Any:
    data_config = ml_collections.ConfigDict(cfg.data.to_dict())
    data_config.batch_size = cfg.batch_size
    if split in ("train", LABEL_ROLE):  # The trainer's roles -> the config's split.
      role, split = split, data_config.get("train_split", "train")
      return pipeline.make_dataset(data_config, split, labelling_pass=role == LABEL_ROLE, **kwargs)
    return pipeline.make_dataset(data_config, split, **kwargs)

  return factory
