"""The model zoo: cards, registry, presets, verified downloads from a local server,
loading, publishing, and fetch_models.sh."""

import hashlib
import http.server
import importlib.util
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import tfboltz as tb
from tfboltz import zoo

REPO_ROOT = Path(__file__).resolve().parent.parent
ZOO_NAMES = ["cifar10_gbm_dbm", "mnist_dbm", "mnist_dbn", "mnist_rbm"]
TEST_NAME = "test_tiny_rbm"
TEST_FILE = TEST_NAME + ".weights.h5"
# Two fixed inputs of the golden tests: a blank image and a seeded random sparse one.
GOLDEN_X = np.stack([np.zeros(784, "float32"),
                     (np.random.default_rng(0).random(784) < 0.13).astype("float32")])


class WeightServer:
    """A local HTTP server whose behaviour each test sets through `mode`.

    Modes: "ok" serves the file; "404" / "500" answer with that status; "slow" sleeps
    `delay` seconds before answering; "truncated" announces the full length, sends
    half the body and closes; "corrupt" sends a body of the right length with one
    byte changed; "wrong_size" sends (and announces) a body 10 bytes short.
    """

    def __init__(self):
        self.files = {}
        self.mode = "ok"
        self.delay = 2.0
        self.requests = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path.rsplit("/", 1)[-1])
                if body is None or server.mode == "404":
                    self.send_error(404)
                    return
                if server.mode == "500":
                    self.send_error(500)
                    return
                if server.mode == "slow":
                    time.sleep(server.delay)
                if server.mode in ("flood", "drip"):  # no Content-Length, no end
                    try:
                        self.send_response(200)
                        self.end_headers()
                        for _ in range(20_000):
                            self.wfile.write(b"x" * (1 if server.mode == "drip" else 65536))
                            self.wfile.flush()
                            if server.mode == "drip":
                                time.sleep(0.3)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                    return
                length = len(body)
                if server.mode == "corrupt":
                    body = bytes([body[0] ^ 0xFF]) + body[1:]
                elif server.mode == "wrong_size":
                    body = body[:-10]
                    length = len(body)
                elif server.mode == "truncated":
                    body = body[: len(body) // 2]
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Length", str(length))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (the timeout test)
                self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.httpd.server_port}/mirror/v0"


