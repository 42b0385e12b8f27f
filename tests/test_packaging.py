"""Packaging: declared requirements, the constraints file, a quiet and quick import and
command line, the AIS estimator without TensorFlow Probability, and where the presets'
weights come from."""

import ast
import math
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import tfboltz.zoo as zoo
from tfboltz.ais import LogPartitionEstimate, log_mean_exp

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "tfboltz"
HEAVY = ("tensorflow", "keras", "tensorflow_datasets", "matplotlib")
# Generous against a loaded CI machine; measured 0.1-0.2 s on an idle 2-core one.
CLI_SECONDS = 3.0


def _setup_keywords():
    """The keyword arguments of setup() in setup.py, read without running it."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(node for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == "setup")
    return {k.arg: k.value for k in call.keywords}


def _requirements(*extras):
    keywords = _setup_keywords()
    found = [Requirement(r) for r in ast.literal_eval(keywords["install_requires"])]
    extras_require = ast.literal_eval(keywords["extras_require"])
    for extra in extras:
        found += [Requirement(r) for r in extras_require[extra]]
    return found


def _pins():
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _clean_env(**extra):
    """This environment without the test suite's own TensorFlow log level."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, **extra}


def _run(code, **env):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, env=_clean_env(**env), timeout=300)


# Requirements ----------------------------------------------------------------------

def _third_party_imports():
    """Top-level names of the non-standard modules tfboltz/ imports (function-local
    imports included)."""
    names = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n != "tfboltz"}


def test_install_requires_cover_every_import_of_the_package():
    declared = {canonicalize_name(r.name) for r in _requirements()}
    providers = metadata.packages_distributions()
    missing = {}
    for name in sorted(_third_party_imports()):
        distributions = {canonicalize_name(d) for d in providers.get(name, [])}
        if not distributions & declared:
            missing[name] = sorted(distributions) or "not installed"
    assert missing == {}, f"imported by tfboltz/ but not in install_requires: {missing}"


def test_no_tensorflow_probability_and_no_keras_2():
    declared = {canonicalize_name(r.name) for r in _requirements("dev")}
    assert not declared & {"tensorflow-probability", "tf-keras"}
    assert "tensorflow_probability" not in _third_party_imports()


def test_jax_is_an_extra_of_its_own():
    assert "jax" in {r.name for r in _requirements("jax")}
    assert "jax" not in {r.name for r in _requirements("dev")}


def test_constraints_pin_every_requirement_within_its_range():
    pins = _pins()
    for requirement in _requirements("dev", "jax"):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement} is not pinned in constraints.txt"
        assert requirement.specifier.contains(pins[name]), (requirement, pins[name])


def test_constraints_pin_everything_the_install_pulls():
    """Every distribution the installed requirements (and the dev extra) pull in is
    pinned; the installer's own (pip, setuptools, wheel) are left to it."""
    pins, todo, seen = _pins(), list(_requirements("dev")), set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        key = (name, tuple(sorted(requirement.extras)))
        if key in seen or name in ("pip", "setuptools", "wheel"):
            continue
        seen.add(key)
        assert name in pins, f"{name} (pulled in) is not pinned in constraints.txt"
        for line in metadata.requires(name) or []:
            sub = Requirement(line)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e})
                                         for e in ("", *requirement.extras)):
                todo.append(sub)


def test_the_makefile_installs_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install -q -c constraints.txt -e ".[dev]"' in makefile


def test_python_requires_admits_this_interpreter():
    spec = ast.literal_eval(_setup_keywords()["python_requires"])
    assert Requirement(f"python{spec}").specifier.contains(
        f"{sys.version_info.major}.{sys.version_info.minor}")


def test_every_published_weight_file_is_package_data():
    keywords = _setup_keywords()
    package_dir = ast.literal_eval(keywords["package_dir"])
    assert package_dir[zoo.WEIGHTS_PACKAGE] == "pretrained"
    assert ast.literal_eval(keywords["package_data"])[zoo.WEIGHTS_PACKAGE] == ["*.weights.h5"]
    for name in zoo.list_models():
        card = zoo.get_card(name)
        if card["weights_published"]:
            assert (ROOT / "pretrained" / card["files"][0]["name"]).is_file()


# Quiet and quick -------------------------------------------------------------------

