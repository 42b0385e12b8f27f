"""Deep Boltzmann machines: energy, mean-field, exact log Z, learning, saving."""

import itertools

import keras
import numpy as np
import pytest

import tfboltz as tb


def _random_dbm(sizes, top="bernoulli", seed=0, std=1.0):
    dbm = tb.DBM(sizes, top=top, seed=seed)
    r = np.random.default_rng(seed)
    for w in dbm.kernels:
        w.assign(r.normal(0, std, w.shape).astype("float32"))
    for layer in dbm.unit_layers:
        layer.bias.assign(r.normal(0, 1, layer.units).astype("float32"))
    return dbm


def _brute_force_log_z(dbm):
    ws = [w.numpy().astype(np.float64) for w in dbm.kernels]
    bs = [layer.bias.numpy().astype(np.float64) for layer in dbm.unit_layers]
    best = -np.inf
    terms = []
    for config in itertools.product(*[itertools.product([0, 1], repeat=len(b)) for b in bs]):
        xs = [np.array(c, np.float64) for c in config]
        neg_e = sum(x @ b for x, b in zip(xs, bs)) + sum(
            xs[i] @ w @ xs[i + 1] for i, w in enumerate(ws))
        terms.append(neg_e)
        best = max(best, neg_e)
    return best + np.log(np.sum(np.exp(np.array(terms) - best)))


@pytest.mark.parametrize("sizes", [[4, 3, 2], [3, 2, 3, 2]])
def test_exact_log_z_matches_brute_force(sizes):
    dbm = _random_dbm(sizes)
    assert abs(tb.ais.exact_log_partition(dbm) - _brute_force_log_z(dbm)) < 1e-6


def test_mean_field_reaches_the_numpy_fixed_point():
    dbm = _random_dbm([6, 5, 4], std=0.5)
    v = (np.random.default_rng(1).random((8, 6)) < 0.5).astype("float32")
    means = dbm.mean_field(v, n_mean_field=200, tol=1e-7)
    w1, w2 = (w.numpy().astype(np.float64) for w in dbm.kernels)
    b1, b2 = (layer.bias.numpy().astype(np.float64) for layer in dbm.unit_layers[1:])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    mu1, mu2 = means[1].astype(np.float64), means[2].astype(np.float64)
    # the fixed-point equations of Salakhutdinov & Hinton (2009), eq. 6
    np.testing.assert_allclose(mu1, sig(v @ w1 + mu2 @ w2.T + b1), atol=1e-5)
    np.testing.assert_allclose(mu2, sig(mu1 @ w2 + b2), atol=1e-5)
    # and the residual shrinks with the number of iterations
    coarse = dbm.mean_field(v, n_mean_field=1, tol=0.0)
    assert np.abs(coarse[1] - mu1).max() > np.abs(means[1] - mu1).max()


def test_mean_field_continues_from_a_given_start():
    import tensorflow as tf

    from tfboltz.mean_field import mean_field_means

    dbm = _random_dbm([6, 5, 4], std=0.5)
    v = tf.constant((np.random.default_rng(1).random((8, 6)) < 0.5).astype("float32"))
    args = (dbm.unit_layers, dbm.kernels, v)
    three, n = mean_field_means(*args, 3, 0.0)
    five, _ = mean_field_means(*args, 5, 0.0)
    then_two, _ = mean_field_means(*args, 2, 0.0, init=three)
    assert int(n) == 3
    for a, b in zip(five[1:], then_two[1:]):  # 3 iterations, then 2 more from there
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    # a start of all ones is not the bottom-up pass: one iteration from it differs
    ones, _ = mean_field_means(*args, 1, 0.0, init=[v] + [tf.ones_like(m) for m in three[1:]])
    one, _ = mean_field_means(*args, 1, 0.0)
    assert np.abs(ones[1].numpy() - one[1].numpy()).max() > 1e-3


@pytest.mark.parametrize("sizes,top,visible", [([16, 8, 6], "bernoulli", "bernoulli"),
                                               ([16, 8, 6, 4], "bernoulli", "bernoulli"),
                                               ([16, 8, 10], "softmax", "gaussian")])
