"""What the soft targets of knowledge distillation look like on MNIST.

    python docs/experiments/scripts/distillation_targets.py A.keras B.keras C.keras \\
        --temperatures 1 2 10 --json out.json

For fine-tuned MNIST classifiers (`classifier.keras` files of scripts/finetune_mnist.py)
used as teachers, computes their ensemble's log-probabilities
(`tb.fine_tuning.log_probabilities`, as `finetune_mnist(teachers=...)` does) on the rows
a student is fitted to (the first 55,000 training images), on the 5,000 held-out ones
and on the test set, and prints for each temperature T the soft targets
softmax(log_p / T) that `tb.fine_tuning.Distillation` fits: the mean and the median
probability they give the labelled class, and the mean entropy in nats. Also the
ensemble's error on each split and the median of its largest probability at T = 1.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfboltz as tb  # noqa: E402


def soft_targets(log_p, temperature):
    """softmax(log_p / T) per row, float64."""
    z = log_p.astype("float64") / temperature
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def summarize(log_p, labels, temperatures):
    """Error, confidence and, for each temperature, the targets' mass on the label."""
    p1 = soft_targets(log_p, 1.0)
    out = {"rows": int(len(labels)),
           "error_percent": float(100 * np.mean(p1.argmax(axis=1) != labels)),
           "median_largest_probability": float(np.median(p1.max(axis=1)))}
    for t in temperatures:
        q = soft_targets(log_p, t)
        on_label = q[np.arange(len(labels)), labels]
        entropy = -np.sum(q * np.log(np.maximum(q, 1e-300)), axis=1)
        out[f"T={t:g}"] = {"mean_label_probability": float(on_label.mean()),
                           "median_label_probability": float(np.median(on_label)),
                           "mean_entropy_nats": float(entropy.mean())}
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teachers", nargs="+", help="fine-tuned classifier .keras files")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[1.0, 2.0, 10.0])
    parser.add_argument("--n-val", type=int, default=5000,
                        help="the last training rows, held out (finetune_mnist's default)")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)
    if any(t <= 0 for t in args.temperatures):
        parser.error(f"Expected temperatures > 0. Received: {args.temperatures}")
    if args.n_val < 0:
        parser.error(f"Expected --n-val >= 0. Received: {args.n_val}")
    missing = [p for p in args.teachers if not Path(p).is_file()]
    if missing:
        parser.error(f"Teacher files not found: {missing}")

    teachers = [keras.saving.load_model(p, compile=False) for p in args.teachers]
    x, y = tb.data.load_mnist("train")
    x_test, y_test = tb.data.load_mnist("test")
    log_p = tb.fine_tuning.log_probabilities(teachers, np.concatenate([x, x_test]))
    n_fit = len(x) - args.n_val
    if n_fit < 1:
        raise SystemExit(f"--n-val {args.n_val} leaves no fitted rows of {len(x)}")
    splits = {"fitted": (log_p[:n_fit], y[:n_fit]),
              "held_out": (log_p[n_fit:len(x)], y[n_fit:]),
              "test": (log_p[len(x):], y_test)}
    result = {"teachers": args.teachers, "temperatures": args.temperatures,
              **{name: summarize(lp, labels.astype(int), args.temperatures)
                 for name, (lp, labels) in splits.items()}}
    for name in splits:
        r = result[name]
        print(f"{name}: {r['rows']} rows, ensemble error {r['error_percent']:.2f}%, "
              f"median largest probability {r['median_largest_probability']:.7f}")
        for t in args.temperatures:
            s = r[f"T={t:g}"]
            print(f"  T={t:g}: probability on the label mean {s['mean_label_probability']:.4f}"
                  f" median {s['median_label_probability']:.4f}, "
                  f"entropy {s['mean_entropy_nats']:.3f} nats")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1) + "\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
