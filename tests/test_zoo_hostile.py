"""The zoo against hostile servers and hostile cards (issue 43).

Each case is one row of a table: what a server or a card file does, the error it
must give (type and words), and what must hold afterwards: no partial file at the
destination, the other models still listed and loaded, the command line printing one
line ``error: ...`` and no traceback.
"""

import json
import os
import shutil
import socketserver
import subprocess
import sys
import threading
import time
from unittest import mock

import pytest
from test_zoo import REPO_ROOT, TEST_FILE, TEST_NAME, ZOO_NAMES, make_card

import tfboltz as tb
from tfboltz import cli, zoo

DRIP_SECONDS = 0.3  # between two bytes of a dripping server
FLOOD_CAP = 200 << 20  # a flooding server gives up after this many bytes


class HostileServer:
    """A local HTTP server, written at the socket level, that misbehaves by `mode`.

    Modes: "ok" sends the file with its length; "unsized" sends it without a
    Content-Length and closes; "flood" / "chunked_flood" stream zeros without a
    length (plainly / in chunks) until the client hangs up or FLOOD_CAP; "overlong"
    announces 25 times the file's size; "drip" announces the right length and sends
    one byte every DRIP_SECONDS; "drip_headers" sends its status line that slowly;
    "silent" reads the request and never answers; "bad_chunk" sends a malformed
    chunk size; "redirect_ftp" redirects to an ftp:// URL. `sent` counts the body
    bytes written.
    """

    def __init__(self, body):
        self.body, self.mode, self.sent = body, "ok", 0
        self.stop = threading.Event()
        server = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                request = b""
                while b"\r\n\r\n" not in request:
                    data = self.request.recv(4096)
                    if not data:
                        return
                    request += data
                try:
                    server.answer(self.request)
                except OSError:
                    pass  # the client hung up: what a bounded download does

        self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.tcp.daemon_threads = True
        self.thread = threading.Thread(target=self.tcp.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.tcp.server_address[1]}/mirror"

    def answer(self, sock):
        body, mode = self.body, self.mode
        head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n"
        if mode in ("ok", "drip"):
            sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
            if mode == "ok":
                sock.sendall(body)
            for i in range(len(body) if mode == "drip" else 0):
                if self.stop.wait(DRIP_SECONDS):
                    return
                sock.sendall(body[i:i + 1])
        elif mode == "unsized":
            sock.sendall(head + b"\r\n" + body)
        elif mode in ("flood", "chunked_flood", "overlong"):
            block = bytes(1 << 16)
            if mode == "overlong":
                sock.sendall(head + b"Content-Length: %d\r\n\r\n" % (25 * len(body)))
            elif mode == "flood":
                sock.sendall(head + b"\r\n")
            else:
                sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
                block = b"%x\r\n%s\r\n" % (len(block), block)
            while self.sent < FLOOD_CAP and not self.stop.is_set():
                sock.sendall(block)
                self.sent += len(block)
        elif mode == "drip_headers":
            for byte in head:
                if self.stop.wait(DRIP_SECONDS):
                    return
                sock.sendall(bytes([byte]))
        elif mode == "silent":
            self.stop.wait(30)
        elif mode == "bad_chunk":
            sock.sendall(head + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n" + body)
        elif mode == "redirect_ftp":
            sock.sendall(b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/x\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self):
        self.stop.set()
        self.tcp.shutdown()
        self.tcp.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny RBM's weights file and config: (bytes, sha256, config)."""
    import hashlib

    path = tmp_path_factory.mktemp("tiny") / TEST_FILE
    rbm = tb.RBM(6, 4, learning="pcd", n_chains=3, seed=0)
    rbm.save_weights(path)
    data = path.read_bytes()
    return data, hashlib.sha256(data).hexdigest(), json.loads(json.dumps(rbm.get_config()))


@pytest.fixture
def hostile(weights):
    server = HostileServer(weights[0])
    yield server
    server.close()


@pytest.fixture
def card(weights, hostile):
    """The tiny RBM registered as a zoo card (removed afterwards)."""
    zoo.register(make_card(sha256=weights[1], size=len(weights[0]), config=weights[2]))
    yield
    zoo.unregister(TEST_NAME)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv("TFBOLTZ_BASE_URL", raising=False)
    monkeypatch.delenv("TFBOLTZ_MODELS", raising=False)


def _fetch(url, dest, timeout):
    return zoo.fetch(TEST_NAME, cache_dir=dest, base_url=url, timeout=timeout, progress=False)


def _load(url, dest, timeout):
    """`load`, which takes `fetch`'s default timeout (`timeout` is None here)."""
    with mock.patch.dict(os.environ, {"TFBOLTZ_BASE_URL": url}):
        return zoo.load(TEST_NAME, cache_dir=dest)


# ---------------------------------------------------------------- downloads

# (mode, call, timeout, error type, words in the message)
DOWNLOAD_CASES = [
    ("flood", _fetch, 5, zoo.FetchError, "the server sent more than the card's"),
    ("chunked_flood", _fetch, 5, zoo.FetchError, "the server sent more than the card's"),
    ("overlong", _fetch, 5, zoo.FetchError, "the server announces"),
    ("drip", _fetch, 1, zoo.FetchError, "timed out after 1 s"),
    ("drip_headers", _fetch, 1, zoo.FetchError, "timed out after 1 s"),
    ("silent", _fetch, 1, zoo.FetchError, "timed out after 1 s"),
    ("flood", _load, None, zoo.FetchError, "the server sent more than the card's"),
    ("bad_chunk", _fetch, 5, zoo.FetchError, "the connection broke off"),
    ("redirect_ftp", _fetch, 5, zoo.FetchError, "unknown url type: ftp"),
    ("directory", _fetch, 5, zoo.FetchError, "is a directory"),
    ("directory", _load, None, zoo.FetchError, "is a directory"),
    ("blocked", _fetch, 5, zoo.FetchError, "cannot write to"),
]


@pytest.mark.parametrize("mode, call, timeout, error, words", [
    pytest.param(*case, id=f"{case[0]}-{case[1].__name__[1:]}") for case in DOWNLOAD_CASES])
def test_a_hostile_download_fails_bounded_and_leaves_nothing(card, hostile, tmp_path, mode,
                                                            call, timeout, error, words):
    dest = tmp_path / "models"
    if mode == "directory":  # a directory where the file goes
        (dest / TEST_FILE).mkdir(parents=True)
    elif mode == "blocked":  # a file where the directory goes
        dest.write_bytes(b"mine")
    # a server that would answer well: the file system is what is hostile here
    hostile.mode = "ok" if mode in ("directory", "blocked") else mode
    start = time.monotonic()
    with pytest.raises(error) as info:
        call(hostile.url, dest, timeout)
    elapsed = time.monotonic() - start
    message = str(info.value)
    assert words in message and f"model '{TEST_NAME}'" in message and TEST_FILE in message
    assert "\n" not in message
    if mode == "directory":
        assert [p.name for p in dest.iterdir()] == [TEST_FILE] and (dest / TEST_FILE).is_dir()
        assert list((dest / TEST_FILE).iterdir()) == []
    elif mode == "blocked":
        assert dest.read_bytes() == b"mine" and [p.name for p in tmp_path.iterdir()] == ["models"]
    else:
        assert not dest.exists() or list(dest.iterdir()) == []  # no partial, no temp file
    if "timed out" in words:
        # the deadline bounds the whole download: one second, not one second a byte
        assert elapsed < 2.0, elapsed
    if "flood" in mode:
        assert hostile.sent < 32 << 20  # it stopped reading; the sockets' buffers hold the rest


def test_a_server_without_content_length_still_works(card, hostile, weights, tmp_path):
    hostile.mode = "unsized"
    assert _fetch(hostile.url, tmp_path, 5) == [str(tmp_path / TEST_FILE)]
    assert (tmp_path / TEST_FILE).read_bytes() == weights[0]


@pytest.mark.parametrize("kwargs, words", [
    ({"base_url": "ftp://127.0.0.1/x"}, "Invalid value received for argument `base_url`. "
                                        "Expected an http:// or https:// URL. Received: "
                                        "base_url='ftp://127.0.0.1/x'"),
    ({"timeout": 0}, "Invalid value received for argument `timeout`. Expected a positive "
                     "number of seconds, or None. Received: timeout=0"),
    ({"timeout": float("inf")}, "Received: timeout=inf"),
])
def test_fetch_arguments_fail_in_keras_words(card, tmp_path, kwargs, words):
    with pytest.raises(ValueError) as info:
        zoo.fetch(TEST_NAME, cache_dir=tmp_path, **{"base_url": "http://127.0.0.1:9", **kwargs})
    assert words in str(info.value)
    assert list(tmp_path.iterdir()) == []


def _run_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tfboltz.cli", *args], capture_output=True,
                          text=True, timeout=60, cwd=REPO_ROOT,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})})


