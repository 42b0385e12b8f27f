"""The MNIST training scripts' phases and resume logic, on scikit-learn's digits; and the
research scripts of docs/experiments/scripts/ (one-offs the experiments pages cite)."""

import csv
import importlib.util
import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
EXPERIMENT_SCRIPTS = SCRIPTS.parent / "docs" / "experiments" / "scripts"


def _script(name, folder=SCRIPTS):
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def digits_as_mnist(monkeypatch, digits):
    """`tb.data.load_mnist` replaced by the 64-pixel digits (first 1,000 to train)."""
    x, y = digits

    def load(split="train", binarize=None, seed=0):
        return (x[:1000], y[:1000]) if split == "train" else (x[1000:], y[1000:])

    monkeypatch.setattr(tb.data, "load_mnist", load)
    return x


def test_dbm_script_runs_its_finishing_phase_with_more_gibbs_sweeps(tmp_path, digits_as_mnist):
    train = _script("train_dbm_mnist")
    out = tmp_path / "dbm"
    common = ["--layer-sizes", "64", "16", "16", "--pretrain-epochs", "1", "--epochs", "2",
              "--batch-size", "50", "--n-chains", "10", "--out", str(out)]
    train.main([*common, "--finish-epochs", "2", "--finish-k", "3", "--finish-lr", "0.001"])
    state = json.loads((out / "state.json").read_text())
    assert state["epochs_done"] == 4
    assert state["joint_seconds"] > 0 and state["finish_seconds"] > 0
    with open(out / "log.csv") as f:
        log = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in log] == [0, 1, 2, 3]
    # The finishing phase's rate decays linearly from --finish-lr.
    assert [float(row["learning_rate"]) for row in log[2:]] == pytest.approx([0.001, 0.0005])
    model = keras.saving.load_model(out / "model.keras")
    assert model.k == 3

    # Resuming a finished run trains no further epochs.
    before = [w.numpy() for w in model.kernels]
    train.main([*common, "--finish-epochs", "2", "--finish-k", "3", "--resume"])
    after = keras.saving.load_model(out / "model.keras")
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 4
    for a, b in zip(before, after.kernels):
        assert (a == b.numpy()).all()


def test_rbm_script_turns_a_pcd_run_into_parallel_tempering(tmp_path, digits_as_mnist):
    train = _script("train_rbm_mnist")
    out = tmp_path / "rbm"
    common = ["--n-hidden", "16", "--batch-size", "50", "--n-chains", "10", "--lr", "0.05",
              "--out", str(out)]
    train.main([*common, "--epochs", "2", "--centering"])
    pcd = keras.saving.load_model(out / "model.keras")
    assert pcd.learning == "pcd" and pcd.l2 == pytest.approx(1e-4) and pcd.centering
    train.main([*common, "--epochs", "4", "--resume", "--learning", "pt", "--n-temperatures",
                "3", "--min-beta", "0.6", "--l2", "0"])
    pt = keras.saving.load_model(out / "model.keras")
    assert pt.learning == "pt" and pt.n_temperatures == 3 and pt.l2 == 0.0
    assert pt.persistent_chains.shape == (30, 64)
    # The offsets carry over (started afresh from 0 they would have reached only
    # 1 - 0.99^72 ~ half of the data's means in these 72 steps).
    assert pt.centering
    assert pcd.offsets[1].numpy().min() > 0.3
    np.testing.assert_allclose(pt.offsets[1].numpy(), pcd.offsets[1].numpy(), atol=0.05)
    assert json.loads((out / "state.json").read_text())["epochs_done"] == 4
    # The PCD epochs' log is kept aside; the PT log has its own header with swap_rate.
    with open(out / "log.before_pt.csv") as f:
        assert [int(row["epoch"]) for row in csv.DictReader(f)] == [0, 1]
    with open(out / "log.csv") as f:
        log = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in log] == [2, 3]
    assert all(0 < float(row["swap_rate"]) <= 1 for row in log)
    with pytest.raises(ValueError, match="Expected --learning pt to resume"):
        train.main([*common, "--epochs", "5", "--resume", "--learning", "cd"])


