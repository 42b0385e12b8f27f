"""The generative SavedModel (`tfboltz.serving.export_model`): exported without a
prior call, every endpoint of a reloaded RBM, DBM and DBN gives what the Python model
gives with the same seed, in this process and in a fresh one."""

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb
from tfboltz import serving

N, STEPS, SEED = 6, 5, 7


def _close(served, python):
    np.testing.assert_allclose(np.asarray(served), python, rtol=1e-6, atol=1e-7)


def _randomized(model, seed=0, scale=0.5):
    """`model` with random weights of a visible size, so that every output is
    far from its value at initialisation."""
    rng = np.random.default_rng(seed)
    for w in model.trainable_variables:
        w.assign(rng.normal(0.0, scale, w.shape).astype("float32"))
    return model


def _export(model, tmp_path_factory, name):
    path = tmp_path_factory.mktemp("export") / name
    serving.export_model(model, path, verbose=False)
    return tf.saved_model.load(str(path))


@pytest.fixture(scope="module")
def rows(digits):
    x = digits[0][:40]
    mask = np.random.default_rng(1).random(x.shape) < 0.5
    return x, mask


@pytest.fixture(scope="module")
def rbm(digits):
    """Trained one epoch on the digits, then copied into a fresh, never-called RBM."""
    trained = tb.RBM(64, 32, seed=0)
    trained.compile()
    trained.fit(digits[0], batch_size=100, epochs=1, verbose=0)
    fresh = tb.RBM.from_config(trained.get_config())
    fresh.set_weights(trained.get_weights())
    return fresh


@pytest.fixture(scope="module")
def dbm():
    return _randomized(tb.DBM([64, 32, 16, 8], seed=0))


@pytest.fixture(scope="module")
def dbn():
    return _randomized(tb.DBN([64, 32, 16], num_classes=10, seed=0))


def _check_shared_endpoints(model, served, x, mask):
    assert {"serve", "serving_default", "transform", "reconstruct", "sample",
            "complete"} <= set(served.signatures)
    _close(served.serve(x), model.transform(x))
    _close(served.transform(x), model.transform(x))
    _close(served.reconstruct(x), model.reconstruct(x))
    samples = served.sample(n=N, steps=STEPS, seed=SEED).numpy()
    np.testing.assert_array_equal(samples, model.sample(N, steps=STEPS, seed=SEED))
    assert samples.shape == (N, 64) and 0.05 < samples.std()
    done = served.complete(x, mask, steps=STEPS, seed=SEED).numpy()
    np.testing.assert_array_equal(
        done, model.sample(init=x, clamp=mask, steps=STEPS, seed=SEED))
    np.testing.assert_array_equal(done[mask], x[mask])


def test_rbm_endpoints_match_the_python_model(rbm, rows, tmp_path_factory):
    served = _export(rbm, tmp_path_factory, "rbm")
    x, mask = rows
    _check_shared_endpoints(rbm, served, x, mask)
    _close(served.free_energy(x), rbm.free_energy(x))
    signature = served.signatures["complete"](
        x=tf.constant(x), mask=tf.constant(mask), steps=tf.constant(STEPS),
        seed=tf.constant(SEED, tf.int64))
    np.testing.assert_array_equal(signature["output_0"],
                                  rbm.sample(init=x, clamp=mask, steps=STEPS, seed=SEED))


def test_dbm_endpoints_match_the_python_model(dbm, rows, tmp_path_factory):
    served = _export(dbm, tmp_path_factory, "dbm")
    x, mask = rows
    _check_shared_endpoints(dbm, served, x, mask)
    means = served.mean_field(x)
    python = dbm.mean_field(x)
    assert sorted(means) == ["layer_1", "layer_2", "layer_3"]
    for i in (1, 2, 3):
        _close(means[f"layer_{i}"], python[i])


def test_label_dbn_endpoints_match_the_python_model(dbn, rows, tmp_path_factory):
    served = _export(dbn, tmp_path_factory, "dbn")
    x, mask = rows
    _check_shared_endpoints(dbn, served, x, mask)
    np.testing.assert_array_equal(served.sample(n=N, steps=STEPS, seed=SEED),
                                  dbn.generate(n=N, steps=STEPS, seed=SEED))
    labels = np.array([0, 3, 9, 3], "int32")
    np.testing.assert_array_equal(served.generate(labels, steps=STEPS, seed=SEED),
                                  dbn.generate(labels, steps=STEPS, seed=SEED))
    p = served.classify(x).numpy()
    _close(p, dbn.classify(x))
    assert p.shape == (len(x), 10) and p.max(1).mean() > 0.2
    with pytest.raises(tf.errors.InvalidArgumentError, match="labels < 10"):
        served.generate(np.array([10], "int32"), steps=1, seed=0)


