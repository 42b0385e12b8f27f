"""Centered learning (`tb.DBM(..., centering=True)`, `tb.RBM(..., centering=True)`).

The defining property of the centered gradient (Melchior, Fischer & Wiskott 2016):
flipping every unit (x -> 1 - x) together with the offsets (mu -> 1 - mu) maps
learning onto itself, so a DBM trained on flipped data from the flipped parameters
stays the flip of the original after every update. Ordinary learning lacks
this symmetry, so the same check on it must fail; both are asserted. Deterministic
steps (mean-field particles, enough mean-field iterations to reach the fixed point,
plain SGD) make the comparison exact up to float32 rounding.
"""

import keras
import numpy as np
import pytest

import tfboltz as tb

SIZES = [6, 4, 3]


def _model(centering, rate=0.1):
    dbm = tb.DBM(SIZES, n_chains=8, k=2, sample_particles=False, n_mean_field=300,
                 mean_field_tol=0.0, centering=centering, centering_rate=rate, seed=0)
    dbm.compile(optimizer=keras.optimizers.SGD(0.2))
    dbm.data_initialized.assign(True)
    return dbm


def _state(rng):
    kernels = [rng.normal(0, 0.6, (a, b)).astype("f4") for a, b in zip(SIZES, SIZES[1:])]
    biases = [rng.normal(0, 0.5, n).astype("f4") for n in SIZES]
    particles = [rng.uniform(0.05, 0.95, (8, n)).astype("f4") for n in SIZES]
    offsets = [rng.uniform(0.1, 0.9, n).astype("f4") for n in SIZES]
    return kernels, biases, particles, offsets


def _flip(kernels, biases, particles, offsets):
    """The same model in the flipped units y = 1 - x: W stays, b_l becomes
    -b_l - W_l 1 - W_l-1^T 1."""
    flipped = [-b for b in biases]
    for i, w in enumerate(kernels):
        flipped[i] = flipped[i] - w.sum(1)
        flipped[i + 1] = flipped[i + 1] - w.sum(0)
    return kernels, flipped, [1 - p for p in particles], [1 - m for m in offsets]


def _set(dbm, kernels, biases, particles, offsets):
    for var, value in zip(dbm.kernels, kernels):
        var.assign(value)
    for layer, value in zip(dbm.unit_layers, biases):
        layer.bias.assign(value)
    for var, value in zip(dbm.particles, particles):
        var.assign(value)
    for var, value in zip(dbm.offsets, offsets):
        var.assign(value)


def _get(dbm):
    return ([w.numpy() for w in dbm.kernels], [layer.bias.numpy() for layer in dbm.unit_layers],
            [p.numpy() for p in dbm.particles], [o.numpy() for o in dbm.offsets])


def _flip_gap(centering):
    """Largest difference between the model trained on flipped data and the flip of
    the model trained on the data, over weights and biases, after three updates."""
    rng = np.random.default_rng(3)
    state = _state(rng)
    x = (rng.random((48, SIZES[0])) < rng.uniform(0.1, 0.6, SIZES[0])).astype("f4")
    if not centering:
        state = (*state[:3], [])
    a, b = _model(centering), _model(centering)
    _set(a, *state)
    _set(b, *_flip(*state[:3], state[3]))
    a.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)
    b.fit(1 - x, batch_size=16, epochs=1, shuffle=False, verbose=0)
    expected = _flip(*_get(a)[:3], _get(a)[3])
    got = _get(b)
    gap = max(np.abs(e - g).max() for part in (0, 1) for e, g in zip(expected[part], got[part]))
    moved = max(np.abs(e - s).max() for e, s in zip(_get(a)[0], state[0]))
    return gap, moved, expected, got


def test_centered_learning_is_flip_invariant():
    gap, moved, expected, got = _flip_gap(centering=True)
    assert moved > 1e-2  # the updates did something
    assert gap < 2e-5
    for e, g in zip(expected[2] + expected[3], got[2] + got[3]):  # particles, offsets
        np.testing.assert_allclose(g, e, atol=2e-5)


def test_ordinary_learning_is_not_flip_invariant():
    gap, moved, _, _ = _flip_gap(centering=False)
    assert gap > 1e-3


def test_zero_offsets_give_the_ordinary_update():
    """With offsets at 0 (and a rate that keeps them near 0 for one step: the data
    mean enters only after the update) the centered step is the ordinary one."""
    rng = np.random.default_rng(4)
    state = _state(rng)
    x = (rng.random((16, SIZES[0])) < 0.3).astype("f4")
    plain, centered = _model(False), _model(True)
    _set(plain, *state[:3], [])
    _set(centered, *state[:3], [np.zeros(n, "f4") for n in SIZES])
    for m in (plain, centered):
        m.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)
    for p, c in zip(_get(plain)[:3], _get(centered)[:3]):
        for u, v in zip(p, c):
            np.testing.assert_allclose(v, u, atol=1e-6)
    # after the step the offsets moved towards the batch means
    assert np.abs(_get(centered)[3][0] - 0.1 * x.mean(0)).max() < 1e-6


