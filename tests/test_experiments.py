"""The shared MNIST workflows, on a small stand-in for MNIST (no download)."""

import json
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb
from tfboltz import cli, experiments


@pytest.fixture(autouse=True)
def savedmodel_checked_in_process(request, monkeypatch):
    """Every fine-tuning run exports a SavedModel and reloads it in a fresh Python process,
    which imports TensorFlow anew (about 5 s). That path is tested once, by
    test_finetune_exports_and_checks_a_savedmodel; the other tests reload in-process."""
    if request.node.name == "test_finetune_exports_and_checks_a_savedmodel":
        return

    def check(path, x, expected):
        loaded = tf.saved_model.load(str(path))  # kept: its variables must outlive the call
        reloaded = loaded.serve(tf.constant(x)).numpy()
        return experiments.savedmodel_agreement(reloaded, expected)

    monkeypatch.setattr(experiments, "check_savedmodel", check)


@pytest.fixture
def fake_mnist(monkeypatch):
    """`load_mnist` replaced by 784-pixel images of two easy classes (bars)."""
    rng = np.random.default_rng(0)

    def load(split="train", binarize=None, seed=0, **_):
        n = 400 if split == "train" else 100
        y = rng.integers(0, 2, n)
        x = rng.random((n, 28, 28)) * 0.3
        for i, label in enumerate(y):
            if label:
                x[i, :, 10:14] = 0.9
            else:
                x[i, 10:14, :] = 0.9
        x = x.reshape(n, 784).astype("float32")
        if binarize == "stochastic":
            x = (np.random.default_rng(seed).random(x.shape) < x).astype("float32")
        return x, y.astype("int64")

    monkeypatch.setattr(tb.data, "load_mnist", load)
    return load


@pytest.fixture
def small_dbm(fake_mnist):
    x, _ = fake_mnist("train")
    dbm = tb.DBM([784, 16, 8], seed=0)
    tb.pretrain_dbm(dbm, x, epochs=10, batch_size=20,
                    optimizer=lambda: keras.optimizers.SGD(0.05, momentum=0.9), verbose=0)
    return dbm


def test_finetune_exports_and_checks_a_savedmodel(small_dbm, tmp_path, monkeypatch):
    commands, run = [], experiments.subprocess.run
    monkeypatch.setattr(experiments.subprocess, "run",
                        lambda cmd, **kw: commands.append(cmd) or run(cmd, **kw))
    res = experiments.finetune_mnist(small_dbm, tmp_path, epochs=10, lr=1e-2, batch_size=20,
                                     n_val=50, verbose=0)
    # the export was reloaded by a fresh Python process
    assert len(commands) == 1 and "tf.saved_model.load" in commands[0][-1]
    assert res["savedmodel_same_labels"] and res["savedmodel_max_abs_diff"] < 1e-5
    assert res["n_train"] == 350 and res["n_val"] == 50
    assert res["test_error_percent"] < 20  # two classes told apart by a bar's direction
    assert json.loads((tmp_path / "result.json").read_text()) == res
    val = res["history"]["val_accuracy"]
    assert len(val) == 10 and len(res["history"]["loss"]) == 10
    assert res["val_accuracy"] == max(val) == val[res["best_epoch"] - 1]
    assert (tmp_path / "classifier.keras").is_file()
    assert (tmp_path / "savedmodel" / "saved_model.pb").is_file()
    assert not list(tmp_path.glob("check_*"))  # the check's scratch files are gone