def test_trains_and_round_trips(sizes, top, visible, tmp_path):
    rng = np.random.default_rng(0)
    if visible == "gaussian":
        x = rng.normal(0, 1, (64, sizes[0])).astype("float32")
    else:
        x = (rng.random((64, sizes[0])) < 0.3).astype("float32")
    top_units = tb.units.SoftmaxUnits(group_size=5) if top == "softmax" else top
    dbm = tb.DBM(sizes, visible=visible, top=top_units, n_chains=10, max_norm=0.05,
                 weight_init_std=0.1, seed=0)
    dbm.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.5))
    hist = dbm.fit(x, batch_size=16, epochs=2, verbose=0)
    for w in dbm.kernels:
        assert np.linalg.norm(w.numpy(), axis=0).max() <= 0.05 + 1e-6
    assert np.isfinite(hist.history["reconstruction_error"][-1])
    assert all(np.all(np.isfinite(w.numpy())) for w in dbm.weights)
    path = tmp_path / "dbm.keras"
    dbm.save(path)
    loaded = keras.saving.load_model(path)
    for a, b in zip(loaded.mean_field(x[:5]), dbm.mean_field(x[:5])):
        np.testing.assert_allclose(a, b, atol=1e-6)
    for a, b in zip(loaded.particles, dbm.particles):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


@pytest.mark.parametrize("jit_compile", [False, True])
def test_learning_raises_the_likelihood_on_digits(digits, jit_compile):
    x, _ = digits
    # the central 4x4 patch: 16 pixels, so that log Z can be enumerated exactly
    x = x[:, [r * 8 + c for r in range(2, 6) for c in range(2, 6)]]
    dbm = tb.DBM([16, 8, 6], n_chains=100, seed=0)
    dbm.init_from_data(x)
    before = _exact_ll(dbm, x)
    dbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), jit_compile=jit_compile)
    dbm.fit(x, batch_size=20, epochs=15, verbose=0)
    assert dbm.jit_compile is jit_compile
    # seen: -10.87 nats with the data-fitted biases alone, -9.64 after 15 epochs
    assert _exact_ll(dbm, x) > before + 0.8


def _exact_ll(dbm, x):
    """Exact mean log p(v) of a tiny 2-hidden-layer DBM."""
    return float(np.mean(_exact_log_p(dbm, x.astype(np.float64))))


def test_bad_configurations():
    with pytest.raises(ValueError, match="at least two hidden"):
        tb.DBM([784, 500])
    with pytest.raises(ValueError, match="Expected top units of type"):
        tb.DBM([10, 5, 5], top="gaussian")
    with pytest.raises(ValueError, match="Expected visible units of type"):
        tb.DBM([10, 5, 5], visible="softmax")
    dbm = tb.DBM([10, 5, 5])
    with pytest.raises(ValueError, match=r"Expected `x` of shape \(batch, 10\)"):
        dbm.mean_field(np.zeros((2, 9), "float32"))


@pytest.mark.parametrize("sizes", [[10, 6, 4], [8, 5, 4, 3]])
def test_ais_matches_exact_log_z(sizes, digits):
    dbm = _random_dbm(sizes, std=0.7, seed=3)
    exact = tb.ais.exact_log_partition(dbm)
    est = tb.ais.log_partition(dbm, n_chains=100, n_betas=5000, seed=0, verbose=0)
    assert abs(est.log_z - exact) < 0.1, (est, exact)
    assert est.log_z_low < exact + 0.1 and exact - 0.1 < est.log_z_high


def test_ais_with_gaussian_visibles_matches_exact():
    dbm = tb.DBM([6, 4, 3], visible="gaussian", seed=0)
    r = np.random.default_rng(5)
    for w in dbm.kernels:
        w.assign(r.normal(0, 0.4, w.shape).astype("float32"))
    exact = tb.ais.exact_log_partition(dbm)
    est = tb.ais.log_partition(dbm, n_chains=100, n_betas=5000, seed=0, verbose=0)
    assert abs(est.log_z - exact) < 0.1, (est, exact)


def _exact_log_p(dbm, x):
    """Exact per-example log p(v) of a 2-hidden-layer Bernoulli DBM (numpy)."""
    log_z = tb.ais.exact_log_partition(dbm)
    layers = dbm.unit_layers
    h1 = layers[1].states().astype("float64")
    w1, w2 = (w.numpy().astype(np.float64) for w in dbm.kernels)
    b0, b1, b2 = (layer.bias.numpy().astype(np.float64) for layer in layers)
    scores = (x @ b0)[:, None] + (x @ w1 + b1) @ h1.T + np.logaddexp(0, h1 @ w2 + b2).sum(1)[None]
    top = scores.max(1, keepdims=True)
    return top[:, 0] + np.log(np.exp(scores - top).sum(1)) - log_z


