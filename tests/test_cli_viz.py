"""The command line and the figures."""

import os
import subprocess
import sys

import numpy as np
import pytest

import tfboltz as tb
from tfboltz import cli


def test_cli_version(capsys):
    assert cli.main(["version"]) == 0
    assert "tfboltz 0.1.0" in capsys.readouterr().out


def test_cli_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "tfboltz.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "eval" in out and "version" in out


def test_plot_filters_writes_png(tmp_path):
    import matplotlib.image

    path = tb.viz.plot_filters(np.random.default_rng(0).normal(size=(64, 20)),
                               tmp_path / "f.png", image_shape=(8, 8), n=16)
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert img[..., :3].std() > 0.05  # not a blank image


def test_tile_images_layout():
    grid = tb.viz.tile_images(np.arange(6 * 4, dtype="f4").reshape(6, 4), (2, 2), n_cols=3)
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1)
    assert grid.min() == 0.0 and grid.max() == 1.0


def test_every_command_has_help(capsys):
    # In-process (the entry point itself is run as a subprocess above): argparse prints the
    # help and exits with status 0.
    import pytest

    for command in ("list", "fetch", "eval", "finetune", "sample", "plot", "train", "version"):
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--help"])
        assert exit_info.value.code == 0
        assert f"tfboltz {command}" in capsys.readouterr().out


def test_cli_sample_writes_a_png(tmp_path, digits, capsys):
    import matplotlib.image

    x, _ = digits
    dbm = tb.DBM([64, 12, 8], seed=0)
    tb.pretrain_dbm(dbm, x, epochs=2, verbose=0)
    dbm.save(tmp_path / "dbm.keras")
    out = tmp_path / "s.png"
    assert cli.main(["sample", str(tmp_path / "dbm.keras"), "--n", "16", "--steps", "10",
                     "--out", str(out)]) == 0
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 100 and img[..., :3].std() > 0.01
    assert "wrote" in capsys.readouterr().out


def test_cli_reports_a_missing_file():
    import pytest

    with pytest.raises(SystemExit, match="no such model file"):
        cli.main(["sample", "nowhere/missing.keras"])


def _png_size(path):
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img[..., :3].std() > 0.01, f"{path} is blank"
    return img.shape[:2]


def test_every_figure_is_a_non_empty_png(tmp_path, digits):

    x, y = digits
    dbm = tb.DBM([64, 12, 8], seed=0)
    tb.pretrain_dbm(dbm, x, epochs=2, verbose=0)
    dbn = tb.DBN([64, 16, 12], num_classes=10, seed=0)
    tb.pretrain_dbn(dbn, x, y, epochs=2, verbose=0)
    rbm = tb.RBM(64, 16, learning="pcd", seed=0)
    hist = rbm.fit(x, epochs=2, validation_data=x[:200], verbose=0)
    # As keras.callbacks.CSVLogger writes it when a metric has no value ("NA").
    (tmp_path / "log.csv").write_text("epoch,loss,val_loss,acc,val_acc\n0,1.0,1.1,0.5,NA\n"
                                      "1,0.5,0.7,0.6,NA\n")
    est = [tb.ais.log_partition(rbm, n_chains=10, n_betas=b, verbose=0) for b in (50, 200)]
    figures = {
        "samples": tb.viz.plot_samples(dbm.sample(16, steps=5), tmp_path / "s.png", (8, 8)),
        "recon": tb.viz.plot_reconstructions(x, rbm.reconstruct(x[:10]), tmp_path / "r.png",
                                             (8, 8)),
        "mean_field": tb.viz.plot_mean_field(dbm, x, tmp_path / "m.png", n=3),
        "classes": tb.viz.plot_class_samples(dbn, tmp_path / "c.png", per_class=3, steps=5,
                                             image_shape=(8, 8)),
        "history": tb.viz.plot_history(hist, tmp_path / "h.png"),
        "csv": tb.viz.plot_history(tmp_path / "log.csv", tmp_path / "h2.png"),
        "ais": tb.viz.plot_ais_betas([50, 200], est, tmp_path / "a.png"),
        "deep_filters": tb.viz.plot_filters(tb.viz.project_filters(
            [k.numpy() for k in dbm.kernels]), tmp_path / "f.png", (8, 8), n=8),
    }
    for name, path in figures.items():
        h, w = _png_size(path)
        assert h > 100 and w > 100, name
    h, w = _png_size(figures["history"])
    assert w > 2 * h  # one panel per metric, side by side


def test_tensorboard_callback_writes_the_expected_tags(tmp_path, digits):
    import tensorflow as tf

    x, _ = digits
    rbm = tb.RBM(64, 16, learning="pcd", seed=0)
    rbm.fit(x, epochs=2, verbose=0, callbacks=[tb.callbacks.BoltzmannTensorBoard(
        tmp_path, freq=1, image_shape=(8, 8), n_images=16)])
    tags = set()
    for event_file in tmp_path.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(event_file)):
            tags.update(v.tag for v in event.summary.value)
    assert {"reconstruction_error", "filters", "fantasy_particles"} <= tags
    assert any("kernel" in t for t in tags) and any("bias" in t for t in tags)


