"""Run in a fresh process by tests/test_distribute.py: splits the CPU into two logical
devices (only possible before TensorFlow initialises them), trains each model on the
same global batches under `tf.distribute.MirroredStrategy` and on one device, and
prints a JSON report of the differences.

``distributed_worker.py multi_worker OUT SPEC`` is instead one worker of a
`tf.distribute.MultiWorkerMirroredStrategy` (tests/test_distribute_multiworker.py
starts two, `TF_CONFIG` naming the cluster): see `multi_worker`.
"""

import functools
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

MULTI_WORKER = sys.argv[1:2] == ["multi_worker"]
if not MULTI_WORKER:  # a worker of several keeps its one device
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfboltz as tb  # noqa: E402

BATCH = 40
#: case -> (rows, global batch size): an even split (20 + 20 rows), an uneven one
#: (11 + 10), an epoch of 22 rows whose last batch has one row (11 + 10, then 1 + 0:
#: the second replica has none), and `train_on_batch` on one row (batch size None).
CASES = {"even": (BATCH, BATCH), "uneven": (21, 21), "last_of_one": (22, 21),
         "train_on_batch_one": (1, None)}
#: model -> its cases. Keras's own Sequential weighs the replicas equally, whatever
#: their rows: only the even split matches one device. (The DBMs are the slow ones.)
MODEL_CASES = {"rbm_cd": ["even", "uneven", "last_of_one"], "rbm_pcd": list(CASES),
               "dbm": list(CASES), "dbm_centered": ["even", "last_of_one"],
               "sequential": ["even"]}


def data():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32"), y.astype("int32")


def builders():
    """name -> (make model, x, y or None): configurations whose update is deterministic."""
    x, y = data()
    return {
        "rbm_cd": (lambda: tb.RBM(64, 16, learning="cd", sample_hidden=False, l2=1e-3,
                                  max_norm=2.0, seed=0), x, None),
        "rbm_pcd": (lambda: tb.RBM(64, 16, learning="pcd", n_chains=10, sample_hidden=False,
                                   sparsity_cost=0.1, seed=0), x, None),
        "dbm": (lambda: tb.DBM([64, 16, 8], n_chains=10, sample_particles=False,
                               n_mean_field=5, l2=1e-3, seed=0), x, None),
        # offsets move by the replicas' mean of their batch means
        "dbm_centered": (lambda: tb.DBM([64, 16, 8], n_chains=10, sample_particles=False,
                                        n_mean_field=5, centering=True, centering_rate=0.5,
                                        seed=0), x, None),
        "sequential": (lambda: tb.RBM(64, 16, seed=0).to_sequential(10), x, y),
    }


