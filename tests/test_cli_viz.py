"""The command line and the figures."""

import subprocess
import sys

import numpy as np

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


def test_every_command_has_help():
    for command in ("list", "fetch", "eval", "finetune", "sample", "train", "version"):
        out = subprocess.run([sys.executable, "-m", "tfboltz.cli", command, "--help"],
                             capture_output=True, text=True, check=True).stdout
        assert f"tfboltz {command}" in out


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
