"""Partition functions: enumeration both ways, AIS against the exact answer."""

import itertools

import keras
import numpy as np
import pytest

import tfboltz as tb


def _random_rbm(n_visible, n_hidden, visible="bernoulli", hidden="bernoulli", seed=0, std=1.0):
    rbm = tb.RBM(n_visible, n_hidden, visible=visible, hidden=hidden, seed=seed)
    r = np.random.default_rng(seed)
    rbm.kernel.assign(r.normal(0, std, (n_visible, n_hidden)).astype("float32"))
    rbm.visible_layer.bias.assign(r.normal(0, 1, n_visible).astype("float32"))
    rbm.hidden_layer.bias.assign(r.normal(0, 1, n_hidden).astype("float32"))
    return rbm


def _brute_force_log_z(rbm):
    """Sum over every joint (v, h) state of a binary RBM, in numpy float64."""
    w = rbm.kernel.numpy().astype(np.float64)
    b = rbm.visible_layer.bias.numpy().astype(np.float64)
    c = rbm.hidden_layer.bias.numpy().astype(np.float64)
    vs = np.array(list(itertools.product([0, 1], repeat=len(b))), np.float64)
    hs = np.array(list(itertools.product([0, 1], repeat=len(c))), np.float64)
    neg_e = (vs @ b)[:, None] + (hs @ c)[None, :] + vs @ w @ hs.T
    top = neg_e.max()
    return top + np.log(np.exp(neg_e - top).sum())


def test_exact_log_z_agrees_over_visibles_and_hiddens():
    rbm = _random_rbm(10, 7)
    by_v = tb.ais.exact_log_partition(rbm, side="visible")
    by_h = tb.ais.exact_log_partition(rbm, side="hidden")
    assert abs(by_v - by_h) < 1e-5
    assert abs(by_v - _brute_force_log_z(rbm)) < 1e-5


def test_exact_log_z_softmax_hidden_and_gaussian_visible():
    # Softmax hidden: enumerate visibles vs hiddens.
    rbm = _random_rbm(8, 4, hidden=tb.units.SoftmaxUnits(group_size=2))
    assert abs(tb.ais.exact_log_partition(rbm, "visible")
               - tb.ais.exact_log_partition(rbm, "hidden")) < 1e-5
    # Gaussian visible: the Gaussian integral, checked by quadrature for one unit.
    g = _random_rbm(1, 3, visible="gaussian", std=0.5)
    grid = np.linspace(-30, 30, 200001)
    hs = np.array(list(itertools.product([0, 1], repeat=3)), np.float64)
    w, b = g.kernel.numpy()[0].astype(np.float64), float(g.visible_layer.bias.numpy()[0])
    c = g.hidden_layer.bias.numpy().astype(np.float64)
    neg_e = -(grid[:, None] - b) ** 2 / 2 + (hs @ c)[None, :] + grid[:, None] * (hs @ w)[None]
    numeric = np.log(np.exp(neg_e).sum() * (grid[1] - grid[0]))
    assert abs(tb.ais.exact_log_partition(g) - numeric) < 1e-5


@pytest.fixture(scope="module")
def trained_small_rbm(digits):
    x, _ = digits
    rbm = tb.RBM(64, 12, learning="pcd", seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    rbm.fit(x, batch_size=20, epochs=10, verbose=0)
    return rbm, x


def test_ais_matches_exact_log_z_on_trained_model(trained_small_rbm):
    rbm, x = trained_small_rbm
    exact = tb.ais.exact_log_partition(rbm)
    # Trained weights are far from the base model: a real test of the annealing.
    assert np.abs(rbm.kernel.numpy()).max() > 0.5
    errors, widths = [], []
    for n_betas in (100, 1000, 10000):
        est = tb.ais.log_partition(rbm, n_chains=100, n_betas=n_betas, seed=0, data=x,
                                   verbose=0)
        errors.append(abs(est.log_z - exact))
        widths.append(est.log_z_high - est.log_z_low)
    assert errors[-1] < 0.05, errors
    assert errors[-1] < errors[0], errors
    assert widths[0] > widths[1] > widths[2], widths


def test_ais_uniform_proposal_and_log_likelihood(trained_small_rbm):
    rbm, x = trained_small_rbm
    exact = tb.ais.exact_log_partition(rbm)
    est = tb.ais.log_partition(rbm, n_chains=100, n_betas=10000, seed=1, proposal="uniform",
                               verbose=0)
    assert est.log_z_low < est.log_z < est.log_z_high
    assert abs(est.log_z - exact) < 0.1
    ll = tb.ais.log_likelihood(rbm, x[:50], exact)
    # Probabilities of single patterns: negative, and summing exp over all 2^64 states
    # is impossible, so check against -F - log Z directly.
    np.testing.assert_allclose(ll, -rbm.free_energy(x[:50]) - exact, rtol=1e-6)
    assert np.all(ll < 0)


def test_ais_on_gaussian_visible_matches_exact():
    rbm = _random_rbm(20, 8, visible="gaussian", std=0.3, seed=2)
    exact = tb.ais.exact_log_partition(rbm)
    est = tb.ais.log_partition(rbm, n_chains=100, n_betas=3000, seed=0, verbose=0)
    assert abs(est.log_z - exact) < 0.05


def test_ais_rejects_unsupported_models():
    with pytest.raises(ValueError, match="Expected Bernoulli or softmax hidden"):
        tb.ais.log_partition(tb.RBM(4, 3, hidden="gaussian"), n_betas=10, verbose=0)
    with pytest.raises(ValueError, match="Expected a Bernoulli or softmax layer"):
        tb.ais.exact_log_partition(tb.RBM(4, 3, visible="gaussian", hidden="nrelu"))
    with pytest.raises(ValueError, match="Expected one of"):
        tb.ais.log_partition(tb.RBM(4, 3), proposal="magic", verbose=0)


def test_beta_schedule_follows_salakhutdinov_murray():
    betas = tb.ais.beta_schedule(14500)
    assert betas[0] == 0 and betas[-1] == 1 and len(betas) == 14501
    assert np.all(np.diff(betas) > 0)
    assert np.sum(betas < 0.5) == 500 and np.sum((betas >= 0.5) & (betas < 0.9)) == 4000


def test_estimate_from_log_weights_matches_numpy():
    lw = np.array([10.0, 11.0, 9.5, 10.2])
    est = tb.ais.LogPartitionEstimate.from_log_weights(lw, 2.0, 100, "uniform")
    w = np.exp(lw)
    se = w.std(ddof=1) / 2
    assert abs(est.log_z - (2.0 + np.log(w.mean()))) < 1e-9
    assert abs(est.log_z_high - (2.0 + np.log(w.mean() + 3 * se))) < 1e-9
    assert est.log_z_low == -np.inf or est.log_z_low < est.log_z
    assert float(est) == est.log_z and "interval" in repr(est)


def test_ais_with_several_sweeps_per_temperature(trained_small_rbm):
    rbm, x = trained_small_rbm
    exact = tb.ais.exact_log_partition(rbm)
    est = tb.ais.log_partition(rbm, n_chains=100, n_betas=2000, seed=0, data=x, n_steps=4,
                               verbose=0)
    assert est.n_steps == 4 and "n_steps=4" in repr(est)
    assert abs(est.log_z - exact) < 0.1, (est, exact)
    # The sweeps take part: same seed and betas with one sweep give another estimate.
    one = tb.ais.log_partition(rbm, n_chains=100, n_betas=2000, seed=0, data=x, verbose=0)
    assert one.log_z != est.log_z