def test_head_epochs_fit_only_the_output_layer_first(small_dbm, tmp_path, fake_mnist):
    x, y = fake_mnist("train")
    clf = small_dbm.to_sequential(10)
    f = clf.layers[0](x[:200]).numpy()  # the data and q(h2): 784 + 8 features
    head = keras.Sequential([keras.Input((f.shape[1],)), *clf.layers[1:]])
    before = [w.numpy().copy() for w in head.weights]
    experiments.fit_output_layer(head, f, y[:200], keras.optimizers.Adam(1e-2), epochs=2,
                                 batch_size=20)
    after = [w.numpy() for w in head.weights]
    n_out = len(head.layers[-1].weights)
    for a, b in zip(before[:-n_out], after[:-n_out]):
        np.testing.assert_array_equal(a, b)  # the pretrained layers did not move
    assert all(np.abs(a - b).max() > 1e-3 for a, b in zip(before[-n_out:], after[-n_out:]))
    assert all(layer.trainable for layer in head.layers)

    res = experiments.finetune_mnist(small_dbm, tmp_path, epochs=1, n_val=50, head_epochs=2,
                                     verbose=0)
    assert res["head_epochs"] == 2 and res["head_seconds"] > 0
    assert len(res["history"]["loss"]) == 1  # the head's epochs are not counted
    with pytest.raises(ValueError, match="head_epochs"):
        experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, head_epochs=-1)
    assert not (tmp_path / "bad").exists()


def test_finetune_with_few_labels_holds_out_a_tenth(small_dbm, tmp_path):
    res = experiments.finetune_mnist(small_dbm, tmp_path, epochs=2, n_train=100, verbose=0)
    assert (res["n_train"], res["n_val"]) == (90, 10)


def test_evaluate_reports_likelihood_and_probe(small_dbm):
    res = experiments.evaluate_mnist(small_dbm, n_chains=20, n_betas=200, verbose=0)
    assert np.isfinite(res["log_z"]) and res["test_elbo"] < 0
    assert res["test_elbo"] < res["test_bound_top_summed_out"] < 0
    assert res["probe_accuracy"] > 0.8
    rbm = tb.RBM(784, 8, seed=0)
    res = experiments.evaluate_mnist(rbm, n_chains=20, n_betas=100, probe=False, verbose=0)
    assert res["test_log_likelihood"] < 0 and "probe_accuracy" not in res


def test_cli_eval_and_finetune_on_a_file(small_dbm, tmp_path, capsys):
    path = tmp_path / "dbm.keras"
    small_dbm.save(path)
    assert cli.main(["eval", str(path), "--n-betas", "100", "--n-chains", "10", "--no-probe",
                     "--json", str(tmp_path / "e.json")]) == 0
    printed = capsys.readouterr().out
    assert "average test ELBO" in printed and "with the top layer summed out" in printed
    assert "test_elbo" in json.loads((tmp_path / "e.json").read_text())
    assert cli.main(["finetune", str(path), "--epochs", "1", "--n-val", "40",
                     "--optimizer", "sgd", "--weight-decay", "0.01", "--adversarial", "0.05",
                     "--adversarial-norm", "l2", "--adversarial-no-clip",
                     "--out", str(tmp_path / "ft")]) == 0
    assert "same labels = True" in capsys.readouterr().out
    result = json.loads((tmp_path / "ft" / "result.json").read_text())
    assert (result["optimizer"], result["weight_decay"]) == ("sgd", 0.01)
    assert (result["adversarial_epsilon"], result["adversarial_alpha"]) == (0.05, 0.5)
    assert (result["adversarial_norm"], result["adversarial_clip"]) == ("l2", False)


def test_few_labels_repeat_within_an_epoch_and_pick_by_loss(small_dbm, tmp_path):
    res = experiments.finetune_mnist(small_dbm, tmp_path, epochs=2, n_train=100,
                                     monitor="val_loss", min_steps_per_epoch=20, verbose=0)
    assert res["repeats_per_epoch"] == 23 and res["monitor"] == "val_loss"  # 90 rows, batch 100
    with pytest.raises(ValueError, match="monitor"):
        experiments.finetune_mnist(small_dbm, tmp_path, epochs=1, monitor="loss")


def test_cosine_schedule_runs_and_unknown_schedules_fail(small_dbm, tmp_path):
    res = experiments.finetune_mnist(small_dbm, tmp_path, epochs=2, n_train=200,
                                     lr_schedule="cosine", verbose=0)
    assert res["lr_schedule"] == "cosine"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = keras.saving.load_model(tmp_path / "classifier.keras")
    # the saved optimizer matches the one load builds: nothing is skipped on reload
    assert not [w for w in caught if "Skipping variable loading" in str(w.message)]
    assert isinstance(clf.optimizer, keras.optimizers.Adam)
    assert float(clf.optimizer.learning_rate) == pytest.approx(1e-3)
    before = clf.layers[-1].kernel.numpy().copy()
    x, y = np.random.default_rng(0).random((20, 784), "float32"), np.arange(20) % 10
    clf.fit(x, y, batch_size=10, epochs=1, verbose=0)  # the reloaded classifier fits on
    assert not np.allclose(clf.layers[-1].kernel.numpy(), before)
    with pytest.raises(ValueError, match="lr_schedule"):
        experiments.finetune_mnist(small_dbm, tmp_path, epochs=1, lr_schedule="step")


