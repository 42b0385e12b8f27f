"""The `tfboltz` command line.

    tfboltz version
    tfboltz eval MODEL.keras [--n-betas 20000] [--n-chains 100]

More commands (list, fetch, finetune, sample, train) arrive with the model zoo.
"""

import argparse
import os
import sys


def _eval(args):
    import keras

    import tfboltz as tb

    model = keras.saving.load_model(args.model)
    x_train, _ = tb.data.load_mnist("train", binarize="stochastic", seed=0)
    x_test, _ = tb.data.load_mnist("test", binarize="stochastic", seed=0)
    est = tb.ais.log_partition(model, n_chains=args.n_chains, n_betas=args.n_betas,
                               seed=args.seed, data=x_train)
    ll = tb.ais.log_likelihood(model, x_test, est)
    print(f"log Z = {est.log_z:.3f} ({est.log_z_low:.3f}, {est.log_z_high:.3f})")
    print(f"average test log-likelihood = {ll.mean():.3f} nats")


def _version(args):
    import keras
    import tensorflow as tf

    import tfboltz

    print(f"tfboltz {tfboltz.__version__} (TensorFlow {tf.__version__}, Keras {keras.__version__})")


def main(argv=None):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(prog="tfboltz", description="Boltzmann machines in Keras")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print versions").set_defaults(func=_version)
    ev = sub.add_parser("eval", help="AIS log Z and MNIST test log-likelihood of an RBM")
    ev.add_argument("model", help="a .keras file of a 784-visible RBM")
    ev.add_argument("--n-betas", type=int, default=20000)
    ev.add_argument("--n-chains", type=int, default=100)
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=_eval)
    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
