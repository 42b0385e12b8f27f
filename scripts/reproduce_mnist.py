"""The README's reproduced MNIST tables: our figures beside the anchors.

    python scripts/reproduce_mnist.py --rbm runs/rbm1024_pcd150/model.keras \\
        --dbm runs/dbm/model.keras --only rbm dbm semi

Sections (each row is written to ``--json`` as soon as it is measured, so a run can be
split over several invocations with ``--only``):

- ``rbm``: features of the 784-1024 RBM (hidden means of the grey-level images) with
  k-NN, logistic regression and a linear SVM, each with its hyper-parameter picked on
  the last 10,000 training images, refit on all 60,000 and scored once on the test
  set; and the fine-tuned MLP (`tfboltz.experiments.finetune_mnist`).
- ``dbm``: AIS log Z (100 chains, 20,000 betas), average test ELBO, and the
  fine-tuned classifier's test error.
- ``semi``: fine-tuning from the pretrained RBM and DBM, and from random
  initialisation (the DBM classifier's Dense layers, 784-500-1000-10 with sigmoid
  units, Glorot-initialised, on raw pixels), with 100, 1,000, 10,000 and 60,000
  labelled images (a tenth of them, at most 5,000, held out to pick the epoch by
  validation loss); at least 3,000 updates, small sets repeated within an epoch.
"""

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfboltz as tb  # noqa: E402
from tfboltz import cli  # noqa: E402

ANCHORS = {
    "rbm_knn": 2.88, "rbm_logreg": 1.83, "rbm_svm": 1.80, "rbm_finetuned": 1.27,
    "dbm_test_elbo": -84.62, "dbm_finetuned": 0.95,
    # TF1 reference, accuracy %: (pretrained DBM, random init) by labelled examples.
    "semi_dbm": {100: 83.79, 1000: 93.54, 10000: 97.11, 60000: 98.68},
    "semi_random": {100: 76.24, 1000: 89.14, 10000: 94.50, 60000: 98.28},
    "semi_rbm": {100: 81.70, 1000: 93.65, 10000: 97.27, 60000: 98.73},
}
SIZES = (100, 1000, 10000, 60000)


def record(path, key, value):
    """Add one measured row to the JSON file (written atomically)."""
    rows = json.loads(path.read_text()) if path.exists() else {}
    rows[key] = value
    cli.write_json(path, rows)
    print(f"{key}: {json.dumps(value)}")


def pick_and_score(make, cs, f_train, y_train, f_test, y_test):
    """Pick a hyper-parameter on the last 10k training rows, refit, score the test set."""
    val = {}
    for c in cs:
        val[c] = make(c).fit(f_train[:50000], y_train[:50000]).score(f_train[50000:],
                                                                      y_train[50000:])
    best = max(val, key=val.get)
    error = 100 * (1 - make(best).fit(f_train, y_train).score(f_test, y_test))
    return {"test_error_percent": error, "picked": best,
            "validation_accuracy": {str(k): v for k, v in val.items()}}


def rbm_section(rbm_path, out, args):
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    rbm = tb.zoo.from_preset(rbm_path)
    x, y = tb.data.load_mnist("train")
    x_test, y_test = tb.data.load_mnist("test")
    f, f_test = rbm.transform(x), rbm.transform(x_test)
    t0 = time.time()
    res = pick_and_score(lambda k: KNeighborsClassifier(k, n_jobs=2), (1, 3, 5), f, y, f_test,
                         y_test)
    record(out, "rbm_knn", {**res, "seconds": time.time() - t0})
    t0 = time.time()
    res = pick_and_score(lambda c: make_pipeline(StandardScaler(), LogisticRegression(
        C=c, max_iter=500)), (0.005, 0.01, 0.02, 0.05), f, y, f_test, y_test)
    record(out, "rbm_logreg", {**res, "seconds": time.time() - t0})
    t0 = time.time()
    res = pick_and_score(lambda c: make_pipeline(StandardScaler(), LinearSVC(
        C=c, dual=False, max_iter=2000)), (0.001, 0.003, 0.01), f, y, f_test, y_test)
    record(out, "rbm_svm", {**res, "seconds": time.time() - t0})
    res = tb.experiments.finetune_mnist(rbm, args.work / "rbm_clf", epochs=args.epochs,
                                        verbose=0)
    record(out, "rbm_finetuned", res)


