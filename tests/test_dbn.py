"""Deep belief nets on scikit-learn's digits: greedy training, labels, up-down, classifier."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb


@pytest.fixture(scope="module")
def trained(digits):
    x, y = digits
    dbn = tb.DBN([64, 48, 32, 64], num_classes=10, seed=0)
    hist = tb.pretrain_dbn(dbn, x[:1500], y[:1500], epochs=[15, 15, 25], batch_size=50,
                           optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.5),
                           verbose=0)
    return dbn, hist


def test_greedy_training_lowers_reconstruction_error_in_each_layer(trained):
    _, hist = trained
    for h in hist:
        errors = h.history["reconstruction_error"]
        assert errors[-1] < 0.7 * errors[0]


def test_label_free_energy_classification_beats_chance(trained, digits):
    dbn, _ = trained
    x, y = digits
    p = dbn.classify(x[1500:])
    assert p.shape == (len(x) - 1500, 10) and np.allclose(p.sum(1), 1, atol=1e-5)
    acc = np.mean(p.argmax(1) == y[1500:])
    assert acc > 0.6  # chance 0.1 (held-out digits)
    gibbs = dbn.classify(x[1500:], method="gibbs", steps=30, seed=0)
    assert np.mean(gibbs.argmax(1) == y[1500:]) > 0.4


def test_free_energy_of_labels_matches_the_rbm(trained, digits):
    dbn, _ = trained
    x, _ = digits
    h = dbn.up(x[:5])[-1]
    ours = dbn.label_free_energies(h).numpy()
    for c in range(10):
        rows = np.concatenate([h, np.tile(np.eye(10, dtype="f4")[c], (5, 1))], 1)
        np.testing.assert_allclose(ours[:, c], dbn.top.free_energy(rows), rtol=1e-4, atol=1e-3)


def test_class_conditional_generation(trained):
    dbn, _ = trained
    images = dbn.generate(np.repeat(np.arange(10), 3), steps=50, seed=0)
    assert images.shape == (30, 64) and np.all((images >= 0) & (images <= 1))
    again = dbn.generate(np.repeat(np.arange(10), 3), steps=50, seed=0)
    np.testing.assert_array_equal(images, again)
    with pytest.raises(ValueError, match=r"with integers in \[0, 10\)"):
        dbn.generate([10])


def test_up_down_fine_tuning_runs_and_keeps_weights_finite(trained, digits, tmp_path):
    dbn, _ = trained
    x, y = digits
    clone = keras.saving.load_model(_save(dbn, tmp_path / "dbn.keras"))
    before = [w.numpy().copy() for w in clone.rec_kernels]
    clone.compile(optimizer=keras.optimizers.SGD(0.01))
    hist = clone.fit(x[:1500], y[:1500], batch_size=50, epochs=3, verbose=0)
    assert set(hist.history) >= {"generative_error", "recognition_error"}
    assert all(np.all(np.isfinite(w.numpy())) for w in clone.weights)
    assert not np.allclose(before[0], clone.rec_kernels[0].numpy())  # untied and updated
    assert np.mean(clone.classify(x[1500:]).argmax(1) == y[1500:]) > 0.6
    with pytest.raises(ValueError, match="Expected labels `y`"):
        clone.fit(x[:100], epochs=1, verbose=0)


def _save(model, path):
    model.save(path)
    return path


def test_round_trip_keeps_config_and_predictions(trained, digits, tmp_path):
    dbn, _ = trained
    x, _ = digits
    again = keras.saving.load_model(_save(dbn, tmp_path / "d.keras"))
    assert again.get_config()["layer_sizes"] == [64, 48, 32, 64]
    np.testing.assert_allclose(again.classify(x[:50]), dbn.classify(x[:50]), atol=1e-6)


def test_sequential_classifier_reproduces_the_up_pass(trained, digits):
    dbn, _ = trained
    x, y = digits
    keras.utils.set_random_seed(0)  # the output layer starts at random
    clf = dbn.to_sequential(10)
    ups = dbn.up(x[:40])
    for i in (1, 2):
        layer = keras.Model(clf.inputs, clf.get_layer(f"hidden_{i}").output)
        np.testing.assert_allclose(layer.predict(x[:40], verbose=0), ups[i], atol=1e-5)
    top = keras.Model(clf.inputs, clf.get_layer("hidden_3").output)
    np.testing.assert_allclose(top.predict(x[:40], verbose=0), dbn(x[:40]).numpy(), atol=1e-5)
    clf.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    clf.fit(x[:1500], y[:1500], batch_size=50, epochs=10, verbose=0)
    assert clf.evaluate(x[1500:], y[1500:], verbose=0)[1] > 0.8


def test_bad_input():
    with pytest.raises(ValueError, match="at least one hidden"):
        tb.DBN([64])
    with pytest.raises(ValueError, match="num_classes"):
        tb.DBN([64, 8], num_classes=1)
    dbn = tb.DBN([64, 8, 6], num_classes=3)
    x = np.zeros((10, 64), "float32")
    with pytest.raises(ValueError, match="Expected `y`"):
        tb.pretrain_dbn(dbn, x, np.full(10, 3), epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"Expected `x` of shape \(batch, 64\)"):
        tb.pretrain_dbn(dbn, x[:, :5], np.zeros(10, int), epochs=1, verbose=0)
    with pytest.raises(ValueError, match="Expected a DBN with labels"):
        tb.DBN([64, 8]).classify(x)


def test_discriminative_term_adds_the_label_cross_entropy_gradient(trained, digits, tmp_path):
    """With the same seed the generative part of a step is the same, so the top RBM's
    step with `discriminative=w` differs from the plain step by exactly
    ``-lr * w * grad(cross-entropy of classify's label probabilities)``, computed here
    by a separate tape; the weights below the top do not see the term."""
    dbn, _ = trained
    x, y = digits
    x, y = x[:50], y[:50]
    path = _save(dbn, tmp_path / "dbn.keras")
    lr, w = 0.1, 2.0
    steps = {}
    for weight in (0.0, w):
        config = keras.saving.load_model(path).get_config()
        model = tb.DBN.from_config({**config, "discriminative": weight})
        model.set_weights(keras.saving.load_model(path).get_weights())
        assert model.get_config()["discriminative"] == weight
        if weight:
            top = model.top
            variables = [top.kernel, top.visible_layer.bias, top.hidden_layer.bias]
            features = model._up(x)[-1]
            with tf.GradientTape() as tape:
                probs = tf.nn.softmax(-model.label_free_energies(features))
                xent = -tf.reduce_mean(tf.math.log(tf.gather(probs, y, batch_dims=1)))
            expected = [lr * weight * g.numpy() for g in tape.gradient(xent, variables)]
        model.compile(optimizer=keras.optimizers.SGD(lr))
        logs = model.train_on_batch(x, y, return_dict=True)
        assert ("label_cross_entropy" in logs) == bool(weight)
        steps[weight] = model
    plain, hybrid = steps[0.0], steps[w]
    pairs = zip([plain.top.kernel, plain.top.visible_layer.bias, plain.top.hidden_layer.bias],
                [hybrid.top.kernel, hybrid.top.visible_layer.bias, hybrid.top.hidden_layer.bias])
    for (a, b), e in zip(pairs, expected):
        np.testing.assert_allclose(a.numpy() - b.numpy(), e, atol=1e-6)
    assert np.abs(expected[0]).max() > 1e-4  # the term is not negligible at this rate
    for a, b in zip(plain.rec_kernels + [r.kernel for r in plain.rbms[:-1]],
                    hybrid.rec_kernels + [r.kernel for r in hybrid.rbms[:-1]]):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(ValueError, match="`discriminative`"):
        tb.DBN([64, 8, 6], discriminative=0.5)
    with pytest.raises(ValueError, match="discriminative"):
        tb.DBN([64, 8, 6], num_classes=3, discriminative=-1.0)
