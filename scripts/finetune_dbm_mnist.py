"""Fine-tune an MNIST RBM or DBM as a `keras.Sequential` classifier; report test error.

    python scripts/finetune_dbm_mnist.py runs/dbm/model.keras --out runs/dbm_clf

`model.to_sequential(10)` gives the classifier (for a DBM its first layer computes the
mean-field-augmented input ``[v, q(h_2)]``, frozen). Since that first layer does not
train, its output is computed once and the trainable layers are fitted on it: the
same model and the same updates, without recomputing mean-field every epoch. Inputs
are the grey-level pixels. The last 5,000 training images are held out to pick the
epoch (best validation accuracy); the test set is touched once, at the end. The
classifier is saved (``classifier.keras``), exported as a SavedModel, and the export
is reloaded in a fresh process to check that it predicts the same.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfboltz as tb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=".keras file of an RBM or a DBM")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--n-val", type=int, default=5000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/dbm_clf"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    model = keras.saving.load_model(args.model)
    x, y = tb.data.load_mnist("train")
    x_test, y_test = tb.data.load_mnist("test")
    clf = model.to_sequential(10, dropout=args.dropout)
    t0 = time.time()
    first = clf.layers[0]
    frozen = isinstance(first, tb.classifier.MeanFieldAugmentation)
    if frozen:
        def features(rows):
            return np.concatenate([first(rows[i:i + 1000]).numpy()
                                   for i in range(0, len(rows), 1000)])
        f, f_test = features(x), features(x_test)
        head = keras.Sequential([keras.Input((f.shape[1],)), *clf.layers[1:]])
    else:
        f, f_test, head = x, x_test, clf
    t_features = time.time() - t0
    head.compile(optimizer=keras.optimizers.Adam(args.lr),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    n_fit = len(f) - args.n_val
    t0 = time.time()
    hist = head.fit(f[:n_fit], y[:n_fit], batch_size=args.batch_size, epochs=args.epochs,
                    validation_data=(f[n_fit:], y[n_fit:]), verbose=2,
                    callbacks=[keras.callbacks.EarlyStopping(
                        "val_accuracy", patience=args.epochs, restore_best_weights=True)])
    t_fit = time.time() - t0
    clf.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    _, acc = clf.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    best = int(np.argmax(hist.history["val_accuracy"]))
    clf.save(args.out / "classifier.keras")
    saved = args.out / "savedmodel"
    clf.export(str(saved), verbose=False)
    pred = clf.predict(x_test, batch_size=1000, verbose=0)
    np.save(args.out / "x_test.npy", x_test)
    check = (f"import numpy as np, tensorflow as tf; m = tf.saved_model.load({str(saved)!r}); "
             f"x = np.load({str(args.out / 'x_test.npy')!r}); "
             f"np.save({str(args.out / 'pred_reloaded.npy')!r}, m.serve(tf.constant(x)).numpy())")
    subprocess.run([sys.executable, "-c", check], check=True)
    reloaded = np.load(args.out / "pred_reloaded.npy")
    same = bool(np.array_equal(reloaded.argmax(1), pred.argmax(1)))
    result = {
        "model": args.model, "test_error_percent": 100 * (1 - acc),
        "best_epoch": best + 1, "val_accuracy": hist.history["val_accuracy"][best],
        "epochs": args.epochs, "lr": args.lr, "dropout": args.dropout,
        "feature_seconds": t_features, "fit_seconds": t_fit,
        "savedmodel_reload_same_predictions": same,
        "savedmodel_max_abs_diff": float(np.abs(reloaded - pred).max()),
    }
    print(json.dumps(result, indent=1))
    (args.out / "result.json").write_text(json.dumps(result, indent=1))
    (args.out / "x_test.npy").unlink()


if __name__ == "__main__":
    main()
