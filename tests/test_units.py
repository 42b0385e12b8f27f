"""Stochastic units: means, samples, free-energy terms, bias initialisation, configs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb
from tfboltz import units

ALL = [
    lambda: units.BernoulliUnits(6, seed=0),
    lambda: units.GaussianUnits(6, sigma=0.7, seed=0),
    lambda: units.GaussianUnits(6, learn_sigma=True, seed=0),
    lambda: units.SoftmaxUnits(6, group_size=3, seed=0),
    lambda: units.NReLUUnits(6, seed=0),
]


def _built(make):
    layer = make()
    layer.build()
    layer.bias.assign(np.linspace(-1, 1, 6).astype("float32"))
    return layer


@pytest.mark.parametrize("make", ALL)
def test_log_partition_gradient_is_the_mean(make):
    """d log_partition / d inputs = E[scale(x)]: the free-energy term and the
    conditional of each unit type describe the same distribution."""
    layer = _built(make)
    inputs = tf.constant(np.random.default_rng(0).normal(0, 2, (5, 6)).astype("float32"))
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        lp = tf.reduce_sum(layer.log_partition(inputs))
    grad = tape.gradient(lp, inputs).numpy()
    if isinstance(layer, units.NReLUUnits):
        # The ladder's free energy: its derivative is the ladder's mean, softplus.
        expected = tf.nn.softplus(inputs + layer.bias).numpy()
    else:
        expected = layer.scale(layer.mean(inputs)).numpy()
    np.testing.assert_allclose(grad, expected, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("make", ALL)
def test_sample_means_match_mean(make):
    layer = _built(make)
    n = 20000
    inputs = tf.constant(np.tile(np.linspace(-1.5, 1.5, 6, dtype="float32"), (n, 1)))
    draws = layer.sample(inputs, keras.random.SeedGenerator(0)).numpy()
    tol = 5 * draws.std(0) / np.sqrt(n) + 1e-6  # 5 standard errors of the mean
    np.testing.assert_array_less(np.abs(draws.mean(0) - layer.mean(inputs).numpy()[0]), tol)


def test_nrelu_sample_from_mean_inverts_mean():
    layer = _built(ALL[4])
    # Where the mean is not vanishingly small (x + b > -2), the inversion is exact.
    x = tf.constant(np.linspace(-1, 5, 12, dtype="float32")[:, None] * np.ones((1, 6), "f4"))
    mean = layer.mean(x)
    np.testing.assert_allclose(layer._pre_activation_from_mean(mean).numpy(),
                               (x + layer.bias).numpy(), atol=2e-3)


def test_sampling_with_explicit_seed_is_reproducible():
    layer = _built(ALL[0])
    inputs = tf.zeros((4, 6))
    a = layer.sample(inputs, seed=keras.random.SeedGenerator(7)).numpy()
    b = layer.sample(inputs, seed=keras.random.SeedGenerator(7)).numpy()
    np.testing.assert_array_equal(a, b)


def test_gaussian_sample_spread_is_sigma():
    layer = _built(ALL[1])
    draws = layer.sample(tf.zeros((20000, 6)), keras.random.SeedGenerator(0)).numpy()
    np.testing.assert_allclose(draws.std(0), 0.7, rtol=0.03)


@pytest.mark.parametrize("make", ALL)
def test_expected_energy_gradient_is_the_mean_gradient_over_samples(make):
    """The statistic of a mean-field state: d expected_energy(mean) / d params equals
    the average over samples of d energy(x) / d params (for a learned sigma, the
    conditional's variance adds -1 per unit to d/d log sigma)."""
    layer = _built(make)
    if getattr(layer, "learn_sigma", False):
        layer.log_variance.assign(np.log(np.linspace(0.5, 2.0, 6) ** 2).astype("float32"))
    params = layer.trainable_weights
    inputs = tf.constant(np.random.default_rng(1).normal(0, 1, (1, 6)).astype("float32"))
    mean = layer.mean(inputs)
    draws = tf.stop_gradient(layer.sample(tf.tile(inputs, (50000, 1)),
                                          keras.random.SeedGenerator(0)))
    with tf.GradientTape(persistent=True) as tape:
        expected = tf.reduce_sum(layer.expected_energy(mean))
        sampled = tf.reduce_mean(layer.energy(draws))
    for got, want in zip(tape.gradient(expected, params), tape.gradient(sampled, params)):
        np.testing.assert_allclose(got.numpy(), want.numpy(), atol=0.05)  # ~5 standard errors


def test_softmax_samples_are_one_hot_per_group():
    layer = _built(ALL[3])
    draws = layer.sample(tf.zeros((100, 6)), keras.random.SeedGenerator(0)).numpy()
    np.testing.assert_array_equal(draws.reshape(100, 2, 3).sum(-1), 1.0)
    np.testing.assert_allclose(layer.mean(tf.zeros((1, 6))).numpy().reshape(2, 3).sum(-1), 1.0,
                               rtol=1e-6)


def test_bias_initialisation_from_data():
    rng = np.random.default_rng(0)
    p = np.array([0.1, 0.5, 0.9, 0.0, 1.0, 0.3])
    x = (rng.random((5000, 6)) < p).astype("float32")
    bern = units.BernoulliUnits(6)
    bern.build()
    bern.init_bias_from_data(x)
    # log-odds of the data mean (Hinton's guide), clipped away from 0 and 1
    m = np.clip(x.mean(0), 1e-3, 1 - 1e-3)
    np.testing.assert_allclose(bern.bias.numpy(), np.log(m / (1 - m)), rtol=1e-5)
    np.testing.assert_allclose(bern.mean(tf.zeros((1, 6))).numpy()[0], m, rtol=1e-4)

    gauss = units.GaussianUnits(6, learn_sigma=True)
    gauss.build()
    g = rng.normal(3.0, 2.0, (5000, 6)).astype("float32")
    gauss.init_bias_from_data(g)
    np.testing.assert_allclose(gauss.bias.numpy(), g.mean(0), rtol=1e-5)
    np.testing.assert_allclose(gauss.std().numpy(), g.std(0), rtol=1e-4)

    soft = units.SoftmaxUnits(6, group_size=3)
    soft.build()
    onehot = np.eye(3, dtype="float32")[rng.choice(3, (5000, 2), p=[0.2, 0.3, 0.5])]
    soft.init_bias_from_data(onehot.reshape(5000, 6))
    np.testing.assert_allclose(soft.mean(tf.zeros((1, 6))).numpy()[0],
                               onehot.reshape(5000, 6).mean(0), rtol=1e-4)


@pytest.mark.parametrize("make", ALL)
def test_config_round_trip(make):
    layer = make()
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    same = units.get(keras.saving.serialize_keras_object(layer))
    assert type(same) is type(layer) and same.units == layer.units


def test_bad_unit_arguments():
    with pytest.raises(ValueError, match="Expected a unit type.*Received: 'tanh'"):
        units.get("tanh", 4)
    with pytest.raises(ValueError, match="Expected a positive integer. Received: units=0"):
        units.BernoulliUnits(0)
    with pytest.raises(ValueError, match="Expected a positive float. Received: sigma=-1"):
        units.GaussianUnits(4, sigma=-1)
    with pytest.raises(ValueError, match="Expected a positive float. Received: min_sigma=0"):
        units.GaussianUnits(4, learn_sigma=True, min_sigma=0)
    with pytest.raises(ValueError, match="Expected `sigma` to be at least `min_sigma`"):
        units.GaussianUnits(4, sigma=0.05, learn_sigma=True, min_sigma=0.1)
    with pytest.raises(ValueError, match="multiple of `group_size`"):
        units.SoftmaxUnits(5, group_size=2)
    with pytest.raises(ValueError, match="sum to 1"):
        tb.RBM(4, 2, visible=units.SoftmaxUnits(group_size=2)).check_data(
            np.array([[1, 1, 0, 0]], "float32"))
    with pytest.raises(ValueError, match="Expected a units layer of size 8"):
        units.get(units.BernoulliUnits(4), 8)


def test_concat_units_split_bias_means_and_round_trip(tmp_path):
    layer = tb.units.ConcatUnits([tb.units.BernoulliUnits(3), tb.units.SoftmaxUnits(4)])
    layer.build((None, 7))
    layer.bias.assign(np.arange(7, dtype="float32") / 7)
    a = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    m = layer.mean(a).numpy()
    total = a + layer.bias.numpy()
    np.testing.assert_allclose(m[:, :3], 1 / (1 + np.exp(-total[:, :3])), rtol=1e-5)
    e = np.exp(total[:, 3:])
    np.testing.assert_allclose(m[:, 3:], e / e.sum(1, keepdims=True), rtol=1e-5)
    s = layer.sample(a, seed=0).numpy()
    assert set(np.unique(s)) <= {0, 1} and np.all(s[:, 3:].sum(1) == 1)
    x = np.concatenate([np.ones((4, 3)) * [1, 0, 1], np.eye(4)], 1).astype("float32")
    layer.init_bias_from_data(x)
    assert layer.bias.numpy()[0] > 5 and layer.bias.numpy()[1] < -5
    np.testing.assert_allclose(layer.bias.numpy()[3:], np.log(0.25), rtol=1e-5)
    assert not layer.parts[0].bias.numpy().any()  # the layer's own bias rules
    with pytest.raises(ValueError, match="sum to 1"):
        layer.validate_data(np.ones((2, 7), "float32"))
    rbm = tb.RBM(7, 3, visible=tb.units.ConcatUnits([tb.units.BernoulliUnits(3),
                                                     tb.units.SoftmaxUnits(4)]), seed=0)
    rbm.fit(x, epochs=1, verbose=0)
    rbm.save(tmp_path / "r.keras")
    again = keras.saving.load_model(tmp_path / "r.keras")
    np.testing.assert_allclose(again.free_energy(x), rbm.free_energy(x), rtol=1e-6)
    with pytest.raises(ValueError, match="Bernoulli or softmax parts"):
        tb.units.ConcatUnits([tb.units.GaussianUnits(3)])