def test_cli_fetch_prints_one_error_line(hostile, tmp_path):
    """`tfboltz fetch` in a process of its own: a directory in the way, then a flooding
    server; each gives one line ``error: ...``, no traceback, exit status 1."""
    # The shipped mnist_rbm card; an editable install has no package data, so its file
    # is downloaded into the cache directory.
    dest = tmp_path / "models"
    (dest / "mnist_rbm.weights.h5").mkdir(parents=True)
    hostile.mode = "flood"
    for expected in ("is a directory", "the server sent more than the card's"):
        done = _run_cli("fetch", "mnist_rbm", "--cache-dir", str(dest), "--base-url",
                        hostile.url, "--timeout", "10")
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        # stderr also holds the progress bar, which a terminal erases
        errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and done.stderr.strip().endswith(errors[0]), done.stderr
        assert expected in errors[0] and "'mnist_rbm'" in errors[0]
        if expected == "is a directory":
            assert [p.name for p in dest.iterdir()] == ["mnist_rbm.weights.h5"]
            (dest / "mnist_rbm.weights.h5").rmdir()
    assert list(dest.iterdir()) == []


# ---------------------------------------------------------------- cards


def _card_json(**overrides):
    return json.dumps(make_card(name="evil", **overrides))


def _evil_architecture(**overrides):
    return _card_json(architecture={"n_visible": 6, "n_hidden": 4, **overrides},
                      config={"n_visible": overrides.get("n_visible", 6),
                              "n_hidden": overrides.get("n_hidden", 4)})