def test_offsets_start_from_data_and_round_trip(tmp_path):
    x = (np.random.default_rng(0).random((64, SIZES[0])) < 0.25).astype("f4")
    dbm = tb.DBM(SIZES, n_chains=8, centering=True, seed=0)
    dbm.compile(optimizer=keras.optimizers.SGD(0.05))
    dbm.fit(x, batch_size=16, epochs=2, verbose=0)
    offsets = [o.numpy() for o in dbm.offsets]
    assert all(((o > 0) & (o < 1)).all() for o in offsets)
    assert abs(offsets[0].mean() - x.mean()) < 0.1
    path = tmp_path / "centered.keras"
    dbm.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.centering and loaded.centering_rate == dbm.centering_rate
    for a, b in zip(offsets, loaded.offsets):
        np.testing.assert_array_equal(a, b.numpy())
    # an ordinary DBM has no offsets, so files written before centering still load
    assert tb.DBM(SIZES, n_chains=8).offsets == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(centering=True, visible="gaussian"), "Bernoulli or softmax layers"),
    (dict(centering=True, centering_rate=0.0), "centering_rate"),
    (dict(centering=True, centering_rate=1.5), "centering_rate"),
])
def test_bad_centering_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tb.DBM(SIZES, **kwargs)


# RBMs -----------------------------------------------------------------------------

def _rbm(centering, learning):
    rbm = tb.RBM(7, 5, learning=learning, n_chains=6, k=2, sample_visible=False,
                 sample_hidden=False, centering=centering, centering_rate=0.1, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.2))
    rbm.data_initialized.assign(True)
    return rbm


def _rbm_flip_gap(centering, learning):
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.6, (7, 5)).astype("f4")
    b, c = rng.normal(0, 0.5, 7).astype("f4"), rng.normal(0, 0.5, 5).astype("f4")
    chains = rng.uniform(0.05, 0.95, (6, 7)).astype("f4")
    offsets = [rng.uniform(0.1, 0.9, n).astype("f4") for n in (7, 5)]
    x = (rng.random((48, 7)) < rng.uniform(0.1, 0.6, 7)).astype("f4")

    def setup(rbm, w, b, c, chains, offsets):
        rbm.kernel.assign(w)
        rbm.visible_layer.bias.assign(b)
        rbm.hidden_layer.bias.assign(c)
        if learning == "pcd":
            rbm.persistent_chains.assign(chains)
        for var, value in zip(rbm.offsets, offsets):
            var.assign(value)

    def flip(w, b, c):
        return w, -b - w.sum(1), -c - w.sum(0)

    a, f = _rbm(centering, learning), _rbm(centering, learning)
    setup(a, w, b, c, chains, offsets)
    setup(f, *flip(w, b, c), 1 - chains, [1 - o for o in offsets])
    a.fit(x, batch_size=16, epochs=1, shuffle=False, verbose=0)
    f.fit(1 - x, batch_size=16, epochs=1, shuffle=False, verbose=0)
    params = [v.numpy() for v in (a.kernel, a.visible_layer.bias, a.hidden_layer.bias)]
    expected = flip(*params)
    got = [v.numpy() for v in (f.kernel, f.visible_layer.bias, f.hidden_layer.bias)]
    if centering:
        for o, g in zip(a.offsets, f.offsets):
            np.testing.assert_allclose(g.numpy(), 1 - o.numpy(), atol=2e-6)
    return max(np.abs(e - g).max() for e, g in zip(expected, got)), np.abs(params[0] - w).max()


@pytest.mark.parametrize("learning", ["cd", "pcd"])
def test_centered_rbm_learning_is_flip_invariant(learning):
    gap, moved = _rbm_flip_gap(True, learning)
    assert moved > 1e-2 and gap < 2e-5, (gap, moved)
    gap, _ = _rbm_flip_gap(False, learning)
    assert gap > 1e-3, gap


def test_centered_rbm_offsets_round_trip(tmp_path):
    x = (np.random.default_rng(0).random((64, 7)) < 0.25).astype("f4")
    rbm = tb.RBM(7, 5, learning="pcd", n_chains=8, centering=True, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.05))
    rbm.fit(x, batch_size=16, epochs=2, verbose=0)
    visible, hidden = (o.numpy() for o in rbm.offsets)
    assert np.abs(visible - x.mean(0)).max() < 0.05  # started from the data mean
    assert ((hidden > 0) & (hidden < 1)).all()
    rbm.save(tmp_path / "c.keras")
    loaded = keras.saving.load_model(tmp_path / "c.keras")
    assert loaded.centering
    for a, b in zip(rbm.offsets, loaded.offsets):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert tb.RBM(7, 5).offsets == []


@pytest.mark.parametrize("kwargs, message", [
    (dict(centering=True, visible="gaussian"), "Bernoulli or softmax units"),
    (dict(centering=True, visible_copies=2), "visible_copies=1"),
    (dict(centering=True, centering_rate=-0.1), "centering_rate"),
])
def test_bad_rbm_centering_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tb.RBM(7, 5, **kwargs)
