"""Train a Bernoulli RBM on MNIST with PCD (the recipe behind the README's RBM figures).

    python scripts/train_rbm_mnist.py --n-hidden 500 --epochs 100 --out runs/rbm500

Training data: the 60,000 MNIST training images, binarised afresh each epoch
(each pixel on with probability equal to its intensity), or their grey levels
(``--data grey``, used for the feature-extraction RBM). The learning rate decays
linearly to zero over the run; momentum goes from 0.5 to 0.9 after 5 epochs.
Checkpoints (``model.keras``) are written each epoch; ``--resume`` continues one.
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

import tfboltz as tb
from tfboltz import validation


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-hidden", type=int, default=500)
    p.add_argument("--learning", choices=["cd", "pcd", "pt"], default=None,
                   help="learning rule (default pcd); on --resume, 'pt' turns a PCD run into "
                        "parallel tempering: same weights, each chain copied to every "
                        "temperature of its ladder")
    p.add_argument("--n-temperatures", type=int, default=20, help="PT: replicas per ladder")
    p.add_argument("--min-beta", type=float, default=0.5, help="PT: lowest inverse temperature")
    p.add_argument("--k", type=int, default=None,
                   help="Gibbs steps per update (default 1; on --resume, the saved k)")
    p.add_argument("--n-chains", type=int, default=100)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--final-lr", type=float, default=0.0)
    p.add_argument("--l2", type=float, default=None,
                   help="L2 weight decay (default 1e-4; on --resume, the saved one unless given)")
    p.add_argument("--n-train", type=int, default=60000)
    p.add_argument("--data", choices=["binarised", "grey"], default="binarised",
                   help="binarise each epoch afresh, or train on the grey levels")
    p.add_argument("--centering", action="store_true",
                   help="learn with the centered gradient (new runs only)")
    p.add_argument("--centering-rate", type=float, default=0.01)
    p.add_argument("--sparsity-cost", type=float, default=0.0)
    p.add_argument("--sparsity-target", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/rbm_mnist"))
    p.add_argument("--resume", action="store_true")
    p.add_argument("--ema", type=float, default=None,
                   help="keep an exponential moving average of the weights with this "
                        "momentum (Keras's use_ema) and end with the averaged weights; on "
                        "--resume this recompiles, starting a fresh optimizer state")
    return p.parse_args(argv)


def to_parallel_tempering(rbm, n_temperatures, min_beta):
    """A PT copy of PCD `rbm`: same weights and k, each chain at every temperature."""
    config = rbm.get_config()
    config.update(learning="pt", n_temperatures=n_temperatures, min_beta=min_beta)
    out = tb.RBM.from_config(config)
    for name in ("kernel", "k", "hidden_activity", "data_initialized"):
        getattr(out, name).assign(getattr(rbm, name))
    out.visible_layer.bias.assign(rbm.visible_layer.bias)
    out.hidden_layer.bias.assign(rbm.hidden_layer.bias)
    out.persistent_chains.assign(np.tile(rbm.persistent_chains.numpy(), (n_temperatures, 1)))
    for mine, theirs in zip(out.offsets, rbm.offsets):
        mine.assign(theirs)
    return out


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    x, _ = tb.data.load_mnist("train")
    x = x[: args.n_train]
    x_val, _ = tb.data.load_mnist("test", binarize="stochastic", seed=1)
    ckpt = args.out / "model.keras"
    if args.resume and ckpt.exists():
        rbm = keras.saving.load_model(ckpt)
        done = int(json.loads((args.out / "state.json").read_text())["epochs_done"])
        converted = args.learning == "pt" and rbm.learning != "pt"
        if converted:
            rbm = to_parallel_tempering(rbm, args.n_temperatures, args.min_beta)
            # PT logs one more column (swap_rate): start a new CSV rather than append
            # rows that no longer match the old header.
            if (args.out / "log.csv").exists():
                (args.out / "log.csv").replace(args.out / "log.before_pt.csv")
            rbm.compile(optimizer=keras.optimizers.SGD(
                args.lr, momentum=0.9, use_ema=args.ema is not None,
                ema_momentum=args.ema or 0.99))
        elif args.learning is not None and args.learning != rbm.learning:
            allowed = f"{rbm.learning} or pt" if rbm.learning == "pcd" else rbm.learning
            raise ValueError(f"Expected --learning {allowed} to resume {ckpt}. "
                             f"Received: --learning {args.learning}")
        if args.k is not None:
            rbm.k.assign(args.k)
        if args.l2 is not None:
            rbm.l2 = validation.non_negative_float("l2", args.l2)
        if args.ema is not None and not converted:
            rbm.compile(optimizer=keras.optimizers.SGD(args.lr, momentum=0.9, use_ema=True,
                                                       ema_momentum=args.ema))
    else:
        learning = args.learning or "pcd"
        rbm = tb.RBM(x.shape[1], args.n_hidden, learning=learning, k=args.k or 1,
                     n_chains=args.n_chains, sample_visible=learning != "cd",
                     n_temperatures=args.n_temperatures, min_beta=args.min_beta,
                     l2=1e-4 if args.l2 is None else args.l2, sparsity_cost=args.sparsity_cost,
                     sparsity_target=args.sparsity_target, centering=args.centering,
                     centering_rate=args.centering_rate, seed=args.seed)
        rbm.compile(optimizer=keras.optimizers.SGD(
            args.lr, momentum=0.5, use_ema=args.ema is not None, ema_momentum=args.ema or 0.99))
        rbm.init_from_data(x if args.data == "grey" else
                           (x > np.random.default_rng(args.seed).random(x.shape)).astype("f4"))
        done = 0

    def lr(epoch):
        return args.lr + (args.final_lr - args.lr) * epoch / args.epochs

    def save(model, epochs_done):
        """Write the checkpoint under a temporary name, then rename it into place."""
        tmp = args.out / "model.tmp.keras"
        model.save(tmp)
        tmp.replace(ckpt)
        (args.out / "state.json").write_text(json.dumps({"epochs_done": epochs_done}))

    class Save(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            save(self.model, epoch + 1)

    t0 = time.time()
    rbm.fit(tb.data.binarized_batches(x, args.batch_size, args.seed, args.data == "binarised"),
            epochs=args.epochs, initial_epoch=done, validation_data=x_val[:2000], verbose=2,
            callbacks=[keras.callbacks.LearningRateScheduler(lr),
                       tb.callbacks.MomentumScheduler(lambda e: 0.5 if e < 5 else 0.9),
                       keras.callbacks.CSVLogger(
                           args.out / "log.csv",
                           append=done > 0 and (args.out / "log.csv").exists()),
                       Save()])
    print(f"trained {args.epochs - done} epochs in {time.time() - t0:.0f} s")
    save(rbm, args.epochs)  # again: `fit` ends by swapping in the averaged weights (--ema)
    rbm.save_weights(args.out / "rbm.weights.h5")


if __name__ == "__main__":
    main()