def test_rbm_ais_script_reports_its_sweeps(tmp_path, digits_as_mnist):
    x = (digits_as_mnist[:200] > 0.5).astype("float32")
    rbm = tb.RBM(64, 8, learning="pcd", n_chains=10, sample_visible=True, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.05))
    rbm.fit(x, batch_size=50, epochs=1, verbose=0)
    rbm.save(tmp_path / "rbm.keras")
    out = tmp_path / "ais.json"
    _script("eval_rbm_ais").main([str(tmp_path / "rbm.keras"), "--n-betas", "300",
                                  "--n-chains", "20", "--n-steps", "2", "--json", str(out)])
    report = json.loads(out.read_text())
    assert report["n_steps"] == 2 and len(report["runs"]) == 1
    run = report["runs"][0]
    exact = tb.ais.exact_log_partition(rbm)
    assert abs(run["log_z"] - exact) < 0.5, (run["log_z"], exact)
    assert run["log_z_low"] <= run["log_z"] <= run["log_z_high"]


def test_dbm_ais_script_reports_both_bounds_and_reuses_log_z(tmp_path, digits_as_mnist):
    dbm = tb.DBM([64, 8, 6], seed=0)
    r = np.random.default_rng(0)
    for w in dbm.kernels:
        w.assign(r.normal(0, 0.3, w.shape).astype("float32"))
    dbm.save(tmp_path / "dbm.keras")
    first, second = tmp_path / "ais.json", tmp_path / "reused.json"
    script = _script("eval_dbm_ais")
    script.main([str(tmp_path / "dbm.keras"), "--n-betas", "500", "--n-chains", "20",
                 "--top-draws", "50", "--json", str(first)])
    run = json.loads(first.read_text())["runs"][0]
    exact = tb.ais.exact_log_partition(dbm)
    assert abs(run["log_z"] - exact) < 0.5, (run["log_z"], exact)
    assert run["test_bound_top_summed_out"] > run["test_elbo"]
    script.main([str(tmp_path / "dbm.keras"), "--log-z-from", str(first), "--top-draws", "50",
                 "--json", str(second)])
    reused = json.loads(second.read_text())["runs"][0]
    assert reused["log_z_reused"] and reused["log_z"] == run["log_z"]
    assert reused["test_elbo"] == pytest.approx(run["test_elbo"], abs=1e-6)
    assert reused["test_bound_top_summed_out"] == pytest.approx(
        run["test_bound_top_summed_out"], abs=1e-6)
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "dbm.keras"), "--top-draws", "-1"])


def test_dbm_script_tempers_its_particles(tmp_path, digits_as_mnist):
    out = tmp_path / "dbm_pt"
    _script("train_dbm_mnist").main([
        "--layer-sizes", "64", "16", "16", "--pretrain-epochs", "1", "--epochs", "1",
        "--batch-size", "50", "--n-chains", "10", "--n-temperatures", "3", "--min-beta", "0.6",
        "--finish-epochs", "0", "--out", str(out)])
    model = keras.saving.load_model(out / "model.keras")
    assert model.n_temperatures == 3 and model.min_beta == pytest.approx(0.6)
    assert [p.shape[0] for p in model.particles] == [30, 30, 30]
    with open(out / "log.csv") as f:
        assert 0 < float(next(csv.DictReader(f))["swap_rate"]) <= 1


def test_dbm_script_centers(tmp_path, digits_as_mnist):
    out = tmp_path / "dbm_centered"
    _script("train_dbm_mnist").main([
        "--layer-sizes", "64", "16", "16", "--pretrain-epochs", "1", "--epochs", "2",
        "--batch-size", "50", "--n-chains", "10", "--centering-rate", "0.05",
        "--finish-epochs", "0", "--out", str(out)])
    model = keras.saving.load_model(out / "model.keras")
    # centered by default (the zoo's recipe)
    assert model.centering and model.centering_rate == pytest.approx(0.05)
    offsets = [o.numpy() for o in model.offsets]
    assert [len(o) for o in offsets] == [64, 16, 16]
    # pixel means (the digits' border pixels are always 0), hidden means inside (0, 1)
    assert ((offsets[0] >= 0) & (offsets[0] <= 1)).all() and offsets[0].max() > 0.1
    assert all(((o > 0) & (o < 1)).all() for o in offsets[1:])


