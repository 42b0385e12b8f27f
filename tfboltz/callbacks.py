"""Callbacks: per-epoch schedules for the hyperparameters that Keras's own callbacks
don't cover, exact checkpoint and resume of a training run, and TensorBoard logging
of weights, filters and fantasy particles.

The learning rate follows `keras.callbacks.LearningRateScheduler` or a
`keras.optimizers.schedules.LearningRateSchedule`, as for any Keras model.
"""

import os
import re
import shutil
from pathlib import Path

import keras
import tensorflow as tf

from tfboltz import validation
from tfboltz.keras_compat import set_initial_epoch


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
    again with the same arguments, the same `fit` call restores the newest intact
    checkpoint and carries on from that position: the epoch number (and so every
    per-epoch schedule), the learning-rate schedule's step and the data order are
    those of the uninterrupted run. For a seeded RBM or DBM fitted on an array the
    resumed run ends with exactly the weights of an uninterrupted one on the same
    device (tested); in the middle of an epoch it skips the batches already
    trained on. A DBN's up-down `fit` resumes at the saved batch too, but its data
    order comes from Keras's shuffling (the global random state), so it is exact
    only where that is. Other Keras models resume at the start of the interrupted
    epoch.

    Checkpoint ``ckpt-N`` is the files ``ckpt-N.index`` and ``ckpt-N.data-*`` in
    `directory`; each save takes a number above every one there, so it never writes
    over an existing file. A save reads its checkpoint back in full (every tensor's
    checksum), then atomically replaces the state file ``checkpoint`` that lists the
    kept ones, and only then deletes the older ones, so a crash at any point leaves
    the last good checkpoint in place.

    On resume the candidates are the checkpoints named in the state file and those
    found by their files, newest (highest N) first. Each is read back in full before
    it is restored; a missing, short or corrupt file, or one that does not match
    the model, skips it for the next older one, and the model is put back as it was
    if a restore fails part way. `restored_from` and `skipped` say what happened,
    and with `verbose` one line says it too. If checkpoints exist but none is
    intact, `fit` raises a `ValueError` listing each with its reason and deletes
    nothing; a directory without checkpoints starts the run afresh.

    Args:
        directory: where the checkpoints go.
        save_every: also save every this many training steps (None: epoch ends
            only). Steps are counted in whole calls of the compiled train function
            (`steps_per_execution` batches each).
        max_to_keep: checkpoints kept (the newest that were read back intact).
        delete_on_completion: remove the directory when `fit` completes all its
            epochs (as `keras.callbacks.BackupAndRestore` does), so that the next
            run starts afresh.
        verbose: 1 prints one line when a run resumes, naming the checkpoint
            restored and each one skipped with its reason; 0 is silent.

    Attributes:
        restored_from: the prefix of the checkpoint the last `fit` resumed from
            (``directory/ckpt-N``), None if it started afresh.
        skipped: ``(prefix, reason)`` of each newer checkpoint the last `fit`
            could not resume from, newest first.

    Raises:
        ValueError: from `fit`, when `directory` holds checkpoints and none of them
            can be restored.

    Example:
        >>> ckpt = tb.callbacks.TrainingCheckpoint("runs/rbm/ckpt", save_every=100)
        >>> rbm.fit(x, batch_size=100, epochs=50, callbacks=[ckpt])  # rerun to resume
        >>> ckpt.restored_from  # on the rerun: 'runs/rbm/ckpt/ckpt-12', say
    """

    def __init__(self, directory, save_every=None, max_to_keep=2, delete_on_completion=False,
                 verbose=1):
        super().__init__()
        self.directory = Path(directory)
        self.save_every = None if save_every is None else validation.positive_int(
            "save_every", save_every)
        self.max_to_keep = validation.positive_int("max_to_keep", max_to_keep)
        self.delete_on_completion = bool(delete_on_completion)
        if isinstance(verbose, bool) or verbose not in (0, 1):
            raise ValueError("Invalid value received for argument `verbose`. Expected 0 or 1. "
                             f"Received: verbose={verbose!r}")
        self.verbose = verbose
        self.restored_from = None
        self.skipped = []

    def on_train_begin(self, logs=None):
        model = self.model
        if not model.optimizer.built:
            with model.distribute_strategy.scope():
                model.optimizer.build(model.trainable_variables)
        self._position = tf.Variable([0, 0], dtype="int64", trainable=False)
        weights = [v.value for v in model.variables]
        slots = [v.value for v in model.optimizer.variables]
        self._variables = [*weights, *slots, self._position]
        self._checkpoint = tf.train.Checkpoint(model=weights, optimizer=slots,
                                               position=self._position)
        # Restoring creates the checkpoint's save counter; saving only writes it if it
        # exists. Set it to N in ckpt-N, as `tf.train.CheckpointManager` would.
        self._variables.append(self._checkpoint.save_counter)
        self._offset = 0
        self._kept = []
        self.restored_from, self.skipped = None, []
        numbers, state_unreadable = _checkpoint_numbers(self.directory)
        self._next = numbers[0] + 1 if numbers else 1
        if not numbers:
            return
        self._restore(numbers)
        epoch, done = (int(v) for v in self._position.numpy())
        steps = self.params.get("steps")
        if steps and done >= steps:
            epoch, done = epoch + 1, 0
        if self.verbose:
            print(self._resume_message(epoch, done, state_unreadable))
        set_initial_epoch(self.model, epoch)
        if done and callable(getattr(self.model, "skip_batches", None)):
            # The interrupted epoch's batches come again in the same order (seeded
            # epoch order); the model passes over those it had trained on.
            self.model.skip_batches(done)
            self._offset = done

    def _restore(self, numbers):
        """Restore the newest of checkpoints `numbers` (newest first) that reads back
        intact and matches the model, recording the others in `skipped`; with none,
        put the variables back as they were and raise a `ValueError`."""
        before = [v.numpy() for v in self._variables]
        for number in numbers:
            prefix = str(self.directory / f"ckpt-{number}")
            try:
                _read_in_full(prefix)
                status = self._checkpoint.restore(prefix)
                try:
                    status.assert_existing_objects_matched()
                except AssertionError as e:
                    raise ValueError("does not match the model: " + str(e).split(",")[0]) from e
            except Exception as e:
                # Whatever the failure, the next older checkpoint may be intact; and a
                # restore that failed part way has overwritten some variables.
                for v, value in zip(self._variables, before):
                    v.assign(value)
                self.skipped.append((prefix, _reason(e)))
                continue
            self.restored_from = prefix
            self._kept = [number]
            return
        raise ValueError(
            f"Expected an intact checkpoint in {self.directory} to resume from (nothing "
            "was deleted; remove the directory to start afresh). Received: "
            + ", ".join(f"{Path(p).name} ({reason})" for p, reason in self.skipped))

    def _resume_message(self, epoch, done, state_unreadable):
        progress = f"{epoch} epochs" + (f" and {done} batches" if done else "")
        line = f"TrainingCheckpoint: resumed from {self.restored_from} ({progress} done)"
        if self.skipped:
            line += "; skipped " + ", ".join(f"{Path(p).name} ({reason})"
                                             for p, reason in self.skipped)
        if state_unreadable:
            line += "; the state file `checkpoint` names no checkpoint, found them by their files"
        return line

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

    def _save(self, epoch, done):
        """Write checkpoint ``ckpt-<next>``, read it back, name it in the state file
        with the newest kept ones, then delete every other checkpoint."""
        self._position.assign([epoch, done])
        number, self._next = self._next, self._next + 1
        prefix = str(self.directory / f"ckpt-{number}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._checkpoint.save_counter.assign(number)
        self._checkpoint.write(prefix)
        try:
            _read_in_full(prefix)
        except Exception as e:
            raise OSError(f"Checkpoint {prefix} does not read back ({_reason(e)}); the "
                          f"previous ones are kept.") from e
        self._kept = [*self._kept, number][-self.max_to_keep:]
        _write_state(self.directory, self._kept)
        for old in _numbers_on_disk(self.directory):
            if old not in self._kept:
                _delete_checkpoint(self.directory, old)


_CHECKPOINT_FILE = re.compile(r"ckpt-(\d+)\.(?:index|data-\d+-of-\d+)")
_STATE_ENTRY = re.compile(
    r'^\s*(?:model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"(?:[^"]*[/\\])?ckpt-(\d+)"',
    re.MULTILINE)


def _numbers_on_disk(directory):
    """The numbers N of the checkpoints with a ``ckpt-N.index`` or ``ckpt-N.data-*``
    file in `directory`."""
    if not directory.is_dir():
        return set()
    return {int(m.group(1)) for p in directory.iterdir()
            if (m := _CHECKPOINT_FILE.fullmatch(p.name))}


def _checkpoint_numbers(directory):
    """The candidates to resume from, newest first: the checkpoints named in the
    state file ``checkpoint`` (whatever directory it names them in) and those found
    by their files; and whether there is a state file that names none (garbage)."""
    state = directory / "checkpoint"
    if not state.is_file():
        return sorted(_numbers_on_disk(directory), reverse=True), False
    text = state.read_bytes().decode("utf-8", errors="replace")
    named = {int(n) for n in _STATE_ENTRY.findall(text)}
    return sorted(named | _numbers_on_disk(directory), reverse=True), not named


def _read_in_full(prefix):
    """Read every tensor of checkpoint `prefix`, which checks each one's checksum;
    raise on a missing, short or corrupt index or data file."""
    if not Path(f"{prefix}.index").is_file():
        raise FileNotFoundError(f"no file {Path(prefix).name}.index")
    reader = tf.train.load_checkpoint(prefix)
    for key in reader.get_variable_to_dtype_map():
        reader.get_tensor(key)


def _reason(error):
    """The first line of `error`, with its type, for a one-line report."""
    lines = str(error).strip().splitlines()
    reason = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return reason if len(reason) <= 200 else reason[:197] + "..."


def _write_state(directory, numbers):
    """Atomically replace the state file ``checkpoint`` (the format TensorFlow's
    `tf.train.latest_checkpoint` reads) with one naming checkpoints `numbers`, the
    last the latest."""
    text = f'model_checkpoint_path: "ckpt-{numbers[-1]}"\n' + "".join(
        f'all_model_checkpoint_paths: "ckpt-{n}"\n' for n in numbers)
    temporary = directory / "checkpoint.tmp"
    with open(temporary, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, directory / "checkpoint")


def _delete_checkpoint(directory, number):
    for p in directory.iterdir():
        if _CHECKPOINT_FILE.fullmatch(p.name) and p.name.split(".")[0] == f"ckpt-{number}":
            p.unlink(missing_ok=True)


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
