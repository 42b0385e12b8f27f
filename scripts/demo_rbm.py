"""A quick RBM run: train a Bernoulli RBM on MNIST, measure it, save its filters.

    python scripts/demo_rbm.py --epochs 5

Trains a 784-500 RBM with PCD on the 60,000 MNIST training images (binarised afresh
each epoch), estimates log Z by AIS, prints the average test log-likelihood on the
test set binarised with seed 0, fits a linear probe (logistic regression on the
hidden means) and prints its test accuracy, and writes the filters to a PNG.
"""

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfboltz as tb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--n-hidden", type=int, default=500)
    p.add_argument("--n-betas", type=int, default=10000)
    p.add_argument("--probe-rows", type=int, default=60000,
                   help="training rows for the linear probe")
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)

    t0 = time.time()
    x_train, y_train = tb.data.load_mnist("train")
    x_test, y_test = tb.data.load_mnist("test", binarize="stochastic", seed=0)
    x_test_grey, _ = tb.data.load_mnist("test")
    print(f"MNIST: {len(x_train)} train, {len(x_test)} test rows ({time.time() - t0:.1f} s)")

    ds = (tf.data.Dataset.from_tensor_slices(x_train).shuffle(60000, seed=0).batch(100)
          .map(lambda b: tf.cast(tf.random.uniform(tf.shape(b), seed=0) < b, tf.float32)))
    rbm = tb.RBM(784, args.n_hidden, learning="pcd", sample_visible=True, l2=1e-4, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    rbm.init_from_data((x_train > np.random.default_rng(0).random(x_train.shape)).astype("f4"))
    t0 = time.time()
    rbm.fit(ds, epochs=args.epochs, validation_data=x_test[:2000], verbose=2, callbacks=[
        keras.callbacks.LearningRateScheduler(lambda e: 0.01 * (1 - e / args.epochs))])
    print(f"trained {args.epochs} epochs in {time.time() - t0:.0f} s")

    t0 = time.time()
    est = tb.ais.log_partition(rbm, n_chains=100, n_betas=args.n_betas, seed=0, data=x_train)
    ll = tb.ais.log_likelihood(rbm, x_test, est)
    print(f"AIS: {est} ({time.time() - t0:.0f} s)")
    neg_f = -float(np.mean(rbm.free_energy(x_test)))
    spread = (f"{neg_f - est.log_z_high:.2f} .. {neg_f - est.log_z_low:.2f}"
              if np.isfinite(est.log_z_low) else
              f"at least {neg_f - est.log_z_high:.2f}; more betas tighten the upper end")
    print(f"average test log-likelihood: {ll.mean():.2f} nats (log Z interval: {spread})")

    from sklearn.linear_model import LogisticRegression

    t0 = time.time()
    probe = LogisticRegression(max_iter=300, C=1.0)
    probe.fit(rbm.transform(x_train[:args.probe_rows]), y_train[:args.probe_rows])
    acc = probe.score(rbm.transform(x_test_grey), y_test)
    print(f"linear probe (logistic regression on {args.probe_rows} rows of hidden means): "
          f"test accuracy {100 * acc:.2f}% ({time.time() - t0:.0f} s)")

    path = tb.viz.plot_filters(rbm.kernel.numpy(), args.out / "filters.png",
                               title=f"RBM 784-{args.n_hidden} filters")
    rbm.save(args.out / "rbm.keras")
    print(f"filters: {path}; model: {args.out / 'rbm.keras'}")


if __name__ == "__main__":
    main()