def test_no_held_out_rows_fits_every_row_and_keeps_the_last_epoch(small_dbm, tmp_path):
    res = experiments.finetune_mnist(small_dbm, tmp_path, epochs=3, n_val=0, lr=1e-2,
                                     batch_size=20, lr_schedule="cosine", verbose=0)
    assert (res["n_train"], res["n_val"], res["best_epoch"]) == (400, 0, 3)
    assert res["val_accuracy"] is None and res["savedmodel_same_labels"]
    assert res["test_error_percent"] < 20
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="n_val"):
            experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, n_val=bad)
    with pytest.raises(ValueError, match="held-out rows"):
        experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, n_val=400)
    with pytest.raises(ValueError, match="held-out rows"):
        experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, n_train=1)
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_sgd_weight_decay_and_xla_options(small_dbm, tmp_path):
    def kernel_norm(out):
        clf = keras.saving.load_model(out / "classifier.keras")
        return float(np.linalg.norm(clf.layers[1].kernel.numpy()))

    kwargs = dict(epochs=1, n_val=0, lr=1e-2, batch_size=20, optimizer="sgd", verbose=0)
    plain = experiments.finetune_mnist(small_dbm, tmp_path / "plain", **kwargs)
    decayed = experiments.finetune_mnist(small_dbm, tmp_path / "decayed", weight_decay=5.0,
                                         jit_compile=True, **kwargs)
    assert (plain["optimizer"], plain["weight_decay"], plain["jit_compile"]) == ("sgd", None, False)
    assert (decayed["weight_decay"], decayed["jit_compile"]) == (5.0, True)
    assert decayed["savedmodel_same_labels"]
    # 20 steps, each shrinking the weights by lr * 5 = 5%: about a third of the norm is left
    assert kernel_norm(tmp_path / "decayed") < 0.6 * kernel_norm(tmp_path / "plain")
    for bad in (dict(optimizer="rmsprop"), dict(weight_decay=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, **bad)
    assert not (tmp_path / "bad").exists()


def test_adversarial_finetuning(small_dbm, tmp_path):
    res = experiments.finetune_mnist(small_dbm, tmp_path / "adv", epochs=3, lr=1e-2,
                                     batch_size=20, n_val=50, adversarial=0.1, verbose=0)
    assert (res["adversarial_epsilon"], res["adversarial_alpha"]) == (0.1, 0.5)
    assert (res["adversarial_norm"], res["adversarial_clip"]) == ("inf", True)
    assert res["savedmodel_same_labels"] and res["test_error_percent"] < 20
    assert len(res["history"]["val_accuracy"]) == 3
    clf = keras.saving.load_model(tmp_path / "adv" / "classifier.keras")
    assert isinstance(clf, keras.Sequential)  # the wrapper is not what is saved
    for bad in (dict(adversarial=0.0), dict(adversarial=0.1, adversarial_alpha=1.0),
                dict(adversarial=0.1, adversarial_norm="l1")):
        with pytest.raises(ValueError, match="epsilon|adversarial_norm|norm"):
            experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, **bad)
    assert not (tmp_path / "bad").exists()