def _evil_dbn(layer_sizes):
    return _card_json(model_class="DBN", registered_name="tfboltz>DBN",
                      architecture={"layer_sizes": layer_sizes},
                      config={"layer_sizes": layer_sizes})


# (what the file evil.json holds, words in the error): bytes, or a dict for a directory
CARD_CASES = {
    "not_json": (b"{not json", "evil.json is not valid JSON"),
    "not_utf8": (b"\xff\xfe{}", "evil.json is not valid JSON"),
    "too_deep": (b"[" * 100_000 + b"]" * 100_000, "evil.json is not valid JSON"),
    "a_list": (b"[]", "Expected evil.json to hold a JSON object. Received: list"),
    "a_directory": ({}, "cannot read evil.json"),
    "other_name": (json.dumps(make_card(name="other")).encode(),
                   "Expected `name` to match the file name evil.json"),
    "script_escapes": (_card_json(recipe={"script": "scripts/../../elsewhere/evil.py",
                                          "args": []}).encode(),
                       "Expected `recipe.script` to be a path like 'scripts/NAME.py'"),
    "script_absolute": (_card_json(recipe={"script": "/tmp/scripts/evil.py",
                                           "args": []}).encode(),
                        "Received: script='/tmp/scripts/evil.py'"),
    "script_not_py": (_card_json(recipe={"script": "scripts/evil.sh", "args": []}).encode(),
                      "Received: script='scripts/evil.sh'"),
    "script_backslash": (_card_json(recipe={"script": "scripts\\..\\evil.py",
                                            "args": []}).encode(), "inside the repository"),
    "n_hidden_string": (_evil_architecture(n_hidden="4").encode(),
                        "Expected `architecture.n_hidden` to be a positive integer. "
                        "Received: n_hidden='4'"),
    "n_hidden_zero": (_evil_architecture(n_hidden=0).encode(), "Received: n_hidden=0"),
    "n_visible_float": (_evil_architecture(n_visible=6.0).encode(), "Received: n_visible=6.0"),
    "n_visible_bool": (_evil_architecture(n_visible=True).encode(),
                       "Received: n_visible=True"),
    "k_negative": (_evil_architecture(k=-1).encode(),
                   "Expected `architecture.k` to be a positive integer"),
    "visible_number": (_evil_architecture(visible=3).encode(),
                       "Expected `architecture.visible` to be a unit type"),
    "visible_unknown": (_evil_architecture(visible="tanh").encode(), "Received: visible='tanh'"),
    "l2_string": (_evil_architecture(l2="0.1").encode(),
                  "Expected `architecture.l2` to be a non-negative number"),
    "seed_float": (_evil_architecture(seed=0.5).encode(), "Received: seed=0.5"),
    "centering_int": (_evil_architecture(centering=1).encode(),
                      "Expected `architecture.centering` to be a boolean"),
    "layer_sizes_string": (_evil_dbn([6, "4"]).encode(),
                           "Expected `architecture.layer_sizes` to be a list of at least 2 "
                           "positive integers. Received: layer_sizes=[6, '4']"),
    "layer_sizes_short": (_evil_dbn([6]).encode(), "Received: layer_sizes=[6]"),
}