def dbm_section(dbm_path, out, args):
    dbm = tb.zoo.from_preset(dbm_path)
    res = tb.experiments.evaluate_mnist(dbm, n_chains=100, n_betas=20000, seed=0, probe=False)
    record(out, "dbm_likelihood", res)
    res = tb.experiments.finetune_mnist(dbm, args.work / "dbm_clf", epochs=args.epochs,
                                        verbose=0)
    record(out, "dbm_finetuned", res)


def random_init(sizes):
    """The DBM classifier without its generative start: the same Dense layers on raw
    pixels, Glorot-initialised (sigmoid hidden units)."""
    layers = [keras.Input((sizes[0],))]
    layers += [keras.layers.Dense(n, activation="sigmoid", name=f"hidden_{i}")
               for i, n in enumerate(sizes[1:], start=1)]
    layers.append(keras.layers.Dense(10, activation="softmax", name="output"))
    return keras.Sequential(layers)


def semi_section(rbm_path, dbm_path, out, args):
    starts = {}
    if rbm_path and "rbm" in args.starts:
        starts["rbm"] = lambda: tb.zoo.from_preset(rbm_path)
    if dbm_path and "dbm" in args.starts:
        starts["dbm"] = lambda: tb.zoo.from_preset(dbm_path)
    if "random" in args.starts:
        starts["random"] = lambda: random_init(args.random_sizes)
    for n in SIZES:
        n_fit = n - min(5000, max(1, n // 10))
        steps_per_epoch = max(50, n_fit // min(100, n_fit))  # small sets repeat in an epoch
        epochs = max(args.epochs, int(np.ceil(3000 / steps_per_epoch)))  # >= 3,000 updates
        for name, make in starts.items():
            key = f"semi_{name}_{n}"
            if out.exists() and key in json.loads(out.read_text()) and not args.redo:
                print(f"{key}: already measured, skipped (--redo measures again)")
                continue
            keras.utils.set_random_seed(0)
            res = tb.experiments.finetune_mnist(make(), args.work / key, epochs=epochs,
                                                batch_size=min(100, n_fit), n_train=n,
                                                monitor="val_loss", min_steps_per_epoch=50,
                                                verbose=0)
            record(out, key, res)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rbm", help="the 784-1024 RBM: a preset name or directory, or a .keras "
                                 "or .weights.h5 file (default for `rbm`: mnist_rbm)")
    p.add_argument("--dbm", help="the MNIST DBM: a preset name or directory, or a .keras "
                                 "or .weights.h5 file (default for `dbm`: mnist_dbm)")
    p.add_argument("--only", nargs="+", choices=["rbm", "dbm", "semi"],
                   default=["rbm", "dbm", "semi"])
    p.add_argument("--starts", nargs="+", choices=["rbm", "dbm", "random"],
                   default=["rbm", "dbm", "random"], help="initialisations in `semi`")
    p.add_argument("--random-sizes", type=int, nargs="+", default=[784, 500, 1000],
                   help="layer sizes of the randomly initialised baseline")
    p.add_argument("--redo", action="store_true", help="measure rows already in --json")
    p.add_argument("--epochs", type=int, default=30, help="fine-tuning epochs (at least)")
    p.add_argument("--json", type=Path, default=Path("docs/results/reproduce_mnist.json"))
    p.add_argument("--work", type=Path, default=Path("runs/reproduce"))
    args = p.parse_args(argv)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    if "rbm" in args.only:
        rbm_section(args.rbm or "mnist_rbm", args.json, args)
    if "dbm" in args.only:
        dbm_section(args.dbm or "mnist_dbm", args.json, args)
    if "semi" in args.only:
        semi_section(args.rbm, args.dbm, args.json, args)


if __name__ == "__main__":
    main()
