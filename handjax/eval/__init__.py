"""handjax.eval: evaluation metrics (EPE, PCK/AUC, 2D PCK, Procrustes) and PNG plots."""

from handjax.eval import metrics
