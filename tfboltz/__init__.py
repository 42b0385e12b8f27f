"""tfboltz: Boltzmann machines as Keras 3 models."""

from tfboltz import (
    ais,
    callbacks,
    classifier,
    data,
    experiments,
    fine_tuning,
    serving,
    units,
    viz,
    zoo,
)
from tfboltz.dbm import DBM
from tfboltz.dbn import DBN
from tfboltz.energy_model import EnergyModel, TrainingDivergedError
from tfboltz.pretraining import pretrain_dbm, pretrain_dbn
from tfboltz.rbm import RBM

__version__ = "0.1.0"

__all__ = [
    "DBM", "DBN", "EnergyModel", "RBM", "TrainingDivergedError", "ais", "callbacks",
    "classifier", "data", "experiments", "fine_tuning", "pretrain_dbm", "pretrain_dbn",
    "serving", "units", "viz", "zoo", "__version__",
]
