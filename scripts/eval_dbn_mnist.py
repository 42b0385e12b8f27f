"""Measure an MNIST DBN (784-...-top with ten labels joined at the top): its generative
classification error on the 10,000 test images and its variational lower bound on the
test log-likelihood.

    python scripts/eval_dbn_mnist.py mnist_dbn --json docs/results/mnist_dbn_eval.json
    python scripts/eval_dbn_mnist.py runs/dbn/model.keras --n-betas 2000   # quicker

Generative classification: each test image (grey levels, as in training) gets the label
whose joint configuration with the image's features has the lowest free energy in the
top RBM (`DBN.classify`), as in Hinton, Osindero & Teh (2006).

The bound (Salakhutdinov & Murray 2008; `tfboltz.ais.dbn_bound`): the recognition
weights as the approximate posterior, the labels summed out, the top RBM's log Z by AIS
(`--n-betas` intermediate distributions, `--n-chains` chains, base-rate proposal fitted
to the training images' recognition means); on the test images binarised once with
seed 0, as the likelihood figures of the DBM are. `--history STATE.json ...` also draws
the test error against up-down epochs from training runs' state files (several: runs
that continued one another, drawn as one curve of legs).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

import tfboltz as tb
from tfboltz import cli


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a preset name (mnist_dbn) or a .keras / preset path")
    p.add_argument("--n-betas", type=int, default=20000)
    p.add_argument("--n-chains", type=int, default=100)
    p.add_argument("--n-samples", type=int, default=10,
                   help="draws from the recognition posterior per test image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-bound", action="store_true", help="the classification error only")
    p.add_argument("--train-error", action="store_true",
                   help="also the generative error on the 60,000 training images (does "
                        "the network underfit?)")
    p.add_argument("--history", type=Path, nargs="+", default=None,
                   help="train_dbn_mnist.py state.json files: plot their test errors "
                        "(several: runs that continued one another, in order, the epochs "
                        "counting on)")
    p.add_argument("--history-labels", nargs="+", default=None,
                   help="a legend entry for each --history file")
    p.add_argument("--figure", type=Path, default=Path("dbn_error_by_epoch.png"))
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def lineage_errors(states):
    """The errors of runs that continued one another (each run's epoch 0 is the last
    epoch of the run before), as one list of ``(epoch, error, leg)``; the epochs count
    on across runs, and each run's epoch 0 is dropped but for the first run's."""
    points, offset = [], 0
    for leg, state in enumerate(states):
        errors = sorted((int(k), v) for k, v in state["test_error"].items())
        points += [(offset + e, v, leg) for e, v in errors if leg == 0 or e > 0]
        offset += state["epochs_done"]
    return points


def plot_errors(states, path, labels=None):
    """The test errors of `states` (a list of state dicts, see `lineage_errors`) against
    up-down epochs, one line per run, into the image file `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = lineage_errors(states)
    fig, ax = plt.subplots(figsize=(5.5 if len(states) > 1 else 5, 3.2))
    previous = []
    for leg in range(len(states)):
        part = previous[-1:] + [p for p in points if p[2] == leg]  # joined to the run before
        ax.plot([e for e, _, _ in part], [v for _, v, _ in part], "o-", ms=3,
                label=labels[leg] if labels else None)
        previous = part
    ax.axhline(1.25, color="grey", ls="--", label="Hinton et al. 2006: 1.25%")
    ax.set_xlabel("up-down epochs")
    on = "validation" if states[0].get("evaluated_on", "test").startswith(
        "validation") else "test"
    ax.set_ylabel(f"generative {on} error (%)")
    ax.legend(fontsize=7 if len(states) > 1 else None)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    if args.history_labels and len(args.history_labels) != len(args.history or []):
        raise ValueError("Expected one --history-labels entry per --history file. "
                         f"Received: {len(args.history_labels)} labels for "
                         f"{len(args.history or [])} files")
    dbn = tb.DBN.from_preset(args.model)
    out = {"model": args.model}
    x_test, y_test = tb.data.load_mnist("test")
    t0 = time.time()
    predicted = dbn.classify(x_test).argmax(1)
    out["generative_test_error"] = float(100.0 * np.mean(predicted != y_test))
    out["classify_seconds"] = time.time() - t0
    print(f"generative test error {out['generative_test_error']:.2f}%", flush=True)
    if args.train_error:
        x_train, y_train = tb.data.load_mnist("train")
        out["generative_train_error"] = float(
            100.0 * np.mean(dbn.classify(x_train).argmax(1) != y_train))
        print(f"generative training error {out['generative_train_error']:.2f}%", flush=True)
    if not args.no_bound:
        x_train, _ = tb.data.load_mnist("train", binarize="stochastic", seed=0)
        x_bin, _ = tb.data.load_mnist("test", binarize="stochastic", seed=0)
        t0 = time.time()
        est = tb.ais.log_partition(dbn, n_chains=args.n_chains, n_betas=args.n_betas,
                                   seed=args.seed, data=x_train)
        out.update({"log_z": est.log_z, "log_z_low": est.log_z_low,
                    "log_z_high": est.log_z_high, "n_betas": args.n_betas,
                    "n_chains": args.n_chains, "ais_seconds": time.time() - t0})
        t0 = time.time()
        bound = tb.ais.dbn_bound(dbn, x_bin, est, n_samples=args.n_samples, seed=args.seed)
        out["test_bound"] = float(bound.mean())
        out["test_bound_sem"] = float(bound.std() / np.sqrt(len(bound)))
        out["bound_seconds"] = time.time() - t0
        print(f"log Z {est.log_z:.3f} ({est.log_z_low:.3f}, {est.log_z_high:.3f}); "
              f"test bound {out['test_bound']:.2f} nats", flush=True)
    if args.history is not None:
        plot_errors([json.loads(path.read_text()) for path in args.history], args.figure,
                    args.history_labels)
        out["figure"] = str(args.figure)
    if args.json is not None:
        cli.write_json(args.json, out)
    return out


if __name__ == "__main__":
    main()
