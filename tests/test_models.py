"""The shared model test (tests/helpers.py) over every model class and every preset of
the zoo's registry, and the crashes a user met in the first hour (issue 41), each
with its test."""

import ast
from pathlib import Path

import keras
import numpy as np
import pytest
from helpers import run_model_test

import tfboltz as tb
from tfboltz import zoo

# Small models of every class and the options that change their state or step.
FACTORIES = {
    "rbm_cd": lambda: tb.RBM(64, 12, seed=0),
    "rbm_pcd_centered": lambda: tb.RBM(64, 12, learning="pcd", n_chains=10, centering=True,
                                       seed=0),
    "rbm_pt": lambda: tb.RBM(64, 12, learning="pt", n_chains=4, n_temperatures=3, seed=0),
    "rbm_gaussian": lambda: tb.RBM(64, 12, visible="gaussian", seed=0),
    "rbm_gaussian_learned_sigma": lambda: tb.RBM(
        64, 12, visible=tb.units.GaussianUnits(learn_sigma=True), seed=0),
    "dbm_gaussian_learned_sigma": lambda: tb.DBM(
        [64, 16, 8], visible=tb.units.GaussianUnits(learn_sigma=True), n_chains=10, seed=0),
    "dbm": lambda: tb.DBM([64, 16, 8], n_chains=10, n_mean_field=3, seed=0),
    "dbm_tempered_centered": lambda: tb.DBM([64, 16, 8], n_chains=4, n_temperatures=3,
                                            centering=True, seed=0),
    "dbn": lambda: tb.DBN([64, 16, 8], seed=0),
    "dbn_labels": lambda: tb.DBN([64, 16, 12], num_classes=10, seed=0),
}


def _data(name, digits):
    x, y = digits
    x, y = x[:40], y[:40]
    if "gaussian" in name:
        x = (x - x.mean(0)) / (x.std(0) + 0.1)
    return x.astype("float32"), y


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_model_class(name, digits, tmp_path):
    x, y = _data(name, digits)
    run_model_test(FACTORIES[name], x, y, tmp_path=tmp_path)


@pytest.mark.parametrize("name", zoo.list_presets())
def test_every_preset(name, digits, tmp_path):
    """Every preset's architecture through the shared test (fresh weights: cheap and
    offline); the published weights' golden outputs are in test_zoo.py."""
    model = zoo.from_preset(name, load_weights=False)
    n = model.n_visible
    rng = np.random.default_rng(0)
    if isinstance(model.visible_layer, tb.units.GaussianUnits):
        x = rng.normal(size=(8, n)).astype("float32")
    else:
        x = (rng.random((8, n)) < 0.2).astype("float32")
    assert type(model).presets().count(name) == 1
    run_model_test(lambda: zoo.from_preset(name, load_weights=False), x, tmp_path=tmp_path,
                   train=False)


def test_from_preset_is_a_class_method_and_refuses_another_class():
    assert "mnist_rbm" in tb.RBM.presets() and "mnist_dbm" in tb.DBM.presets()
    assert "mnist_dbm" not in tb.RBM.presets()
    with pytest.raises(ValueError, match="mnist_rbm"):
        tb.RBM.from_preset("mnist_dbm", load_weights=False)
    rbm = tb.RBM.from_preset("mnist_rbm", load_weights=False)
    assert isinstance(rbm, tb.RBM) and rbm.n_hidden == 1024


# The crashes of the first hour ---------------------------------------------------


@pytest.mark.parametrize("name", ["rbm_cd", "dbm", "dbn", "dbn_labels"])
def test_k_scheduler_on_every_model(name, digits):
    """Was: AttributeError: 'int' object has no attribute 'assign' (DBM, DBN)."""
    x, y = _data(name, digits)
    model = FACTORIES[name]()
    args = (y,) if name == "dbn_labels" else ()
    history = model.fit(x, *args, batch_size=20, epochs=3, verbose=0,
                        callbacks=[tb.callbacks.KScheduler(lambda e: 1 + e)])
    assert history.history["k"] == [1, 2, 3]


@pytest.mark.parametrize("name", ["rbm_cd", "rbm_pcd_centered", "dbm", "dbn_labels"])
def test_train_on_batch_on_every_model(name, digits):
    """Was: AttributeError: 'generator' object has no attribute 'get_next'."""
    x, y = _data(name, digits)
    model = FACTORIES[name]()
    args = (y,) if name == "dbn_labels" else ()
    model.train_on_batch(x, *args)
    assert int(model.optimizer.iterations.numpy()) == 1
    assert bool(model.data_initialized.numpy())


