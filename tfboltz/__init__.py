"""tfboltz: Boltzmann machines as Keras 3 models.

``import tfboltz`` is light: TensorFlow, Keras and the models load on the first use of
a name of the package (``tfboltz.RBM``, ``tfboltz.zoo``, ...), all of them at once,
which registers every tfboltz class with Keras (so `keras.saving.load_model` finds
them). If TensorFlow or Keras is already imported, they load with ``import tfboltz``
itself. This keeps the ``tfboltz`` command's ``--help``, ``list`` and ``version``
quick.

TensorFlow's C++ messages stay off stderr unless the user asks for them:
``TF_CPP_MIN_LOG_LEVEL`` defaults to 3 (a level the user set is kept: 0 shows
everything), and the start-up messages that TensorFlow 2.21 prints while it loads
whatever that level (oneDNN, CPU features, CUDA probing, written before its logging
is set up) are held back when tfboltz loads it, at any level but 0.
"""

import contextlib
import importlib
import importlib.util
import os
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Read by TensorFlow's C++ logging when TensorFlow loads, so it must be set first.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

_SUBMODULES = ("ais", "callbacks", "classifier", "data", "experiments", "fine_tuning",
               "serving", "units", "viz", "zoo")
_NAMES = {"DBM": "dbm", "DBN": "dbn", "EnergyModel": "energy_model",
          "TrainingDivergedError": "energy_model", "pretrain_dbm": "pretraining",
          "pretrain_dbn": "pretraining", "RBM": "rbm"}

if TYPE_CHECKING:  # what `__getattr__` loads, spelled out for type checkers and API docs
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

__all__ = [
    "DBM", "DBN", "EnergyModel", "RBM", "TrainingDivergedError", "ais", "callbacks",
    "classifier", "data", "experiments", "fine_tuning", "load_all", "pretrain_dbm",
    "pretrain_dbn", "serving", "units", "viz", "zoo", "__version__",
]


@contextlib.contextmanager
def _c_stderr_held_back():
    """Point file descriptor 2 (C and C++ code's stderr) at the null device for a
    block; Python's own `sys.stderr` (tracebacks, warnings) keeps writing where it did."""
    try:
        saved = os.dup(2)
    except OSError:  # no file descriptor 2 to point away
        yield
        return
    try:
        python_stderr_on_fd_2 = sys.stderr.fileno() == 2
        sys.stderr.flush()
    except (AttributeError, OSError, ValueError):  # e.g. a notebook's own stream
        python_stderr_on_fd_2 = False
    python_stderr = sys.stderr
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        if python_stderr_on_fd_2:
            sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        if python_stderr_on_fd_2:
            sys.stderr.close()
            sys.stderr = python_stderr
        os.close(null)
        os.close(saved)


def _import_tensorflow():
    if "tensorflow" in sys.modules:
        return
    try:
        quiet = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 1
    except ValueError:
        quiet = False
    with _c_stderr_held_back() if quiet else contextlib.nullcontext():
        importlib.import_module("tensorflow")


def load_all():
    """Import every module of tfboltz (TensorFlow and Keras with them).

    The first use of a name of the package does this by itself. Call it to register
    tfboltz's classes with Keras before `keras.saving.load_model` in a program that
    has used nothing else of tfboltz yet.
    """
    _import_tensorflow()
    for module in (*_SUBMODULES, *dict.fromkeys(_NAMES.values())):
        importlib.import_module(f"{__name__}.{module}")
    for name, module in _NAMES.items():
        globals()[name] = getattr(sys.modules[f"{__name__}.{module}"], name)


def _importing():
    """Whether a tfboltz module is being imported now: in `sys.modules`, but not yet
    an attribute of the package (the import system sets it once the module ran)."""
    prefix = __name__ + "."
    return any(name.startswith(prefix) and name.count(".") == 1
               and name[len(prefix):] not in globals() for name in list(sys.modules))


def __getattr__(name):
    if name in _NAMES:
        load_all()
        return globals()[name]
    if name in _SUBMODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        # The modules of tfboltz import each other through here (`from tfboltz import
        # units`); loading everything in the middle of one of their imports would meet
        # half-run modules, so that waits for a use from outside.
        if not _importing():
            load_all()
        return module
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f"{__name__}.{name}")  # an internal module alone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), *__all__})


if "tensorflow" in sys.modules or "keras" in sys.modules:
    load_all()