def test_import_prints_nothing_and_loads_no_tensorflow():
    done = _run(f"import sys, tfboltz; print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]" and done.stderr == ""


def test_loading_tensorflow_through_tfboltz_prints_nothing():
    done = _run("import tfboltz as tb\n"
                "tb.RBM(8, 4, seed=0).sample(2, steps=3, seed=0)\n"
                "print([n for n in tb.__all__ if getattr(tb, n) is None])")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n" and done.stderr == ""


def test_a_model_module_imported_alone_still_finds_every_preset_class():
    done = _run("import tfboltz.rbm\nimport tfboltz.zoo as zoo\n"
                "print(type(zoo.from_preset('mnist_dbm', load_weights=False)).__name__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "DBM\n"


def test_a_log_level_the_user_set_is_kept():
    done = _run("import os, tfboltz; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])",
                TF_CPP_MIN_LOG_LEVEL="0")
    assert done.stdout.strip() == "0"
    done = _run("import os, tfboltz; print(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    assert done.stdout.strip() == "3"


def test_tensorflow_already_loaded_loads_tfboltz_at_once():
    """Then registering tfboltz's classes with Keras costs nothing more: `import
    tfboltz` does it, so `keras.saving.load_model` finds them."""
    done = _run("import keras, tfboltz; "
                "print(keras.saving.get_registered_object('tfboltz>DBM') is not None)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


@pytest.mark.parametrize("command", [["--help"], ["list"], ["version"]])
def test_quick_commands_are_quick_and_load_no_tensorflow(command):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tfboltz.cli", *command], capture_output=True,
                          text=True, cwd=ROOT, env=_clean_env(), timeout=60)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert seconds < CLI_SECONDS, f"tfboltz {command[0]} took {seconds:.2f} s"
    # In process, in a fresh interpreter: nothing heavy was imported.
    code = (f"import sys\nimport tfboltz.cli as cli\ntry:\n    cli.main({command!r})\n"
            "except SystemExit:\n    pass\n"
            f"print('HEAVY', sorted(m for m in {HEAVY!r} if m in sys.modules))")
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "HEAVY []"


def test_version_names_the_installed_versions():
    done = subprocess.run([sys.executable, "-m", "tfboltz.cli", "version"], capture_output=True,
                          text=True, cwd=ROOT, env=_clean_env(), timeout=60)
    assert done.stdout.strip() == (
        f"tfboltz {metadata.version('tfboltz')} (TensorFlow {metadata.version('tensorflow')}, "
        f"Keras {metadata.version('keras')}, Python {sys.version.split()[0]})")


# AIS without TensorFlow Probability -----------------------------------------------

# Computed with TensorFlow Probability 0.25.0 (TF 2.21.0) before it was dropped:
#     lw = np.random.default_rng(seed).normal(loc, scale, n)    # each key below
#     float(tfp.math.reduce_logmeanexp(lw))
# and, for the whole estimate, by the previous LogPartitionEstimate.from_log_weights
# (its log_z was log_z_base + tfp.math.reduce_logmeanexp(log_weights)) of
#     np.random.default_rng(3).normal(-40.0, 0.5, 100), log_z_base=543.21
# Over 2,000 random inputs (sizes 1-5,000, scales 1e-3-1e3, t-distributed) the two
# differed by at most 2.3e-13 (a relative 2.7e-16).
TFP_LOG_MEAN_EXP = {  # (seed, loc, scale, n): reduce_logmeanexp
    (0, 1600.0, 5.0, 100): 1606.7389624584036,
    (1, 0.0, 1.0, 10): 0.374326085332672,
    (2, -300.0, 30.0, 1000): -213.26589613358723,
    (3, -40.0, 2.0, 100): -37.5398768854913,
    (4, 5.0, 0.1, 2): 4.9589590501124725,
    (5, 0.0, 50.0, 20000): 177.8261285328874,
}
TFP_ESTIMATE = {"log_z": 503.3211022486379, "log_z_low": 503.12315784907116,
                "log_z_high": 503.48626453416335}


def _case(seed, loc, scale, n):
    return np.random.default_rng(seed).normal(loc, scale, n)


@pytest.mark.parametrize("case", sorted(TFP_LOG_MEAN_EXP))
def test_log_mean_exp_matches_tensorflow_probability(case):
    assert math.isclose(log_mean_exp(_case(*case)), TFP_LOG_MEAN_EXP[case], rel_tol=1e-14,
                        abs_tol=1e-12)


def test_log_mean_exp_edge_cases():
    assert log_mean_exp([0.0]) == 0.0
    assert math.isclose(log_mean_exp([0.0, math.log(3.0)]), math.log(2.0), rel_tol=1e-15)
    assert log_mean_exp([-math.inf, -math.inf]) == -math.inf
    assert log_mean_exp([1e4, 1e4]) == pytest.approx(1e4)   # no overflow
    assert log_mean_exp([-1e4, -1e4]) == pytest.approx(-1e4)  # no underflow
    assert math.isnan(log_mean_exp([0.0, math.nan]))


def test_the_estimate_equals_the_one_computed_with_tensorflow_probability():
    est = LogPartitionEstimate.from_log_weights(_case(3, -40.0, 0.5, 100), log_z_base=543.21,
                                                n_betas=1000, proposal="base_rate")
    for key, value in TFP_ESTIMATE.items():
        assert math.isclose(getattr(est, key), value, rel_tol=1e-14, abs_tol=1e-12), key


# Where the weights come from -------------------------------------------------------

def test_weights_source_in_a_checkout(monkeypatch):
    monkeypatch.delenv(zoo.MODELS_DIR_ENV, raising=False)
    where = zoo.weights_source("mnist_rbm")
    assert where == {"source": "checkout", "verified": True,
                     "location": str(ROOT / "pretrained" / "mnist_rbm.weights.h5")}
    assert zoo.weights_source("cifar10_gbm_dbm")["source"] == "unpublished"


def _as_package_data(monkeypatch, tmp_path):
    """Make `tfboltz.zoo` see the checkout's weight files as an installed tfboltz's
    package data (an editable install does not expose `tfboltz.zoo_weights`; the
    wheel does, which the packaging check of the release notes exercises)."""
    shipped = tmp_path / "site-packages" / "tfboltz" / "zoo_weights"
    shipped.mkdir(parents=True)
    for path in (ROOT / "pretrained").glob("*.weights.h5"):
        (shipped / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(zoo, "_shipped_file", lambda file_name: (
        shipped / file_name if (shipped / file_name).is_file() else None))
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv(zoo.MODELS_DIR_ENV, str(cache))
    monkeypatch.delenv(zoo.BASE_URL_ENV, raising=False)
    return shipped, cache


def test_weights_source_package_cache_download_missing(tmp_path, monkeypatch):
    shipped, cache = _as_package_data(monkeypatch, tmp_path)
    card = zoo.get_card("mnist_rbm")
    name = card["files"][0]["name"]
    assert zoo.weights_source("mnist_rbm") == {"source": "package", "verified": True,
                                               "location": str(shipped / name)}
    (cache / name).write_bytes(b"not the weights")
    assert zoo.weights_source("mnist_rbm") == {"source": "cache", "verified": False,
                                               "location": str(cache / name)}
    assert zoo.weights_source("mnist_rbm", verify=False)["verified"] is None
    (cache / name).unlink()
    (shipped / name).unlink()
    monkeypatch.setenv(zoo.BASE_URL_ENV, "http://127.0.0.1:1/weights/")
    assert zoo.weights_source("mnist_rbm") == {
        "source": "download", "verified": None,
        "location": f"http://127.0.0.1:1/weights/{name}"}
    monkeypatch.delenv(zoo.BASE_URL_ENV)
    url = card["files"][0]["url"]
    assert zoo.weights_source("mnist_rbm") == {
        "source": "download" if url else "missing", "location": url, "verified": None}


def test_list_says_where_each_file_comes_from(tmp_path, monkeypatch, capsys):
    import tfboltz.cli as cli

    shipped, cache = _as_package_data(monkeypatch, tmp_path)
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ("mnist_rbm", "mnist_dbm"):
        # The line under the model's: where its weights come from.
        state = lines[next(i for i, line in enumerate(lines) if line.startswith(name)) + 1]
        assert state.split() == ["weights", "shipped", "in", "the", "package:",
                                 str(shipped / f"{name}.weights.h5")]
    assert "weights not published" in "\n".join(lines)
    (cache / "mnist_rbm.weights.h5").write_bytes(b"corrupt")
    assert cli.main(["list"]) == 0
    assert "weights in the cache, FAILS its sha256 check" in capsys.readouterr().out


def test_card_urls_are_real_or_empty():
    """No card points at a download location that does not exist: a URL is either
    empty (the package and a checkout are the location) or one that answers."""
    for name in zoo.list_models():
        for entry in zoo.get_card(name)["files"]:
            assert entry["url"] == "" or not entry["url"].startswith(
                "https://github.com/tfboltz/tfboltz/releases/"), (name, entry["url"])
