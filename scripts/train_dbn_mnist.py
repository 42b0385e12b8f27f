"""Train the MNIST DBN of Hinton, Osindero & Teh (2006): 784-500-500-2000 with the ten
labels joined to the top RBM; greedy training, then up-down fine-tuning.

    python scripts/train_dbn_mnist.py --out runs/dbn      # greedy, then 60 up-down epochs
    tfboltz train mnist_dbn                                # the zoo DBN's recipe, in legs

Data: the 60,000 MNIST training images with grey levels read as Bernoulli
probabilities (as the 2006 paper does). Greedy training fits each RBM with CD-1
through `RBM.fit`; up-down fine-tuning runs through `DBN.fit` with CD-`--k` at the
top. The generative classification error on the 10,000 test images (label chosen by
the top RBM's free energy) is measured after greedy training and every
`--eval-every` up-down epochs, and written with the wall-clock of each phase to
``state.json``. A checkpoint (``model.keras``) is written atomically after greedy
training and after each up-down epoch; ``--resume`` continues from the last one.

Up-down runs as one leg (``--epochs``, ``--lr``, ``--k`` or ``--k-schedule``) or as
several (``--legs EPOCHS:LR:K[:EMA[:DISCRIMINATIVE]] ...``), each with a fresh SGD
optimizer. A leg with EMA keeps an exponential moving average of the weights (Keras's
``use_ema`` with ``SwapEMAWeights``): the average is what is measured, checkpointed and carried into
the next leg, and the last step's own error is recorded beside it
(``test_error_raw``). ``--discriminative W`` adds the label cross-entropy of the
free-energy classifier to the top RBM's up-down update with weight W (hybrid
training, `tfboltz.DBN`'s ``discriminative``; a leg's fifth field overrides it); 0, the
default, is the paper's purely generative up-down.
"""

import argparse
import csv
import json
import time
from pathlib import Path
from typing import NamedTuple, Optional

import keras
import numpy as np

import tfboltz as tb
from tfboltz import cli


class Leg(NamedTuple):
    """A leg of up-down training: its epochs, SGD rate, Gibbs steps at the top, the
    momentum of the moving average of the weights it keeps (None: none) and the weight
    of the discriminative term (None: ``--discriminative``)."""

    epochs: int
    lr: float
    k: int
    ema: Optional[float] = None
    discriminative: Optional[float] = None


LEG_FORMAT = "EPOCHS:LR:K[:EMA[:DISCRIMINATIVE]]"


