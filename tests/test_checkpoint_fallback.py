"""Resume falls back to the newest intact checkpoint: a corrupt, short, empty or
missing file, a garbage state file or one naming a missing checkpoint skips to the
next older one, says so, and deletes no intact checkpoint; with none intact, `fit`
raises and leaves the model and the directory as they were."""

import hashlib
import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb

EPOCHS, BATCH = 3, 50  # 4 batches per epoch on 200 rows; ckpt-N is saved after epoch N


def make():
    keras.utils.set_random_seed(0)  # the same global state in every run
    model = tb.RBM(64, 16, learning="pcd", n_chains=20, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.5))
    return model


def weights(model):
    return [v.numpy().copy() for v in model.variables]


class Record(keras.callbacks.Callback):
    """Keeps the weights at the start of every epoch (`at_epoch[e]`, and the last at
    `at_epoch[epochs]`), and the checkpoint files present when the first one starts
    (after the restore, before any save)."""

    def __init__(self, directory):
        super().__init__()
        self.directory = directory
        self.at_epoch, self.files_at_restore = {}, None

    def on_epoch_begin(self, epoch, logs=None):
        if self.files_at_restore is None:
            self.files_at_restore = ({p.name for p in self.directory.iterdir()}
                                     if self.directory.exists() else set())
        self.at_epoch[epoch] = weights(self.model)

    def on_epoch_end(self, epoch, logs=None):
        self.at_epoch[epoch + 1] = weights(self.model)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 3-epoch run's directory (ckpt-1..3) and its weights after each epoch."""
    from sklearn.datasets import load_digits

    x = (load_digits().data / 16).astype("f4")[:200]
    directory = tmp_path_factory.mktemp("fallback") / "ckpt"
    record = Record(directory)
    make().fit(x, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[
        tb.callbacks.TrainingCheckpoint(directory, max_to_keep=3, verbose=0), record])
    assert sorted(p.name for p in directory.iterdir()) == ["checkpoint"] + [
        f"ckpt-{n}.{ext}" for n in (1, 2, 3) for ext in ("data-00000-of-00001", "index")]
    return x, directory, record.at_epoch


def data_file(directory, n):
    return directory / f"ckpt-{n}.data-00000-of-00001"


def random_bytes_in_data(d):
    raw = bytearray(data_file(d, 3).read_bytes())
    raw[len(raw) // 4:] = np.random.default_rng(0).bytes(len(raw) - len(raw) // 4)
    data_file(d, 3).write_bytes(bytes(raw))


def truncated_data(d):
    data_file(d, 3).write_bytes(data_file(d, 3).read_bytes()[:100])


def empty_data(d):
    data_file(d, 3).write_bytes(b"")


def missing_data(d):
    data_file(d, 3).unlink()


def missing_index(d):
    (d / "ckpt-3.index").unlink()


def garbage_index(d):
    (d / "ckpt-3.index").write_bytes(np.random.default_rng(1).bytes(300))


def garbage_state(d):
    (d / "checkpoint").write_bytes(np.random.default_rng(2).bytes(200))


def garbage_state_and_truncated_data(d):
    garbage_state(d)
    truncated_data(d)


def state_names_missing(d):
    (d / "checkpoint").write_text('model_checkpoint_path: "ckpt-7"\n'
                                  'all_model_checkpoint_paths: "ckpt-3"\n'
                                  'all_model_checkpoint_paths: "ckpt-7"\n')


# corruption, checkpoint restored, (skipped checkpoint, words of its reason) or None
CASES = [
    (random_bytes_in_data, 2, ("ckpt-3", "checksum does not match")),
    (truncated_data, 2, ("ckpt-3", "Read less bytes than requested")),
    (empty_data, 2, ("ckpt-3", "Read less bytes than requested")),
    (missing_data, 2, ("ckpt-3", "No such file")),
    (missing_index, 2, ("ckpt-3", "no file ckpt-3.index")),
    (garbage_index, 2, ("ckpt-3", "not an sstable")),
    (garbage_state, 3, None),
    (garbage_state_and_truncated_data, 2, ("ckpt-3", "Read less bytes than requested")),
    (state_names_missing, 3, ("ckpt-7", "no file ckpt-7.index")),
]


@pytest.mark.parametrize("corrupt, restored, skipped", CASES,
                         ids=[case[0].__name__ for case in CASES])
def test_resume_falls_back_to_the_newest_intact(trained, tmp_path, capsys, corrupt, restored,
                                                skipped):
    x, source, at_epoch = trained
    directory = tmp_path / "ckpt"
    shutil.copytree(source, directory)
    corrupt(directory)
    intact = {f"ckpt-{n}.{ext}" for n in range(1, restored + 1)
              for ext in ("index", "data-00000-of-00001")}
    model, record = make(), Record(directory)
    ckpt = tb.callbacks.TrainingCheckpoint(directory, max_to_keep=3)
    history = model.fit(x, batch_size=BATCH, epochs=EPOCHS + 1, verbose=0,
                        callbacks=[ckpt, record])

    assert ckpt.restored_from == str(directory / f"ckpt-{restored}")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"TrainingCheckpoint: resumed from {directory}/ckpt-{restored} "
                               f"({restored} epochs done)")
    if skipped is None:
        assert ckpt.skipped == [] and "skipped" not in lines[0]
    else:
        name, words = skipped
        assert [(str(directory / name), True)] == [
            (p, words.lower() in reason.lower()) for p, reason in ckpt.skipped]
        assert f"; skipped {name} (" in lines[0] and words.lower() in lines[0].lower()
    if corrupt in (garbage_state, garbage_state_and_truncated_data):
        assert "state file `checkpoint` names no checkpoint" in lines[0]
    # Training carries on at the restored checkpoint's epoch, from its weights.
    assert history.epoch == list(range(restored, EPOCHS + 1))
    for a, b in zip(at_epoch[restored], record.at_epoch[restored]):
        np.testing.assert_array_equal(a, b)
    # Nothing intact was deleted by the resume, and the restored one outlives the saves.
    assert intact <= record.files_at_restore
    assert {p for p in intact if p.startswith(f"ckpt-{restored}.")} <= {
        p.name for p in directory.iterdir()}
    # Each save took a number above every one there was: 3, or 7 named in the state.
    newest = (7 if corrupt is state_names_missing else 3) + EPOCHS + 1 - restored
    assert tf.train.latest_checkpoint(str(directory)).endswith(f"ckpt-{newest}")