def test_elbo_is_a_lower_bound_that_tightens_with_mean_field():
    dbm = _random_dbm([8, 6, 4], std=1.0, seed=2)
    x = (np.random.default_rng(0).random((50, 8)) < 0.5).astype("float32")
    exact = _exact_log_p(dbm, x.astype(np.float64))
    log_z = tb.ais.exact_log_partition(dbm)
    gaps = []
    for n_iter in (1, 3, 30):
        bound = tb.ais.elbo(dbm, x, log_z, n_mean_field=n_iter)
        assert np.all(bound <= exact + 1e-5)
        gaps.append(np.mean(exact - bound))
    assert gaps[0] > gaps[1] > gaps[2] >= 0, gaps


def test_elbo_with_the_top_layer_summed_out_is_tighter_and_still_a_bound():
    dbm = _random_dbm([8, 6, 4], std=1.0, seed=2)
    x = (np.random.default_rng(0).random((50, 8)) < 0.5).astype("float32")
    exact = _exact_log_p(dbm, x.astype(np.float64))
    log_z = tb.ais.exact_log_partition(dbm)
    mean_field = tb.ais.elbo(dbm, x, log_z, n_mean_field=30)
    summed = tb.ais.elbo(dbm, x, log_z, n_mean_field=30, sum_out_top=True, n_samples=4000)
    # The bound itself, by enumerating the 64 states of h1 under q(h1) = Bernoulli(mu1).
    mu = dbm.mean_field(x, n_mean_field=30)[1].astype(np.float64)
    w1, w2 = (w.numpy().astype(np.float64) for w in dbm.kernels)
    b0, b1, b2 = (layer.bias.numpy().astype(np.float64) for layer in dbm.unit_layers)
    h1 = dbm.unit_layers[1].states().astype(np.float64)
    log_q = h1 @ np.log(mu.T) + (1 - h1) @ np.log1p(-mu.T)
    log_p_joint = ((x @ b0)[None] + (h1 @ b1)[:, None] + h1 @ (x @ w1).T
                   + np.logaddexp(0, h1 @ w2 + b2).sum(1)[:, None])
    bound = (np.exp(log_q) * (log_p_joint - log_q)).sum(0) - log_z
    assert np.all(bound >= mean_field - 1e-5) and np.all(bound <= exact + 1e-5)
    assert np.mean(bound - mean_field) > 0.1  # strictly tighter on this model (0.2 nats)
    # 4,000 draws: Monte Carlo error at most 0.04 nats per example seen; 0.1 allowed.
    np.testing.assert_allclose(summed, bound, atol=0.1)
    assert abs(np.mean(summed - bound)) < 0.02
    again = tb.ais.elbo(dbm, x, log_z, n_mean_field=30, sum_out_top=True, n_samples=4000)
    np.testing.assert_array_equal(summed, again)  # seeded


@pytest.mark.parametrize("top", ["bernoulli", "softmax"])
def test_elbo_with_the_top_layer_summed_out_for_deeper_models(top):
    dbm = _random_dbm([8, 5, 4, 3], top=top, std=1.0, seed=4)
    x = (np.random.default_rng(1).random((40, 8)) < 0.5).astype("float32")
    mean_field = tb.ais.elbo(dbm, x, 0.0, n_mean_field=30)
    summed = tb.ais.elbo(dbm, x, 0.0, n_mean_field=30, sum_out_top=True, n_samples=2000)
    assert summed.shape == (40,) and np.all(np.isfinite(summed))
    assert np.mean(summed) > np.mean(mean_field)


def test_elbo_rejects_bad_sampling_arguments():
    dbm = tb.DBM([8, 6, 4], seed=0)
    x = np.zeros((2, 8), "float32")
    with pytest.raises(ValueError, match="n_samples"):
        tb.ais.elbo(dbm, x, 0.0, sum_out_top=True, n_samples=0)
    with pytest.raises(ValueError, match="`seed`"):
        tb.ais.elbo(dbm, x, 0.0, sum_out_top=True, seed=0.5)


