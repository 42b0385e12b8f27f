"""The measurement behind `EnergyModel.compile()`'s defaults, on data nobody tuned for.

    python scripts/check_defaults.py --parts rbm          # -> docs/results/defaults_digits.json
    python scripts/check_defaults.py --parts dbm,dbn      # adds its parts to the same file
    python scripts/check_defaults.py --parts tests        # the tests' RBMs, likewise
    python scripts/check_defaults.py --parts scales --scales 1 2 4 8 --batch-sizes 32 \\
        --out docs/results/defaults_digits_scales.json   # then 100, and 10 with 2 3 4
    python scripts/check_defaults.py --batch-sizes 10 100 --parts rbm \\
        --out docs/results/defaults_digits_batch_sizes.json

Each run replaces the parts it measures in `--out` and keeps the others.

Data: scikit-learn's 8x8 digits (1,797 images, values / 16 in [0, 1]), split once
into 1,257 training and 540 test rows (stratified, `random_state=0`); and the same
images upsampled bilinearly to 28x28 (784 pixels, the size of MNIST). Each model is
trained on the training rows for `--epochs` epochs with `--batch-sizes` rows a step,
seeds 0 to `--seeds` - 1; its features (`transform`: hidden means, top-layer mean-field
means for a DBM) feed a linear probe, scikit-learn's `LogisticRegression` (C=1,
lbfgs), fitted on the training rows and scored on the test rows.

Optimizers compared (the rest of every model at its constructor's defaults):

- ``old default``: ``SGD(0.01, momentum=0.9)`` from the first step, what `compile()`
  gave before (named explicitly here);
- ``new default``: `compile()` with no arguments (or none at all, for RBM and DBM):
  ``SGD(2 / hidden_fan_in(), momentum=0.5)`` and momentum 0.9 from the sixth epoch
  (the fan-in is `n_visible` for an RBM, ``n_visible + n_2`` for a DBM's first layer);
- scikit-learn's `BernoulliRBM` (PCD with one chain a row of the batch, no momentum)
  at its default learning rate 0.1, with the same hidden units, epochs and batch size.

DBM (`--parts dbm`): `fit` from scratch, and `pretrain_dbm` (its own default
optimizer, CD-1) then `fit`, with the old and the new default; features are the
top layer's mean-field means.
Scales (`--parts scales --scales 1 2 4 8`): the RBMs with the new default's
momentum schedule and learning rate ``c / n_visible`` for each c, the sweep that chose
c = 2 (the largest at which PCD kept its accuracy at every batch size).
Tests (`--parts tests`): the RBMs of tests/test_defaults.py's accuracy thresholds,
with the old and the new default.
DBN (`--parts dbn`): `pretrain_dbn` (its own default optimizer) then up-down `fit`,
with `DBN.fit`'s own default (``SGD(0.001)``, no `compile`), the old `compile()`
default and the new one (`DBN.fit` adds no momentum schedule: 0.5 throughout).
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from scipy.ndimage import zoom  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import BernoulliRBM  # noqa: E402

import tfboltz as tb  # noqa: E402

OLD_DEFAULT = "SGD(0.01, momentum=0.9)"
#: (name, image side, hidden layer sizes of the RBM / DBM / DBN)
DATA = [("digits_8x8", 8, [100]), ("digits_28x28", 28, [500])]
#: The RBMs of tests/test_defaults.py's accuracy test: (image side, n_hidden, learning).
TEST_CONFIGS = [(8, 100, "cd"), (28, 100, "pcd")]


def digits(side=8):
    """``(x_train, x_test, y_train, y_test)``: the digits / 16, at `side` x `side`."""
    d = load_digits()
    x = (d.data / 16.0).astype("float32")
    if side != 8:
        images = zoom(x.reshape(-1, 8, 8), (1, side / 8, side / 8), order=1)
        x = np.clip(images, 0, 1).reshape(len(x), -1).astype("float32")
    return train_test_split(x, d.target, test_size=0.3, random_state=0, stratify=d.target)


def probe_accuracy(f_train, y_train, f_test, y_test):
    """Test accuracy of a logistic regression fitted on the training features."""
    clf = LogisticRegression(max_iter=5000).fit(f_train, y_train)
    return float(clf.score(f_test, y_test))


def old_default():
    return keras.optimizers.SGD(0.01, momentum=0.9)


def rbm_accuracy(split, n_hidden, learning, optimizer, epochs, batch_size, seed):
    """`optimizer`: "old", "new", "sklearn", or a number c: the new default's schedule
    with learning rate ``c / n_visible`` in place of ``2 / n_visible``."""
    x_train, x_test, y_train, y_test = split
    if optimizer == "sklearn":
        rbm = BernoulliRBM(n_components=n_hidden, batch_size=batch_size, n_iter=epochs,
                           random_state=seed).fit(x_train)
    else:
        rbm = tb.RBM(x_train.shape[1], n_hidden, learning=learning, seed=seed)
        callbacks = []
        if optimizer == "old":
            rbm.compile(optimizer=old_default())
        elif optimizer != "new":
            rbm.compile(optimizer=keras.optimizers.SGD(optimizer / rbm.hidden_fan_in(),
                                                       momentum=0.5))
            callbacks = [tb.callbacks.MomentumScheduler([0.5] * 5 + [0.9])]
        rbm.fit(x_train, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks)
    return probe_accuracy(rbm.transform(x_train), y_train, rbm.transform(x_test), y_test)


def dbm_accuracies(split, sizes, epochs, batch_size, seed):
    """Probe accuracy after `fit` from scratch with each optimizer, after
    `pretrain_dbm` alone, and after `pretrain_dbm` then `fit` with each optimizer."""
    x_train, x_test, y_train, y_test = split
    pretrained = tb.DBM([x_train.shape[1], *sizes], seed=seed)
    tb.pretrain_dbm(pretrained, x_train, epochs=epochs, batch_size=batch_size, verbose=0)
    out = {}
    for start in ("scratch", "pretrained"):
        for optimizer in ("old", "new") + (("none",) if start == "pretrained" else ()):
            dbm = tb.DBM([x_train.shape[1], *sizes], seed=seed)
            if start == "pretrained":
                dbm.set_weights(pretrained.get_weights())
            if optimizer == "old":
                dbm.compile(optimizer=old_default())
            if optimizer != "none":
                dbm.fit(x_train, batch_size=batch_size, epochs=epochs, verbose=0)
            out[start, optimizer] = probe_accuracy(dbm.transform(x_train), y_train,
                                                   dbm.transform(x_test), y_test)
    return out


def dbn_accuracies(split, sizes, epochs, batch_size, seed):
    """Probe accuracy after pretraining, then after up-down with each optimizer."""
    x_train, x_test, y_train, y_test = split
    pretrained = tb.DBN([x_train.shape[1], *sizes], seed=seed)
    tb.pretrain_dbn(pretrained, x_train, epochs=epochs, batch_size=batch_size, verbose=0)
    out = {}
    for optimizer in ("pretrained", "dbn_fit_own", "old", "new"):
        dbn = tb.DBN.from_config(pretrained.get_config())
        dbn.set_weights(pretrained.get_weights())
        if optimizer != "pretrained":
            if optimizer == "old":
                dbn.compile(optimizer=old_default())
            elif optimizer == "new":
                dbn.compile()
            keras.utils.set_random_seed(seed)  # DBN.fit shuffles with Keras's global state
            dbn.fit(x_train, batch_size=batch_size, epochs=epochs, verbose=0)
        out[optimizer] = probe_accuracy(dbn.transform(x_train), y_train,
                                        dbn.transform(x_test), y_test)
    return out


def _entry(accuracies, **keys):
    return {**keys, "accuracy": [round(a, 4) for a in accuracies],
            "mean": round(float(np.mean(accuracies)), 4),
            "min": round(float(np.min(accuracies)), 4)}


OPTIMIZER_NAMES = {"old": f"old default {OLD_DEFAULT}",
                   "new": "new default compile()",
                   "sklearn": "sklearn BernoulliRBM (learning_rate=0.1)",
                   "none": "pretrain_dbm only (no fit)",
                   "pretrained": "pretrain_dbn only (no up-down)",
                   "dbn_fit_own": "DBN.fit's own default SGD(0.001)"}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--parts", default="rbm,dbm,dbn",
                   help="any of rbm, dbm, dbn, tests, scales, comma-separated")
    p.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--out", type=Path, default=Path("docs/results/defaults_digits.json"))
    args = p.parse_args(argv)
    parts = args.parts.split(",")
    seeds = range(args.seeds)
    start = time.time()
    results = {
        "data": "sklearn load_digits / 16; train_test_split(test_size=0.3, random_state=0, "
                "stratify=y): 1257 train, 540 test rows; digits_28x28 = bilinear zoom to 28x28",
        "probe": "LogisticRegression(max_iter=5000) on transform() features, test accuracy",
        "seeds": "0, 1, ...: one accuracy each, in order",
        "new_default": {"learning_rate": "2 / hidden_fan_in()",
                        "momentum": "0.5, then 0.9 from epoch 6"},
        "raw_pixels": {}, "commands": {},
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    command = " ".join(["python scripts/check_defaults.py",
                        *(sys.argv[1:] if argv is None else argv)])
    for part in ("rbm", "dbm", "dbn", "tests", "scales"):
        # Entries of other parts, or of other batch sizes, stay as they were.
        kept = [e for e in previous.get(part, [])
                if part not in parts or e["batch_size"] not in args.batch_sizes]
        commands = [c for c in previous.get("commands", {}).get(part, [])
                    if part not in parts or c != command]
        if kept or part in parts:
            results[part] = kept
            results["commands"][part] = commands + ([command] if part in parts else [])

    def save():
        """Write what has been measured so far (an interrupted run keeps it)."""
        results["seconds"] = {**previous.get("seconds", {}),
                              args.parts: round(time.time() - start, 1)}
        results["versions"] = {"tfboltz": tb.__version__, "keras": keras.__version__,
                               "sklearn": sklearn.__version__,
                               "python": platform.python_version(),
                               "machine": platform.machine()}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")

    for name, side, hidden in DATA:
        split = digits(side)
        results["raw_pixels"][name] = round(probe_accuracy(split[0], split[2], split[1],
                                                           split[3]), 4)
        n_visible = side * side
        for batch_size in args.batch_sizes:
            common = {"data": name, "batch_size": batch_size, "epochs": args.epochs}
            if "rbm" in parts:
                for learning in ("pcd", "cd"):
                    for optimizer in ("old", "new") + (("sklearn",) if learning == "pcd" else ()):
                        accs = [rbm_accuracy(split, hidden[0], learning, optimizer, args.epochs,
                                             batch_size, s) for s in seeds]
                        results["rbm"].append(_entry(
                            accs, **common, model=f"RBM {n_visible}-{hidden[0]}",
                            learning=learning, optimizer=OPTIMIZER_NAMES[optimizer]))
                        print(results["rbm"][-1], flush=True)
                        save()
            if "dbm" in parts:
                runs = [dbm_accuracies(split, hidden * 2, args.epochs, batch_size, s)
                        for s in seeds]
                for begin, optimizer in runs[0]:
                    results["dbm"].append(_entry(
                        [r[begin, optimizer] for r in runs], **common,
                        model=f"DBM {n_visible}-{hidden[0]}-{hidden[0]}",
                        start="pretrain_dbm" if begin == "pretrained" else "from scratch",
                        optimizer=OPTIMIZER_NAMES[optimizer]))
                    print(results["dbm"][-1], flush=True)
                    save()
            if "dbn" in parts:
                runs = [dbn_accuracies(split, hidden * 2, args.epochs, batch_size, s)
                        for s in seeds]
                for optimizer in runs[0]:
                    results["dbn"].append(_entry(
                        [r[optimizer] for r in runs], **common,
                        model=f"DBN {n_visible}-{hidden[0]}-{hidden[0]}",
                        optimizer=OPTIMIZER_NAMES[optimizer]))
                    print(results["dbn"][-1], flush=True)
                    save()
            if "scales" in parts:
                for learning in ("pcd", "cd"):
                    for scale in args.scales:
                        accs = [rbm_accuracy(split, hidden[0], learning, scale, args.epochs,
                                             batch_size, s) for s in seeds]
                        results["scales"].append(_entry(
                            accs, **common, model=f"RBM {n_visible}-{hidden[0]}",
                            learning=learning, scale=scale,
                            learning_rate=round(scale / n_visible, 6)))
                        print(results["scales"][-1], flush=True)
                        save()
    if "tests" in parts:
        for side, n_hidden, learning in TEST_CONFIGS:
            split = digits(side)
            for optimizer in ("old", "new"):
                accs = [rbm_accuracy(split, n_hidden, learning, optimizer, args.epochs, 32, s)
                        for s in seeds]
                results["tests"].append(_entry(
                    accs, data=f"digits_{side}x{side}", batch_size=32, epochs=args.epochs,
                    model=f"RBM {side * side}-{n_hidden}", learning=learning,
                    optimizer=OPTIMIZER_NAMES[optimizer]))
                print(results["tests"][-1], flush=True)
                save()
    save()
    print(f"wrote {args.out} ({round(time.time() - start, 1)} s)")


if __name__ == "__main__":
    main()
