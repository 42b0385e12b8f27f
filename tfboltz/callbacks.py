"""Callbacks: per-epoch schedules for the hyperparameters that Keras's own callbacks
don't cover, and TensorBoard logging of weights, filters and fantasy particles.

The learning rate follows `keras.callbacks.LearningRateScheduler` or a
`keras.optimizers.schedules.LearningRateSchedule`, as for any Keras model.
"""

import keras

from tfboltz import validation


class KScheduler(keras.callbacks.Callback):
    """Sets the number of Gibbs steps ``k`` of an RBM at the start of each epoch.

    Args:
        schedule: function ``epoch (0-based) -> k``, or a list (the last entry holds
            for later epochs).

    Example:
        >>> rbm.fit(x, epochs=30, callbacks=[KScheduler(lambda e: 1 + e // 10)])
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        k = _value(self.schedule, epoch)
        self.model.k.assign(validation.positive_int("k", k))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["k"] = int(self.model.k.numpy())


class MomentumScheduler(keras.callbacks.Callback):
    """Sets the momentum of a Keras `SGD` optimizer at the start of each epoch.

    Keras bakes an SGD momentum into the compiled train function, so a change of
    value retraces it once (a second or so); constant stretches cost nothing.

    Args:
        schedule: function ``epoch (0-based) -> momentum``, or a list.

    Example:
        >>> MomentumScheduler(lambda e: 0.5 if e < 5 else 0.9)  # Hinton's guide
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        value = validation.non_negative_float("momentum", _value(self.schedule, epoch))
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "momentum"):
            raise ValueError(
                f"Expected an optimizer with a `momentum` argument, such as SGD. "
                f"Received: {type(optimizer).__name__}"
            )
        if value > 0 and optimizer.momentum == 0:
            raise ValueError(
                "Expected the optimizer to be compiled with a non-zero momentum, so "
                "that its velocity slots exist. Received: momentum=0"
            )
        if value != optimizer.momentum:
            optimizer.momentum = value
            self.model.make_train_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["momentum"] = float(self.model.optimizer.momentum)


def _value(schedule, epoch):
    if callable(schedule):
        return schedule(epoch)
    schedule = list(schedule)
    return schedule[min(epoch, len(schedule) - 1)]


class BoltzmannTensorBoard(keras.callbacks.Callback):
    """TensorBoard logging for Boltzmann machines during `fit`.

    Every `freq` epochs writes, under `log_dir`: the epoch's logs as scalars, a
    histogram of every weight (kernels, biases, sigmas), the first-layer filters as
    an image of tiles, and the fantasy particles (PCD chains of an RBM, the visible
    layer of a DBM's particles) as an image. Images need `image_shape` (the visible
    layer reshaped, e.g. (28, 28)); without it only scalars and histograms are written.

    Args:
        log_dir: directory of the event files (``tensorboard --logdir log_dir``).
        freq: write every `freq` epochs.
        image_shape: shape of one visible row as an image.
        n_images: filters and particles shown.
    """

    def __init__(self, log_dir, freq=1, image_shape=None, n_images=64):
        super().__init__()
        self.log_dir = str(log_dir)
        self.freq = validation.positive_int("freq", freq)
        self.image_shape = image_shape
        self.n_images = validation.positive_int("n_images", n_images)
        self._writer = None

    def on_train_begin(self, logs=None):
        import tensorflow as tf

        self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()

    def _images(self):
        from tfboltz import viz

        model = self.model
        kernel = getattr(model, "kernel", None)
        if kernel is None and hasattr(model, "kernels"):
            kernel = model.kernels[0]
        out = {}
        if kernel is not None:
            out["filters"] = viz.tile_images(kernel.numpy()[:, :self.n_images].T,
                                             self.image_shape)
        chains = getattr(model, "persistent_chains", None)
        if chains is None and hasattr(model, "particles"):
            chains = model.particles[0]
        if chains is not None:
            out["fantasy_particles"] = viz.tile_images(chains.numpy()[:self.n_images],
                                                       self.image_shape)
        return out

    def on_epoch_end(self, epoch, logs=None):
        import tensorflow as tf

        if (epoch + 1) % self.freq:
            return
        with self._writer.as_default(step=epoch + 1):
            for name, value in (logs or {}).items():
                tf.summary.scalar(name, float(value))
            for var in self.model.weights:
                if "float" in str(var.dtype):
                    tf.summary.histogram(var.path, var.numpy())
            if self.image_shape is not None:
                for name, grid in self._images().items():
                    tf.summary.image(name, grid[None, :, :, None])
        self._writer.flush()
