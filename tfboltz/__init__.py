"""tfboltz: Boltzmann machines as Keras 3 models."""

from tfboltz import ais, callbacks, classifier, data, experiments, units, viz, zoo
from tfboltz.base import TrainingDivergedError
from tfboltz.dbm import DBM, pretrain_dbm
from tfboltz.rbm import RBM

__version__ = "0.1.0"

__all__ = [
    "DBM", "RBM", "TrainingDivergedError", "ais", "callbacks", "classifier", "data",
    "experiments", "pretrain_dbm", "units", "viz", "zoo", "__version__",
]
