"""How `fit` reads its data: the visible rows of an input, rows read ahead for the
data-dependent initialisation and the monitors, and the seeded epoch order."""

import keras
import numpy as np
import tensorflow as tf

#: Rows of the training data used for data-dependent initialisation and the
#: per-epoch free-energy gap.
MONITOR_ROWS = 1000


def as_rows(data):
    """Return the `x` part of `data` (an array, an `(x, y)` tuple or a tensor)."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x


def is_stream(x):
    """Data that can only be iterated once (a generator or a `keras.utils.PyDataset`)."""
    return isinstance(x, keras.utils.PyDataset) or callable(getattr(x, "__next__", None))


def take_rows(x, n):
    """Up to `n` rows of `x` (array, tensor or `tf.data.Dataset`) as numpy float32.

    Returns None for streams, which cannot be read ahead without consuming them.
    """
    if is_stream(x):
        return None
    if isinstance(x, tf.data.Dataset):
        rows, count = [], 0
        for batch in x:
            batch = np.asarray(as_rows(batch))
            rows.append(batch)
            count += len(batch)
            if count >= n:
                break
        return np.concatenate(rows)[:n].astype("float32") if rows else None
    return np.asarray(x[:n], dtype="float32")


class EpochOrder(keras.callbacks.Callback):
    """Tells the input pipeline of `epoch_ordered_batches` which epoch begins."""

    def __init__(self):
        super().__init__()
        self.epoch = tf.Variable(0, dtype="int64", trainable=False)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


def epoch_ordered_batches(x, batch_size, seed):
    """Batches of the rows of `x` in an order that depends only on `seed` and the epoch.

    Epoch ``e`` visits the rows in the permutation drawn statelessly from
    ``(seed, e)``, so a run resumed at epoch ``e`` in a new process sees the data in
    the order an uninterrupted run would. Shuffling row indices and gathering batches
    avoids buffering the rows. Returns ``(dataset, callback)``; the callback must run
    in `fit` to advance the epoch.
    """
    order = EpochOrder()
    rows = tf.constant(x)
    n = len(x)

    def permuted_batches(_):
        key = tf.stack([tf.constant(seed, "int64"), order.epoch.read_value()])
        perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype="int64"), seed=key)
        return tf.data.Dataset.from_tensor_slices(perm).batch(batch_size)

    dataset = (tf.data.Dataset.from_tensors(0).flat_map(permuted_batches)
               .apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
               .map(lambda i: tf.gather(rows, i)).prefetch(1))
    return dataset.with_options(input_options()), order


def input_options():
    """`tf.data.Options` of tfboltz's input pipelines: one input thread and no
    autotuning. On a small CPU tf.data's tuning threads compete with the train step
    (seen: some epochs 50-60% slower at random)."""
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return options
