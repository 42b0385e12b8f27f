"""Parallel tempering (``learning="pt"``): it samples the model where plain Gibbs is
stuck, it reduces to PCD with one temperature, and it saves and loads."""

import keras
import numpy as np
import pytest
from scipy.special import comb, logsumexp

import tfboltz as tb

N_VIS = 10


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


class _Record(keras.callbacks.Callback):
    """The beta = 1 chains (the first `n` rows) after every update."""

    def __init__(self, n, burn_in):
        super().__init__()
        self.n, self.burn_in, self.states = n, burn_in, []

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.burn_in:
            self.states.append(self.model.persistent_chains.numpy()[:self.n].copy())


def _count_histogram(learning, steps=300, burn_in=50, n_chains=200, **kwargs):
    rbm = _bimodal(learning, n_chains=n_chains, **kwargs)
    rbm.compile(optimizer=keras.optimizers.SGD(0.0), steps_per_execution=1)
    # Every chain (every temperature) starts in the all-off mode.
    rbm.persistent_chains.assign(np.zeros(rbm.persistent_chains.shape, "float32"))
    record = _Record(n_chains, burn_in)
    history = rbm.fit(np.zeros((steps, N_VIS), "float32"), batch_size=1, epochs=1,
                      shuffle=False, verbose=0, callbacks=[record])
    counts = np.concatenate(record.states).sum(1).astype(int)
    return np.bincount(counts, minlength=N_VIS + 1) / len(counts), history.history


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
