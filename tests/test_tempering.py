"""Parallel tempering of RBM chains (``learning="pt"``) and DBM particles
(``n_temperatures > 1``): they sample a two-mode model where plain Gibbs sampling is
stuck, an RBM with one temperature is PCD, and the ladders save and load."""

import itertools
import math

import keras
import numpy as np
import pytest
from scipy.special import comb, logsumexp

import tfboltz as tb

N_VIS = 10      # the two-mode RBM
N_VIS_DBM = 8   # the two-mode DBM


class _Record(keras.callbacks.Callback):
    """The temperature-1 rows (the first `n`) of `chains` after every update."""

    def __init__(self, chains, n, burn_in):
        super().__init__()
        self.chains, self.n, self.burn_in, self.states = chains, n, burn_in, []

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.burn_in:
            self.states.append(self.chains.numpy()[:self.n].copy())


def _visible_counts(model, chains, visible, n, steps=300, burn_in=50):
    """Run `model`'s negative phase at learning rate 0 from the all-off state (every
    variable in `chains`, every replica) and return the frequencies of the number of
    active units in the first `n` rows of `visible` over the recorded updates."""
    model.compile(optimizer=keras.optimizers.SGD(0.0), steps_per_execution=1)
    for var in chains:
        var.assign(np.zeros(var.shape, "float32"))
    record = _Record(visible, n, burn_in)
    width = visible.shape[1]
    history = model.fit(np.zeros((steps, width), "float32"), batch_size=1, epochs=1,
                        shuffle=False, verbose=0, callbacks=[record])
    counts = np.concatenate(record.states).sum(1).astype(int)
    return np.bincount(counts, minlength=width + 1) / len(counts), history.history


def _bimodal(learning, **kwargs):
    """One hidden unit that switches all ten visibles on together: two modes of equal
    mass (all off, all on; the model is symmetric under v -> 1 - v), which block Gibbs
    sampling from one of them almost never leaves (about 2e-4 a sweep)."""
    rbm = tb.RBM(N_VIS, 1, learning=learning, sample_visible=True, seed=0, **kwargs)
    rbm.kernel.assign(np.full((N_VIS, 1), 5.0, "float32"))
    rbm.visible_layer.bias.assign(np.full(N_VIS, -2.5, "float32"))
    rbm.hidden_layer.bias.assign(np.array([-25.0], "float32"))
    rbm.data_initialized.assign(True)  # keep these biases: `fit` would set them from data
    return rbm


def _exact_count_distribution():
    """p(number of visibles on) of `_bimodal`, by enumeration over counts."""
    n = np.arange(N_VIS + 1)
    log_p = np.log(comb(N_VIS, n)) - 2.5 * n + np.logaddexp(0, 5.0 * n - 25.0)
    return np.exp(log_p - logsumexp(log_p))


def _count_histogram(learning, n_chains=200, **kwargs):
    rbm = _bimodal(learning, n_chains=n_chains, **kwargs)
    return _visible_counts(rbm, [rbm.persistent_chains], rbm.persistent_chains, n_chains)


def test_tempered_chains_sample_both_modes_where_pcd_is_stuck():
    exact = _exact_count_distribution()
    np.testing.assert_allclose(exact, exact[::-1])  # the symmetry the test relies on
    freq, history = _count_histogram("pt", n_temperatures=10, min_beta=0.1)
    # 200 ladders x 250 recorded sweeps, correlated in time: a total-variation distance
    # of 0.05 and the mass of the all-on mode within 0.07 leave room for the noise
    # (measured with this seed: TV 0.008, all-on mass 0.507 against 0.4998), while a
    # sampler stuck in one mode is off by about 0.5.
    assert 0.5 * np.abs(freq - exact).sum() < 0.05, (freq, exact)
    assert abs(freq[6:].sum() - exact[6:].sum()) < 0.07, (freq, exact)
    assert 0.1 < history["swap_rate"][0] < 1
    # The same chains without tempering stay in the mode they started in (measured: 0.035).
    stuck, _ = _count_histogram("pcd")
    assert stuck[6:].sum() < 0.2, stuck


def test_one_temperature_is_pcd(digits):
    x, _ = digits

    def train(learning):
        rbm = tb.RBM(64, 16, learning=learning, n_chains=20, n_temperatures=1,
                     sample_visible=True, seed=3)
        rbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
        rbm.init_from_data(x)
        rbm.fit(x[:400], batch_size=20, epochs=2, verbose=0)
        return rbm

    pt, pcd = train("pt"), train("pcd")
    np.testing.assert_allclose(pt.kernel.numpy(), pcd.kernel.numpy(), atol=1e-6)
    np.testing.assert_array_equal(pt.persistent_chains.numpy(), pcd.persistent_chains.numpy())


