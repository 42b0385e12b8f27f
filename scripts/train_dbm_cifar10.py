"""Train the CIFAR-10 Gaussian-Bernoulli-Multinomial DBM (the zoo's `cifar10_gbm_dbm`).

    python scripts/train_dbm_cifar10.py --out runs/cifar10_dbm
    python scripts/train_dbm_cifar10.py --synthetic 500 --layer-sizes 3072 50 20 \\
        --pretrain-epochs 1 --epochs 1 --out /tmp/cifar_smoke      # code-path check

Preprocessing (Krizhevsky 2009): drop the 1,000 least significant singular directions
of the training images, then standardise each pixel (`tfboltz.data.SmoothAndStandardize`,
saved beside the model as ``preprocess.npz``). The model: Gaussian visibles (unit
sigma on standardised data), a Bernoulli middle layer, and a top layer of softmax
groups (`--top-group` units each). Greedy doubled pretraining, then joint mean-field
+ PCD training, checkpointed after each epoch.

CIFAR-10 is read with `tfboltz.data.load_cifar10` (tensorflow-datasets or an .npz
file, `--cifar-npz`); `--synthetic N` runs on N synthetic images instead.
"""

import argparse
import json
import time
from pathlib import Path

import keras

import tfboltz as tb


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layer-sizes", type=int, nargs="+", default=[3072, 5000, 1000])
    p.add_argument("--top-group", type=int, default=10, help="units per softmax group on top")
    p.add_argument("--n-removed", type=int, default=1000,
                   help="least significant singular directions to drop")
    p.add_argument("--pretrain-epochs", type=int, default=20)
    p.add_argument("--pretrain-lr", type=float, default=1e-3)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--n-chains", type=int, default=100)
    p.add_argument("--l2", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cifar-npz", help="an .npz with x_train, y_train, x_test, y_test")
    p.add_argument("--synthetic", type=int, default=0, help="use N synthetic images")
    p.add_argument("--out", type=Path, default=Path("runs/cifar10_dbm"))
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    if args.synthetic:
        x, _ = tb.data.synthetic_cifar10(args.synthetic, seed=args.seed)
    else:
        x, _ = tb.data.load_cifar10("train", path=args.cifar_npz)
    n_removed = min(args.n_removed, x.shape[1] - 1)
    prep = tb.data.SmoothAndStandardize(n_removed).fit(x)
    prep.save(args.out / "preprocess.npz")
    x = prep.transform(x)
    dbm = tb.DBM(args.layer_sizes, visible=tb.units.GaussianUnits(sigma=1.0),
                 top=tb.units.SoftmaxUnits(group_size=args.top_group), n_chains=args.n_chains,
                 l2=args.l2, seed=args.seed)
    t0 = time.time()
    tb.pretrain_dbm(dbm, x, epochs=args.pretrain_epochs, batch_size=args.batch_size,
                    optimizer=lambda: keras.optimizers.SGD(args.pretrain_lr, momentum=0.9),
                    l2=args.l2, verbose=2)
    state = {"pretrain_seconds": time.time() - t0, "epochs_done": 0}
    dbm.compile(optimizer=keras.optimizers.SGD(args.lr, momentum=0.9))

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tmp = args.out / "model.tmp.keras"
            self.model.save(tmp)
            tmp.replace(args.out / "model.keras")
            state["epochs_done"] = epoch + 1
            (args.out / "state.json").write_text(json.dumps(state))

    t0 = time.time()
    dbm.fit(x, batch_size=args.batch_size, epochs=args.epochs, verbose=2,
            callbacks=[keras.callbacks.LearningRateScheduler(
                lambda e: args.lr * (1 - e / args.epochs)), Save()])
    print(f"pretraining {state['pretrain_seconds']:.0f} s, joint training "
          f"{time.time() - t0:.0f} s; model in {args.out / 'model.keras'}")


if __name__ == "__main__":
    main()
