"""Hostile input: every case gets a clear error in Keras's wording before any state
changes (or, for a dataset that turns bad part way, before the first bad batch's
update). The cases are those of an outside probe (issue 43), on one setup:

    X = (load_digits().data / 16).astype("f4")[:200]
    Y = load_digits().target[:200]
    r = tb.RBM(64, 16, learning="pcd", n_chains=20, seed=0)
"""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import tfboltz as tb

_DIGITS = load_digits()
X = (_DIGITS.data / 16).astype("f4")[:200]
Y = _DIGITS.target[:200]


def ds(a, batch=100):
    return tf.data.Dataset.from_tensor_slices(a).batch(batch)


def rbm():
    return tb.RBM(64, 16, learning="pcd", n_chains=20, seed=0)


def dbm():
    return tb.DBM([64, 16, 12], n_chains=20, seed=0)


def dbn():
    return tb.DBN([64, 16, 12], num_classes=10, seed=0)


def fitted(make):
    model = make()
    if isinstance(model, tb.DBN):
        tb.pretrain_dbn(model, X, Y, epochs=1, verbose=0)
    model.fit(X, *([Y] if isinstance(model, tb.DBN) else []), epochs=1, verbose=0)
    return model


def state(model):
    """Every weight, chain, random state and optimizer slot, as numpy."""
    variables = list(model.variables)
    if getattr(model, "optimizer", None) is not None and model.optimizer.built:
        variables += list(model.optimizer.variables)
    return [np.array(v.numpy()) for v in variables]


def assert_unchanged(before, model):
    after = state(model)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


STRINGS = tf.data.Dataset.from_tensor_slices(np.array([["a"] * 64] * 10)).batch(5)

# (case, model maker, fitted first?, the call, error words)
CASES = [
    # A dataset's first 1,000 rows are checked before anything changes; the rest
    # batch by batch in the train step (the test after this table).
    ("dataset x5 on a fitted RBM", rbm, True, lambda m: m.fit(ds(X * 5), verbose=0),
     r"Expected values in \[0, 1\] in `x` for BernoulliUnits. Received: values between 0 "
     r"and 5"),
    ("dataset -0.5 on a fitted RBM", rbm, True, lambda m: m.fit(ds(X - 0.5), verbose=0),
     r"Expected values in \[0, 1\].*between -0.5 and 0.5"),
    ("dataset x5 on a new RBM", rbm, False, lambda m: m.fit(ds(X * 5), verbose=0),
     r"Expected values in \[0, 1\] in `x`"),
    ("dataset with NaN on a fitted RBM", rbm, True,
     lambda m: m.fit(ds(np.where(X > 0.9, np.nan, X)), verbose=0),
     r"Expected finite values in `x`. Received: \d+ NaN or inf entries"),
    ("dataset x5 on a fitted DBM", dbm, True, lambda m: m.fit(ds(X * 5), verbose=0),
     r"Expected values in \[0, 1\] in `x` for BernoulliUnits"),
    ("dataset of strings", rbm, False, lambda m: m.fit(STRINGS, verbose=0),
     r"Expected real numbers in `x`. Received: a dataset of dtype=string"),
    ("dataset of strings, fitted DBM", dbm, True, lambda m: m.fit(STRINGS, verbose=0),
     r"Expected real numbers in `x`"),
    ("dataset of the wrong width", rbm, True, lambda m: m.fit(ds(X[:, :60]), verbose=0),
     r"Expected `x` rows of width 64. Received: a dataset of shape \(None, 60\)"),
    ("train_on_batch x5", rbm, True, lambda m: m.train_on_batch(X[:10] * 5),
     r"Expected values in \[0, 1\]"),
    ("batch_size=-5", rbm, False, lambda m: m.fit(X, batch_size=-5, verbose=0),
     r"Invalid value received for argument `batch_size`. Expected a positive integer. "
     r"Received: batch_size=-5"),
    ("batch_size=2.5", rbm, False, lambda m: m.fit(X, batch_size=2.5, verbose=0),
     r"Received: batch_size=2.5"),
    ("batch_size=0", rbm, True, lambda m: m.fit(X, batch_size=0, verbose=0),
     r"Received: batch_size=0"),
    ("DBM batch_size=-1", dbm, False, lambda m: m.fit(X, batch_size=-1, verbose=0),
     r"Received: batch_size=-1"),
    ("DBN batch_size=-1", dbn, True, lambda m: m.fit(X, Y, batch_size=-1, verbose=0),
     r"Received: batch_size=-1"),
    ("batch_size with a dataset", rbm, True, lambda m: m.fit(ds(X), batch_size=10, verbose=0),
     r"Expected no `batch_size` for a dataset or generator"),
    ("epochs=-1", rbm, False, lambda m: m.fit(X, epochs=-1, verbose=0),
     r"Received: epochs=-1"),
    ("steps_per_epoch=0", rbm, False, lambda m: m.fit(X, steps_per_epoch=0, verbose=0),
     r"Received: steps_per_epoch=0"),
    ("complex x", rbm, False, lambda m: m.fit(X.astype(complex), verbose=0),
     r"Expected real numbers in `x`. Received: dtype=complex128"),
    ("complex x, DBM", dbm, False, lambda m: m.fit(X.astype(complex), verbose=0),
     r"Expected real numbers in `x`"),
    ("empty x", rbm, False, lambda m: m.fit(X[:0], verbose=0),
     r"Expected at least one row in `x`. Received: x.shape=\(0, 64\)"),
    ("empty x, fitted DBM", dbm, True, lambda m: m.fit(X[:0], verbose=0),
     r"Expected at least one row in `x`"),
    ("DBN y with NaN", dbn, True,
     lambda m: m.fit(X, np.where(Y == 3, np.nan, Y), verbose=0),
     r"Expected `y` of shape \(200,\) with integers in \[0, 10\). Received: 21 NaN or inf"),
    ("DBN y=2.7", dbn, True, lambda m: m.fit(X, 2.7, verbose=0),
     r"Expected `y` of shape \(200,\).*Received: y.shape=\(\)"),
    ("DBN y non-integer", dbn, True, lambda m: m.fit(X, Y + 0.5, verbose=0),
     r"Received: a non-integer label 0.5"),
    ("DBN y out of range", dbn, True, lambda m: m.fit(X, Y + 3, verbose=0),
     r"with integers in \[0, 10\). Received: labels between 3 and 12"),
    ("DBN pretraining y out of range", dbn, False,
     lambda m: tb.pretrain_dbn(m, X, Y - 1, epochs=1, verbose=0),
     r"Received: labels between -1 and 8"),
    ("DBN generate([1.7])", dbn, True, lambda m: m.generate([1.7], steps=1),
     r"Expected `labels` of shape \(n,\) with integers in \[0, 10\). Received: a "
     r"non-integer label 1.7"),
    ("DBN generate([10])", dbn, True, lambda m: m.generate([10], steps=1),
     r"Received: labels between 10 and 10"),
    ("DBN generate([])", dbn, True, lambda m: m.generate([], steps=1),
     r"Expected at least one label"),
]


