"""tfboltz: Boltzmann machines as Keras 3 models."""

from tfboltz import ais, callbacks, classifier, data, units, viz
from tfboltz.base import TrainingDivergedError
from tfboltz.dbm import DBM, pretrain_dbm
from tfboltz.rbm import RBM

__version__ = "0.1.0"

__all__ = [
    "DBM", "RBM", "pretrain_dbm", "TrainingDivergedError", "ais", "callbacks", "classifier", "data", "units", "viz",
    "__version__",
]