# Pretraining -----------------------------------------------------------------------

def test_pretraining_doubles_inputs_and_stitches_the_rbms(digits):
    x, _ = digits
    dbm = tb.DBM([64, 12, 10, 8], seed=0)
    rbms = tb.pretrain_dbm(dbm, x, epochs=[2, 1, 1], verbose=0)
    assert [(r.visible_copies, r.hidden_copies) for r in rbms] == [(2, 1), (1, 1), (1, 2)]
    # The bottom RBM's hidden units see the input twice, the top RBM's visibles too.
    w0, b0 = rbms[0].kernel.numpy(), rbms[0].hidden_layer.bias.numpy()
    np.testing.assert_allclose(rbms[0].transform(x[:5]),
                               1 / (1 + np.exp(-(2 * x[:5] @ w0 + b0))), atol=1e-5)
    h = rbms[2].hidden_layer.mean(np.zeros((1, 8), "float32"))  # any hidden state
    w2 = rbms[2].kernel.numpy()
    np.testing.assert_allclose(rbms[2].visible_input(h).numpy(), 2 * h.numpy() @ w2.T,
                               rtol=1e-5, atol=1e-6)
    # Stitched: end RBMs as trained, middle ones halved, shared biases averaged.
    np.testing.assert_allclose(dbm.kernels[0].numpy(), w0)
    np.testing.assert_allclose(dbm.kernels[1].numpy(), 0.5 * rbms[1].kernel.numpy())
    np.testing.assert_allclose(dbm.kernels[2].numpy(), w2)
    np.testing.assert_allclose(dbm.unit_layers[0].bias.numpy(),
                               rbms[0].visible_layer.bias.numpy())
    for i in (1, 2):
        np.testing.assert_allclose(
            dbm.unit_layers[i].bias.numpy(),
            0.5 * (rbms[i - 1].hidden_layer.bias.numpy() + rbms[i].visible_layer.bias.numpy()),
            rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(dbm.unit_layers[3].bias.numpy(),
                               rbms[2].hidden_layer.bias.numpy())
    assert bool(dbm.data_initialized.numpy())
    assert np.all(np.isfinite(dbm.particles[0].numpy()))


def test_pretraining_helps_the_joint_model(digits):
    """Pretrained and stitched, a DBM reconstructs digits far better than at random
    initialisation (mean-field reconstruction error, 30 iterations)."""
    x, _ = digits

    def recon_error(dbm):
        means = dbm.mean_field(x, n_mean_field=30)
        recon = dbm.unit_layers[0].mean(dbm.layer_input([np.asarray(m) for m in means], 0))
        return float(np.mean((x - recon.numpy()) ** 2))

    fresh = tb.DBM([64, 32, 16], seed=0)
    fresh.init_from_data(x)
    pretrained = tb.DBM([64, 32, 16], seed=0)
    tb.pretrain_dbm(pretrained, x, epochs=10, optimizer=lambda: keras.optimizers.SGD(
        0.05, momentum=0.9), verbose=0)
    assert recon_error(pretrained) < 0.6 * recon_error(fresh)


def test_pretraining_bad_input_changes_nothing(digits):
    x, _ = digits
    dbm = tb.DBM([64, 12, 8], seed=0)
    before = [w.numpy().copy() for w in dbm.weights]
    with pytest.raises(ValueError, match="one `epochs` entry per RBM"):
        tb.pretrain_dbm(dbm, x, epochs=[1, 1, 1], verbose=0)
    with pytest.raises(ValueError, match=r"Expected `x` of shape \(batch, 64\)"):
        tb.pretrain_dbm(dbm, x[:, :10], verbose=0)
    bad = x.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tb.pretrain_dbm(dbm, bad, verbose=0)
    with pytest.raises(ValueError, match="Expected a DBM"):
        tb.pretrain_dbm(tb.RBM(64, 8), x)
    for b, w in zip(before, dbm.weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_copies_are_validated_and_refused_by_ais():
    with pytest.raises(ValueError, match="`visible_copies`. Expected 1 or 2"):
        tb.RBM(4, 3, visible_copies=3)
    rbm = tb.RBM(4, 3, hidden_copies=2)
    assert keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(rbm)).hidden_copies == 2
    with pytest.raises(ValueError, match="without copied units"):
        tb.ais.exact_log_partition(rbm)


# Sampling --------------------------------------------------------------------------

def test_sampling_is_seeded_and_clamped_units_stay(digits):
    x, _ = digits
    dbm = tb.DBM([64, 16, 8], seed=0)
    tb.pretrain_dbm(dbm, x, epochs=2, verbose=0)
    state = dbm.seed_generator.state.numpy().copy()
    a, b = dbm.sample(6, steps=20, seed=3), dbm.sample(6, steps=20, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, dbm.sample(6, steps=20, seed=4))
    np.testing.assert_array_equal(state, dbm.seed_generator.state.numpy())  # untouched
    mask = np.zeros(64, bool)
    mask[:32] = True  # the upper half of each 8x8 digit
    done = dbm.sample(init=x[:6], clamp=mask, steps=30, seed=0)
    np.testing.assert_array_equal(done[:, :32], x[:6, :32])
    assert done.shape == (6, 64) and np.all((done >= 0) & (done <= 1))
    states = dbm.sample(init=x[:6], clamp=mask, steps=5, seed=0, means=False)
    assert set(np.unique(states)) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="Expected `init` values to clamp"):
        dbm.sample(3, clamp=mask)


