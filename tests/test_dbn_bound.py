"""The DBN's variational bound and the top RBM's log Z against exact enumeration, and
AIS as a training monitor (`tb.ais.AISMonitor`)."""

import itertools
import math
import warnings

import keras
import numpy as np
import pytest

import tfboltz as tb

SE = 4.0  # standard errors allowed between a Monte-Carlo estimate and its exact value


def _states(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


def _softplus(a):
    return np.logaddexp(0.0, a)


def _logsumexp(a, axis=None):
    top = np.max(a, axis=axis, keepdims=True)
    out = top + np.log(np.sum(np.exp(a - top), axis=axis, keepdims=True))
    return out.squeeze() if axis is None else np.squeeze(out, axis)


def _f64(variable):
    return variable.numpy().astype(np.float64)


def _random_dbn(layer_sizes, num_classes, seed, std=1.0, sigma=None):
    """A DBN whose every weight, recognition ones included, is drawn at random: the
    recognition weights differ from the generative ones. `sigma`: Gaussian visibles."""
    visible = "bernoulli" if sigma is None else tb.units.GaussianUnits(sigma=sigma)
    dbn = tb.DBN(layer_sizes, visible=visible, num_classes=num_classes, seed=0)
    r = np.random.default_rng(seed)
    top = dbn.top
    generative = [w for rbm in dbn.rbms[:-1] for w in (rbm.kernel, rbm.visible_layer.bias)]
    for var in [top.kernel, top.visible_layer.bias, top.hidden_layer.bias, *generative,
                *dbn.rec_kernels, *dbn.rec_biases]:
        var.assign(r.normal(0, std, var.shape).astype("float32"))
    return dbn


def _top_log_marginal(dbn, h):
    """``log sum_{label, h_L} exp(-E_top([h, label], h_L))`` by brute force, per row."""
    top = dbn.top
    w, b, c = _f64(top.kernel), _f64(top.visible_layer.bias), _f64(top.hidden_layer.bias)
    n = dbn.num_classes
    labels = np.eye(n) if n else np.zeros((1, 0))
    vis = np.concatenate([np.repeat(h[:, None], len(labels), 1),
                          np.broadcast_to(labels, (len(h), *labels.shape))], -1)  # (S, C, n+C)
    tops = _states(len(c))
    neg_e = (vis @ b)[..., None] + (tops @ c) + np.einsum("scv,vk,tk->sct", vis, w, tops)
    return _logsumexp(neg_e.reshape(len(h), -1), axis=1)


def _exact(dbn, x):
    """``(log p(x), bound, std)`` per row by enumerating every joint state of the layers
    below the top: the exact log-likelihood, the exact variational bound and the
    standard deviation under Q of ``log p(x, h) - log Q(h | x)`` (one draw's spread),
    and log Z of the top RBM."""
    sizes = dbn.layer_sizes[1:-1]
    blocks = [_states(n) for n in sizes]
    joint = list(itertools.product(*[range(len(s)) for s in blocks]))
    hs = [np.stack([block[j[i]] for j in joint]) for i, block in enumerate(blocks)]  # (H, n_i)
    log_top = _top_log_marginal(dbn, hs[-1] if hs else x.astype(np.float64))
    log_z = _logsumexp(_top_log_marginal(dbn, _states(dbn.layer_sizes[-2])))
    if not hs:
        return log_top - log_z, log_top - log_z, np.zeros(len(x)), log_z
    gen = [(_f64(r.kernel), _f64(r.visible_layer.bias)) for r in dbn.rbms[:-1]]
    rec = [(_f64(w), _f64(c)) for w, c in zip(dbn.rec_kernels, dbn.rec_biases)]
    bottom = dbn.rbms[0].visible_layer
    sigma = _f64(bottom.log_sigma) if isinstance(bottom, tb.units.GaussianUnits) else None
    log_p_joint, log_q = [], []
    for v in x.astype(np.float64):
        below = [np.broadcast_to(v, (len(joint), len(v))), *hs]
        lp, lq = log_top.copy(), 0.0
        for i, ((w, b), lo, hi) in enumerate(zip(gen, below, below[1:])):
            if i == 0 and sigma is not None:  # N(v; b + sigma h W^T, sigma^2)
                s = np.exp(sigma)
                lp += np.sum(-(lo - b - s * (hi @ w.T)) ** 2 / (2 * s**2) - np.log(s)
                             - 0.5 * np.log(2 * np.pi), 1)
                continue
            a = hi @ w.T + b
            lp += np.sum(lo * a - _softplus(a), 1)
        for i, ((w, c), lo, hi) in enumerate(zip(rec, below, below[1:])):
            a = (lo / np.exp(sigma) if i == 0 and sigma is not None else lo) @ w + c
            lq += np.sum(hi * a - _softplus(a), 1)
        log_p_joint.append(lp - log_z)
        log_q.append(lq)
    log_p_joint, log_q = np.array(log_p_joint), np.array(log_q)
    q = np.exp(log_q)
    f = log_p_joint - log_q
    bound = np.sum(q * f, 1)
    std = np.sqrt(np.maximum(np.sum(q * f**2, 1) - bound**2, 0.0))
    return _logsumexp(log_p_joint, axis=1), bound, std, log_z


@pytest.mark.parametrize("layer_sizes,num_classes", [([6, 4, 3], 3), ([5, 4, 3, 2], 2)])
def test_bound_against_enumeration(layer_sizes, num_classes):
    dbn = _random_dbn(layer_sizes, num_classes, seed=1)
    x = _states(layer_sizes[0]).astype("float32")  # every visible state
    log_p, bound, std, log_z = _exact(dbn, x)
    # The enumeration is a distribution over v, and the exact bound is below it.
    assert abs(_logsumexp(log_p)) < 1e-9
    assert np.all(bound <= log_p + 1e-12)
    assert np.all(std > 0.1)  # Q is not the posterior: the draws spread
    # The library's enumeration of the top RBM.
    exact_z = tb.ais.exact_log_partition(dbn)
    assert abs(exact_z - log_z) < 1e-6
    assert exact_z == tb.ais.exact_log_partition(dbn.top)
    # The Monte-Carlo estimate within SE standard errors of the exact bound, per row.
    n_samples = 500
    est = tb.ais.dbn_bound(dbn, x, exact_z, n_samples=n_samples, seed=0, batch_size=16)
    assert est.dtype == np.float64 and est.shape == (len(x),)
    z = (est - bound) / (std / math.sqrt(n_samples))
    assert np.all(np.abs(z) < SE), np.abs(z).max()
    # Stateless draws: the same call gives the same numbers, another seed others.
    again = tb.ais.dbn_bound(dbn, x, exact_z, n_samples=n_samples, seed=0, batch_size=16)
    np.testing.assert_array_equal(est, again)
    other = tb.ais.dbn_bound(dbn, x, exact_z, n_samples=n_samples, seed=1, batch_size=16)
    assert np.all(est != other)


def test_bound_with_gaussian_visibles_against_enumeration():
    """The bottom layer's density and the recognition pass's ``v / sigma``."""
    dbn = _random_dbn([3, 4, 2], 0, seed=5, sigma=1.5)
    x = np.random.default_rng(0).normal(0, 1.5, (20, 3)).astype("float32")
    log_p, bound, std, log_z = _exact(dbn, x)
    assert np.all(bound <= log_p) and np.all(std > 0.1)
    n_samples = 500
    est = tb.ais.dbn_bound(dbn, x, tb.ais.exact_log_partition(dbn), n_samples=n_samples)
    z = (est - bound) / (std / math.sqrt(n_samples))
    assert np.all(np.abs(z) < SE), np.abs(z).max()


def test_one_rbm_dbn_bound_is_the_exact_log_likelihood():
    labelled = _random_dbn([6, 3], 3, seed=2)
    x = _states(6).astype("float32")
    log_p, _, _, log_z = _exact(labelled, x)
    assert abs(_logsumexp(log_p)) < 1e-9
    np.testing.assert_allclose(tb.ais.dbn_bound(labelled, x, log_z, n_samples=3), log_p,
                               atol=2e-5)
    plain = _random_dbn([6, 3], 0, seed=3)
    log_z = tb.ais.exact_log_partition(plain)
    np.testing.assert_allclose(tb.ais.dbn_bound(plain, x, log_z),
                               tb.ais.log_likelihood(plain.top, x, log_z), atol=2e-5)


def test_bound_is_exact_where_the_recognition_posterior_is():
    """Each visible unit with one parent in h_1 and each top hidden unit with one
    feature parent (no label weights): p(h_1) and p(v | h_1) factorise over the units
    of h_1, so the posterior is factorial, ``sigmoid(v W + c)``, and the recognition
    weights set to it make the bound exact, every draw alike."""
    dbn = tb.DBN([6, 4, 3], num_classes=3, seed=0)
    r = np.random.default_rng(4)
    parent_of_v = [0, 0, 1, 2, 3, 3]          # of each visible unit, in h_1
    parent_of_top = [0, 1, 3]                 # of each top hidden unit, in h_1
    w1 = np.zeros((6, 4))
    w1[range(6), parent_of_v] = r.normal(0, 2, 6)
    b1 = r.normal(0, 1, 6)
    w_top = np.zeros((4 + 3, 3))
    w_top[parent_of_top, range(3)] = r.normal(0, 2, 3)
    b_top, c_top = r.normal(0, 1, 7), r.normal(0, 1, 3)
    prior = b_top[:4].copy()
    for k, j in enumerate(parent_of_top):
        prior[j] += _softplus(c_top[k] + w_top[j, k]) - _softplus(c_top[k])
    rec_bias = prior.copy()
    for i, j in enumerate(parent_of_v):
        rec_bias[j] -= _softplus(b1[i] + w1[i, j]) - _softplus(b1[i])
    for var, value in ((dbn.rbms[0].kernel, w1), (dbn.rbms[0].visible_layer.bias, b1),
                       (dbn.top.kernel, w_top), (dbn.top.visible_layer.bias, b_top),
                       (dbn.top.hidden_layer.bias, c_top), (dbn.rec_kernels[0], w1),
                       (dbn.rec_biases[0], rec_bias)):
        var.assign(value.astype("float32"))
    x = _states(6).astype("float32")
    log_p, bound, std, log_z = _exact(dbn, x)
    assert np.max(np.abs(log_p - bound)) < 1e-5 and np.max(std) < 1e-3  # the construction
    est = tb.ais.dbn_bound(dbn, x, tb.ais.exact_log_partition(dbn), n_samples=2, seed=0)
    np.testing.assert_allclose(est, log_p, atol=1e-4)


def test_ais_log_z_of_a_dbn_within_its_spread():
    dbn = _random_dbn([6, 4, 3], 3, seed=1)
    exact = tb.ais.exact_log_partition(dbn)
    x = _states(6).astype("float32")
    for proposal, data in (("uniform", None), ("base_rate", x)):
        est = tb.ais.log_partition(dbn, n_chains=100, n_betas=1000, seed=0, proposal=proposal,
                                   data=data, verbose=0)
        assert est.log_z_low <= exact <= est.log_z_high, (proposal, est, exact)
        assert est.log_z_high - est.log_z_low < 0.2, est


def test_dbn_bound_checks_its_arguments():
    dbn = tb.DBN([6, 4, 3], num_classes=3, seed=0)
    x = np.zeros((2, 6), "float32")
    cases = [
        (lambda: tb.ais.dbn_bound(tb.RBM(6, 4), x, 0.0), "Expected a DBN"),
        (lambda: tb.ais.dbn_bound(dbn, x, float("nan")), "Expected a finite float"),
        (lambda: tb.ais.dbn_bound(dbn, x, "big"), "Expected a float or a LogPartitionEstimate"),
        (lambda: tb.ais.dbn_bound(dbn, x, 0.0, n_samples=0), "Received: n_samples=0"),
        (lambda: tb.ais.dbn_bound(dbn, x, 0.0, seed=-1), "Received: seed=-1"),
        (lambda: tb.ais.dbn_bound(dbn, x, 0.0, batch_size=2.5), "Received: batch_size=2.5"),
        (lambda: tb.ais.dbn_bound(dbn, x + 2, 0.0), r"Expected values in \[0, 1\]"),
        (lambda: tb.ais.dbn_bound(dbn, x[:, :5], 0.0), r"Expected `x` of shape"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()


# AIS as a training monitor -------------------------------------------------------------


@pytest.fixture(scope="module")
def split(digits):
    x, y = digits
    return x[:500], y[:500], x[1500:1600]


def _fit_quietly(fit):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit()
    assert not [w for w in caught if "not available" in str(w.message)]
    return history


def test_monitor_on_an_rbm_feeds_history_csv_and_early_stopping(split, tmp_path):
    x, _, x_val = split
    rbm = tb.RBM(64, 12, learning="pcd", seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    monitor = tb.ais.AISMonitor(x_val, every=2, n_chains=50, n_betas=300, seed=3, name="val_ll")
    stop = keras.callbacks.EarlyStopping(monitor="val_ll", mode="max", patience=4)
    csv = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    history = _fit_quietly(lambda: rbm.fit(x, batch_size=50, epochs=5, verbose=0,
                                           callbacks=[monitor, stop, csv]))
    values, spreads = history.history["val_ll"], history.history["val_ll_spread"]
    assert len(values) == len(spreads) == 5
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(spreads))
    # The first epoch, every second one and the last; the epoch between carries.
    assert monitor.measured_epochs == [0, 1, 3, 4]
    assert values[2] == values[1] and values[3] != values[2]
    assert stop.best == max(values)  # EarlyStopping read every epoch's value
    header = (tmp_path / "log.csv").read_text().splitlines()[0].split(",")
    assert "val_ll" in header and "val_ll_spread" in header
    est = tb.ais.log_partition(rbm, n_chains=50, n_betas=300, seed=3, data=x_val, verbose=0)
    direct = tb.ais.log_likelihood(rbm, x_val, est).mean()
    assert values[-1] == pytest.approx(direct, abs=1e-6)
    assert spreads[-1] == pytest.approx(est.log_z_high - est.log_z_low, abs=1e-9)
    assert monitor.last_estimate.log_z == est.log_z
    # It touches no state of the model: the same training without it, bit for bit.
    alone = tb.RBM(64, 12, learning="pcd", seed=0)
    alone.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
    alone.fit(x, batch_size=50, epochs=5, verbose=0)
    np.testing.assert_array_equal(alone.kernel.numpy(), rbm.kernel.numpy())


def test_monitor_on_a_dbm_and_a_dbn(split):
    x, y, x_val = split
    dbm = tb.DBM([64, 12, 8], n_chains=50, seed=0)
    dbm.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    monitor = tb.ais.AISMonitor(x_val, n_chains=50, n_betas=200, seed=1)
    history = dbm.fit(x, batch_size=50, epochs=2, verbose=0, callbacks=[monitor])
    values = history.history["val_log_likelihood"]
    assert len(values) == 2 and np.all(np.isfinite(values))
    est = tb.ais.log_partition(dbm, n_chains=50, n_betas=200, seed=1, data=x_val, verbose=0)
    assert values[-1] == pytest.approx(tb.ais.elbo(dbm, x_val, est).mean(), abs=1e-5)

    dbn = tb.DBN([64, 16, 12], num_classes=10, seed=0)
    tb.pretrain_dbn(dbn, x, y, epochs=2, batch_size=50, verbose=0)
    monitor = tb.ais.AISMonitor(x_val, n_chains=50, n_betas=500, n_samples=5, seed=2,
                                name="val_bound")
    stop = keras.callbacks.EarlyStopping(monitor="val_bound", mode="max", patience=2)
    history = _fit_quietly(lambda: dbn.fit(x, y, batch_size=50, epochs=2, verbose=0,
                                           callbacks=[monitor, stop]))
    values = history.history["val_bound"]
    assert len(values) == 2 and np.all(np.isfinite(values))
    est = tb.ais.log_partition(dbn, n_chains=50, n_betas=500, seed=2, data=x_val, verbose=0)
    direct = tb.ais.dbn_bound(dbn, x_val, est, n_samples=5, seed=2).mean()
    assert values[-1] == pytest.approx(direct, abs=1e-5)
    # A trained top RBM (12 hidden units: enumerable): AIS within its spread.
    assert est.log_z_low <= tb.ais.exact_log_partition(dbn) <= est.log_z_high


def test_monitor_checks_its_arguments(split):
    x, _, x_val = split
    for kwargs, message in (({"every": 0}, "Received: every=0"),
                            ({"n_betas": -1}, "Received: n_betas=-1"),
                            ({"proposal": "magic"}, "Expected one of"),
                            ({"name": ""}, "Received: name=''")):
        with pytest.raises(ValueError, match=message):
            tb.ais.AISMonitor(x_val, **kwargs)
    rbm = tb.RBM(64, 4, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.01))
    with pytest.raises(ValueError, match="Expected `x` of shape"):
        rbm.fit(x, epochs=1, verbose=0, callbacks=[tb.ais.AISMonitor(x_val[:, :10])])
    with pytest.raises(ValueError, match='Expected a DBM for proposal="rbm"'):
        rbm.fit(x, epochs=1, verbose=0, callbacks=[tb.ais.AISMonitor(x_val, proposal="rbm")])