def parse_leg(text):
    """A `Leg` from ``EPOCHS:LR:K[:EMA[:DISCRIMINATIVE]]``, EMA ``-`` for none (e.g.
    ``40:0.01:10``, ``20:0.01:10:0.9995``, ``20:0.01:10:0.9995:10``)."""
    parts = text.split(":")
    try:
        if not 3 <= len(parts) <= 5:
            raise ValueError
        optional = [None if p == "-" else float(p) for p in parts[3:]]
        leg = Leg(int(parts[0]), float(parts[1]), int(parts[2]), *optional)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"Expected a leg as {LEG_FORMAT}. Received: {text!r}") from None
    if leg.epochs < 1 or leg.lr <= 0 or leg.k < 1 or not (
            leg.ema is None or 0 < leg.ema < 1) or (leg.discriminative or 0) < 0:
        raise argparse.ArgumentTypeError(
            "Expected a leg with at least 1 epoch, a positive rate, at least 1 Gibbs step, "
            "an average momentum in (0, 1) and a non-negative discriminative weight. "
            f"Received: {text!r}")
    return leg


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer-sizes", type=int, nargs="+", default=[784, 500, 500, 2000])
    p.add_argument("--pretrain-epochs", type=int, nargs="+", default=[30],
                   help="epochs of each greedy RBM (one value for all, or one each)")
    p.add_argument("--pretrain-lr", type=float, default=0.01)
    p.add_argument("--l2", type=float, default=2e-4)
    p.add_argument("--epochs", type=int, default=60, help="up-down epochs")
    p.add_argument("--lr", type=float, default=0.001, help="up-down SGD learning rate")
    p.add_argument("--momentum", type=float, default=0.9, help="up-down momentum")
    p.add_argument("--k", type=int, default=3, help="Gibbs steps at the top in up-down")
    p.add_argument("--ema", type=float, default=None,
                   help="keep an exponential moving average of the up-down weights with "
                        "this momentum (e.g. 0.9995) and measure and save it, not the last "
                        "step's weights (Keras's `use_ema` and `SwapEMAWeights`)")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--eval-every", type=int, default=10)
    p.add_argument("--k-schedule", type=int, nargs="+", default=None,
                   help="Gibbs steps at the top for equal parts of the up-down epochs "
                        "(the paper's 3 6 10); overrides --k")
    p.add_argument("--discriminative", type=float, default=0.0,
                   help="weight of the label cross-entropy added to the top RBM's up-down "
                        "update (`DBN(discriminative=...)`; 0: the paper's generative "
                        "up-down)")
    p.add_argument("--legs", type=parse_leg, nargs="+", default=None,
                   metavar=LEG_FORMAT,
                   help="up-down in legs, each with a fresh optimizer, its own rate, Gibbs "
                        "steps at the top and (optionally) weight average and "
                        "discriminative weight; overrides --epochs, --lr, --k, "
                        "--k-schedule and --ema")
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--validation", type=int, default=0,
                   help="hold out the last N of the training images and report the "
                        "error on them instead of the test set (to choose settings)")
    p.add_argument("--from-pretrained", type=Path, default=None,
                   help="start up-down from this greedy-trained model (.keras)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/dbn"))
    p.add_argument("--resume", action="store_true")
    return p.parse_args(argv)