def test_reload_in_a_fresh_process(rbm, rows, tmp_path):
    path, inputs, outputs = tmp_path / "rbm", tmp_path / "in.npz", tmp_path / "out.npz"
    rbm.export(str(path), verbose=False)
    x, mask = rows
    np.savez(inputs, x=x, mask=mask)
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import tensorflow as tf

        served = tf.saved_model.load(sys.argv[1])
        d = np.load(sys.argv[2])
        np.savez(sys.argv[3], transform=served.transform(d["x"]).numpy(),
                 free_energy=served.free_energy(d["x"]).numpy(),
                 sample=served.sample(n={N}, steps={STEPS}, seed={SEED}).numpy(),
                 complete=served.complete(d["x"], d["mask"], steps={STEPS},
                                          seed={SEED}).numpy())
        print("reloaded without tfboltz:", "tfboltz" not in sys.modules)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(inputs), str(outputs)],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reloaded without tfboltz: True" in proc.stdout
    out = np.load(outputs)
    _close(out["transform"], rbm.transform(x))
    _close(out["free_energy"], rbm.free_energy(x))
    np.testing.assert_array_equal(out["sample"], rbm.sample(N, steps=STEPS, seed=SEED))
    np.testing.assert_array_equal(
        out["complete"], rbm.sample(init=x, clamp=mask, steps=STEPS, seed=SEED))


def test_export_needs_a_new_or_empty_directory(tmp_path, capsys):
    rbm = tb.RBM(8, 4, seed=0)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        serving.export_model(rbm, taken)
    assert os.listdir(taken) == ["mine.txt"]
    (tmp_path / "file").write_text("keep me")
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        serving.export_model(rbm, tmp_path / "file")
    (tmp_path / "empty").mkdir()
    serving.export_model(rbm, tmp_path / "empty")
    assert "sample(n, steps, seed)" in capsys.readouterr().out
    serving.export_model(rbm, str(tmp_path / "new" / "rbm"), verbose=False)
    assert (tmp_path / "new" / "rbm" / "saved_model.pb").exists()
    assert sorted(os.listdir(tmp_path)) == ["empty", "file", "new", "taken"]


def test_a_failed_export_leaves_nothing_behind(tmp_path, monkeypatch):
    def write_half_then_fail(obj, export_dir, *args, **kwargs):
        with open(os.path.join(export_dir, "saved_model.pb"), "w") as f:
            f.write("half")
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", write_half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        serving.export_model(tb.RBM(8, 4, seed=0), tmp_path / "out", verbose=False)
    assert os.listdir(tmp_path) == []


def test_bad_arguments_fail_clearly(tmp_path):
    with pytest.raises(ValueError, match="Expected a tfboltz RBM, DBM or DBN"):
        serving.export_model(keras.Sequential([keras.layers.Dense(2)]), tmp_path / "a")
    with pytest.raises(ValueError, match="Expected a path"):
        serving.export_model(tb.RBM(8, 4), None)
    with pytest.raises(ValueError, match="Expected an integer. Received: seed=1.5"):
        tb.RBM(8, 4).sample(3, seed=1.5)
    keras.utils.set_random_seed(3)  # seed=None: Keras's global random state
    first = tb.DBM([8, 4, 2], seed=0).sample(3, steps=2, seed=None)
    keras.utils.set_random_seed(3)
    np.testing.assert_array_equal(tb.DBM([8, 4, 2], seed=0).sample(3, steps=2), first)
    assert not os.listdir(tmp_path)


def test_endpoint_inputs_are_checked(tmp_path_factory):
    served = _export(tb.RBM(8, 4, seed=0), tmp_path_factory, "small")
    x = np.zeros((3, 8), "float32")
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expected `n` >= 1"):
        served.sample(n=0, steps=1, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expected `steps` >= 0"):
        served.complete(x, x > 0, steps=-1, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="Expected `mask` of the shape"):
        served.complete(x, np.zeros((2, 8), bool), steps=1, seed=0)
    with pytest.raises((TypeError, ValueError)):
        served.transform(np.zeros((3, 7), "float32"))


def test_sampling_is_pure_in_its_seed(rbm, dbm, dbn):
    for model in (rbm, dbm, dbn):
        before = model.seed_generator.state.numpy().copy()
        a = model.sample(N, steps=STEPS, seed=SEED, means=False)
        np.testing.assert_array_equal(a, model.sample(N, steps=STEPS, seed=SEED, means=False))
        assert not np.array_equal(a, model.sample(N, steps=STEPS, seed=SEED + 1, means=False))
        np.testing.assert_array_equal(model.seed_generator.state.numpy(), before)
    # Each sweep draws fresh noise: with no weights, consecutive states are independent.
    free = tb.RBM(64, 8, sample_visible=True, seed=0)
    free.kernel.assign(np.zeros((64, 8), "float32"))
    one, two = (free.sample(50, steps=s, seed=0, means=False) for s in (1, 2))
    assert 0.2 < np.mean(one != two) < 0.8
    # seed=None: a fresh draw from the RBM's own sampling generator each call.
    assert not np.array_equal(free.sample(5, steps=1, means=False),
                              free.sample(5, steps=1, means=False))
