"""Fine-tune an MNIST RBM or DBM as a `keras.Sequential` classifier; report test error.

    python scripts/finetune_mnist.py runs/dbm/model.keras --out runs/dbm_clf

`model.to_sequential(10)` gives the classifier; for a DBM its first layer computes the
mean-field-augmented input ``[v, q(h_2)]`` (frozen). Inputs are the grey-level pixels.
The last 5,000 training images pick the epoch (``--n-val 0``: none are held out, all
60,000 are fitted for ``--epochs`` epochs and the last weights kept); the test set is
scored once. The classifier is saved (``classifier.keras``), exported as a SavedModel,
and the export is reloaded in a fresh process to check its predictions. See
`tfboltz.experiments`.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import tfboltz as tb  # noqa: E402
from tfboltz import cli  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an RBM, a DBM or a DBN: a preset name (mnist_dbm) or "
                                 "directory, or a .keras or .weights.h5 file "
                                 "(tfboltz.zoo.from_preset)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: decay the learning rate to 0 over the run")
    cli.add_optimizer_arguments(p)
    p.add_argument("--dropout", type=float, nargs="+", default=[0.0],
                   help="dropout before each Dense layer: one rate, or one per Dense layer")
    p.add_argument("--n-train", type=int, default=None,
                   help="labelled rows (default: all 55,000 after the held-out 5,000)")
    p.add_argument("--n-val", type=int, default=5000,
                   help="training rows held out to pick the epoch; 0 fits all 60,000 "
                        "for exactly --epochs epochs and keeps the last weights")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/dbm_clf"))
    args = p.parse_args(argv)
    model = tb.zoo.from_preset(args.model)
    result = tb.experiments.finetune_mnist(
        model, args.out, epochs=args.epochs, lr=args.lr, batch_size=args.batch_size,
        dropout=args.dropout[0] if len(args.dropout) == 1 else args.dropout,
        n_train=args.n_train, n_val=args.n_val, seed=args.seed,
        lr_schedule=args.lr_schedule, **cli.finetune_options(args))
    figures = {k: v for k, v in result.items() if k != "history"}
    print(json.dumps({"model": args.model, **figures}, indent=1))
    print(f"per-epoch metrics: {args.out / 'result.json'} (\"history\")")


if __name__ == "__main__":
    main()