def test_dbm_script_defaults_are_the_zoo_models_recipe():
    """`train_dbm_mnist.py` with no arguments runs the recipe on the zoo's card, but for
    the seed, which picks the draw (the card's seed is the one its weights came from)."""
    train = _script("train_dbm_mnist")
    card = json.loads((SCRIPTS.parent / "zoo" / "mnist_dbm.json").read_text())
    assert card["recipe"]["script"] == "scripts/train_dbm_mnist.py"
    recipe = train.parse_args(card["recipe"]["args"])
    defaults = train.parse_args(["--out", str(recipe.out), "--seed", str(recipe.seed)])
    assert vars(defaults) == vars(recipe)
    config = card["architecture"]
    assert (recipe.layer_sizes, recipe.n_chains, recipe.k, recipe.n_mean_field,
            recipe.mean_field_tol, recipe.l2, recipe.seed, recipe.centering,
            recipe.centering_rate) == (
        config["layer_sizes"], config["n_chains"], config["k"], config["n_mean_field"],
        config["mean_field_tol"], config["l2"], config["seed"], config["centering"],
        config["centering_rate"])
    assert not train.parse_args(["--no-centering"]).centering


def test_dbn_card_recipe_parses_and_builds_the_cards_architecture():
    """The zoo DBN's recipe is one command of `train_dbn_mnist.py`: its legs parse, their
    epochs add up to the card's, and the last leg's Gibbs steps and discriminative
    weight, with the script's defaults, are the card's architecture."""
    train = _script("train_dbn_mnist")
    card = json.loads((SCRIPTS.parent / "zoo" / "mnist_dbn.json").read_text())
    assert card["recipe"]["script"] == "scripts/train_dbn_mnist.py"
    recipe = train.parse_args(card["recipe"]["args"])
    arch = card["architecture"]
    assert sum(leg.epochs for leg in recipe.legs) == 180
    last = recipe.legs[-1]
    discriminative = recipe.discriminative if last.discriminative is None \
        else last.discriminative
    assert (recipe.layer_sizes, last.k, discriminative, recipe.l2, recipe.seed) == (
        arch["layer_sizes"], arch["k"], arch["discriminative"], arch["l2"], arch["seed"])
    assert recipe.legs[-2].ema is not None and recipe.legs[-1].ema is not None


def test_finetune_script_prints_figures_and_keeps_the_history_in_its_json(
        tmp_path, digits_as_mnist, capsys):
    dbm = tb.DBM([64, 16, 8], seed=0)
    dbm.save(tmp_path / "dbm.keras")
    out = tmp_path / "clf"
    _script("finetune_mnist").main([str(tmp_path / "dbm.keras"), "--epochs", "3",
                                    "--n-val", "100", "--optimizer", "sgd", "--lr", "0.1",
                                    "--out", str(out)])
    printed = capsys.readouterr().out
    figures = json.loads(printed[printed.index('{\n "model"'):printed.rindex("}") + 1])
    assert "history" not in figures and figures["optimizer"] == "sgd"
    assert "per-epoch metrics" in printed
    saved = json.loads((out / "result.json").read_text())
    assert len(saved["history"]["val_accuracy"]) == 3
    assert {k: v for k, v in saved.items() if k != "history"} == {
        k: v for k, v in figures.items() if k != "model"}


