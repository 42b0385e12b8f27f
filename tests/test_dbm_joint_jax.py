"""docs/experiments/scripts/dbm_joint_jax.py: the JAX transcription of the DBM joint
phase, checked against tfboltz's own train step, and its round trip from and back to
tfboltz."""

import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest

import tfboltz as tb

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "docs" / "experiments" / "scripts" / "dbm_joint_jax.py"
# jax is an optional extra (`pip install .[jax]`), needed by the script's train and check.
pytestmark = pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                reason="jax is not installed: pip install '.[jax]'")


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def jx():
    return _load(SCRIPT)


@pytest.fixture(scope="module")
def saved_dbm(tmp_path_factory, digits):
    """A small centered 64-16-12 DBM, pretrained and jointly trained a little on the
    digits, saved once for the module."""
    x, _ = digits
    keras.utils.set_random_seed(0)
    dbm = tb.DBM([64, 16, 12], n_chains=20, k=2, l2=2e-4, centering=True, seed=0)
    xb = (np.random.default_rng(0).random((500, 64)) < x[:500]).astype("float32")
    tb.pretrain_dbm(dbm, xb, epochs=1, batch_size=50, verbose=0)
    dbm.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.5))
    dbm.fit(xb, batch_size=50, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("jax") / "dbm.keras"
    dbm.save(path)
    return path


@pytest.fixture
def centered_dbm(saved_dbm, digits, monkeypatch):
    """`saved_dbm`, with `tb.data.load_mnist` serving the first 500 digits."""
    x, y = digits
    monkeypatch.setattr(tb.data, "load_mnist", lambda split="train", **_: (x[:500], y[:500]))
    return saved_dbm


def test_jax_updates_match_tfboltz_train_step(jx, centered_dbm, tmp_path):
    jx.main(["check", str(centered_dbm), "--json", str(tmp_path / "check.json")])
    report = json.loads((tmp_path / "check.json").read_text())
    # Two steps moved every parameter, and the JAX ones agree to float32 round-off,
    # a hundredth of the change or less.
    for key in ("w1", "w2", "b0", "b1", "b2", "mu0", "mu1", "mu2"):
        change, diff = report["max_abs_change"][key], report["max_abs_difference"][key]
        assert change > 1e-7 and diff < 1e-5 and diff <= 0.01 * change, (key, report)


def test_check_fails_on_a_different_update(jx, centered_dbm, monkeypatch):
    step_fn = jx.step_fn
    monkeypatch.setattr(jx, "step_fn", lambda cfg, means_only=False: step_fn(
        {**cfg, "l2": cfg["l2"] + 0.5}, means_only))
    with pytest.raises(SystemExit, match="differs from tfboltz's in"):
        jx.main(["check", str(centered_dbm)])


def test_export_train_import_round_trip(jx, centered_dbm, tmp_path):
    start = tmp_path / "accel" / "start.npz"
    jx.main(["export", str(centered_dbm), str(start)])
    data = start.with_name("mnist_train.npz")
    with np.load(data) as f:
        assert f["x"].dtype == np.uint8 and f["x"].shape == (500, 64)
    out = tmp_path / "out"
    jx.main(["train", str(start), str(data), "--out", str(out), "--seeds", "0", "1",
             "--epochs", "3", "--control-seeds", "0", "--control-epochs", "1",
             "--batch-size", "50", "--checkpoint-every", "2"])
    log = json.loads((out / "log.json").read_text())
    assert [r["epochs"] for r in log["runs"]] == [3, 3, 1]
    assert [e["epoch"] for e in log["epochs"]] == [1, 2, 3]
    assert all(s == 0.0 for e in log["epochs"] for s in e["skipped"])
    assert sorted(p.name for p in out.glob("*.npz")) == [
        "model_e1_s0.npz", "model_e3_s0.npz", "model_e3_s1.npz"]

    before = keras.saving.load_model(centered_dbm, compile=False)
    runs = {}
    for name in ("e3_s0", "e3_s1", "e1_s0"):
        jx.main(["import", str(out / f"model_{name}.npz"), str(centered_dbm),
                 str(tmp_path / f"{name}.keras")])
        runs[name] = keras.saving.load_model(tmp_path / f"{name}.keras", compile=False)
    for model in runs.values():
        assert model.centering and model.layer_sizes == [64, 16, 12]
        assert not np.allclose(model.kernels[0].numpy(), before.kernels[0].numpy())
    # Seeds differ; the one-epoch control stopped moving after its epoch.
    assert not np.allclose(runs["e3_s0"].kernels[0].numpy(), runs["e3_s1"].kernels[0].numpy())
    change_control = np.abs(runs["e1_s0"].kernels[0].numpy() - before.kernels[0].numpy()).max()
    change_long = np.abs(runs["e3_s0"].kernels[0].numpy() - before.kernels[0].numpy()).max()
    assert change_control < change_long
    # An imported model is an ordinary tfboltz DBM: mean-field works on it.
    means = runs["e3_s0"].mean_field(np.zeros((2, 64), "float32"))
    assert means[2].shape == (2, 12)


def test_time_budget_picks_the_longest_schedule_that_fits(jx, centered_dbm, tmp_path):
    start = tmp_path / "start.npz"
    jx.main(["export", str(centered_dbm), str(start)])
    data = start.with_name("mnist_train.npz")
    out = tmp_path / "out"
    jx.main(["train", str(start), str(data), "--out", str(out), "--batch-size", "50",
             "--time-budget", "600", "--epochs-choices", "1", "2", "1000000"])
    log = json.loads((out / "log.json").read_text())
    assert log["timing"]["chosen_epochs"] == 2
    assert log["runs"] == [{"epochs": 2, "seed": 0}]
    with pytest.raises(SystemExit, match="no schedule"):
        jx.main(["train", str(start), str(data), "--out", str(tmp_path / "none"),
                 "--batch-size", "50", "--time-budget", "600", "--epochs-choices", "1000000"])


def test_bad_input_is_refused_before_anything_is_written(jx, centered_dbm, tmp_path):
    start = tmp_path / "start.npz"
    jx.main(["export", str(centered_dbm), str(start)])
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, x=np.zeros((100, 30), np.uint8))
    with pytest.raises(SystemExit, match="Expected uint8 rows of 64 pixels"):
        jx.main(["train", str(start), str(wrong), "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="at least --batch-size"):
        jx.main(["train", str(start), str(start.with_name("mnist_train.npz")),
                 "--out", str(tmp_path / "b"), "--batch-size", "1000"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    plain = tb.DBM([64, 8, 6], seed=0)  # not centered: not the configuration transcribed
    plain.save(tmp_path / "plain.keras")
    with pytest.raises(ValueError, match="Expected a centered DBM"):
        jx.main(["export", str(tmp_path / "plain.keras"), str(tmp_path / "p.npz")])
    assert not (tmp_path / "p.npz").exists()


def test_each_checkpoint_writes_every_run(jx, centered_dbm, tmp_path, monkeypatch):
    """A call cut off between checkpoints still returns every run's latest weights."""
    start = tmp_path / "start.npz"
    jx.main(["export", str(centered_dbm), str(start)])
    written = []
    save_npz = jx._save_npz
    monkeypatch.setattr(jx, "_save_npz", lambda path, arrays: (
        written.append(path.name), save_npz(path, arrays)))
    jx.main(["train", str(start), str(start.with_name("mnist_train.npz")), "--out",
             str(tmp_path / "out"), "--seeds", "0", "1", "--epochs", "4",
             "--batch-size", "50", "--checkpoint-every", "2"])
    # Checkpoints after epochs 2 and 4, then the final save: both runs each time.
    assert written == ["model_e4_s0.npz", "model_e4_s1.npz"] * 3


def test_train_defaults_follow_the_cpu_script(jx, monkeypatch):
    """`train` with no rate or length given runs the joint phase of
    `train_dbm_mnist.py`'s defaults (the zoo's recipe), not an older one."""
    cpu = _load(ROOT / "scripts" / "train_dbm_mnist.py")
    seen = {}
    monkeypatch.setattr(jx, "train", lambda args: seen.update(vars(args)))
    jx.main(["train", "start.npz", "data.npz", "--out", "out"])
    defaults = cpu.parse_args([])
    assert (seen["lr"], seen["epochs"], seen["batch_size"], seen["n_train"]) == (
        defaults.lr, defaults.epochs, defaults.batch_size, defaults.n_train)
