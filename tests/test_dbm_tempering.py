"""DBM particles with parallel tempering (``n_temperatures > 1``): they sample a
two-mode DBM where plain Gibbs sampling is stuck, and they save and load."""

import itertools
import math

import keras
import numpy as np
import pytest

import tfboltz as tb

N_VIS = 8


def _two_mode_dbm(**kwargs):
    """8 visibles, two single hidden units: h1 switches the visibles on together (weight
    5, visible bias -2.5), h2 leans on h1. Block Gibbs from the all-off state almost
    never turns h1 on."""
    dbm = tb.DBM([N_VIS, 1, 1], n_chains=200, seed=0, **kwargs)
    dbm.kernels[0].assign(np.full((N_VIS, 1), 5.0, "float32"))
    dbm.kernels[1].assign(np.array([[2.0]], "float32"))
    dbm.unit_layers[0].bias.assign(np.full(N_VIS, -2.5, "float32"))
    dbm.unit_layers[1].bias.assign(np.array([-21.0], "float32"))
    dbm.unit_layers[2].bias.assign(np.array([-1.0], "float32"))
    dbm.data_initialized.assign(True)  # keep these biases: `fit` would set them from data
    return dbm


def _exact_count_distribution():
    """p(number of visibles on), by enumerating every joint state."""
    p = np.zeros(N_VIS + 1)
    for n, h1, h2 in itertools.product(range(N_VIS + 1), (0, 1), (0, 1)):
        log_w = -2.5 * n + h1 * (5.0 * n - 21.0) + 2.0 * h1 * h2 - 1.0 * h2
        p[n] += math.comb(N_VIS, n) * np.exp(log_w)
    return p / p.sum()


class _Record(keras.callbacks.Callback):
    def __init__(self, n, burn_in):
        super().__init__()
        self.n, self.burn_in, self.states = n, burn_in, []

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.burn_in:
            self.states.append(self.model.particles[0].numpy()[:self.n].copy())


def _count_histogram(steps=300, burn_in=50, **kwargs):
    dbm = _two_mode_dbm(**kwargs)
    dbm.compile(optimizer=keras.optimizers.SGD(0.0), steps_per_execution=1)
    for p in dbm.particles:  # every replica starts in the all-off mode
        p.assign(np.zeros(p.shape, "float32"))
    record = _Record(200, burn_in)
    history = dbm.fit(np.zeros((steps, N_VIS), "float32"), batch_size=1, epochs=1,
                      shuffle=False, verbose=0, callbacks=[record])
    counts = np.concatenate(record.states).sum(1).astype(int)
    return np.bincount(counts, minlength=N_VIS + 1) / len(counts), history.history


def test_tempered_particles_sample_both_modes_where_gibbs_is_stuck():
    exact = _exact_count_distribution()
    assert 0.4 < exact[5:].sum() < 0.6  # two modes of about equal mass
    freq, history = _count_histogram(n_temperatures=10, min_beta=0.1)
    # 200 ladders x 250 recorded sweeps, correlated in time; measured with this seed:
    # TV 0.005 and upper-mode mass 0.504 against 0.499.
    assert 0.5 * np.abs(freq - exact).sum() < 0.05, (freq, exact)
    assert abs(freq[5:].sum() - exact[5:].sum()) < 0.07, (freq, exact)
    assert 0.1 < history["swap_rate"][0] < 1
    # Without tempering the particles stay mostly where they started (measured: 0.15).
    stuck, history = _count_histogram()
    assert stuck[5:].sum() < 0.3, stuck
    assert "swap_rate" not in history


def test_tempered_dbm_trains_saves_and_loads(digits, tmp_path):
    x, _ = digits
    dbm = tb.DBM([64, 16, 8], n_chains=6, n_temperatures=3, min_beta=0.4, seed=0)
    np.testing.assert_allclose(dbm.betas, [1.0, 0.7, 0.4])
    assert [p.shape for p in dbm.particles] == [(18, 64), (18, 16), (18, 8)]
    dbm.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5))
    history = dbm.fit(x[:200], batch_size=20, epochs=2, verbose=0)
    assert all(0 < r <= 1 for r in history.history["swap_rate"])
    assert all(np.isfinite(w.numpy()).all() for w in dbm.weights)
    path = tmp_path / "dbm.keras"
    dbm.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.n_temperatures == 3 and loaded.min_beta == pytest.approx(0.4)
    for a, b in zip(loaded.particles, dbm.particles):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("kwargs,match", [
    (dict(visible="gaussian", n_temperatures=4), "Bernoulli or softmax layers"),
    (dict(n_temperatures=4, sample_particles=False), "sample_particles=True"),
    (dict(min_beta=1.5), "min_beta"),
    (dict(n_temperatures=0), "n_temperatures"),
])
def test_bad_tempering_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tb.DBM([8, 4, 4], **kwargs)