def test_dbm_script_ends_with_averaged_weights(tmp_path, digits_as_mnist):
    train = _script("train_dbm_mnist")

    def run(name, *extra):
        out = tmp_path / name
        train.main(["--layer-sizes", "64", "16", "16", "--pretrain-epochs", "1",
                    "--epochs", "3", "--batch-size", "50", "--n-chains", "10",
                    "--finish-epochs", "0", "--lr", "0.05", "--out", str(out), *extra])
        start = keras.saving.load_model(out / "pretrained.keras", compile=False).kernels
        end = keras.saving.load_model(out / "model.keras", compile=False)
        moved = sum(float(np.linalg.norm(e.numpy() - s.numpy()))
                    for s, e in zip(start, end.kernels))
        return moved, json.loads((out / "state.json").read_text())

    raw, raw_state = run("raw")
    # Averaging with momentum 0.99 over 60 updates keeps the weights near those of the
    # first updates: the model ends much nearer its stitched start than the raw run.
    averaged, averaged_state = run("ema", "--ema", "0.99")
    assert averaged < 0.5 * raw, (averaged, raw)
    assert averaged_state["averaged_weights"] and "averaged_weights" not in raw_state
    # Momentum 0 averages nothing: the run ends where the raw run ends.
    same, _ = run("ema0", "--ema", "0.0")
    assert same == pytest.approx(raw, rel=1e-4)
    # A finished run resumed with --ema trains nothing and keeps its weights.
    ema = tmp_path / "ema" / "model.keras"
    before = keras.saving.load_model(ema, compile=False).kernels[0].numpy()
    train.main(["--layer-sizes", "64", "16", "16", "--epochs", "3", "--finish-epochs", "0",
                "--ema", "0.99", "--out", str(tmp_path / "ema"), "--resume"])
    after = keras.saving.load_model(ema, compile=False).kernels[0].numpy()
    assert (before == after).all()
    with pytest.raises(SystemExit):
        train.parse_args(["--ema", "1.0"])


def _fitted_and_saved(build, path, epochs):
    """`build()` (seed 0) fitted on the training rows for `epochs` epochs, saved at `path`."""
    keras.utils.set_random_seed(0)
    clf = build()
    clf.compile("adam", "sparse_categorical_crossentropy")
    clf.fit(*tb.data.load_mnist("train"), epochs=epochs, verbose=0)
    clf.save(path)
    return clf


def test_distillation_targets_script_summarizes_the_soft_targets(tmp_path, digits_as_mnist):
    x, _ = tb.data.load_mnist("train")
    teacher = _fitted_and_saved(lambda: keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(10, activation="softmax")]),
        tmp_path / "t.keras", epochs=5)
    script = _script("distillation_targets", EXPERIMENT_SCRIPTS)
    out = tmp_path / "targets.json"
    script.main([str(tmp_path / "t.keras"), "--temperatures", "1", "3", "10",
                 "--n-val", "100", "--json", str(out)])
    result = json.loads(out.read_text())
    assert [result[s]["rows"] for s in ("fitted", "held_out", "test")] == [900, 100, 797]
    # At T = 1 the targets are the teacher's own predictions.
    p = teacher.predict(x[:900], verbose=0)
    y = tb.data.load_mnist("train")[1][:900]
    assert result["fitted"]["error_percent"] == pytest.approx(100 * np.mean(p.argmax(1) != y))
    assert result["fitted"]["T=1"]["mean_label_probability"] == pytest.approx(
        p[np.arange(900), y].mean(), abs=1e-5)
    # A softmax's entropy grows with its temperature (dH/dT = Var(z) / T^3).
    entropies = [result["fitted"][f"T={t}"]["mean_entropy_nats"] for t in (1, 3, 10)]
    assert entropies[0] < entropies[1] < entropies[2] < np.log(10)
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "t.keras"), "--temperatures", "0"])
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.keras")])
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "t.keras"), "--n-val", "-1"])
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "t.keras"), "--n-val", "1000"])