def test_train_on_batch_checks_before_any_change(digits):
    x, _ = digits
    rbm = tb.RBM(64, 8, learning="pcd", n_chains=5, seed=0)
    before = [np.array(w.numpy()) for w in rbm.weights]
    with pytest.raises(ValueError, match="Expected values in \\[0, 1\\]"):
        rbm.train_on_batch(x[:10] * 5)
    for a, w in zip(before, rbm.weights):
        np.testing.assert_array_equal(a, w.numpy())


@pytest.mark.parametrize("make", [lambda d: tb.RBM(8, 4, dtype=d),
                                  lambda d: tb.DBM([8, 4, 4], dtype=d),
                                  lambda d: tb.DBN([8, 4], dtype=d)])
@pytest.mark.parametrize("dtype", ["float64", "float16", "mixed_float16"])
def test_other_dtypes_are_refused_by_the_constructor(make, dtype):
    """Was: TypeError ... 'Less' Op has type float64, from inside the graph."""
    with pytest.raises(ValueError, match="Invalid value received for argument `dtype`"):
        make(dtype)
    assert make("float32").dtype == "float32"


def test_export_without_a_prior_call_serves_every_endpoint(tmp_path):
    """Was: "must be called at least once", then only the hidden means."""
    rbm = tb.RBM(8, 4, seed=0)
    rbm.export(tmp_path / "rbm", verbose=False)
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "rbm"))
    assert {"transform", "free_energy", "reconstruct", "sample", "complete"} <= set(
        served.signatures)


def test_reconstruct_and_down_on_every_model(digits):
    x, y = _data("dbn_labels", digits)
    for name in ("rbm_cd", "dbm", "dbn", "dbn_labels"):
        model = FACTORIES[name]()
        r = model.reconstruct(x)
        assert r.shape == x.shape and np.all((r >= 0) & (r <= 1))
    dbn = FACTORIES["dbn"]()
    h = dbn.up(x)[-1]
    bottom = dbn.rbms[0]
    np.testing.assert_allclose(dbn.down(h), bottom.visible_layer.mean(
        bottom.visible_input(h)).numpy(), rtol=1e-6)


# The layout ---------------------------------------------------------------------

PACKAGE = Path(tb.__file__).parent


def _imports():
    """``{module: [(imported module, [names])]}`` of tfboltz, function-local imports
    included."""
    graph = {}
    for path in sorted(PACKAGE.glob("*.py")):
        module = f"tfboltz.{path.stem}" if path.stem != "__init__" else "tfboltz"
        edges = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                    "tfboltz"):
                if node.module == "tfboltz":
                    edges += [(f"tfboltz.{a.name}", []) for a in node.names]
                else:
                    edges.append((node.module, [a.name for a in node.names]))
            elif isinstance(node, ast.Import):
                edges += [(a.name, []) for a in node.names if a.name.startswith("tfboltz")]
        graph[module] = edges
    return graph


def test_no_import_cycle_and_no_private_cross_module_import():
    graph = _imports()
    private = [(m, target, n) for m, edges in graph.items() for target, names in edges
               for n in names if n.startswith("_")]
    assert private == []
    deps = {m: {t for t, _ in edges if t in graph and t != "tfboltz"}
            for m, edges in graph.items() if m != "tfboltz"}
    state = {}

    def visit(m, path):
        state[m] = "open"
        for t in deps[m]:
            assert state.get(t) != "open", f"import cycle: {' -> '.join([*path, m, t])}"
            if t not in state:
                visit(t, [*path, m])
        state[m] = "done"

    for m in deps:
        if m not in state:
            visit(m, [])


def test_the_docs_layout_names_every_module():
    page = (PACKAGE.parent / "docs" / "layout.md").read_text()
    layout = page[page.index("```"):]
    layout = layout[:layout.index("```", 3)]
    missing = [p.name for p in PACKAGE.glob("*.py")
               if p.stem != "__init__" and f"tfboltz/{p.name}" not in layout]
    assert missing == []


