"""The model zoo: cards, registry, verified downloads from a local server, loading."""

import hashlib
import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import tfboltz as tb
from tfboltz import zoo

REPO_ROOT = Path(__file__).resolve().parent.parent
ZOO_NAMES = ["cifar10_gbm_dbm", "mnist_dbm", "mnist_rbm"]
TEST_NAME = "test_tiny_rbm"
TEST_FILE = TEST_NAME + ".keras"


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
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

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
    """A small RBM saved as .keras: (model, bytes, sha256)."""
    rbm = tb.RBM(6, 4, seed=0)
    path = tmp_path_factory.mktemp("tiny") / TEST_FILE
    rbm.save(path)
    data = path.read_bytes()
    return rbm, data, hashlib.sha256(data).hexdigest()


def make_card(name=TEST_NAME, sha256="0" * 64, size=0, **overrides):
    card = {
        "name": name,
        "version": "1.0",
        "description": "a 6-4 Bernoulli RBM for the tests",
        "model_class": "RBM",
        "architecture": {"n_visible": 6, "n_hidden": 4, "seed": 0},
        "preprocessing": "binary rows of 6",
        "recipe": {"script": "scripts/train_rbm_mnist.py", "args": ["--n-hidden", "4"]},
        "files": [{"name": name + ".keras", "sha256": sha256, "size": size,
                   "url": f"https://example.invalid/releases/{name}.keras"}],
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
    _, data, sha = tiny
    server.files[TEST_FILE] = data
    c = make_card(sha256=sha, size=len(data))
    zoo.register(c)
    yield c
    zoo.unregister(TEST_NAME)


def leftovers(directory):
    return sorted(p.name for p in Path(directory).glob("*.part-*"))


# ---------------------------------------------------------------- registry and cards


def test_list_models_has_the_zoo_cards():
    assert set(ZOO_NAMES) <= set(zoo.list_models())
    assert zoo.list_models() == sorted(zoo.list_models())
    assert TEST_NAME not in zoo.list_models()


def test_unknown_name_lists_known_names():
    for call in (zoo.get_card, zoo.load, zoo.fetch, zoo.model_path):
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
    (make_card(model_class="DBN"), "Expected `model_class` to be one of"),
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


def test_a_bad_card_file_is_named(monkeypatch, tmp_path):
    package = tmp_path / "bad_zoo_cards"
    package.mkdir()
    (package / "broken.json").write_text("{not json", encoding="utf-8")
    _use_cards_package(monkeypatch, tmp_path, "bad_zoo_cards")
    with pytest.raises(ValueError, match="Invalid model card 'broken': broken.json is not valid"):
        zoo.list_models()
    (package / "broken.json").write_text(json.dumps(make_card(name="other")), encoding="utf-8")
    monkeypatch.setattr(zoo, "_registry", None)
    with pytest.raises(ValueError, match="Expected `name` to match the file name broken.json"):
        zoo.list_models()


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
    assert zoo.model_path("mnist_rbm") == str(REPO_ROOT / "pretrained" / "mnist_rbm.keras")


def test_committed_mnist_rbm_matches_its_card():
    entry = zoo.get_card("mnist_rbm")["files"][0]
    path = Path(zoo.model_path("mnist_rbm"))
    assert path.stat().st_size == entry["size"]
    assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
    sums = dict(reversed(line.split()) for line in
                (REPO_ROOT / "pretrained" / "SHA256SUMS").read_text().splitlines() if line)
    assert sums["mnist_rbm.keras"] == entry["sha256"]


def test_sha256sums_agree_with_the_cards():
    hashes = {f["name"]: f["sha256"] for n in ZOO_NAMES for f in zoo.get_card(n)["files"]}
    for line in (REPO_ROOT / "pretrained" / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split()
        assert hashes[name] == digest, name


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
    for loaded, saved in zip(model.weights, tiny[0].weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
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
    import keras

    model = zoo.load(name, pretrained=False)
    rng = np.random.default_rng(0)
    if isinstance(model.visible_layer, tb.units.GaussianUnits):
        x = rng.normal(size=(10, model.n_visible)).astype("float32")
    else:
        x = (rng.random((10, model.n_visible)) < 0.2).astype("float32")
    model.compile(optimizer=keras.optimizers.SGD(1e-3))
    model.fit(x, batch_size=10, epochs=1, verbose=0)
    assert all(np.all(np.isfinite(w.numpy())) for w in model.trainable_weights)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    for a, b in zip(model.weights, again.weights):
        np.testing.assert_array_equal(np.asarray(a.numpy()), np.asarray(b.numpy()))


def test_committed_mnist_dbm_golden_outputs():
    """Mean-field means of two fixed inputs, recorded from the published file (30
    iterations, no early stop): any change to the weights or to mean-field shows."""
    dbm = zoo.load("mnist_dbm")
    x = np.stack([np.zeros(784, "float32"),
                  (np.random.default_rng(0).random(784) < 0.13).astype("float32")])
    means = dbm.mean_field(x, n_iter=30, tol=0.0)
    np.testing.assert_allclose(means[1].sum(1), [226.40138, 193.46533], rtol=1e-4)
    np.testing.assert_allclose(means[2].sum(1), [98.73027, 108.22832], rtol=1e-4)
    np.testing.assert_allclose(means[2][1, :3], [0.03300435, 0.01436389, 0.03837834],
                               rtol=1e-3)