def test_ladders_save_load_and_train(digits, tmp_path):
    x, _ = digits
    rbm = tb.RBM(64, 16, learning="pt", n_chains=6, n_temperatures=3, min_beta=0.4,
                 sample_visible=True, seed=0)
    np.testing.assert_allclose(rbm.betas, [1.0, 0.7, 0.4])
    rbm.compile(optimizer=keras.optimizers.SGD(0.05))
    rbm.init_from_data(x)
    history = rbm.fit(x[:200], batch_size=20, epochs=1, validation_data=x[200:300],
                      verbose=0)
    assert "swap_rate" in history.history and "val_swap_rate" not in history.history
    assert rbm.persistent_chains.shape == (18, 64)
    path = tmp_path / "pt.keras"
    rbm.save(path)
    loaded = keras.saving.load_model(path)
    for key in ("learning", "n_chains", "n_temperatures", "min_beta"):
        assert loaded.get_config()[key] == rbm.get_config()[key]
    np.testing.assert_array_equal(loaded.persistent_chains.numpy(),
                                  rbm.persistent_chains.numpy())


@pytest.mark.parametrize("kwargs,match", [
    (dict(visible="gaussian"), "parallel tempering supports"),
    (dict(hidden="nrelu"), "parallel tempering supports"),
    (dict(min_beta=1.0), "min_beta"),
    (dict(n_temperatures=0), "n_temperatures"),
])
def test_bad_tempering_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tb.RBM(8, 4, learning="pt", **kwargs)


def test_jit_compiled_tempering_trains_like_the_graph(digits):
    x, _ = digits

    def train(jit, rows, epochs):
        keras.utils.set_random_seed(0)  # the same batches in both runs
        # Mean-field visible states: with sampled ones a single flipped comparison
        # makes the compiled and the plain step differ by whole units (PCD too).
        rbm = tb.RBM(64, 16, learning="pt", n_chains=10, n_temperatures=3, min_beta=0.5,
                     seed=2)
        rbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), jit_compile=jit)
        rbm.init_from_data(x)
        history = rbm.fit(x[:rows], batch_size=20, epochs=epochs, verbose=0)
        return rbm, history.history["swap_rate"][-1]

    # One step: the same update up to rounding (seen: 4e-4 at most; the step itself
    # moves weights by 1e-3 on average, 5e-3 at most; PCD differs by 1e-4).
    (xla, _), (graph, _) = train(True, 20, 1), train(False, 20, 1)
    np.testing.assert_allclose(xla.kernel.numpy(), graph.kernel.numpy(), atol=1e-3)
    rbm, rate = train(True, 400, 1)
    assert np.all(np.isfinite(rbm.kernel.numpy())) and 0 < rate <= 1


def _two_mode_dbm(**kwargs):
    """8 visibles, two single hidden units: h1 switches the visibles on together (weight
    5, visible bias -2.5), h2 leans on h1. Block Gibbs from the all-off state almost
    never turns h1 on."""
    dbm = tb.DBM([N_VIS_DBM, 1, 1], n_chains=200, seed=0, **kwargs)
    dbm.kernels[0].assign(np.full((N_VIS_DBM, 1), 5.0, "float32"))
    dbm.kernels[1].assign(np.array([[2.0]], "float32"))
    dbm.unit_layers[0].bias.assign(np.full(N_VIS_DBM, -2.5, "float32"))
    dbm.unit_layers[1].bias.assign(np.array([-21.0], "float32"))
    dbm.unit_layers[2].bias.assign(np.array([-1.0], "float32"))
    dbm.data_initialized.assign(True)  # keep these biases: `fit` would set them from data
    return dbm


def _exact_dbm_count_distribution():
    """p(number of visibles on), by enumerating every joint state."""
    p = np.zeros(N_VIS_DBM + 1)
    for n, h1, h2 in itertools.product(range(N_VIS_DBM + 1), (0, 1), (0, 1)):
        log_w = -2.5 * n + h1 * (5.0 * n - 21.0) + 2.0 * h1 * h2 - 1.0 * h2
        p[n] += math.comb(N_VIS_DBM, n) * np.exp(log_w)
    return p / p.sum()


def _dbm_count_histogram(**kwargs):
    dbm = _two_mode_dbm(**kwargs)
    return _visible_counts(dbm, dbm.particles, dbm.particles[0], 200)


def test_tempered_particles_sample_both_modes_where_gibbs_is_stuck():
    exact = _exact_dbm_count_distribution()
    assert 0.4 < exact[5:].sum() < 0.6  # two modes of about equal mass
    freq, history = _dbm_count_histogram(n_temperatures=10, min_beta=0.1)
    # 200 ladders x 250 recorded sweeps, correlated in time; measured with this seed:
    # TV 0.005 and upper-mode mass 0.504 against 0.499.
    assert 0.5 * np.abs(freq - exact).sum() < 0.05, (freq, exact)
    assert abs(freq[5:].sum() - exact[5:].sum()) < 0.07, (freq, exact)
    assert 0.1 < history["swap_rate"][0] < 1
    # Without tempering the particles stay mostly where they started (measured: 0.15).
    stuck, history = _dbm_count_histogram()
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
def test_bad_dbm_tempering_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tb.DBM([8, 4, 4], **kwargs)
