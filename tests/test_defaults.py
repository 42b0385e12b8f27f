"""`compile()`'s defaults: the documented optimizer and momentum schedule, a user's
optimizer left alone, and features that hold up on real data nobody tuned for
(scikit-learn's digits, measured by `scripts/check_defaults.py`)."""

import importlib.util
from pathlib import Path

import keras
import numpy as np
import pytest

import tfboltz as tb

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "check_defaults.py"


def _check_defaults():
    spec = importlib.util.spec_from_file_location("check_defaults", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def grey_digits():
    x = _check_defaults().digits(8)[0]
    return x[:200]


MODELS = {
    "rbm": lambda: tb.RBM(64, 16, learning="pcd", n_chains=20, seed=0),
    "dbm": lambda: tb.DBM([64, 16, 8], n_chains=20, seed=0),
}


@pytest.mark.parametrize("kind,fan_in", [("dbm", 64 + 8), ("rbm", 64)])
def test_default_optimizer_is_the_documented_one(kind, fan_in):
    """SGD(2 / fan-in of the hidden units, momentum=0.5): the fan-in is n_visible for
    an RBM, both neighbours of the first hidden layer for a DBM."""
    model = MODELS[kind]()
    assert model.hidden_fan_in() == fan_in
    model.compile()
    optimizer = model.optimizer
    assert type(optimizer) is keras.optimizers.SGD
    np.testing.assert_allclose(float(optimizer.learning_rate.numpy()), 2.0 / fan_in, rtol=1e-6)
    assert optimizer.momentum == 0.5
    assert not optimizer.nesterov
    assert len(model.default_schedules()) == 1


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_fit_without_compile_schedules_momentum(kind, grey_digits):
    """Momentum 0.5 for epochs 1-5, then 0.9, seen in fit's logs and the optimizer."""
    model = MODELS[kind]()
    history = model.fit(grey_digits, batch_size=100, epochs=7, verbose=0)
    assert history.history["momentum"] == [0.5] * 5 + [0.9] * 2
    assert model.optimizer.momentum == 0.9
    assert all(np.isfinite(w.numpy()).all() for w in model.trainable_weights)


def test_hidden_fan_in_of_a_deeper_dbm():
    assert tb.DBM([10, 3, 4, 2]).hidden_fan_in() == 10 + 4  # layers see 14, 5 and 4 units


def test_schedule_counts_epochs_as_fit_does(grey_digits):
    rbm = MODELS["rbm"]()
    history = rbm.fit(grey_digits, batch_size=100, epochs=7, initial_epoch=4, verbose=0)
    assert history.history["momentum"] == [0.5, 0.9, 0.9]


class _Interrupt(Exception):
    pass


class _InterruptAfterEpoch(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise _Interrupt


def test_resumed_run_keeps_the_default_schedule(grey_digits, tmp_path):
    """A run interrupted after the switch to 0.9 and resumed from its checkpoint ends
    with the weights of the uninterrupted run."""

    def run(directory, extra=()):
        keras.utils.set_random_seed(123)
        rbm = MODELS["rbm"]()
        ckpt = tb.callbacks.TrainingCheckpoint(directory)
        history = rbm.fit(grey_digits, batch_size=50, epochs=7, verbose=0,
                          callbacks=[ckpt, *extra])
        return rbm, history

    reference, history = run(tmp_path / "ref")
    assert history.history["momentum"] == [0.5] * 5 + [0.9] * 2
    with pytest.raises(_Interrupt):
        run(tmp_path / "cut", [_InterruptAfterEpoch(5)])
    resumed, history = run(tmp_path / "cut")
    assert history.history["momentum"] == [0.9]
    for a, b in zip(reference.weights, resumed.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("optimizer", [
    lambda: keras.optimizers.SGD(0.05, momentum=0.3),
    lambda: keras.optimizers.SGD(0.05),
    lambda: keras.optimizers.Adam(1e-3),
])
def test_user_optimizer_is_left_alone(optimizer, grey_digits):
    rbm = MODELS["rbm"]()
    rbm.compile()  # a default first, then the user's replaces it
    mine = optimizer()
    config = mine.get_config()
    rbm.compile(optimizer=mine)
    assert rbm.default_schedules() == []
    history = rbm.fit(grey_digits, batch_size=100, epochs=7, verbose=0)
    assert "momentum" not in history.history
    assert rbm.optimizer is mine
    assert mine.get_config() == config
    assert int(mine.iterations.numpy()) == 14


def test_user_momentum_schedule_replaces_the_default_one(grey_digits):
    rbm = MODELS["rbm"]()
    schedule = tb.callbacks.MomentumScheduler([0.5, 0.6, 0.7])
    history = rbm.fit(grey_digits, batch_size=100, epochs=4, callbacks=[schedule], verbose=0)
    assert history.history["momentum"] == [0.5, 0.6, 0.7, 0.7]


def test_momentum_outside_unit_interval_is_refused(grey_digits):
    rbm = MODELS["rbm"]()
    with pytest.raises(ValueError, match=r"Expected a float in \[0, 1\]. Received: momentum=1.5"):
        rbm.fit(grey_digits, batch_size=100, epochs=1, verbose=0,
                callbacks=[tb.callbacks.MomentumScheduler([1.5])])


# Linear-probe test accuracy of the features on scikit-learn's digits, seed 0 (batch
# 32, 10 epochs; `scripts/check_defaults.py`'s split and probe). Measured on seeds 0-2
# (`--parts tests`, docs/results/defaults_digits.json, CPU):
#   8x8, RBM 64-100, CD-1:       new default 0.928-0.932, old SGD(0.01, 0.9) 0.883-0.894
#   28x28, RBM 784-100, PCD-1:   new default 0.893-0.894, old 0.552-0.698
# Each threshold lies between the two, at least 1.6 points (9 of the 540 test rows)
# from either; both tests fail with the old default (seed 0: 0.883 and 0.552).
@pytest.mark.parametrize("side,n_hidden,learning,threshold", [
    (8, 100, "cd", 0.91),
    (28, 100, "pcd", 0.80),
])
def test_default_features_beat_a_threshold_on_digits(side, n_hidden, learning, threshold):
    check = _check_defaults()
    split = check.digits(side)
    accuracy = check.rbm_accuracy(split, n_hidden, learning, "new", epochs=10, batch_size=32,
                                  seed=0)
    assert accuracy > threshold, accuracy
