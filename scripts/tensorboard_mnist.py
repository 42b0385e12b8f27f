"""TensorBoard on a real MNIST model: a 784-500 PCD RBM trained for a few epochs with
`tb.callbacks.BoltzmannTensorBoard`, then the event files read back and their tags
listed (what `tensorboard --logdir` would show).

    python scripts/tensorboard_mnist.py --out runs/tensorboard_mnist
    tensorboard --logdir runs/tensorboard_mnist          # to look at it
"""

import argparse
import collections
from pathlib import Path

import keras
import tensorflow as tf

import tfboltz as tb


def read_tags(log_dir):
    """{tag: number of records} over every event file under `log_dir`."""
    counts = collections.Counter()
    for path in Path(log_dir).rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                counts[value.tag] += 1
    return dict(sorted(counts.items()))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("runs/tensorboard_mnist"))
    args = p.parse_args(argv)
    x, _ = tb.data.load_mnist("train", binarize="stochastic", seed=0)
    x_test, _ = tb.data.load_mnist("test", binarize="stochastic", seed=0)
    rbm = tb.RBM(784, 500, learning="pcd", sample_visible=True, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    rbm.fit(x, batch_size=100, epochs=args.epochs, validation_data=x_test[:2000], verbose=2,
            callbacks=[tb.callbacks.BoltzmannTensorBoard(args.out, freq=1,
                                                         image_shape=(28, 28))])
    for tag, n in read_tags(args.out).items():
        print(f"{tag}: {n} records")


if __name__ == "__main__":
    main()