def test_check_vat_direction_script(tmp_path, digits_as_mnist):
    # its first layer: the mean-field augmentation, as in a fine-tuned DBM classifier
    _fitted_and_saved(lambda: tb.DBM([64, 16, 16]).to_sequential(10), tmp_path / "clf.keras",
                      epochs=3)
    script = _script("check_vat_direction", EXPERIMENT_SCRIPTS)
    out = tmp_path / "direction.json"
    script.main([str(tmp_path / "clf.keras"), "--first-row", "900", "--n-rows", "100",
                 "--xi", "1e-3", "--json", str(out)])
    result = json.loads(out.read_text())
    assert result["rows"] == 100
    # the exact float32 product against the float64 reference of the same step
    assert result["exact float32 H d vs float64 finite difference"]["median"] > 0.999
    for name in ("exact", "exact, oriented", "xi=0.001"):
        signed = result[f"{name} graph vs predicted-class gradient"]
        absolute = result[f"{name} graph vs predicted-class gradient, absolute"]
        assert absolute["min"] >= 0 and absolute["median"] >= abs(signed["median"]) - 1e-12
        assert 0 <= result[f"{name} graph: share of rows where the predicted class's loss "
                           "rises"] <= 1
    for bad in (["--first-row", "950"], ["--n-rows", "0"], ["--first-row", "-1"]):
        with pytest.raises(SystemExit):
            script.main([str(tmp_path / "clf.keras"), *bad])
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.keras")])


def test_results_tables_reads_the_published_dbms_files(tmp_path, monkeypatch, capsys):
    tables = _script("results_tables", EXPERIMENT_SCRIPTS)
    assert tables.RESULTS == SCRIPTS.parent / "docs" / "results"
    monkeypatch.setattr(tables, "RESULTS", tmp_path)
    tables.dbm_table()
    assert "| AIS log Z and test ELBO | not measured |" in capsys.readouterr().out
    run = {"seed": 3, "log_z": 1000.0, "log_z_low": 999.5, "log_z_high": 1000.25,
           "test_elbo": -85.25}
    (tmp_path / (tables.DBM_PREFIX + "ais_rbm_60k_5steps_seed3.json")).write_text(
        json.dumps({"n_betas": 60000, "runs": [run]}))
    (tmp_path / (tables.DBM_PREFIX + "ais_rbm_120k_5steps_seed2.json")).write_text(
        json.dumps({"n_betas": 120000, "runs": [{**run, "seed": 2, "test_elbo": -85.5}]}))
    for seed, error in ((0, 1.0), (1, 1.5)):
        (tmp_path / (tables.DBM_PREFIX + f"finetune_vat2_dropout0.2_cosine100_seed{seed}.json")
         ).write_text(json.dumps({"seed": seed, "test_error_percent": error}))
    tables.dbm_table()
    out = capsys.readouterr().out
    assert "| log Z (60,000-beta AIS, seed 3, log of mean ± 3 s.e.) | 1000.000 (999.500, " \
        "1000.250) |" in out
    assert "| average test ELBO (60,000-beta AIS seed 3) | -85.25 nats |" in out
    # the longer run is read too, and comes after the shorter one
    assert out.index("(60,000-beta AIS seed 3) | -85.25") < out.index(
        "(120,000-beta AIS seed 2) | -85.50 nats |")
    assert "1.00% / 1.50% (seeds 0, 1; mean 1.250%)" in out
    assert "150 epochs) | not measured |" in out