@pytest.fixture
def evil_zoo(monkeypatch, tmp_path):
    """A card package of the shipped cards and an `evil.json` (the test writes it), read
    afresh by the registry; weight files from the checkout."""
    package = tmp_path / "site" / "evil_zoo_cards"
    package.mkdir(parents=True)
    for name in ZOO_NAMES:
        shutil.copy(REPO_ROOT / "zoo" / f"{name}.json", package)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.setattr(zoo, "CARDS_PACKAGE", "evil_zoo_cards")
    monkeypatch.setattr(zoo, "_registry", None)
    monkeypatch.setenv("TFBOLTZ_MODELS", str(REPO_ROOT / "pretrained"))
    return package / "evil.json"


@pytest.mark.parametrize("content, words", CARD_CASES.values(), ids=CARD_CASES.keys())
def test_a_bad_card_is_left_out_and_named(evil_zoo, content, words, capsys):
    if isinstance(content, dict):
        evil_zoo.mkdir()
    else:
        evil_zoo.write_bytes(content)
    with pytest.warns(UserWarning) as warned:
        assert zoo.list_models() == ZOO_NAMES  # the others still list
    assert len(warned) == 1
    assert "Invalid model card 'evil'" in str(warned[0].message)
    assert words in str(warned[0].message)
    assert zoo.list_models() == ZOO_NAMES  # warned once
    assert zoo.list_presets() == ZOO_NAMES
    for use in (zoo.get_card, zoo.fetch, zoo.load, zoo.from_preset, zoo.model_path):
        with pytest.raises(ValueError) as info:
            use("evil")
        assert "Invalid model card 'evil'" in str(info.value) and words in str(info.value)
    # the other models still fetch (verified in place) and load
    assert zoo.fetch("mnist_rbm", progress=False) == [str(REPO_ROOT / "pretrained" /
                                                          "mnist_rbm.weights.h5")]
    assert isinstance(zoo.load("mnist_rbm", pretrained=False), tb.RBM)
    # and the command line says so in one line, without a traceback
    assert cli.main(["fetch", "evil"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: Invalid model card 'evil'"), err
    for command in (["train", "evil"], ["sample", "evil"]):
        with pytest.raises(SystemExit) as info:
            cli.main(command)
        assert str(info.value).startswith("error: Invalid model card 'evil'")
        assert "\n" not in str(info.value)


def test_cli_list_warns_in_one_line_and_lists_the_others(evil_zoo, capsys):
    evil_zoo.write_text(_card_json(recipe={"script": "scripts/../../elsewhere/evil.py",
                                           "args": []}))
    assert cli.main(["list"]) == 0
    captured = capsys.readouterr()
    assert all(name in captured.out for name in ZOO_NAMES) and "evil" not in captured.out
    err = captured.err.splitlines()
    assert len(err) == 1 and err[0].startswith("warning: Left the model 'evil' out"), err
    assert "scripts/../../elsewhere/evil.py" in err[0]


def test_a_valid_card_may_replace_an_invalid_one(evil_zoo):
    evil_zoo.write_bytes(b"{not json")
    with pytest.warns(UserWarning):
        zoo.list_models()
    zoo.register(make_card(name="evil"))
    try:
        assert zoo.get_card("evil")["name"] == "evil"
    finally:
        zoo.unregister("evil")


def test_a_script_link_out_of_scripts_is_refused(monkeypatch, tmp_path):
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "scripts" / "link").symlink_to(tmp_path / "elsewhere")
    monkeypatch.setattr(zoo, "_REPO_ROOT", root)
    zoo.validate_card(make_card(recipe={"script": "scripts/sub/train.py", "args": []}))
    with pytest.raises(ValueError, match="Expected `recipe.script` to be a path like"):
        zoo.validate_card(make_card(recipe={"script": "scripts/link/evil.py", "args": []}))


def test_the_unit_names_of_cards_are_those_of_tfboltz_units():
    assert sorted(zoo._UNIT_NAMES) == sorted(tb.units.UNIT_TYPES)
