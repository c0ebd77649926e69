"""handjax.train: one generic, data-parallel, resumable trainer for every method.

A method (``Method``: init, phases of (loss, parameter subset, optimiser, schedule), predict) is
looked up by ``config.method`` in the registry (``register_method``) and trained by
``train_and_evaluate(config, workdir)`` over a ``data`` mesh of every device of every process.
"""

from handjax.train.guards import DataSpecError
from handjax.train.guards import NonFiniteError
from handjax.train.loop import train_and_evaluate
from handjax.train.method import Method
from handjax.train.method import Phase
from handjax.train.method import get_method
from handjax.train.method import make_optimizer
from handjax.train.method import register_method
from handjax.train.method import single_phase
from handjax.train.method import subtree_mask
from handjax.train.state import TrainState

__all__ = [
    "DataSpecError", "Method", "NonFiniteError", "Phase", "TrainState", "get_method", "make_optimizer",
    "register_method", "single_phase", "subtree_mask", "train_and_evaluate",
]