def test_cli_list_and_fetch(capsys):
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    assert "mnist_rbm" in out and "mnist_dbm" in out and "weights not published" in out
    assert cli.main(["fetch", "mnist_rbm", "mnist_dbm"]) == 0  # shipped files: verified, kept
    assert "sha256 ok" in capsys.readouterr().out
    assert cli.main(["fetch", "no_such_model"]) == 1
    assert "no_such_model" in capsys.readouterr().err


def test_figures_leave_the_matplotlib_backend_alone(tmp_path):
    """A notebook's or an application's backend stays as it was: the figures are drawn
    without pyplot."""
    code = ("import sys, matplotlib, numpy as np\nimport tfboltz.viz as viz\n"
            f"viz.save_image_grid(np.random.rand(4, 4), {str(tmp_path / 'g.png')!r}, (2, 2))\n"
            f"viz.plot_history({{'loss': [1.0, 0.5]}}, {str(tmp_path / 'h.png')!r})\n"
            "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "svg"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "False"]
    assert (tmp_path / "g.png").stat().st_size > 0 and (tmp_path / "h.png").stat().st_size > 0


# Progress bars ---------------------------------------------------------------------

def test_progress_bars_show_the_same_samples(digits, capsys):
    """verbose=1 runs the sweeps in chunks between updates of a bar; the draws are
    the same, bit for bit, as from one graph call (verbose=0)."""
    x, _ = digits
    rbm = tb.RBM(64, 12, seed=0)
    dbm = tb.DBM([64, 16, 8], n_chains=10, seed=0)
    dbn = tb.DBN([64, 16, 12], num_classes=10, seed=0)
    deep_dbn = tb.DBN([64, 16, 12, 8], seed=0)
    clamp = np.arange(64) < 32
    draws = {
        "rbm": lambda v: rbm.sample(5, steps=7, seed=1, verbose=v),
        "rbm, many chunks": lambda v: rbm.sample(5, steps=250, seed=1, means=False, verbose=v),
        "rbm completion": lambda v: rbm.sample(init=x[:5], clamp=clamp, steps=7, seed=1,
                                               means=False, verbose=v),
        "dbm": lambda v: dbm.sample(5, steps=7, seed=1, verbose=v),
        "dbm states": lambda v: dbm.sample(5, steps=7, seed=1, means=False, verbose=v),
        "dbm completion": lambda v: dbm.sample(init=x[:5], clamp=clamp, steps=7, seed=1,
                                               verbose=v),
        "dbn generate": lambda v: dbn.generate(np.arange(5), steps=7, seed=1, verbose=v),
        "dbn sample": lambda v: dbn.sample(5, steps=7, seed=1, means=False, verbose=v),
        "dbn completion": lambda v: dbn.sample(init=x[:5], clamp=clamp, steps=7, seed=1,
                                               verbose=v),
        "deep dbn completion": lambda v: deep_dbn.sample(init=x[:5], clamp=clamp, steps=7,
                                                         seed=1, means=False, verbose=v),
        "dbn classify": lambda v: dbn.classify(x[:5], method="gibbs", steps=7, seed=1,
                                               verbose=v),
    }
    for name, draw in draws.items():
        quiet = draw(0)
        assert capsys.readouterr().out == "", name
        shown = draw(1)
        out = capsys.readouterr().out
        np.testing.assert_array_equal(shown, quiet, err_msg=name)
        steps = 250 if "many" in name else 7
        assert f"{steps}/{steps}" in out and "sweep" in out, (name, out)
    # "auto", the default: no bar where standard output is not a terminal (as here).
    rbm.sample(5, steps=7, seed=1)
    dbn.classify(x[:5], method="gibbs", steps=7, seed=1)
    assert capsys.readouterr().out == ""


def test_mean_field_progress_bar_counts_rows(digits, capsys):
    x, _ = digits
    dbm = tb.DBM([64, 16, 8], seed=0)
    quiet = dbm.mean_field(x[:30], batch_size=10, verbose=0)
    assert capsys.readouterr().out == ""
    shown = dbm.mean_field(x[:30], batch_size=10, verbose=1)
    assert "30/30" in capsys.readouterr().out
    for a, b in zip(quiet, shown):
        np.testing.assert_array_equal(a, b)
    dbm.mean_field(x[:30], verbose=1)  # one batch, one graph call: nothing to show
    assert capsys.readouterr().out == ""


def test_verbose_is_checked():
    import pytest

    with pytest.raises(ValueError, match="verbose"):
        tb.RBM(8, 4, seed=0).sample(2, steps=1, verbose="yes")


def test_write_json_replaces_the_file_whole_or_not_at_all(tmp_path, monkeypatch):
    """The measurement files are written under a temporary name and renamed: a failure
    before the rename leaves the old file as it was."""
    import json

    path = tmp_path / "sub" / "result.json"
    cli.write_json(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        cli.write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 1}
    monkeypatch.undo()
    cli.write_json(path, {"a": 3})
    assert json.loads(path.read_text()) == {"a": 3}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # nothing left over