def save(model, out, state, name="model"):
    """Checkpoint under a temporary name, then rename into place; the state last, and
    ``log.csv`` from the state's per-epoch metrics (one column per metric any leg
    logged, empty where a leg did not log it)."""
    tmp = out / f"{name}.tmp.keras"
    model.save(tmp)
    tmp.replace(out / f"{name}.keras")
    cli.write_json(out / "state.json", state)
    rows = state.get("history", [])
    columns = ["epoch", *sorted({key for row in rows for key in row} - {"epoch"})]
    tmp_log = out / "log.tmp.csv"
    with open(tmp_log, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    tmp_log.replace(out / "log.csv")


def test_error(dbn, x_test, y_test):
    """Generative classification error (%) by the top RBM's label free energies."""
    return float(100.0 * np.mean(dbn.classify(x_test).argmax(1) != y_test))


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    x, y = tb.data.load_mnist("train")
    if args.validation:
        # Settings are chosen on held-out training images; the test set stays unseen.
        x_test, y_test = x[-args.validation:], y[-args.validation:]
        x, y = x[:-args.validation], y[:-args.validation]
    else:
        x_test, y_test = tb.data.load_mnist("test")
    x, y = x[: args.n_train], y[: args.n_train]
    state_path = args.out / "state.json"
    if args.resume and state_path.exists():
        state = json.loads(state_path.read_text())
        dbn = keras.saving.load_model(args.out / "model.keras")
        print(f"resuming after {state['epochs_done']} up-down epochs")
    elif args.from_pretrained is not None:
        state = {"args": {k: str(v) for k, v in vars(args).items()}, "epochs_done": 0,
                 "pretrain_seconds": None, "updown_seconds": 0.0, "test_error": {}}
        dbn = keras.saving.load_model(args.from_pretrained)
        dbn.k = args.k
        state["test_error"]["0"] = test_error(dbn, x_test, y_test)
        print(f"from {args.from_pretrained}: generative error {state['test_error']['0']:.2f}%")
    else:
        state = {"args": {k: str(v) for k, v in vars(args).items()}, "epochs_done": 0,
                 "pretrain_seconds": None, "updown_seconds": 0.0, "test_error": {}}
        dbn = tb.DBN(args.layer_sizes, num_classes=10, k=args.k, l2=args.l2, seed=args.seed)
        t0 = time.time()
        epochs = args.pretrain_epochs
        tb.pretrain_dbn(dbn, x, y, epochs=epochs[0] if len(epochs) == 1 else epochs,
                        batch_size=args.batch_size,
                        optimizer=lambda: keras.optimizers.SGD(args.pretrain_lr, momentum=0.9),
                        verbose=2)
        state["pretrain_seconds"] = time.time() - t0
        state["test_error"]["0"] = test_error(dbn, x_test, y_test)
        print(f"greedy training took {state['pretrain_seconds']:.0f} s; generative test "
              f"error {state['test_error']['0']:.2f}%")
        save(dbn, args.out, state, "pretrained")
        save(dbn, args.out, state)
    state["evaluated_on"] = (f"validation: the last {args.validation} training images"
                             if args.validation else "test")
    legs = args.legs or [Leg(args.epochs, args.lr, args.k, args.ema)]
    total = sum(leg.epochs for leg in legs)

    def measured(epoch):
        return (epoch + 1) % args.eval_every == 0 or epoch + 1 == total

    class Save(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_epoch_end(self, epoch, logs=None):
            state["epochs_done"] = epoch + 1
            state["updown_seconds"] += time.time() - self.t0
            state.setdefault("history", []).append(
                {"epoch": epoch + 1, "k": self.model.k,
                 **{key: float(value) for key, value in (logs or {}).items()}})
            if measured(epoch):
                err = test_error(self.model, x_test, y_test)
                state["test_error"][str(epoch + 1)] = err
                print(f"epoch {epoch + 1}: generative test error {err:.2f}%", flush=True)
            save(self.model, args.out, state)

    class RawError(keras.callbacks.Callback):
        """With an average kept: the error of the last step's weights, before the
        average is swapped in for `Save` (state["test_error_raw"])."""

        def on_epoch_end(self, epoch, logs=None):
            if measured(epoch):
                state.setdefault("test_error_raw", {})[str(epoch + 1)] = test_error(
                    self.model, x_test, y_test)

    start = 0
    for leg in legs:
        end, first = start + leg.epochs, start
        start = end
        if state["epochs_done"] >= end:
            continue
        discriminative = args.discriminative if leg.discriminative is None \
            else leg.discriminative
        if dbn.discriminative != discriminative:
            # The same weights in a DBN whose up-down has the other objective.
            weights = dbn.get_weights()
            dbn = tb.DBN.from_config({**dbn.get_config(), "discriminative": discriminative})
            dbn.set_weights(weights)
        # Each leg (and a --resume) starts a fresh optimizer: no momentum carried over.
        ema = {} if leg.ema is None else {"use_ema": True, "ema_momentum": leg.ema}
        dbn.compile(optimizer=keras.optimizers.SGD(leg.lr, momentum=args.momentum, **ema))
        dbn.k = leg.k
        callbacks = []
        if args.k_schedule and not args.legs:
            part = -(-leg.epochs // len(args.k_schedule))
            callbacks.append(tb.callbacks.KScheduler(
                lambda e: args.k_schedule[min(e // part, len(args.k_schedule) - 1)]))
        if leg.ema is not None:
            callbacks += [RawError(), keras.callbacks.SwapEMAWeights(swap_on_epoch=True)]
        print(f"up-down epochs {first + 1}-{end}: SGD {leg.lr:g}, momentum {args.momentum:g}"
              f", CD-{leg.k} at the top" + ("" if leg.ema is None else
                                            f", weights averaged ({leg.ema:g})")
              + (f", discriminative weight {discriminative:g}" if discriminative else ""),
              flush=True)
        dbn.fit(x, y, batch_size=args.batch_size, epochs=end,
                initial_epoch=max(state["epochs_done"], first), verbose=2,
                callbacks=[*callbacks, Save()])
    print(f"up-down: {state['updown_seconds']:.0f} s in total; test error by epoch: "
          f"{state['test_error']}")


if __name__ == "__main__":
    main()