# Divergence ------------------------------------------------------------------------

def test_divergence_stops_joint_training_with_the_last_good_weights(digits):
    x, _ = digits
    dbm = tb.DBM([64, 16, 8], seed=0)
    dbm.compile(optimizer=keras.optimizers.SGD(1e35))
    dbm.init_from_data(x)
    before = [w.numpy().copy() for w in dbm.trainable_weights]
    with pytest.raises(tb.TrainingDivergedError, match="epoch 1"):
        dbm.fit(x, batch_size=100, epochs=2, verbose=0)
    for b, w in zip(before, dbm.trainable_weights):
        np.testing.assert_array_equal(b, w.numpy())


def test_sparsity_pulls_hidden_activity_towards_the_target(digits):
    x, _ = digits

    def activity(cost):
        dbm = tb.DBM([64, 16, 8], sparsity_target=0.05, sparsity_cost=cost, seed=0)
        dbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
        dbm.fit(x, batch_size=50, epochs=5, verbose=0)
        assert keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(dbm)).sparsity_cost == cost
        return np.mean(dbm.mean_field(x)[1])

    assert activity(1.0) < activity(0.0) - 0.05


@pytest.mark.parametrize("sizes", [[10, 6, 4], [8, 5, 4, 3]])
def test_two_stage_ais_matches_exact_log_z(sizes):
    dbm = _random_dbm(sizes, std=0.7, seed=3)
    exact = tb.ais.exact_log_partition(dbm)
    x = (np.random.default_rng(0).random((200, sizes[0])) < 0.4).astype("float32")
    est = tb.ais.log_partition(dbm, n_chains=100, n_betas=3000, seed=0, proposal="rbm", data=x,
                               verbose=0)
    assert abs(est.log_z - exact) < 0.1, (est, exact)
    assert est.proposal == "rbm" and est.n_betas == 6000
    with pytest.raises(ValueError, match='Expected a DBM for proposal="rbm"'):
        tb.ais.log_partition(tb.RBM(4, 3), proposal="rbm")


@pytest.mark.parametrize("proposal", ["base_rate", "rbm"])
def test_ais_with_several_sweeps_per_temperature_matches_exact(proposal):
    dbm = _random_dbm([10, 6, 4], std=0.7, seed=3)
    exact = tb.ais.exact_log_partition(dbm)
    x = (np.random.default_rng(0).random((200, 10)) < 0.4).astype("float32")
    one = tb.ais.log_partition(dbm, n_chains=100, n_betas=300, seed=0, proposal=proposal,
                               data=x, verbose=0)
    three = tb.ais.log_partition(dbm, n_chains=100, n_betas=300, seed=0, proposal=proposal,
                                 data=x, n_steps=3, verbose=0)
    assert three.n_steps == 3 and one.n_steps == 1
    # Same betas, more sweeps: a different, valid estimate, here within 0.1 nats.
    assert three.log_z != one.log_z
    assert abs(three.log_z - exact) < 0.1, (three, exact)
    with pytest.raises(ValueError, match="Received: n_steps=0"):
        tb.ais.log_partition(dbm, n_steps=0)
