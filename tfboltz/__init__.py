"""tfboltz: Boltzmann machines as Keras 3 models."""

from tfboltz import ais, callbacks, classifier, data, experiments, units, viz, zoo
from tfboltz.base import TrainingDivergedError
from tfboltz.dbm import DBM, pretrain_dbm
from tfboltz.dbn import DBN, pretrain_dbn
from tfboltz.rbm import RBM

__version__ = "0.1.0"

__all__ = [
    "DBM", "DBN", "RBM", "TrainingDivergedError", "ais", "callbacks", "classifier", "data",
    "experiments", "pretrain_dbm", "pretrain_dbn", "units", "viz", "zoo", "__version__",
]
