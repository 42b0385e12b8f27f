"""Run in a fresh process by tests/test_distribute.py: splits the CPU into two logical
devices (only possible before TensorFlow initialises them), trains each model's first
update on one global batch under `tf.distribute.MirroredStrategy` and on one device,
and prints a JSON report of the differences."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfboltz as tb  # noqa: E402

BATCH = 40


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


def weights_after_first_update(make, x, y, strategy=None):
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
    fit_x = x[:BATCH]
    if y is None:
        model.fit(fit_x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
    else:
        model.fit(fit_x, y[:BATCH], batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
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
    with strategy.scope():
        bad = tb.RBM(64, 16, learning="pcd", n_chains=7, seed=0)
        bad.compile()
    try:
        bad.fit(x[:BATCH], batch_size=BATCH, epochs=1, verbose=0)
        out["odd_chains_error"] = None
    except ValueError as err:
        out["odd_chains_error"] = str(err)
    return out


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"replicas": strategy.num_replicas_in_sync, "models": {}}
    for name, (make, x, y) in builders().items():
        _, before, single = weights_after_first_update(make, x, y)
        model, _, dist = weights_after_first_update(make, x, y, strategy)
        names = [w.path for w in model.weights]
        moved = max(float(np.max(np.abs(a - b))) for n, a, b in zip(names, single, before)
                    if "kernel" in n)
        diff = {n: float(np.max(np.abs(a - b))) for n, a, b in zip(names, single, dist)
                if a.dtype.kind == "f" and a.size}
        report["models"][name] = {"max_update": moved, "max_diff": max(diff.values()),
                                  "worst": max(diff, key=diff.get)}
    report.update(stochastic_run(strategy))
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