@pytest.mark.parametrize("case, make, fit_first, call, words", CASES,
                         ids=[c[0] for c in CASES])
def test_a_clear_error_before_any_change(case, make, fit_first, call, words):
    model = fitted(make) if fit_first else make()
    before = state(model)
    with pytest.raises(ValueError, match=words):
        call(model)
    assert_unchanged(before, model)
    assert int(model.diverged_at.numpy()) == -1  # a next fit starts clean


@pytest.mark.parametrize("make, bad, words", [
    (rbm, X * 5, r"values between 0 and 5"),
    (rbm, np.where(X > 0.9, np.nan, X),
     r"Expected finite values in `x`. Received: NaN or inf entries"),
    (dbm, X - 0.5, r"values between -0.5 and 0.5"),
    # Rectified visibles take any non-negative value: only a negative one is refused.
    (lambda: tb.RBM(64, 16, visible="nrelu", seed=0), -X,
     r"Expected non-negative values in `x` for NReLUUnits. Received: minimum -1"),
])
def test_a_dataset_that_turns_bad_stops_before_its_first_bad_batch(make, bad, words):
    # 1,000 good rows, then 200 bad ones: ten updates, then the error; the bad
    # batches' updates are not made (nor those of the batches after them in the same
    # call of Keras's multi-step loop).
    model = fitted(make)
    start = int(model.optimizer.iterations.numpy())
    with pytest.raises(ValueError, match=words + r" in the batch of epoch 1, step 11\. No "
                       r"update was made from that batch on"):
        model.fit(ds(np.concatenate([X] * 5 + [bad, X])), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == start + 10
    # The same model trains on good data afterwards.
    model.fit(ds(X), verbose=0)
    assert int(model.optimizer.iterations.numpy()) == start + 12


@pytest.mark.parametrize("make, words", [
    (lambda: tb.RBM(64, 16, seed="abc"), r"Expected None or an integer in \[0, 2\*\*31\). "
     r"Received: seed='abc'"),
    (lambda: tb.RBM(64, 16, seed=1.5), r"Received: seed=1.5"),
    (lambda: tb.RBM(64, 16, seed=-1), r"Received: seed=-1"),
    (lambda: tb.DBM([64, 16, 12], seed=1.5), r"Received: seed=1.5"),
    (lambda: tb.DBN([64, 16], seed="abc"), r"Received: seed='abc'"),
    (lambda: tb.DBN([64, 16, 12], num_classes=2.7),
     r"Invalid value received for argument `num_classes`. Expected a non-negative integer. "
     r"Received: num_classes=2.7"),
    (lambda: tb.DBN([64, 16, 12], num_classes=1), r"Expected 0 \(no labels\) or at least 2"),
])
def test_constructor_arguments(make, words):
    with pytest.raises(ValueError, match=words):
        make()


def test_a_nan_log_partition_is_refused():
    model = fitted(rbm)
    for bad in (float("nan"), float("inf"), "abc", None):
        with pytest.raises(ValueError, match="Invalid value received for argument `log_z`"):
            tb.ais.log_likelihood(model, X, bad)
    deep = fitted(dbm)
    with pytest.raises(ValueError, match=r"Expected a finite float. Received: log_z=nan"):
        tb.ais.elbo(deep, X, float("nan"))


def test_huge_but_finite_steps_warn_once():
    model = rbm()
    model.compile(optimizer=keras.optimizers.SGD(1e8))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(X, epochs=3, verbose=0)
    loud = [w for w in caught if issubclass(w.category, RuntimeWarning)
            and "lower the learning rate" in str(w.message)]
    assert len(loud) == 1, [str(w.message) for w in caught]
    assert "a weight reached" in str(loud[0].message)
    # A sane learning rate: no warning.
    quiet = rbm()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet.fit(X, epochs=2, verbose=0)
    assert not [w for w in caught if "lower the learning rate" in str(w.message)]