def weights_after_fit(make, x, y, rows, batch, strategy=None):
    keras.utils.set_random_seed(0)
    scope = strategy.scope() if strategy is not None else _null()
    with scope:
        model = make()
        if isinstance(model, keras.Sequential):
            model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                          loss="sparse_categorical_crossentropy")
        else:
            model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    before = [w.numpy().copy() for w in model.weights]
    fit_y = None if y is None else y[:rows]
    if batch is None:
        model.train_on_batch(x[:rows], fit_y)
    else:
        model.fit(x[:rows], fit_y, batch_size=batch, epochs=1, shuffle=False, verbose=0)
    return model, before, [w.numpy() for w in model.weights]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def stochastic_run(strategy):
    """A sampled PCD RBM and a sampled DBM train for two epochs under the strategy."""
    x, y = data()
    out = {}
    with strategy.scope():
        rbm = tb.RBM(64, 32, learning="pcd", n_chains=20, sample_visible=True, seed=1)
        rbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
    rbm.init_from_data(x)
    # Both replicas' shares start as the same ten chains: only different noise on the
    # two replicas (the replica id folded into the seed) makes them differ afterwards.
    rbm.persistent_chains.assign(np.tile(rbm.persistent_chains.numpy()[:10], (2, 1)))
    hist = rbm.fit(x, batch_size=BATCH, epochs=3, verbose=0)
    chains = rbm.persistent_chains.numpy()
    out["rbm_recon"] = [float(v) for v in hist.history["reconstruction_error"]]
    out["rbm_finite"] = bool(all(np.isfinite(w.numpy()).all() for w in rbm.weights))
    out["rbm_shares_identical"] = bool(np.array_equal(chains[:10], chains[10:]))
    with strategy.scope():
        pt = tb.RBM(64, 32, learning="pt", n_chains=10, n_temperatures=4, min_beta=0.4,
                    sample_visible=True, seed=1)
        pt.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
    pt.init_from_data(x)
    hist = pt.fit(x, batch_size=BATCH, epochs=2, verbose=0)
    out["pt_finite"] = bool(all(np.isfinite(w.numpy()).all() for w in pt.weights))
    out["pt_chains_shape"] = list(pt.persistent_chains.shape)
    out["pt_swap_rate"] = [float(v) for v in hist.history["swap_rate"]]
    with strategy.scope():
        dbm = tb.DBM([64, 24, 12], n_chains=20, seed=1)
        dbm.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5))
    hist = dbm.fit(x, batch_size=BATCH, epochs=2, verbose=0)
    out["dbm_recon"] = [float(v) for v in hist.history["reconstruction_error"]]
    out["dbm_finite"] = bool(all(np.isfinite(w.numpy()).all() for w in dbm.weights))
    with strategy.scope():
        dbm_pt = tb.DBM([64, 24, 12], n_chains=10, n_temperatures=3, seed=1)
        dbm_pt.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.5))
    hist = dbm_pt.fit(x, batch_size=BATCH, epochs=1, verbose=0)
    out["dbm_pt_finite"] = bool(all(np.isfinite(w.numpy()).all() for w in dbm_pt.weights))
    out["dbm_pt_particle_rows"] = [int(p.shape[0]) for p in dbm_pt.particles]
    out["dbm_pt_swap_rate"] = [float(v) for v in hist.history["swap_rate"]]
    with strategy.scope():
        dbn = tb.DBN([64, 24, 32], num_classes=10, seed=1)
    tb.pretrain_dbn(dbn, x, y, epochs=1, batch_size=BATCH, verbose=0)
    before = dbn.rec_kernels[0].numpy()
    dbn.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)
    out["dbn_finite"] = bool(all(np.isfinite(w.numpy()).all() for w in dbn.weights))
    out["dbn_updown_moved"] = float(np.max(np.abs(dbn.rec_kernels[0].numpy() - before)))
    out["odd_chains"] = odd_chains(strategy, x)
    out["any_batch"] = any_batch(strategy)
    out["bad_batch"] = bad_batch(strategy)
    return out


def bad_batch(strategy):
    """A dataset whose rows turn bad after the first 1,000 (checked before fit): the
    train step's check refuses the bad batch across replicas, and fit raises the
    ValueError of bad data with the step, the earlier updates kept."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16).astype("f4")[:200]
    out = {}
    for name, bad in (("x5", x * 5), ("nan", np.where(x > 0.9, np.nan, x))):
        with strategy.scope():
            rbm = tb.RBM(64, 16, learning="pcd", n_chains=20, seed=0)
        rbm.fit(x, batch_size=20, epochs=1, verbose=0)
        start = int(rbm.optimizer.iterations.numpy())
        rows = np.concatenate([x] * 5 + [bad])
        try:
            rbm.fit(tf.data.Dataset.from_tensor_slices(rows).batch(20), verbose=0)
            error = None
        except Exception as err:  # reported, not raised: the test shows it
            error = f"{type(err).__name__}: {str(err)[:500]}"
        out[name] = {"error": error, "steps": int(rbm.optimizer.iterations.numpy()) - start,
                     "finite": bool(all(np.isfinite(w.numpy()).all() for w in rbm.weights))}
    return out


def odd_chains(strategy, x):
    """Chains that do not split over the replicas: the error, and whether every weight,
    chain and `data_initialized` is as before it (fit and train_on_batch; compiled
    first or not)."""
    makers = {"rbm_pcd": lambda: tb.RBM(64, 16, learning="pcd", n_chains=7, seed=0),
              "rbm_pt": lambda: tb.RBM(64, 16, learning="pt", n_chains=7, n_temperatures=2,
                                       seed=0),
              "dbm": lambda: tb.DBM([64, 16, 8], n_chains=7, seed=0)}
    out = {}
    for name, make in makers.items():
        for call in ("fit", "train_on_batch", "fit_uncompiled"):
            with strategy.scope():
                model = make()
                if call != "fit_uncompiled":
                    model.compile()
            before = [w.numpy().copy() for w in model.weights]
            try:
                if call == "train_on_batch":
                    model.train_on_batch(x[:BATCH])
                else:
                    model.fit(x[:BATCH], batch_size=BATCH, epochs=1, verbose=0)
                error = None
            except ValueError as err:
                error = str(err)
            after = [w.numpy() for w in model.weights]
            out[f"{name}/{call}"] = {
                "error": error,
                "unchanged": all(np.array_equal(a, b) for a, b in zip(before, after)),
                "data_initialized": bool(model.data_initialized.numpy())}
    return out


def any_batch(strategy):
    """The issue's sampled PCD RBM on any global batch: 200 rows at 21 (uneven splits,
    the last batch 11 rows), 201 at 20 (the last batch of one row)."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16).astype("f4")[:200]
    out = {}
    for name, rows, batch in (("batch_21", x, 21), ("last_of_one", np.concatenate([x, x[:1]]), 20)):
        with strategy.scope():
            rbm = tb.RBM(64, 16, learning="pcd", n_chains=20, seed=0)
        try:
            rbm.fit(rows, batch_size=batch, epochs=1, verbose=0)
            error = None
        except Exception as err:  # reported, not raised: the test shows it
            error = f"{type(err).__name__}: {str(err)[:500]}"
        out[name] = {"error": error,
                     "finite": bool(all(np.isfinite(w.numpy()).all() for w in rbm.weights)),
                     "steps": int(rbm.optimizer.iterations.numpy())}
    return out