def test_check_mean_field_inits_script(tmp_path, digits_as_mnist):
    x = digits_as_mnist
    dbm = tb.DBM([64, 16, 16], seed=0)
    tb.pretrain_dbm(dbm, x[:1000], epochs=3, verbose=0)
    dbm.save(tmp_path / "dbm.keras")
    script = _script("check_mean_field_inits", EXPERIMENT_SCRIPTS)
    out = tmp_path / "inits.json"
    result = script.main([str(tmp_path / "dbm.keras"), "--n-iter", "30", "--n-random", "1",
                          "--n-rows", "200", "--json", str(out)])
    assert json.loads(out.read_text()) == result and result["rows"] == 200
    x_test = x[1000:1200]
    # the model's own figure is the library's ELBO with log Z = 0
    assert result["model_mean_field"] == pytest.approx(
        float(tb.ais.elbo(dbm, x_test, 0.0).mean()), abs=1e-4)
    # the script's sweeps from the bottom-up pass are the library's mean-field, no tolerance
    means = [tf.constant(m) for m in dbm.mean_field(x_test, n_mean_field=30, tol=0.0)]
    assert result["bottom-up pass"]["mean"] == pytest.approx(
        float(tb.ais.mean_field_bound(dbm, means).mean()), abs=1e-4)
    assert set(result) >= {"constant 0", "constant 0.5", "constant 1", "uniform, seed 0"}
    assert result["gain_of_the_per_example_best"] >= 0
    assert "bottom-up pass, by iterations" not in result
    by_n = script.main([str(tmp_path / "dbm.keras"), "--n-iter", "30", "--n-random", "0",
                        "--n-rows", "200", "--iterations", "30", "1", "2"])
    by_n = by_n["bottom-up pass, by iterations"]
    assert list(by_n) == ["1", "2", "30"]
    assert by_n["30"] == pytest.approx(result["bottom-up pass"]["mean"], abs=1e-5)
    means = [tf.constant(m) for m in dbm.mean_field(x_test, n_mean_field=2, tol=0.0)]
    assert by_n["2"] == pytest.approx(float(tb.ais.mean_field_bound(dbm, means).mean()), abs=1e-4)
    for bad in (["--n-iter", "0"], ["--n-rows", "0"], ["--n-random", "-1"],
                ["--iterations", "5", "0"]):
        with pytest.raises(SystemExit):
            script.main([str(tmp_path / "dbm.keras"), *bad])
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.keras")])


def test_rbm_features_logreg_script(tmp_path, monkeypatch, digits):
    x, y = digits
    rbm = tb.RBM(64, 16, learning="pcd", n_chains=10, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.05))
    rbm.fit(x[:500], batch_size=50, epochs=1, verbose=0)
    rbm.save(tmp_path / "rbm.keras")
    # the script's split is MNIST's (C picked on training rows 50,000-60,000)
    x_train, y_train = np.tile(x[:1000], (60, 1)), np.tile(y[:1000], 60)

    def load(split="train", binarize=None, seed=0):
        return (x_train, y_train) if split == "train" else (x[1000:], y[1000:])

    monkeypatch.setattr(tb.data, "load_mnist", load)
    out = tmp_path / "logreg.json"
    _script("rbm_features_logreg", EXPERIMENT_SCRIPTS).main(
        [str(tmp_path / "rbm.keras"), "--cs", "0.1", "1", "--json", str(out)])
    result = json.loads(out.read_text())
    val = result["validation_accuracy"]
    assert set(val) == {"0.1", "1.0"} and str(result["C"]) == max(val, key=val.get)
    # the same pipeline by hand: standardised hidden means, refit on every training row
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=result["C"], max_iter=500))
    clf.fit(rbm.transform(x_train), y_train)
    error = 100 * (1 - clf.score(rbm.transform(x[1000:]), y[1000:]))
    assert result["test_error_percent"] == pytest.approx(error)