@pytest.fixture
def server():
    s = WeightServer()
    s.thread.start()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()
    s.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("TFBOLTZ_BASE_URL", raising=False)
    monkeypatch.delenv("TFBOLTZ_MODELS", raising=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A small RBM with random weights, saved as .weights.h5: (model, bytes, sha256)."""
    rbm = tb.RBM(6, 4, learning="pcd", n_chains=3, seed=0)
    rng = np.random.default_rng(1)
    for v in rbm.weights:
        if v.dtype == "float32":
            v.assign(rng.normal(size=v.shape).astype("float32"))
    path = tmp_path_factory.mktemp("tiny") / TEST_FILE
    rbm.save_weights(path)
    data = path.read_bytes()
    return rbm, data, hashlib.sha256(data).hexdigest()


def make_card(name=TEST_NAME, sha256="0" * 64, size=0, **overrides):
    card = {
        "name": name,
        "version": "1.0",
        "description": "a 6-4 Bernoulli RBM for the tests",
        "model_class": "RBM",
        "registered_name": "tfboltz>RBM",
        "config": {"n_visible": 6, "n_hidden": 4, "learning": "pcd", "n_chains": 3, "seed": 0},
        "architecture": {"n_visible": 6, "n_hidden": 4, "seed": 0},
        "preprocessing": "binary rows of 6",
        "recipe": {"script": "scripts/train_rbm_mnist.py", "args": ["--n-hidden", "4"]},
        "files": [{"name": name + ".weights.h5", "sha256": sha256, "size": size,
                   "url": f"https://example.invalid/releases/{name}.weights.h5"}],
        "weights_published": True,
        "parameters": 6 * 4 + 6 + 4,
        "metrics": [{"name": "nll", "value": 1.5, "unit": "nats", "command": "python x.py"}],
        "license": "MIT",
        "date": "2026-11-23",
        "notes": "",
    }
    card.update(overrides)
    return card


@pytest.fixture
def card(tiny, server):
    """The tiny RBM registered as a zoo card (removed afterwards), served by `server`."""
    rbm, data, sha = tiny
    server.files[TEST_FILE] = data
    c = make_card(sha256=sha, size=len(data), config=json.loads(json.dumps(rbm.get_config())))
    zoo.register(c)
    yield c
    zoo.unregister(TEST_NAME)


def leftovers(directory):
    return sorted(p.name for p in Path(directory).glob("*.part*"))


def assert_same_variables(model, other):
    """Every variable of the two models, in order, equal bit for bit (dtype included)."""
    assert [v.name for v in model.weights] == [v.name for v in other.weights]
    for a, b in zip(model.weights, other.weights, strict=True):
        a, b = keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b)
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def sha256_of(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def h5_groups(path):
    """The top-level group names of an HDF5 file."""
    with h5py.File(path, "r") as f:
        return sorted(f)


# ---------------------------------------------------------------- registry and cards


def test_list_models_has_the_zoo_cards():
    assert set(ZOO_NAMES) <= set(zoo.list_models())
    assert zoo.list_models() == sorted(zoo.list_models())
    assert TEST_NAME not in zoo.list_models()


def test_unknown_name_lists_known_names():
    for call in (zoo.get_card, zoo.load, zoo.fetch, zoo.model_path, zoo.from_preset):
        with pytest.raises(ValueError, match="Unknown zoo model") as info:
            call("no_such_model")
        assert "mnist_rbm" in str(info.value) and "no_such_model" in str(info.value)


def test_register_twice_raises(card):
    assert TEST_NAME in zoo.list_models()
    with pytest.raises(ValueError, match=f"'{TEST_NAME}' is already registered"):
        zoo.register(card)
    with pytest.raises(ValueError, match="'mnist_rbm' is already registered"):
        zoo.register(zoo.get_card("mnist_rbm"))


def test_register_copies_and_get_card_returns_copy(card):
    card["description"] = "changed after registering"
    zoo.get_card(TEST_NAME)["architecture"]["n_hidden"] = 99
    assert zoo.get_card(TEST_NAME)["description"] == "a 6-4 Bernoulli RBM for the tests"
    assert zoo.get_card(TEST_NAME)["architecture"]["n_hidden"] == 4


def test_unregister_unknown_name():
    with pytest.raises(ValueError, match="Unknown zoo model"):
        zoo.unregister("no_such_model")


def _without(key):
    c = make_card()
    del c[key]
    return c


def _edit(path, value):
    c = make_card()
    *parents, last = path
    target = c
    for p in parents:
        target = target[p]
    target[last] = value
    return c


@pytest.mark.parametrize("card_, match", [
    (_without("license"), r"missing key\(s\) \['license'\]"),
    (_without("weights_published"), r"missing key\(s\) \['weights_published'\]"),
    (make_card(extra=1), r"unknown key\(s\) \['extra'\]"),
    (make_card(model_class="GBM"), "Expected `model_class` to be one of"),
    (make_card(model_class="DBM"), "Expected `registered_name` to be the Keras registered"),
    (make_card(registered_name="RBM"), "Expected `registered_name` to be the Keras registered"),
    (make_card(config=None), "Expected `card.config` to be an object"),
    (make_card(config={"n_visible": 7, "n_hidden": 4}), r"Expected `config.n_visible` to equal"),
    (_without("config"), r"missing key\(s\) \['config'\]"),
    (make_card(architecture={"n_visible": 6}), r"missing key\(s\) \['n_hidden'\]"),
    (make_card(parameters=True), "Expected `card.parameters` to be an integer"),
    (make_card(parameters="34"), "Expected `card.parameters` to be an integer"),
    (make_card(weights_published="yes"), "Expected `card.weights_published` to be a boolean"),
    (make_card(date="23/11/2026"), "Expected `date` as YYYY-MM-DD"),
    (make_card(name="Bad-Name"), "Expected `name` to be lower case"),
    (make_card(files=[]), "`weights_published` is true"),
    (_edit(("files", 0, "sha256"), "abc"), r"Expected `files\[0\].sha256` to be 64"),
    (_edit(("files", 0, "size"), -1), r"Expected `files\[0\].size` to be a non-negative"),
    (_edit(("files", 0, "url"), "https://x/other.keras"), r"Expected `files\[0\].url`"),
    (_edit(("files", 0, "url"), "ftp://x/" + TEST_FILE), r"Expected `files\[0\].url`"),
    (make_card(files=[{"name": "m.keras", "sha256": "0" * 64, "size": 1, "url": ""}]),
     r"Expected the first entry of `files` to be the `.weights.h5`"),
    (_edit(("files", 0, "name"), "../x.keras"), r"Expected `files\[0\].name` to be a plain"),
    (_edit(("files", 0), {"name": TEST_FILE}), r"missing key\(s\) \['sha256', 'size', 'url'\]"),
    (_edit(("recipe", "args"), ["--epochs", 3]), "Expected `recipe.args` to be a list of str"),
    (_edit(("recipe", "script"), "train.sh"), "Expected `recipe.script` to be a path"),
    (_edit(("metrics", 0, "value"), "1.5"), r"Expected `metrics\[0\].value` to be a number"),
])
def test_card_validation_errors(card_, match):
    with pytest.raises(ValueError, match=match) as info:
        zoo.register(card_)
    assert "Invalid model card" in str(info.value)
    assert card_.get("name", "<unnamed>") in str(info.value)
    assert TEST_NAME not in zoo.list_models()


def test_unpublished_card_may_have_no_files():
    c = make_card(name="test_unpublished", files=[], weights_published=False)
    zoo.register(c)
    try:
        with pytest.raises(zoo.FetchError, match="not yet published"):
            zoo.fetch("test_unpublished")
    finally:
        zoo.unregister("test_unpublished")


def test_register_rejects_non_json_values():
    with pytest.raises(ValueError, match="JSON values"):
        zoo.register(make_card(notes=object()))


def test_card_files_are_valid_and_named_after_their_card():
    files = sorted((REPO_ROOT / "zoo").glob("*.json"))
    assert [f.stem for f in files] == ZOO_NAMES
    for f in files:
        card = json.loads(f.read_text(encoding="utf-8"))
        zoo.validate_card(card)
        assert card["name"] == f.stem
        assert card == zoo.get_card(f.stem)


def _use_cards_package(monkeypatch, tmp_path, package):
    """Point the registry at the namespace package `package` under tmp_path."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(zoo, "CARDS_PACKAGE", package)
    monkeypatch.setattr(zoo, "_REPO_ROOT", tmp_path / "no_checkout")
    monkeypatch.setattr(zoo, "_registry", None)


def test_cards_are_found_through_importlib_resources(monkeypatch, tmp_path):
    # Laid out like an installed wheel: a package directory of JSON files, no __init__.py.
    package = tmp_path / "installed_zoo_cards"
    package.mkdir()
    for name in ZOO_NAMES:
        shutil.copy(REPO_ROOT / "zoo" / f"{name}.json", package)
    _use_cards_package(monkeypatch, tmp_path, "installed_zoo_cards")
    assert {Path(str(s)).parent for s in zoo._card_sources()} == {package}
    assert zoo.list_models() == ZOO_NAMES


def test_a_bad_card_file_is_named_and_left_out(monkeypatch, tmp_path):
    package = tmp_path / "bad_zoo_cards"
    package.mkdir()
    shutil.copy(REPO_ROOT / "zoo" / "mnist_rbm.json", package)
    (package / "broken.json").write_text("{not json", encoding="utf-8")
    _use_cards_package(monkeypatch, tmp_path, "bad_zoo_cards")
    with pytest.warns(UserWarning, match="Invalid model card 'broken': broken.json is not valid"):
        assert zoo.list_models() == ["mnist_rbm"]
    with pytest.raises(ValueError, match="Invalid model card 'broken': broken.json is not valid"):
        zoo.get_card("broken")
    (package / "broken.json").write_text(json.dumps(make_card(name="other")), encoding="utf-8")
    monkeypatch.setattr(zoo, "_registry", None)
    with pytest.warns(UserWarning, match="Expected `name` to match the file name broken.json"):
        assert zoo.list_models() == ["mnist_rbm"]


def test_setup_py_ships_the_cards_as_package_data():
    setup = (REPO_ROOT / "setup.py").read_text(encoding="utf-8")
    assert '"tfboltz.zoo_cards": "zoo"' in setup and '"tfboltz.zoo_cards": ["*.json"]' in setup


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_untrained_model_matches_its_card(name):
    card = zoo.get_card(name)
    model = zoo.load(name, pretrained=False)
    assert type(model).__name__ == card["model_class"]
    n_trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert n_trainable == card["parameters"]
    if name == "cifar10_gbm_dbm":
        assert isinstance(model.unit_layers[0], tb.units.GaussianUnits)
        assert isinstance(model.unit_layers[-1], tb.units.SoftmaxUnits)
        assert model.unit_layers[-1].group_size == 10


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_recipe_script_exists(name):
    card = zoo.get_card(name)
    script = REPO_ROOT / card["recipe"]["script"]
    if not script.is_file() and not card["weights_published"]:
        pytest.skip(f"{card['recipe']['script']} is not written yet (no weights published)")
    assert script.is_file()


# ---------------------------------------------------------------- weights location


def test_weights_dir_precedence(monkeypatch, tmp_path):
    assert zoo.weights_dir() == REPO_ROOT / "pretrained"
    monkeypatch.setenv("TFBOLTZ_MODELS", str(tmp_path / "env"))
    assert zoo.weights_dir() == tmp_path / "env"
    assert zoo.weights_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("TFBOLTZ_MODELS")
    monkeypatch.setattr(zoo, "_REPO_ROOT", tmp_path / "site-packages")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert zoo.weights_dir() == tmp_path / "home" / ".cache" / "tfboltz" / "models"


def test_model_path(card, tmp_path):
    assert zoo.model_path(TEST_NAME, cache_dir=tmp_path) == str(tmp_path / TEST_FILE)
    assert zoo.model_path("mnist_rbm") == str(REPO_ROOT / "pretrained" /
                                              "mnist_rbm.weights.h5")


def test_committed_mnist_rbm_matches_its_card():
    entry = zoo.get_card("mnist_rbm")["files"][0]
    path = Path(zoo.model_path("mnist_rbm"))
    assert path.stat().st_size == entry["size"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    sums = dict(reversed(line.split()) for line in
                (REPO_ROOT / "pretrained" / "SHA256SUMS").read_text().splitlines() if line)
    assert sums["mnist_rbm.weights.h5"] == entry["sha256"]


def test_sha256sums_agree_with_the_cards():
    hashes = {f["name"]: f["sha256"] for n in ZOO_NAMES for f in zoo.get_card(n)["files"]}
    listed = {}
    for line in (REPO_ROOT / "pretrained" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        listed[name] = digest
    assert listed == hashes


# ---------------------------------------------------------------- fetch


def test_fetch_downloads_verifies_and_places(card, server, tiny, tmp_path, capsys):
    paths = zoo.fetch(TEST_NAME, cache_dir=tmp_path / "models", base_url=server.url + "/")
    assert paths == [str(tmp_path / "models" / TEST_FILE)]
    assert Path(paths[0]).read_bytes() == tiny[1]
    assert server.requests == [f"/mirror/v0/{TEST_FILE}"]
    assert leftovers(tmp_path / "models") == []
    assert f"{TEST_NAME}: downloading {TEST_FILE}" in capsys.readouterr().out


def test_second_fetch_keeps_the_file(card, server, tmp_path, capsys):
    zoo.fetch(TEST_NAME, cache_dir=tmp_path, base_url=server.url, progress=False)
    assert capsys.readouterr().out == ""
    zoo.fetch(TEST_NAME, cache_dir=tmp_path, base_url=server.url)
    assert len(server.requests) == 1
    assert f"{TEST_NAME}: {TEST_FILE} present, sha256 ok" in capsys.readouterr().out


@pytest.mark.parametrize("mode, cause", [
    ("corrupt", "sha256 mismatch"),
    ("404", "HTTP error 404"),
    ("500", "HTTP error 500"),
    ("slow", "timed out after 0.3 s"),
    ("truncated", "cut short"),
    ("wrong_size", "the server announces"),
])
def test_failed_download_leaves_nothing_and_can_be_rerun(card, server, tmp_path, mode, cause):
    server.mode = mode
    with pytest.raises(zoo.FetchError) as info:
        zoo.fetch(TEST_NAME, cache_dir=tmp_path, base_url=server.url, timeout=0.3,
                  progress=False)
    message = str(info.value)
    assert f"model '{TEST_NAME}'" in message and TEST_FILE in message and cause in message
    assert not (tmp_path / TEST_FILE).exists()
    assert leftovers(tmp_path) == []
    server.mode = "ok"
    zoo.fetch(TEST_NAME, cache_dir=tmp_path, base_url=server.url, progress=False)
    assert (tmp_path / TEST_FILE).is_file() and leftovers(tmp_path) == []


def test_connection_refused_is_a_fetch_error(card, tmp_path):
    with pytest.raises(zoo.FetchError, match="could not connect"):
        zoo.fetch(TEST_NAME, cache_dir=tmp_path, base_url="http://127.0.0.1:9", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_base_url_from_the_environment(card, server, tmp_path, monkeypatch):
    monkeypatch.setenv("TFBOLTZ_BASE_URL", server.url)
    monkeypatch.setenv("TFBOLTZ_MODELS", str(tmp_path))
    assert zoo.fetch(TEST_NAME, progress=False) == [str(tmp_path / TEST_FILE)]
    assert server.requests == [f"/mirror/v0/{TEST_FILE}"]


def test_fetch_replaces_a_corrupted_file(card, server, tiny, tmp_path, capsys):
    (tmp_path / TEST_FILE).write_bytes(b"not the weights")
    zoo.fetch(TEST_NAME, cache_dir=tmp_path, base_url=server.url)
    assert (tmp_path / TEST_FILE).read_bytes() == tiny[1]
    assert "fails its sha256 check" in capsys.readouterr().out


@pytest.mark.parametrize("mode", ["500", "corrupt", "truncated"])
def test_failed_refetch_leaves_the_mismatching_file_as_it_was(card, server, tmp_path, mode):
    # The file in place may be the user's own: only a verified download replaces it.
    (tmp_path / TEST_FILE).write_bytes(b"not the weights")
    server.mode = mode
    with pytest.raises(zoo.FetchError, match="fails its sha256 check, was left as it was"):
        zoo.fetch(TEST_NAME, cache_dir=tmp_path, base_url=server.url, progress=False)
    assert list(tmp_path.iterdir()) == [tmp_path / TEST_FILE]
    assert (tmp_path / TEST_FILE).read_bytes() == b"not the weights"
    with pytest.raises(zoo.FetchError, match="fails its sha256 check"):
        zoo.load(TEST_NAME, cache_dir=tmp_path)


# ---------------------------------------------------------------- load


def test_load_pretrained_fetches_and_has_the_same_weights(card, server, tiny, tmp_path,
                                                          monkeypatch):
    monkeypatch.setenv("TFBOLTZ_BASE_URL", server.url)
    model = zoo.load(TEST_NAME, cache_dir=tmp_path)
    assert isinstance(model, tb.RBM) and len(server.requests) == 1
    assert_same_variables(model, tiny[0])
    zoo.load(TEST_NAME, cache_dir=tmp_path)
    assert len(server.requests) == 1


def test_load_untrained_builds_the_architecture(card):
    model = zoo.load(TEST_NAME, pretrained=False)
    assert isinstance(model, tb.RBM) and (model.n_visible, model.n_hidden) == (6, 4)


def test_load_reports_a_corrupted_file(card, tmp_path):
    (tmp_path / TEST_FILE).write_bytes(b"not the weights")
    with pytest.raises(zoo.FetchError, match=f"fails its sha256 check.*tfboltz fetch {TEST_NAME}"):
        zoo.load(TEST_NAME, cache_dir=tmp_path)


def test_load_reports_a_failed_fetch(card, server, tmp_path, monkeypatch):
    monkeypatch.setenv("TFBOLTZ_BASE_URL", server.url)
    server.mode = "404"
    with pytest.raises(zoo.FetchError, match=f"HTTP error 404.*{TEST_FILE}|{TEST_FILE}.*HTTP"):
        zoo.load(TEST_NAME, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unpublished_weights(tmp_path):
    for call in (lambda: zoo.fetch("cifar10_gbm_dbm", cache_dir=tmp_path),
                 lambda: zoo.load("cifar10_gbm_dbm", cache_dir=tmp_path),
                 lambda: zoo.model_path("cifar10_gbm_dbm")):
        with pytest.raises(zoo.FetchError, match="not yet published") as info:
            call()
        assert "tfboltz train cifar10_gbm_dbm" in str(info.value)
        assert "scripts/train_dbm_cifar10.py --out runs/cifar10_dbm" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_load_committed_mnist_rbm():
    model = zoo.load("mnist_rbm")
    card = zoo.get_card("mnist_rbm")
    assert isinstance(model, tb.RBM)
    assert (model.n_visible, model.n_hidden) == (784, 1024)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == card["parameters"]
    config = model.get_config()
    for key, value in card["architecture"].items():
        if key in ("visible", "hidden"):
            assert config[key]["class_name"].lower() == value + "units"
        else:
            assert config[key] == value, key


@pytest.mark.parametrize("name", [n for n in ZOO_NAMES if zoo.get_card(n)["weights_published"]])
def test_committed_weights_match_their_cards(name):
    for entry in zoo.get_card(name)["files"]:
        path = REPO_ROOT / "pretrained" / entry["name"]
        assert path.stat().st_size == entry["size"], name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"], name


@pytest.mark.parametrize("name", ZOO_NAMES)
def test_every_card_builds_trains_a_step_and_round_trips(name, tmp_path):
    model = zoo.load(name, pretrained=False)
    rng = np.random.default_rng(0)
    if isinstance(model.visible_layer, tb.units.GaussianUnits):
        x = rng.normal(size=(10, model.n_visible)).astype("float32")
    else:
        x = (rng.random((10, model.n_visible)) < 0.2).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    labels = (np.arange(10) % model.num_classes,) if getattr(model, "num_classes", 0) else ()
    model.fit(x, *labels, batch_size=10, epochs=1, verbose=0)
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    assert_same_variables(again, model)
    # and as a preset: card + weights without the optimizer state `fit` created
    card = zoo.save_preset(model, tmp_path / "preset", zoo.get_card(name))
    assert card["config"] == json.loads(json.dumps(model.get_config()))
    preset = zoo.from_preset(tmp_path / "preset")
    assert type(preset) is type(model) and not hasattr(preset, "optimizer")
    assert_same_variables(preset, model)
    assert sorted(p.name for p in (tmp_path / "preset").iterdir()) == [
        f"{name}.json", f"{name}.weights.h5"]
    assert "optimizer" not in h5_groups(tmp_path / "preset" / f"{name}.weights.h5")


def test_committed_mnist_dbm_golden_outputs():
    """Mean-field means of two fixed inputs, recorded from the published file (30
    iterations, no early stop): any change to the weights or to mean-field shows."""
    dbm = zoo.load("mnist_dbm")
    x = np.stack([np.zeros(784, "float32"),
                  (np.random.default_rng(0).random(784) < 0.13).astype("float32")])
    means = dbm.mean_field(x, n_mean_field=30, tol=0.0)
    np.testing.assert_allclose(means[1].sum(1), [226.40138, 193.46533], rtol=1e-4)
    np.testing.assert_allclose(means[2].sum(1), [98.73027, 108.22832], rtol=1e-4)
    np.testing.assert_allclose(means[2][1, :3], [0.03300435, 0.01436389, 0.03837834],
                               rtol=1e-3)


def test_committed_mnist_rbm_golden_outputs():
    """Hidden means and free energies of two fixed inputs, recorded from the whole-model
    file published before the preset format (mnist_rbm.keras, sha256 4fdecf1e...): the
    preset's weights are the same to the bit, so these hold exactly."""
    rbm = zoo.load("mnist_rbm")
    h = np.asarray(rbm.transform(GOLDEN_X))
    np.testing.assert_allclose(h.sum(1), [124.69194, 36.181778], rtol=1e-5)
    np.testing.assert_allclose(h[1, :3], [0.00224532, 0.01704677, 0.03584703], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(rbm.free_energy(GOLDEN_X)), [-234.31403, 275.5922],
                               rtol=1e-5)


def test_committed_mnist_dbn_golden_outputs():
    """Recognition means and label free energies of two fixed inputs, recorded from the
    published file: any change to the weights, the up-pass or the free energy shows."""
    dbn = zoo.load("mnist_dbn")
    ups = dbn.up(GOLDEN_X)
    np.testing.assert_allclose(ups[1].sum(1), [272.11066, 198.40305], rtol=1e-5)
    np.testing.assert_allclose(ups[2].sum(1), [99.79642, 133.3472], rtol=1e-5)
    np.testing.assert_allclose(ups[2][1, :3], [7.8452547e-05, 4.1788202e-02, 2.4823674e-03],
                               rtol=1e-3)
    energies = dbn.label_free_energies(tf.constant(ups[-1])).numpy()
    np.testing.assert_allclose(energies[:, :4], [[-818.06586, -827.32495, -818.86206, -818.8865],
                                                 [-644.4069, -643.9967, -644.39856, -643.4273]],
                               rtol=1e-5)
    probs = dbn.classify(GOLDEN_X)
    assert list(probs.argmax(1)) == [1, 5]
    np.testing.assert_allclose(probs[1, [4, 5]], [0.4444775, 0.46501303], atol=1e-4)


# ---------------------------------------------------------------- presets


@pytest.mark.parametrize("name", [n for n in ZOO_NAMES if zoo.get_card(n)["weights_published"]])
def test_published_presets_are_config_and_weights_without_optimizer(name):
    card = zoo.get_card(name)
    path = Path(zoo.model_path(name))
    assert path.name == f"{name}.weights.h5" and card["files"][0]["name"] == path.name
    assert "optimizer" not in h5_groups(path) and "vars" in h5_groups(path)
    model = zoo.from_preset(name)
    assert keras.saving.get_registered_name(type(model)) == card["registered_name"]
    assert json.loads(json.dumps(model.get_config())) == card["config"]
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == card["parameters"]
    assert not hasattr(model, "optimizer")  # no compile state travels with a preset
    # the persistent chains are model variables and stay in the preset (a DBN has none)
    if not isinstance(model, tb.DBN):
        chains = model.persistent_chains if name == "mnist_rbm" else model.particles[0]
        assert np.asarray(chains).any()
    # by name, by weights file, by card file: the same call, the same variables
    assert_same_variables(zoo.from_preset(path), model)
    assert_same_variables(zoo.from_preset(REPO_ROOT / "zoo" / f"{name}.json"), model)
    assert_same_variables(zoo.load(name), model)


def test_list_presets_per_class():
    assert zoo.list_presets() == zoo.list_models() == ZOO_NAMES
    assert zoo.list_presets(tb.RBM) == ["mnist_rbm"]
    assert zoo.list_presets(tb.DBM) == ["cifar10_gbm_dbm", "mnist_dbm"]
    assert zoo.list_presets(tb.DBN) == ["mnist_dbn"]
    assert zoo.list_presets(keras.Model) == ZOO_NAMES  # a base class has every subclass's


def test_from_preset_of_another_class_names_the_presets_of_cls(monkeypatch):
    def no_fetch(*args, **kwargs):
        raise AssertionError("nothing is fetched or read for a preset of the wrong class")

    monkeypatch.setattr(zoo, "_fetch_files", no_fetch)
    with pytest.raises(ValueError, match=r"Expected a preset of `RBM`: one of \['mnist_rbm'\]"
                       ) as info:
        zoo.from_preset("mnist_dbm", cls=tb.RBM)
    assert "Received: preset='mnist_dbm', a preset of `DBM`" in str(info.value)
    assert "DBM.from_preset('mnist_dbm')" in str(info.value)
    with pytest.raises(ValueError, match=r"\['cifar10_gbm_dbm', 'mnist_dbm'\]"):
        zoo.from_preset("mnist_rbm", cls=tb.DBM, load_weights=False)
    model = zoo.from_preset("cifar10_gbm_dbm", cls=tb.DBM, load_weights=False)
    assert isinstance(model, tb.DBM) and model.layer_sizes == [3072, 5000, 1000]


def test_load_is_from_preset(card, tiny, tmp_path):
    untrained = zoo.load(TEST_NAME, pretrained=False)
    assert untrained.get_config() == zoo.from_preset(TEST_NAME, load_weights=False).get_config()
    (tmp_path / TEST_FILE).write_bytes(tiny[1])
    assert_same_variables(zoo.load(TEST_NAME, cache_dir=tmp_path), tiny[0])
    assert_same_variables(zoo.from_preset(TEST_NAME, cache_dir=tmp_path), tiny[0])


def _preset_fields(name="my_rbm"):
    card = make_card(name=name)
    for key in ("model_class", "registered_name", "config", "parameters", "files",
                "weights_published"):
        del card[key]
    return card


def test_save_preset_and_load_it_from_each_kind_of_path(tmp_path):
    rbm = tb.RBM(6, 4, learning="pcd", n_chains=3, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9))
    rbm.fit(np.eye(6, dtype="float32"), batch_size=6, epochs=1, verbose=0)  # optimizer state
    directory = tmp_path / "my_rbm"
    card = zoo.save_preset(rbm, directory, _preset_fields())
    assert sorted(p.name for p in directory.iterdir()) == ["my_rbm.json", "my_rbm.weights.h5"]
    weights = directory / "my_rbm.weights.h5"
    assert card["files"] == [{"name": "my_rbm.weights.h5", "sha256": sha256_of(weights),
                              "size": weights.stat().st_size, "url": ""}]
    assert card == json.loads((directory / "my_rbm.json").read_text())
    assert list(card) == list(zoo.get_card("mnist_rbm"))  # the schema's key order
    assert (card["model_class"], card["registered_name"], card["parameters"]) == (
        "RBM", "tfboltz>RBM", 6 * 4 + 6 + 4)
    assert "optimizer" not in h5_groups(weights)
    for preset in (directory, str(directory), directory / "my_rbm.json", weights):
        model = zoo.from_preset(preset)
        assert isinstance(model, tb.RBM)
        assert_same_variables(model, rbm)
    with pytest.raises(ValueError, match="Expected a preset of `DBM`"):
        zoo.from_preset(directory, cls=tb.DBM)
    # the same call writes the same bytes
    again = zoo.save_preset(rbm, tmp_path / "again", _preset_fields())
    assert again["files"][0]["sha256"] == card["files"][0]["sha256"]
    # a URL keeps the directory of the card's first file URL
    fields = {**_preset_fields(), "files": make_card()["files"]}
    online = zoo.save_preset(rbm, tmp_path / "online", fields)
    assert online["files"][0]["url"] == "https://example.invalid/releases/my_rbm.weights.h5"


def test_save_preset_leaves_nothing_when_the_card_is_invalid(tiny, tmp_path):
    fields = _preset_fields()
    del fields["license"]
    with pytest.raises(ValueError, match=r"missing key\(s\) \['license'\]"):
        zoo.save_preset(tiny[0], tmp_path / "p", fields)
    assert list((tmp_path / "p").iterdir()) == []
    with pytest.raises(ValueError, match="registered with"):
        zoo.save_preset(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]),
                        tmp_path / "p", _preset_fields())


def test_from_preset_refuses_weights_that_are_not_the_cards(tiny, tmp_path):
    directory = tmp_path / "my_rbm"
    zoo.save_preset(tiny[0], directory, _preset_fields())
    weights = directory / "my_rbm.weights.h5"
    other = tb.RBM(6, 4, learning="pcd", n_chains=3, seed=5)
    other.save_weights(tmp_path / "other.weights.h5")
    shutil.copy(tmp_path / "other.weights.h5", weights)
    for preset in (directory, directory / "my_rbm.json"):
        with pytest.raises(zoo.FetchError, match="fails its sha256 check.*Replace it"):
            zoo.from_preset(preset)
    with pytest.raises(zoo.FetchError, match="does not match the card of preset 'my_rbm'"):
        zoo.from_preset(weights)
    model = zoo.from_preset(directory, load_weights=False)  # the way to load one's own
    model.load_weights(weights)
    assert_same_variables(model, other)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match="missing.*no download URL"):
        zoo.from_preset(directory)


def test_a_committed_weights_file_under_another_card_name_fails(tmp_path):
    fake = tmp_path / "mnist_rbm.weights.h5"  # named like the zoo's, but other weights
    tb.RBM(784, 1024, seed=3).save_weights(fake)
    with pytest.raises(zoo.FetchError, match="does not match the card of preset 'mnist_rbm'"):
        zoo.from_preset(fake)


def test_from_preset_reports_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="No model card in the preset directory"):
        zoo.from_preset(tmp_path)
    (tmp_path / "state.json").write_text('{"epoch": 3}')  # not a card: ignored
    with pytest.raises(FileNotFoundError, match="No model card"):
        zoo.from_preset(tmp_path)
    for name in ("a", "b"):
        (tmp_path / f"{name}.json").write_text(json.dumps(make_card(name=name)))
    with pytest.raises(ValueError, match=r"Expected one model card.*\['a.json', 'b.json'\]"):
        zoo.from_preset(tmp_path)
    lone = tmp_path / "lone.weights.h5"
    tb.RBM(6, 4).save_weights(lone)
    with pytest.raises(ValueError, match="Found no model card for the weights file"):
        zoo.from_preset(lone)
    for missing in ("nowhere/x.weights.h5", "nowhere.json", "runs/missing.keras",
                    tmp_path / "missing"):
        with pytest.raises(FileNotFoundError, match="No (preset at|such model file)"):
            zoo.from_preset(missing)
    with pytest.raises(ValueError, match="Expected `preset` to be a preset name or a path"):
        zoo.from_preset(3)
    bad = {**make_card(name="bad"), "registered_name": "nowhere>RBM"}
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="Unknown model class of preset 'bad'"):
        zoo.from_preset(tmp_path / "bad", load_weights=False)