def test_keras_still_uses_the_private_hooks():
    """tfboltz.keras_compat relies on three private parts of Keras (see its docstring);
    fail loudly if Keras stops using them."""
    import inspect

    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    seen = []

    class Mover(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            tb.callbacks.set_initial_epoch(self.model, 2)

        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.zeros((4, 2)), np.zeros((4, 1)), epochs=4, verbose=0, callbacks=[Mover()])
    assert seen == [2, 3]
    assert "_maybe_symbolic_build(iterator=epoch_iterator)" in inspect.getsource(
        TensorFlowTrainer.fit)
    assert "self._make_function(self.train_step)" in inspect.getsource(
        TensorFlowTrainer.make_train_function)
    assert list(inspect.signature(TensorFlowTrainer._maybe_symbolic_build).parameters) == [
        "self", "iterator", "data_batch"]
    assert list(inspect.signature(TensorFlowTrainer._make_function).parameters) == [
        "self", "step_function"]


# Keras's private names tfboltz uses, all in tfboltz/keras_compat.py.
KERAS_PRIVATE = {"_initial_epoch", "_maybe_symbolic_build", "_make_function",
                 "_distribute_strategy"}


def test_private_keras_names_only_in_keras_compat():
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "keras_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in KERAS_PRIVATE:
                found.append(f"{path.name}:{node.lineno} .{node.attr}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names]
                found += [f"{path.name}:{node.lineno} import {n}" for n in names
                          if n.startswith("keras.src")]
    assert found == []


def test_a_one_device_mirrored_strategy_trains_as_no_strategy(digits):
    """Was: RuntimeError: merge_call called while defining a new graph (the optimizer of
    a one-device MirroredStrategy still merges across replicas)."""
    import tensorflow as tf

    x, _ = digits
    x = x[:60]
    plain = tb.RBM(64, 8, learning="pcd", n_chains=10, seed=0)
    plain.compile(optimizer=keras.optimizers.SGD(0.01))
    plain.fit(x, batch_size=20, epochs=2, verbose=0)
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        for model in (tb.RBM(64, 8, learning="pcd", n_chains=10, seed=0),
                      tb.DBM([64, 8, 4], n_chains=10, seed=0), tb.DBN([64, 8, 4], seed=0)):
            model.compile(optimizer=keras.optimizers.SGD(0.01))
            model.fit(x, batch_size=20, epochs=2, verbose=0)
            assert int(model.optimizer.iterations.numpy()) == 6
            if isinstance(model, tb.RBM):
                np.testing.assert_allclose(model.kernel.numpy(), plain.kernel.numpy(),
                                           atol=1e-6)


def test_old_argument_names_still_work_with_a_deprecation_warning(digits):
    # `n_iter` became `n_mean_field` and the DBN's `n_labels` became `num_classes`,
    # the names the constructors and `to_sequential` use.
    x = digits[0][:20]
    dbm = tb.DBM([64, 12, 8], seed=0)
    dbm.init_from_data(x)
    with pytest.warns(DeprecationWarning, match="`n_iter` is now called `n_mean_field`"):
        old = dbm.mean_field(x, n_iter=2, tol=0.0)
    new = dbm.mean_field(x, n_mean_field=2, tol=0.0)
    for a, b in zip(old, new):
        np.testing.assert_array_equal(a, b)
    with pytest.warns(DeprecationWarning):
        np.testing.assert_array_equal(dbm.reconstruct(x, n_iter=2),
                                      dbm.reconstruct(x, n_mean_field=2))
    with pytest.warns(DeprecationWarning):
        old_bound = tb.ais.elbo(dbm, x, 0.0, n_iter=2)
    np.testing.assert_array_equal(old_bound, tb.ais.elbo(dbm, x, 0.0, n_mean_field=2))
    with pytest.raises(TypeError, match="both `n_mean_field` and its old name `n_iter`"):
        dbm.mean_field(x, n_mean_field=2, n_iter=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'n_iterations'"):
        dbm.mean_field(x, n_iterations=2)

    with pytest.warns(DeprecationWarning, match="`n_labels` is now called `num_classes`"):
        dbn = tb.DBN([64, 16, 12], n_labels=10, seed=0)
    assert dbn.num_classes == 10 and dbn.get_config()["num_classes"] == 10
    config = dbn.get_config()
    config["n_labels"] = config.pop("num_classes")  # a file saved before the rename
    with pytest.warns(DeprecationWarning):
        assert tb.DBN.from_config(config).num_classes == 10

    aug = tb.classifier.MeanFieldAugmentation.from_dbm(dbm, n_mean_field=3)
    config = aug.get_config()
    assert config["n_mean_field"] == 3
    config["n_iter"] = config.pop("n_mean_field")
    assert type(aug).from_config(config).n_mean_field == 3