def test_dbn_scripts_train_choose_on_held_out_rows_and_measure(tmp_path, digits_as_mnist):
    train = _script("train_dbn_mnist")
    out = tmp_path / "dbn"
    common = ["--layer-sizes", "64", "16", "16", "--pretrain-epochs", "1", "--batch-size", "50",
              "--eval-every", "1", "--validation", "200"]
    train.main([*common, "--epochs", "2", "--k-schedule", "1", "2", "--out", str(out)])
    state = json.loads((out / "state.json").read_text())
    assert state["evaluated_on"] == "validation: the last 200 training images"
    assert sorted(state["test_error"]) == ["0", "1", "2"] and state["epochs_done"] == 2
    assert keras.saving.load_model(out / "model.keras").k == 2  # the schedule's last part
    # Up-down from the greedy-trained file of that run (how the probes were run).
    again = tmp_path / "again"
    train.main([*common, "--epochs", "1", "--from-pretrained", str(out / "pretrained.keras"),
                "--out", str(again)])
    assert json.loads((again / "state.json").read_text())["test_error"]["0"] == (
        state["test_error"]["0"])

    # In legs, each with a fresh optimizer; the last keeps a moving average of the
    # weights, which is what is measured and saved (the last step's error beside it).
    legs = tmp_path / "legs"
    pretrained = ["--from-pretrained", str(out / "pretrained.keras")]
    train.main([*common, *pretrained, "--legs", "1:0.01:1", "1:0.005:2:0.9", "--out", str(legs)])
    state = json.loads((legs / "state.json").read_text())
    assert state["epochs_done"] == 2 and sorted(state["test_error"]) == ["0", "1", "2"]
    assert sorted(state["test_error_raw"]) == ["2"]
    averaged = keras.saving.load_model(legs / "model.keras")
    assert averaged.k == 2
    # the same two legs without the average end on the last step's weights: other ones
    plain = tmp_path / "plain"
    train.main([*common, *pretrained, "--legs", "1:0.01:1", "1:0.005:2", "--out", str(plain)])
    last_step = keras.saving.load_model(plain / "model.keras")
    assert "test_error_raw" not in json.loads((plain / "state.json").read_text())
    first_leg = tmp_path / "first_leg"
    train.main([*common, *pretrained, "--legs", "1:0.01:1", "--out", str(first_leg)])
    start = keras.saving.load_model(first_leg / "model.keras").top.kernel.numpy()
    moved, kept = last_step.top.kernel.numpy() - start, averaged.top.kernel.numpy() - start
    assert np.abs(moved).max() > 0 and not np.allclose(kept, moved)
    # --resume goes on in the leg where the run stopped; a leg may add the label term
    train.main([*common, *pretrained, "--legs", "1:0.01:1", "1:0.005:2:0.9", "2:0.005:1:-:3",
                "--resume", "--out", str(legs)])
    state = json.loads((legs / "state.json").read_text())
    assert state["epochs_done"] == 4 and sorted(state["test_error"]) == ["0", "1", "2", "3", "4"]
    again = keras.saving.load_model(legs / "model.keras")
    assert again.k == 1 and again.discriminative == 3.0
    log = (legs / "log.csv").read_text().splitlines()
    assert len(log) == 5 and log[0].split(",") == [
        "epoch", "generative_error", "k", "label_cross_entropy", "recognition_error",
        "top_reconstruction_error"]
    assert [row.split(",")[3] != "" for row in log[1:]] == [False, False, True, True]
    for bad in ("1:0.01", "0:0.01:1", "1:0.01:1:1.5", "a:b:c", "1:0.01:1:-:-2",
                "1:0.01:1:0.9:1:2"):
        with pytest.raises(SystemExit):
            train.parse_args(["--legs", bad])

    evaluate = _script("eval_dbn_mnist")
    result = evaluate.main([str(out / "model.keras"), "--n-betas", "50", "--n-chains", "10",
                            "--n-samples", "2", "--history", str(out / "state.json"),
                            "--figure", str(tmp_path / "errors.png"),
                            "--json", str(tmp_path / "eval.json")])
    assert json.loads((tmp_path / "eval.json").read_text()) == result
    assert 0 <= result["generative_test_error"] <= 100
    assert np.isfinite(result["log_z"]) and result["test_bound"] < 0
    assert (tmp_path / "errors.png").stat().st_size > 0
    # runs that continued one another: one curve, the epochs counting on
    runs = [json.loads((d / "state.json").read_text()) for d in (out, legs)]
    assert [(e, leg) for e, _, leg in evaluate.lineage_errors(runs)] == [
        (0, 0), (1, 0), (2, 0), (3, 1), (4, 1), (5, 1), (6, 1)]
    trained = evaluate.main([str(out / "model.keras"), "--no-bound", "--train-error"])
    assert 0 <= trained["generative_train_error"] <= 100 and "log_z" not in trained
    evaluate.main([str(out / "model.keras"), "--no-bound", "--history", str(out / "state.json"),
                   str(legs / "state.json"), "--history-labels", "CD-1/2", "legs",
                   "--figure", str(tmp_path / "lineage.png")])
    assert (tmp_path / "lineage.png").stat().st_size > 0
    with pytest.raises(ValueError, match="one --history-labels entry per --history file"):
        evaluate.main([str(out / "model.keras"), "--no-bound", "--history",
                       str(out / "state.json"), "--history-labels", "a", "b"])