def test_from_preset_reads_a_whole_keras_file(tiny, tmp_path):
    rbm = tiny[0]
    rbm.save(tmp_path / "m.keras")
    model = zoo.from_preset(tmp_path / "m.keras")
    assert_same_variables(model, rbm)
    untrained = zoo.from_preset(str(tmp_path / "m.keras"), load_weights=False)
    assert json.dumps(untrained.get_config()) == json.dumps(rbm.get_config())
    assert not np.array_equal(untrained.kernel.numpy(), rbm.kernel.numpy())
    with pytest.raises(ValueError, match="Expected a preset of `DBM`"):
        zoo.from_preset(tmp_path / "m.keras", cls=tb.DBM)


def _use_weights_package(monkeypatch, tmp_path, files):
    """Lay out `files` ({name: bytes}) like an installed wheel's tfboltz.zoo_weights."""
    package = tmp_path / "site" / "installed_zoo_weights"
    package.mkdir(parents=True)
    for name, data in files.items():
        (package / name).write_bytes(data)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(zoo, "WEIGHTS_PACKAGE", "installed_zoo_weights")
    return package


def test_an_installed_package_loads_its_shipped_weights_offline(card, tiny, server, tmp_path,
                                                               monkeypatch, capsys):
    package = _use_weights_package(monkeypatch, tmp_path, {TEST_FILE: tiny[1]})
    monkeypatch.setenv("TFBOLTZ_BASE_URL", server.url)
    cache = tmp_path / "cache"
    assert zoo.model_path(TEST_NAME, cache_dir=cache) == str(package / TEST_FILE)
    assert_same_variables(zoo.from_preset(TEST_NAME, cache_dir=cache), tiny[0])
    assert zoo.fetch(TEST_NAME, cache_dir=cache) == [str(package / TEST_FILE)]
    assert "shipped with tfboltz, sha256 ok" in capsys.readouterr().out
    assert server.requests == [] and not cache.exists()
    # a file in the weights directory comes first, and a corrupt one is refused
    cache.mkdir()
    (cache / TEST_FILE).write_bytes(b"not the weights")
    with pytest.raises(zoo.FetchError, match="fails its sha256 check"):
        zoo.from_preset(TEST_NAME, cache_dir=cache)


