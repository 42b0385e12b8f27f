"""One shared test of a tfboltz model, in the spirit of keras-hub's
`TestCase.run_preset_test`: tests/test_models.py runs it over every model class and
every preset in the zoo's registry, so a new model or preset is tested the moment it
is added.

`run_model_test(make_model, x)` checks, on a freshly made model:

- the config round trip (`from_config(get_config())` rebuilds the same config);
- one generative `fit` step and `train_on_batch`, finite weights afterwards;
- every schedule callback of `tfboltz.callbacks` (`KScheduler`, `MomentumScheduler`)
  and Keras's `LearningRateScheduler`, with their values in the logs;
- the `.keras` and `.weights.h5` round trips: every variable bit-identical;
- `export` and reload with `tf.saved_model.load`: every endpoint's output equal to
  the Python method's (same seed, same device);
- optional golden outputs: ``golden(model) -> None`` asserts on the model as made.
"""

import keras
import numpy as np
import tensorflow as tf

import tfboltz as tb

SAMPLE_STEPS = 3


def run_model_test(make_model, x, y=None, tmp_path=None, golden=None, train=True):
    """Run the shared checks on ``make_model()`` with visible rows `x` (and labels `y`
    for a DBN with labels). Returns the model after its training checks."""
    model = make_model()
    if golden is not None:
        golden(model)
    check_config_round_trip(model)
    if train:
        check_fit_step(make_model(), x, y)
        check_train_on_batch(make_model(), x, y)
        check_schedule_callbacks(make_model(), x, y)
    check_saving_round_trips(model, tmp_path)
    check_export(model, x, tmp_path)
    return model


def _labels_args(model, y):
    return (y,) if isinstance(model, tb.DBN) and model.num_classes else ()


def check_config_round_trip(model):
    config = model.get_config()
    again = type(model).from_config(config)
    assert again.get_config() == config


def _finite(model):
    return all(np.all(np.isfinite(np.asarray(w.numpy(), "float64")))
               for w in model.weights if "float" in str(w.dtype))


def _trainable_copy(model):
    return [np.array(w.numpy()) for w in model.trainable_weights]


def check_fit_step(model, x, y):
    before = _trainable_copy(model)
    history = model.fit(x, *_labels_args(model, y), batch_size=len(x), epochs=1, verbose=0)
    assert history.history, "fit logged nothing"
    assert _finite(model)
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights))


def check_train_on_batch(model, x, y):
    before = _trainable_copy(model)
    args = _labels_args(model, y)
    logs = model.train_on_batch(x, *args, return_dict=True)
    assert logs and all(np.isfinite(v) for v in logs.values())
    assert int(model.optimizer.iterations.numpy()) == 1
    assert any(not np.array_equal(a, w.numpy()) for a, w in zip(before, model.trainable_weights))
    model.train_on_batch(x, *args)
    assert int(model.optimizer.iterations.numpy()) == 2
    assert _finite(model)


def check_schedule_callbacks(model, x, y):
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.5))
    callbacks = [tb.callbacks.KScheduler([1, 2]),
                 tb.callbacks.MomentumScheduler([0.5, 0.9]),
                 keras.callbacks.LearningRateScheduler(lambda epoch: 0.01 / (1 + epoch))]
    history = model.fit(x, *_labels_args(model, y), batch_size=len(x) // 2, epochs=2,
                        callbacks=callbacks, verbose=0)
    assert history.history["k"] == [1, 2]
    np.testing.assert_allclose(history.history["momentum"], [0.5, 0.9])
    np.testing.assert_allclose(history.history["learning_rate"], [0.01, 0.005], rtol=1e-6)
    assert int(keras.ops.convert_to_numpy(model.k)) == 2
    assert _finite(model)


def _assert_same_variables(a, b):
    assert [v.name for v in a.weights] == [v.name for v in b.weights]
    for u, v in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(u.numpy()), np.asarray(v.numpy()))


def check_saving_round_trips(model, tmp_path):
    path = tmp_path / "model.keras"
    model.save(path)
    _assert_same_variables(model, keras.saving.load_model(path))
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    again = type(model).from_config(model.get_config())
    again.load_weights(weights)
    _assert_same_variables(model, again)


def _close(a, b):
    for u, v in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-5, atol=1e-6)


def check_export(model, x, tmp_path):
    """Export with no prior call; every endpoint agrees with the Python method."""
    path = tmp_path / "savedmodel"
    model.export(path, verbose=False)
    served = tf.saved_model.load(str(path))
    x = x[:8]
    mask = np.zeros(x.shape, bool)
    mask[:, : x.shape[1] // 2] = True
    _close(served.transform(x), model.transform(x))
    _close(served.serve(x), model.transform(x))
    _close(served.reconstruct(x), model.reconstruct(x))
    if isinstance(model, tb.DBN):
        python_sample = model.generate(n=4, steps=SAMPLE_STEPS, seed=7)
    else:
        python_sample = model.sample(4, steps=SAMPLE_STEPS, seed=7)
    _close(served.sample(n=tf.constant(4), steps=tf.constant(SAMPLE_STEPS),
                         seed=tf.constant(7, tf.int64)), python_sample)
    _close(served.complete(x, mask, tf.constant(SAMPLE_STEPS), tf.constant(5, tf.int64)),
           model.sample(init=x, clamp=mask, steps=SAMPLE_STEPS, seed=5))
    if isinstance(model, tb.RBM):
        _close(served.free_energy(x), model.free_energy(x))
    if isinstance(model, tb.DBM):
        means = served.mean_field(x)
        _close([means[f"layer_{i}"] for i in range(1, len(model.layer_sizes))],
               model.mean_field(x)[1:])
    if isinstance(model, tb.DBN) and model.num_classes:
        _close(served.classify(x), model.classify(x))