def test_virtual_adversarial_finetuning_from_the_cli(small_dbm, tmp_path, capsys):
    path = tmp_path / "dbm.keras"
    small_dbm.save(path)
    assert cli.main(["finetune", str(path), "--epochs", "2", "--n-val", "40", "--vat", "1.5",
                     "--vat-weight", "0.5", "--out", str(tmp_path / "vat")]) == 0
    assert "same labels = True" in capsys.readouterr().out
    result = json.loads((tmp_path / "vat" / "result.json").read_text())
    assert (result["vat_epsilon"], result["vat_weight"], result["vat_xi"]) == (1.5, 0.5, "exact")
    assert result["adversarial_epsilon"] is None and len(result["history"]["loss"]) == 2
    assert cli.main(["finetune", str(path), "--epochs", "1", "--n-val", "40", "--vat", "1.5",
                     "--vat-xi", "1e-3", "--out", str(tmp_path / "vat_fd")]) == 0
    assert json.loads((tmp_path / "vat_fd" / "result.json").read_text())["vat_xi"] == 1e-3
    assert cli.main(["finetune", str(path), "--epochs", "1", "--n-val", "40", "--vat", "1.5",
                     "--vat-orient", "--out", str(tmp_path / "vat_or")]) == 0
    assert json.loads((tmp_path / "vat_or" / "result.json").read_text())["vat_orient"] is True
    assert result["vat_orient"] is False
    for bad, match in ((dict(vat=0.0), "epsilon"), (dict(vat=1.0, vat_weight=-1.0), "weight"),
                       (dict(vat=1.0, vat_xi=0.0), "xi"), (dict(vat=1.0, vat_orient=1), "orient"),
                       (dict(adversarial=0.1, adversarial_clip="no"), "adversarial_clip"),
                       (dict(vat=1.0, adversarial=0.1), "not both")):
        with pytest.raises(ValueError, match=match):
            experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, **bad)
    assert not (tmp_path / "bad").exists()


def test_distillation_finetuning_from_the_cli(small_dbm, tmp_path, capsys):
    path = tmp_path / "dbm.keras"
    small_dbm.save(path)
    for seed in (0, 1):  # two teachers fine-tuned from the same model
        experiments.finetune_mnist(small_dbm, tmp_path / f"teacher{seed}", epochs=3, lr=1e-2,
                                   batch_size=20, n_val=40, seed=seed, verbose=0)
    teachers = [str(tmp_path / f"teacher{seed}" / "classifier.keras") for seed in (0, 1)]
    res = experiments.finetune_mnist(small_dbm, tmp_path / "student", epochs=3, lr=1e-2,
                                     batch_size=20, n_val=40, teachers=teachers, verbose=0)
    assert res["teachers"] == teachers and res["savedmodel_same_labels"]
    assert (res["distill_temperature"], res["distill_weight"]) == (10.0, 0.9)  # defaults
    assert res["test_error_percent"] < 20 and len(res["history"]["val_accuracy"]) == 3
    assert 0 <= res["teachers_test_error_percent"] < 20 and 0 < res["teachers_val_accuracy"] <= 1
    assert cli.main(["finetune", str(path), "--epochs", "1", "--n-val", "40",
                     "--teachers", *teachers, "--distill-temperature", "4",
                     "--distill-weight", "0.5", "--out", str(tmp_path / "cli")]) == 0
    assert "same labels = True" in capsys.readouterr().out
    result = json.loads((tmp_path / "cli" / "result.json").read_text())
    assert result["teachers"] == teachers and result["teacher_seconds"] > 0
    assert (result["distill_temperature"], result["distill_weight"]) == (4.0, 0.5)
    clf = keras.saving.load_model(tmp_path / "student" / "classifier.keras")
    assert isinstance(clf, keras.Sequential)  # the student, not the wrapper
    for bad, match in ((dict(teachers=teachers, distill_weight=0.0), "weight"),
                       (dict(teachers=teachers, distill_temperature=-1.0), "temperature"),
                       (dict(teachers=teachers, adversarial=0.1), "without adversarial"),
                       (dict(teachers=[]), "at least one teacher"),
                       (dict(teachers=keras.Sequential([keras.Input((784,)),
                                                        keras.layers.Dense(3)])),
                        "784 pixels to 10 classes"),
                       (dict(teachers=[str(tmp_path / "missing.keras")]), "missing")):
        with pytest.raises(ValueError, match=match):
            experiments.finetune_mnist(small_dbm, tmp_path / "bad", epochs=1, **bad)
    assert not (tmp_path / "bad").exists()