def test_a_corrupt_shipped_file_is_refused(card, tiny, tmp_path, monkeypatch):
    _use_weights_package(monkeypatch, tmp_path, {TEST_FILE: tiny[1][:-1] + b"x"})
    with pytest.raises(zoo.FetchError, match="fails its sha256 check"):
        zoo.from_preset(TEST_NAME, cache_dir=tmp_path / "cache")


def test_setup_py_ships_the_weights_as_package_data():
    """An installed tfboltz loads the published presets offline (see zoo.WEIGHTS_PACKAGE)."""
    setup = (REPO_ROOT / "setup.py").read_text(encoding="utf-8")
    assert '"tfboltz.zoo_weights": "pretrained"' in setup
    assert '"tfboltz.zoo_weights": ["*.weights.h5"]' in setup


# ---------------------------------------------------------------- publishing


def _publish_script(root):
    spec = importlib.util.spec_from_file_location(
        "publish_model", REPO_ROOT / "scripts" / "publish_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.ROOT = root
    return module


def test_publish_model_converts_a_run_into_a_preset(tiny, tmp_path, capsys):
    """A card of the older format (a .keras file, no config) is republished as a preset."""
    root = tmp_path / "checkout"
    (root / "zoo").mkdir(parents=True)
    (root / "pretrained").mkdir()
    rbm = tiny[0]
    rbm.save(root / "pretrained" / f"{TEST_NAME}.keras")
    old = make_card()
    del old["config"], old["registered_name"]
    old["files"] = [{"name": f"{TEST_NAME}.keras", "sha256": "1" * 64, "size": 1,
                     "url": f"https://example.invalid/v1/{TEST_NAME}.keras"}]
    (root / "zoo" / f"{TEST_NAME}.json").write_text(json.dumps(old, indent=2))
    (root / "pretrained" / "SHA256SUMS").write_text(
        f"{'1' * 64}  {TEST_NAME}.keras\n{'2' * 64}  other.weights.h5\n")
    script = _publish_script(root)
    script.main([TEST_NAME, str(root / "pretrained" / f"{TEST_NAME}.keras"),
                 "--metric", "nll", "1.25", "nats", "python x.py"])
    assert sorted(p.name for p in (root / "pretrained").iterdir()) == [
        "SHA256SUMS", TEST_FILE]  # the old file went, no temporary file stayed
    card = json.loads((root / "zoo" / f"{TEST_NAME}.json").read_text())
    zoo.validate_card(card)
    entry = card["files"][0]
    assert entry["url"] == f"https://example.invalid/v1/{TEST_FILE}"
    assert entry["sha256"] == sha256_of(root / "pretrained" / TEST_FILE)
    assert (root / "pretrained" / "SHA256SUMS").read_text() == (
        f"{'2' * 64}  other.weights.h5\n{entry['sha256']}  {TEST_FILE}\n")
    assert card["metrics"][-1] == {"name": "nll", "value": 1.25, "unit": "nats",
                                   "command": "python x.py"}
    assert card["config"] == json.loads(json.dumps(rbm.get_config()))
    model = zoo.from_preset(root / "zoo" / f"{TEST_NAME}.json", cache_dir=root / "pretrained")
    assert_same_variables(model, rbm)
    assert "removed" in capsys.readouterr().out


# ---------------------------------------------------------------- fetch_models.sh


def _run_fetch_script(root, *args, env=None):
    # No Python on PATH: the script must work before anything is installed.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(root), **(env or {})}
    return subprocess.run(["bash", str(root / "fetch_models.sh"), *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_fetch_models_sh_verifies_the_committed_files():
    result = _run_fetch_script(REPO_ROOT)
    assert result.returncode == 0, result.stderr
    for name in ("mnist_rbm", "mnist_dbm"):
        assert f"{name}: {name}.weights.h5 present, sha256 ok" in result.stdout
    code = [ln for ln in (REPO_ROOT / "fetch_models.sh").read_text().splitlines()
            if not ln.lstrip().startswith("#")]
    assert not any("python" in ln for ln in code)


@pytest.fixture
def script_checkout(tiny, server, tmp_path):
    """fetch_models.sh beside a zoo/ of the tiny card and an unpublished one."""
    root = tmp_path / "checkout"
    (root / "zoo").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "fetch_models.sh", root)
    _, data, sha = tiny
    server.files[TEST_FILE] = data
    card = make_card(sha256=sha, size=len(data))
    (root / "zoo" / f"{TEST_NAME}.json").write_text(json.dumps(card, indent=2))
    unpublished = make_card(name="test_unpublished", files=[], weights_published=False)
    (root / "zoo" / "test_unpublished.json").write_text(json.dumps(unpublished, indent=2))
    return root


def test_fetch_models_sh_downloads_verifies_and_keeps(script_checkout, server, tiny, tmp_path):
    dest = tmp_path / "models"
    result = _run_fetch_script(script_checkout, "--cache-dir", str(dest),
                               "--base-url", server.url)
    assert result.returncode == 0, result.stderr
    assert (dest / TEST_FILE).read_bytes() == tiny[1]
    assert server.requests == [f"/mirror/v0/{TEST_FILE}"] and leftovers(dest) == []
    assert f"{TEST_NAME}: downloading {TEST_FILE}" in result.stdout
    result = _run_fetch_script(script_checkout, TEST_NAME,
                               env={"TFBOLTZ_MODELS": str(dest), "TFBOLTZ_BASE_URL": server.url})
    assert result.returncode == 0 and "present, sha256 ok" in result.stdout
    assert len(server.requests) == 1
    # the default destination is pretrained/ beside the script
    result = _run_fetch_script(script_checkout, TEST_NAME, "--base-url", server.url)
    assert result.returncode == 0, result.stderr
    assert (script_checkout / "pretrained" / TEST_FILE).read_bytes() == tiny[1]


@pytest.mark.parametrize("mode, cause", [("corrupt", "sha256 mismatch"),
                                         ("404", "could not fetch"),
                                         ("wrong_size", "the card expects"),
                                         ("flood", "has more than the"),
                                         ("drip", "within 2 s; nothing was saved")])
def test_fetch_models_sh_failures_leave_nothing(script_checkout, server, tmp_path, mode, cause):
    # flood: endless bytes with no Content-Length, cut at the card's size + 1;
    # drip: a byte every 0.3 s, cut by the overall deadline (--timeout 2), not per read.
    server.mode = mode
    dest = tmp_path / "models"
    start = time.monotonic()
    result = _run_fetch_script(script_checkout, "--cache-dir", str(dest),
                               "--base-url", server.url, "--timeout", "2")
    assert time.monotonic() - start < 10
    assert result.returncode != 0 and cause in result.stderr, result.stderr
    assert not dest.exists() or list(dest.iterdir()) == []
    # a mismatching file in place stays as it was
    dest.mkdir(exist_ok=True)
    (dest / TEST_FILE).write_bytes(b"mine")
    result = _run_fetch_script(script_checkout, "--cache-dir", str(dest),
                               "--base-url", server.url, "--timeout", "2")
    assert result.returncode != 0 and "fails its sha256 check" in result.stdout
    assert list(dest.iterdir()) == [dest / TEST_FILE]
    assert (dest / TEST_FILE).read_bytes() == b"mine"


def test_fetch_models_sh_names_unknown_and_unpublished_models(script_checkout):
    result = _run_fetch_script(script_checkout, "no_such_model", "test_unpublished")
    assert result.returncode == 1
    assert f"unknown model 'no_such_model'; the cards in {script_checkout / 'zoo'} are:" in (
        result.stderr)
    assert "'test_unpublished' are not yet published" in result.stderr
