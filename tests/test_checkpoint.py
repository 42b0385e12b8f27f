"""Checkpoint and resume: an interrupted run, resumed, ends with exactly the weights
of an uninterrupted run of the same seed (same device), and a crash while saving
leaves the last good checkpoint in charge."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb

EPOCHS, BATCH = 3, 10  # 40 batches per epoch on 400 rows


class Interrupt(Exception):
    pass


class InterruptAt(keras.callbacks.Callback):
    """Raises `Interrupt` once `fit` has run `steps` optimizer steps."""

    def __init__(self, steps):
        super().__init__()
        self.steps = steps

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.steps:
            raise Interrupt


def make(kind):
    if kind == "rbm":
        model = tb.RBM(64, 24, learning="pcd", n_chains=20, sparsity_cost=0.01, seed=4)
    else:
        model = tb.DBM([64, 24, 12], n_chains=20, n_mean_field=5, seed=4)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5), steps_per_execution=4)
    return model


def schedules():
    return [keras.callbacks.LearningRateScheduler(lambda e: 0.05 / (1 + e)),
            tb.callbacks.MomentumScheduler(lambda e: 0.5 if e < 1 else 0.9)]


def state(model):
    return [v.numpy().copy() for v in model.variables + model.optimizer.variables]


def run(kind, x, directory, interrupt_at=None, save_every=8):
    keras.utils.set_random_seed(123)  # the same global state in every run
    model = make(kind)
    ckpt = tb.callbacks.TrainingCheckpoint(directory, save_every=save_every)
    extra = [InterruptAt(interrupt_at)] if interrupt_at else []
    model.fit(x, batch_size=BATCH, epochs=EPOCHS, verbose=0,
              callbacks=[ckpt, *schedules(), *extra])
    return model, ckpt


@pytest.mark.parametrize("kind", ["rbm", "dbm"])
def test_resume_mid_epoch_gives_the_uninterrupted_weights(kind, digits, tmp_path):
    x = digits[0][:400]
    reference, _ = run(kind, x, tmp_path / "ref")
    # Interrupted at step 60 of 120 (epoch 2, batch 20); the last save was at step 56,
    # i.e. 16 batches into epoch 2, so the resumed run must skip those and no more.
    with pytest.raises(Interrupt):
        run(kind, x, tmp_path / "cut", interrupt_at=60)
    resumed, ckpt = run(kind, x, tmp_path / "cut")
    assert ckpt.restored_from is not None
    assert int(resumed.optimizer.iterations.numpy()) == EPOCHS * 40
    for a, b in zip(state(reference), state(resumed)):
        np.testing.assert_array_equal(a, b)


def test_different_interruption_points_agree(digits, tmp_path):
    x = digits[0][:400]
    with pytest.raises(Interrupt):
        run("rbm", x, tmp_path / "a", interrupt_at=45)  # saved at step 40: an epoch end
    a, _ = run("rbm", x, tmp_path / "a")
    with pytest.raises(Interrupt):
        run("rbm", x, tmp_path / "b", interrupt_at=100, save_every=12)
    b, _ = run("rbm", x, tmp_path / "b", save_every=12)
    for u, v in zip(state(a), state(b)):
        np.testing.assert_array_equal(u, v)


def test_crash_while_saving_keeps_the_last_good_checkpoint(digits, tmp_path, monkeypatch):
    x = digits[0][:400]
    reference, _ = run("rbm", x, tmp_path / "ref")
    directory = tmp_path / "crash"
    saves = {"n": 0}
    real_write = tf.train.Checkpoint._write  # what CheckpointManager.save calls

    def crashing_write(self, file_prefix, options=None):
        saves["n"] += 1
        if saves["n"] == 7:  # the 7th save dies half-way through writing its files
            with open(f"{file_prefix}.index", "wb") as f:
                f.write(b"\x00garbage")
            with open(f"{file_prefix}.data-00000-of-00001", "wb") as f:
                f.write(b"\x00" * 10)
            raise OSError("disk full")
        return real_write(self, file_prefix, options=options)

    monkeypatch.setattr(tf.train.Checkpoint, "_write", crashing_write)
    with pytest.raises(OSError, match="disk full"):
        run("rbm", x, directory)
    monkeypatch.setattr(tf.train.Checkpoint, "_write", real_write)
    latest = tf.train.latest_checkpoint(str(directory))
    assert latest is not None and latest.endswith("ckpt-6")
    resumed, ckpt = run("rbm", x, directory)
    assert ckpt.restored_from.endswith("ckpt-6")
    for a, b in zip(state(reference), state(resumed)):
        np.testing.assert_array_equal(a, b)


def test_completed_run_is_not_repeated_and_delete_on_completion(digits, tmp_path):
    x = digits[0][:200]
    model = make("rbm")
    model.fit(x, batch_size=BATCH, epochs=2, verbose=0,
              callbacks=[tb.callbacks.TrainingCheckpoint(tmp_path / "c")])
    again = make("rbm")
    hist = again.fit(x, batch_size=BATCH, epochs=2, verbose=0,
                     callbacks=[tb.callbacks.TrainingCheckpoint(tmp_path / "c")])
    assert hist.history == {} or not hist.epoch  # nothing left to train
    np.testing.assert_array_equal(model.kernel.numpy(), again.kernel.numpy())
    gone = make("rbm")
    gone.fit(x, batch_size=BATCH, epochs=1, verbose=0,
             callbacks=[tb.callbacks.TrainingCheckpoint(tmp_path / "d",
                                                        delete_on_completion=True)])
    assert not (tmp_path / "d").exists()


def test_bad_arguments():
    with pytest.raises(ValueError, match="save_every"):
        tb.callbacks.TrainingCheckpoint("x", save_every=0)