class Before(keras.callbacks.Callback):
    """Keeps the weights as `fit` hands them to the callbacks (the RBM has already
    started its persistent chains from the data)."""

    def on_train_begin(self, logs=None):
        self.weights = weights(self.model)


def digest(directory):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in directory.iterdir()}


def test_none_intact_raises_and_changes_nothing(trained, tmp_path):
    x, source, _ = trained
    directory = tmp_path / "ckpt"
    shutil.copytree(source, directory)
    truncated_data(directory)
    # ckpt-2 reads back intact but is of another run whose optimizer had no momentum:
    # its weights restore, then its missing momentum slots fail the match part way.
    other = tb.RBM(64, 16, learning="pcd", n_chains=20, seed=1)
    for p in directory.glob("ckpt-2.*"):
        p.unlink()
    tf.train.Checkpoint(model=[v.value for v in other.variables]).write(str(directory / "ckpt-2"))
    (directory / "ckpt-1.index").write_bytes(b"\x00garbage")
    before_files = digest(directory)
    model, before = make(), Before()
    ckpt = tb.callbacks.TrainingCheckpoint(directory)
    with pytest.raises(ValueError) as info:
        model.fit(x, batch_size=BATCH, epochs=EPOCHS + 1, verbose=0, callbacks=[before, ckpt])
    message = str(info.value)
    assert message.startswith(f"Expected an intact checkpoint in {directory} to resume from")
    assert message.endswith(
        "Received: ckpt-3 (IndexError: Read less bytes than requested), ckpt-2 (ValueError: "
        "does not match the model: Found 7 Python objects that were not bound to checkpointed "
        "values), ckpt-1 (OpError: file is too short to be an sstable)")
    assert ckpt.restored_from is None and len(ckpt.skipped) == 3
    for a, b in zip(before.weights, weights(model)):
        np.testing.assert_array_equal(a, b)
    assert digest(directory) == before_files


def test_a_save_that_does_not_read_back_keeps_the_previous(trained, tmp_path, monkeypatch):
    x, _, at_epoch = trained
    directory = tmp_path / "ckpt"
    real_write = tf.train.Checkpoint._write
    saves = {"n": 0}

    def write_then_lose_the_tail(self, file_prefix, options=None):
        path = real_write(self, file_prefix, options=options)
        saves["n"] += 1
        if saves["n"] == 3:
            data = data_file(directory, 3)
            data.write_bytes(data.read_bytes()[:100])
        return path

    monkeypatch.setattr(tf.train.Checkpoint, "_write", write_then_lose_the_tail)
    with pytest.raises(OSError, match="ckpt-3 does not read back"):
        make().fit(x, batch_size=BATCH, epochs=EPOCHS, verbose=0,
                   callbacks=[tb.callbacks.TrainingCheckpoint(directory, max_to_keep=1)])
    monkeypatch.setattr(tf.train.Checkpoint, "_write", real_write)
    # max_to_keep=1, yet ckpt-2 survives: ckpt-3 never became the one kept.
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-2")
    assert (directory / "ckpt-2.index").exists() and data_file(directory, 2).exists()
    model, record = make(), Record(directory)
    ckpt = tb.callbacks.TrainingCheckpoint(directory, verbose=0)
    model.fit(x, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=[ckpt, record])
    assert ckpt.restored_from.endswith("ckpt-2") and min(record.at_epoch) == 2
    for a, b in zip(at_epoch[2], record.at_epoch[2]):
        np.testing.assert_array_equal(a, b)


def test_garbage_state_file_alone_starts_afresh(trained, tmp_path, capsys):
    x, _, _ = trained
    directory = tmp_path / "ckpt"
    directory.mkdir()
    garbage_state(directory)
    ckpt = tb.callbacks.TrainingCheckpoint(directory)
    history = make().fit(x, batch_size=BATCH, epochs=1, verbose=0, callbacks=[ckpt])
    assert ckpt.restored_from is None and history.epoch == [0]
    assert capsys.readouterr().out == ""
    assert tf.train.latest_checkpoint(str(directory)).endswith("ckpt-1")


def test_bad_verbose():
    with pytest.raises(ValueError, match="Expected 0 or 1. Received: verbose=2"):
        tb.callbacks.TrainingCheckpoint("x", verbose=2)