def differences(model, before, single, dist):
    """How far the single-device run moved the kernels, and the largest difference
    between its weights and the distributed run's."""
    names = [w.path for w in model.weights]
    moved = max(float(np.max(np.abs(a - b))) for n, a, b in zip(names, single, before)
                if "kernel" in n)
    diff = {n: float(np.max(np.abs(a - b))) for n, a, b in zip(names, single, dist)
            if a.dtype.kind == "f" and a.size}
    return {"max_update": moved, "max_diff": max(diff.values()),
            "worst": max(diff, key=diff.get)}


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"replicas": strategy.num_replicas_in_sync, "models": {}}
    for name, (make, x, y) in builders().items():
        for case in MODEL_CASES[name]:
            rows, batch = CASES[case]
            _, before, single = weights_after_fit(make, x, y, rows, batch)
            model, _, dist = weights_after_fit(make, x, y, rows, batch, strategy)
            report["models"][f"{name}/{case}"] = differences(model, before, single, dist)
    report.update(stochastic_run(strategy))
    json.dump(report, sys.stdout)


class Alive(keras.callbacks.Callback):
    """Marks each trained batch with the file ``alive_<task>``; a stalled worker then
    sleeps in the callback: alive (its heartbeats go on) but never at the next step."""

    def __init__(self, out, task, stall):
        super().__init__()
        self.path, self.stall = Path(out, f"alive_{task}"), stall

    def on_train_batch_end(self, batch, logs=None):
        self.path.touch()
        if self.stall:
            time.sleep(3600)


def multi_worker(out, spec):
    """One worker of a `MultiWorkerMirroredStrategy` whose collectives time out after
    ``spec["timeout_seconds"]``: trains each model of ``spec["models"]`` (name ->
    [class name, args, kwargs]) on its first global batch (``spec["rows"]`` rows,
    ``spec["batch"]`` a batch) as `weights_after_fit` does on one device; worker 0
    saves the weights as ``OUT/<name>.weights.h5``. Then the first model trains on
    until it fails (a peer died, or stalled: worker ``spec["stall"]`` sleeps after its
    first batch); each batch touches ``OUT/alive_<task>``."""
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    options = tf.distribute.experimental.CommunicationOptions(
        timeout_seconds=spec["timeout_seconds"])
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    x, _ = data()
    models = []
    for name, (cls, args, kwargs) in spec["models"].items():
        make = functools.partial(getattr(tb, cls), *args, **kwargs)
        model, _, _ = weights_after_fit(make, x, None, spec["rows"], spec["batch"], strategy)
        if task == 0:
            model.save_weights(Path(out, f"{name}.weights.h5"))
        models.append(model)
    Path(out, f"replicas_{task}").write_text(str(strategy.num_replicas_in_sync))
    models[0].fit(x, batch_size=spec["batch"], epochs=10_000, verbose=0,
                  callbacks=[Alive(out, task, stall=spec["stall"] == task)])


if __name__ == "__main__":
    if MULTI_WORKER:
        multi_worker(sys.argv[2], json.loads(sys.argv[3]))
    else:
        main()
