"""Callbacks: per-epoch schedules for the hyperparameters that Keras's own callbacks
don't cover, exact checkpoint and resume of a training run, and TensorBoard logging
of weights, filters and fantasy particles.

The learning rate follows `keras.callbacks.LearningRateScheduler` or a
`keras.optimizers.schedules.LearningRateSchedule`, as for any Keras model.
"""

import shutil
from pathlib import Path

import keras
import tensorflow as tf

from tfboltz import validation


class KScheduler(keras.callbacks.Callback):
    """Sets the number of Gibbs steps ``k`` of an RBM, a DBM or a DBN at the start of
    each epoch (an RBM's ``k`` is a variable of the compiled step; a DBM's or DBN's
    sweeps are unrolled in it, so a change of value retraces it once).

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
        k = validation.positive_int("k", _value(self.schedule, epoch))
        current = getattr(self.model, "k", None)
        if current is None:
            raise ValueError("Expected a model with a number of Gibbs steps `k` (an RBM, "
                             f"a DBM or a DBN). Received: {type(self.model).__name__}")
        if isinstance(current, keras.Variable):
            current.assign(k)
        elif k != current:
            self.model.k = k
            self.model.make_train_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["k"] = int(keras.ops.convert_to_numpy(self.model.k))


class MomentumScheduler(keras.callbacks.Callback):
    """Sets the momentum of a Keras `SGD` optimizer at the start of each epoch.

    Keras bakes an SGD momentum into the compiled train function, so a change of
    value retraces it once (a second or so); constant stretches cost nothing. A
    tfboltz model compiled with its default optimizer gets one of these from `fit`
    (`EnergyModel.default_schedules`: 0.5 for 5 epochs, then 0.9), unless the
    callbacks passed to `fit` hold one already.

    Args:
        schedule: function ``epoch (0-based) -> momentum``, or a list (the last entry
            holds for later epochs); each value in [0, 1], as Keras's `SGD` takes.

    Example:
        >>> MomentumScheduler(lambda e: 0.5 if e < 5 else 0.9)  # Hinton's guide
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        value = validation.non_negative_float("momentum", _value(self.schedule, epoch))
        if value > 1:
            raise ValueError("Invalid value received for argument `momentum`. Expected a "
                             f"float in [0, 1]. Received: momentum={value!r}")
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


class TrainingCheckpoint(keras.callbacks.Callback):
    """Checkpoints a `fit` run so that an interrupted run resumes exactly.

    Saves every variable of the model (weights, persistent chains, the random
    generators' states, ``k``) and of its optimizer (step count, momentum or Adam
    slots), with the position in training (epoch and batches done in it), at the
    end of every epoch and, with `save_every`, every that many steps. Started
    again with the same arguments, the same `fit` call restores the latest
    checkpoint and carries on from that position: the epoch number (and so every
    per-epoch schedule), the learning-rate schedule's step and the data order are
    those of the uninterrupted run. For a seeded RBM or DBM fitted on an array the
    resumed run ends with exactly the weights of an uninterrupted one on the same
    device (tested); in the middle of an epoch it skips the batches already
    trained on. A DBN's up-down `fit` resumes at the saved batch too, but its data
    order comes from Keras's shuffling (the global random state), so it is exact
    only where that is. Other Keras models resume at the start of the interrupted
    epoch.

    Checkpoints go through `tf.train.CheckpointManager`: the files of a new
    checkpoint are written first and the index that names the latest one is
    replaced atomically afterwards, so a crash while saving leaves the last good
    checkpoint in charge.

    Args:
        directory: where the checkpoints go.
        save_every: also save every this many training steps (None: epoch ends
            only). Steps are counted in whole calls of the compiled train function
            (`steps_per_execution` batches each).
        max_to_keep: checkpoints kept.
        delete_on_completion: remove the directory when `fit` completes all its
            epochs (as `keras.callbacks.BackupAndRestore` does), so that the next
            run starts afresh.

    Example:
        >>> ckpt = tb.callbacks.TrainingCheckpoint("runs/rbm/ckpt", save_every=100)
        >>> rbm.fit(x, batch_size=100, epochs=50, callbacks=[ckpt])  # rerun to resume
    """

    def __init__(self, directory, save_every=None, max_to_keep=2, delete_on_completion=False):
        super().__init__()
        self.directory = Path(directory)
        self.save_every = None if save_every is None else validation.positive_int(
            "save_every", save_every)
        self.max_to_keep = validation.positive_int("max_to_keep", max_to_keep)
        self.delete_on_completion = bool(delete_on_completion)
        self._manager = None
        self.restored_from = None

    def _checkpoint(self):
        if self._manager is None:
            model = self.model
            if not model.optimizer.built:
                with model.distribute_strategy.scope():
                    model.optimizer.build(model.trainable_variables)
            self._position = tf.Variable([0, 0], dtype="int64", trainable=False)
            ckpt = tf.train.Checkpoint(
                model=[v.value for v in model.variables],
                optimizer=[v.value for v in model.optimizer.variables],
                position=self._position)
            self._manager = tf.train.CheckpointManager(ckpt, str(self.directory),
                                                       max_to_keep=self.max_to_keep)
        return self._manager

    def on_train_begin(self, logs=None):
        manager = self._checkpoint()
        self._offset = 0
        if manager.latest_checkpoint is None:
            return
        manager.checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
        epoch, done = (int(v) for v in self._position.numpy())
        steps = self.params.get("steps")
        if steps and done >= steps:
            epoch, done = epoch + 1, 0
        self.restored_from = manager.latest_checkpoint
        set_initial_epoch(self.model, epoch)
        if done and callable(getattr(self.model, "skip_batches", None)):
            # The interrupted epoch's batches come again in the same order (seeded
            # epoch order); the model passes over those it had trained on.
            self.model.skip_batches(done)
            self._offset = done

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = self._last = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        if self.save_every is None:
            return
        step = int(self.model.optimizer.iterations.numpy())
        if step - self._last >= self.save_every:
            self._last = step
            self._save(self._epoch, self._offset + step - self._start)

    def on_epoch_end(self, epoch, logs=None):
        self._offset = 0
        self._save(epoch + 1, 0)

    def on_train_end(self, logs=None):
        set_initial_epoch(self.model, None)
        if self.delete_on_completion and not self.model.stop_training:
            shutil.rmtree(self.directory, ignore_errors=True)
            self._manager = None

    def _save(self, epoch, done):
        self._position.assign([epoch, done])
        self._checkpoint().save()


def set_initial_epoch(model, epoch):
    """Make the `fit` call in progress start at `epoch` (None: clear it).

    Keras has no public way for a callback to move the first epoch of a running `fit`;
    its own `keras.callbacks.BackupAndRestore` sets the private `Model._initial_epoch`,
    which `fit` reads after `on_train_begin`. This is the one place tfboltz relies on
    it; tests/test_checkpoint.py::test_keras_still_reads_initial_epoch fails if Keras
    stops honouring it.
    """
    model._initial_epoch = epoch


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
