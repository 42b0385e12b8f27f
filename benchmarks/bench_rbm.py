"""Time one epoch of CD-1 on MNIST: tfboltz vs scikit-learn vs a plain numpy loop.

    python benchmarks/bench_rbm.py                          # all three, then the table
    python benchmarks/bench_rbm.py --repeats 3 --json bench_rbm.json
    python benchmarks/bench_rbm.py --n-rows 5000            # quick smoke run
    python benchmarks/bench_rbm.py --threads 1              # one thread per library
    python benchmarks/bench_rbm.py --only numpy             # one contender, this process

The task: one epoch of CD-1 over the MNIST training images (float32 grey levels in
[0, 1], 60,000 rows) on a 784 x 1024 Bernoulli-Bernoulli RBM with batches of 100,
i.e. 600 updates. The contenders:

tfboltz
    ``tb.RBM(784, 1024, learning="cd", k=1, seed=0)`` compiled with
    ``SGD(0.05, momentum=0.9)`` and the default ``steps_per_execution`` of
    ``EnergyModel.compile``, trained by ``model.fit(..., verbose=0)``. A warm-up fit
    on the first 2,000 rows traces the train function first, so the timed epochs
    exclude tracing. The time per epoch is taken from ``on_epoch_begin`` to
    ``on_epoch_end``; the rest of the ``fit`` call (checking the data, building the
    dataset) is reported separately as the fit overhead.
scikit-learn
    ``BernoulliRBM(n_components=1024, batch_size=100, n_iter=1, learning_rate=0.05)``
    on the float32 array (it keeps float32). It is PCD-1 internally (persistent
    hidden samples, no momentum, no shuffling), so its learning differs; its cost per
    batch is five matrix products too. Each repeat is a fresh ``fit``.
numpy
    The same algorithm as tfboltz's CD-1 written with whole-array numpy operations
    (OpenBLAS matmuls, preallocated buffers, no per-element Python work): five matrix
    products per batch (``v0 W``, ``h W^T``, ``v1 W``, ``v0^T h0``, ``v1^T h1``),
    sampled hidden states driving mean-field visibles, momentum SGD as in Keras.

The machine's matrix-multiply rate is measured on the benchmark's own shape, float32
``(100, 784) @ (784, 1024)`` repeated, in numpy and in TensorFlow. The better rate gives
a lower bound for an epoch that does nothing but its matrix products::

    bound = 5 products x batches x (2 * 100 * 784 * 1024 flop) / rate

Each contender runs in its own subprocess (``--only NAME``), so that its peak
resident memory (``getrusage(RUSAGE_SELF).ru_maxrss``, which includes the data and
the libraries it imported) is its own. A first child (``--setup``) loads MNIST through
``tfboltz.data.load_mnist``, hands the rows to the contenders as a ``.npy`` file
(``--data``) and measures the matmul rates. The parent itself imports neither
TensorFlow nor the data: Linux carries a parent's peak RSS over ``fork``/``exec`` into
the child's ``ru_maxrss``, so a big parent would inflate every child's figure (the
parent's own peak is printed as that floor; ``VmHWM`` from /proc goes to the JSON as a
cross-check). The scikit-learn and numpy children never import TensorFlow. (Run
``--only sklearn`` or ``--only numpy`` by hand without ``--data`` and they load MNIST
through tfboltz, TensorFlow included in their peak memory.)

The ``recon err`` column is a sanity check, not a contest: the mean squared error of
the mean-field reconstruction of the first 1,000 rows under each contender's final
weights. tfboltz's figure includes the 20 warm-up updates; scikit-learn learns by a
different rule (PCD, no momentum).

Threads: by default every library uses all cores. ``--threads N`` caps OpenBLAS
(through threadpoolctl) and TensorFlow's intra- and inter-op pools at N; tf.data's
own threads, which feed tfboltz's batches, are not capped. On a machine where
something else is running, OpenBLAS's spinning worker threads can slow numpy and
scikit-learn down many times over; ``--threads 1`` gives comparable figures there.

The timings are only meaningful on an otherwise idle machine: the script prints the
load average before and after, and warns when the machine was busy.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# Quiet TensorFlow's C++ logging; TensorFlow itself is imported only where it is used.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

CONTENDERS = ("tfboltz", "sklearn", "numpy")
N_VISIBLE = 784
N_HIDDEN = 1024
BATCH_SIZE = 100
LEARNING_RATE = 0.05
MOMENTUM = 0.9
SEED = 0
WARMUP_ROWS = 2000
#: Rows on which every contender's final weights are checked (reconstruction error).
CHECK_ROWS = 1000
#: Floating-point operations of one (100, 784) @ (784, 1024) product.
MATMUL_FLOP = 2 * BATCH_SIZE * N_VISIBLE * N_HIDDEN
MATMULS_PER_BATCH = 5
#: Targets printed beside the figures.
TARGET_VS_SKLEARN = 0.5
TARGET_VS_NUMPY = 1.0
TARGET_PEAK_MB = 1500.0
#: A 1-minute load average above this means something else was running.
BUSY_LOAD = 0.5


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", choices=CONTENDERS,
                   help="run one contender in this process and print its result")
    p.add_argument("--repeats", type=int, default=1,
                   help="epochs to time per contender; the best one counts (default 1)")
    p.add_argument("--n-rows", type=int, default=None,
                   help="use the first N training rows (e.g. 5000 for a smoke run)")
    p.add_argument("--json", type=Path, default=None, help="write the results to this file")
    p.add_argument("--threads", type=int, default=None,
                   help="cap the BLAS and TensorFlow thread pools (default: all cores)")
    p.add_argument("--data", type=Path, default=None,
                   help="float32 .npy file of the rows (the parent passes it to the children)")
    p.add_argument("--setup", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    if args.n_rows is not None and args.n_rows < BATCH_SIZE:
        p.error(f"--n-rows must be at least {BATCH_SIZE}, got {args.n_rows}")
    return args


# Data ------------------------------------------------------------------------------


def load_rows(data_path=None, n_rows=None):
    """MNIST training rows as a C-contiguous float32 array ``[N, 784]`` in [0, 1]."""
    if data_path is not None:
        x = np.load(data_path)
    else:
        import tfboltz as tb

        x, _ = tb.data.load_mnist("train")
    x = x[:n_rows] if n_rows else x
    return np.ascontiguousarray(x, dtype=np.float32)


def n_batches(n_rows):
    return math.ceil(n_rows / BATCH_SIZE)


def sigmoid(x, out):
    """``out = 1 / (1 + exp(-x))`` as ``0.5 * tanh(x / 2) + 0.5``: vectorised, no overflow."""
    np.multiply(x, 0.5, out=out)
    np.tanh(out, out=out)
    out *= 0.5
    out += 0.5
    return out


def reconstruction_error(w, b, c, x):
    """Mean squared error of the mean-field reconstruction ``v -> E[h|v] -> E[v|h]``.

    A sanity check that each contender learned something, computed in float64 from
    its final weights ``w`` (784 x 1024), visible biases ``b`` and hidden biases ``c``.
    """
    w, b, c, x = (np.asarray(t, np.float64) for t in (w, b, c, x))
    h = 1.0 / (1.0 + np.exp(-(x @ w + c)))
    r = 1.0 / (1.0 + np.exp(-(h @ w.T + b)))
    return float(np.mean((x - r) ** 2))


# Threads --------------------------------------------------------------------------


def limit_blas_threads(n):
    """Cap numpy's BLAS (OpenBLAS) thread pool at `n` threads; None keeps the default."""
    if n:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)


def blas_threads():
    """Threads of the BLAS libraries loaded in this process, e.g. ``{"openblas": 2}``."""
    from threadpoolctl import threadpool_info

    return {f"{i['internal_api']}": i["num_threads"] for i in threadpool_info()}


def limit_tf_threads(tf, n):
    """Cap TensorFlow's intra- and inter-op thread pools at `n` (before any op runs)."""
    if n:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(n)


# Matrix-multiply rate -------------------------------------------------------------


def _best_seconds(run, calls, trials):
    """Best time of one call of `run` over `trials` rounds of `calls` calls."""
    run()
    best = math.inf
    for _ in range(trials):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def numpy_matmul_rate(calls=10, trials=30):
    """GFLOP/s of numpy's float32 (100, 784) @ (784, 1024) product."""
    rng = np.random.default_rng(0)
    a = rng.random((BATCH_SIZE, N_VISIBLE), dtype=np.float32)
    b = rng.random((N_VISIBLE, N_HIDDEN), dtype=np.float32)
    out = np.empty((BATCH_SIZE, N_HIDDEN), np.float32)
    return MATMUL_FLOP / _best_seconds(lambda: np.matmul(a, b, out=out), calls, trials) / 1e9


def numpy_cd_products_rate(calls=4, trials=30):
    """GFLOP/s of the five products of one CD-1 batch with their real shapes and
    transpositions (``v W``, ``h W^T``, ``v W``, ``v^T h``, ``v^T h``), in numpy."""
    rng = np.random.default_rng(0)
    v = rng.random((BATCH_SIZE, N_VISIBLE), dtype=np.float32)
    w = rng.random((N_VISIBLE, N_HIDDEN), dtype=np.float32)
    h = np.empty((BATCH_SIZE, N_HIDDEN), np.float32)
    v1 = np.empty_like(v)
    g = np.empty_like(w)

    def five():
        np.matmul(v, w, out=h)
        np.matmul(h, w.T, out=v1)
        np.matmul(v1, w, out=h)
        np.matmul(v.T, h, out=g)
        np.matmul(v1.T, h, out=g)

    return MATMULS_PER_BATCH * MATMUL_FLOP / _best_seconds(five, calls, trials) / 1e9


def tf_matmul_rate(threads=None, calls=10, trials=30):
    """GFLOP/s of TensorFlow's float32 (100, 784) @ (784, 1024) product (eager)."""
    import tensorflow as tf

    limit_tf_threads(tf, threads)

    rng = np.random.default_rng(0)
    a = tf.constant(rng.random((BATCH_SIZE, N_VISIBLE), dtype=np.float32))
    b = tf.constant(rng.random((N_VISIBLE, N_HIDDEN), dtype=np.float32))

    def run():
        return tf.matmul(a, b)

    def calls_then_sync():
        for _ in range(calls):
            out = run()
        out.numpy()

    seconds = _best_seconds(calls_then_sync, 1, trials) / calls
    return MATMUL_FLOP / seconds / 1e9


# Contenders -----------------------------------------------------------------------


def run_tfboltz(x, repeats, threads=None):
    import keras
    import tensorflow as tf

    import tfboltz as tb

    limit_tf_threads(tf, threads)

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    model = tb.RBM(N_VISIBLE, N_HIDDEN, learning="cd", k=1, seed=SEED)
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE, momentum=MOMENTUM))
    start = time.perf_counter()
    model.fit(x[:WARMUP_ROWS], batch_size=BATCH_SIZE, epochs=1, verbose=0)
    warmup_s = time.perf_counter() - start

    timer = EpochTimer()
    start = time.perf_counter()
    history = model.fit(x, batch_size=BATCH_SIZE, epochs=repeats, verbose=0, callbacks=[timer])
    fit_s = time.perf_counter() - start
    # The peak of the fit itself, before the bare loop below adds its copy of the rows.
    fit_peak = {"peak_rss_mb": peak_rss_mb(), "vm_hwm_mb": vm_hwm_mb()}

    # The same train step in a bare graph loop over pre-batched rows: what `fit`'s own
    # machinery (input pipeline, step dispatch, callbacks) adds is the difference.
    n = len(x) // BATCH_SIZE
    batches = tf.constant(x[:n * BATCH_SIZE].reshape(n, BATCH_SIZE, N_VISIBLE))

    @tf.function
    def step_loop():
        for i in tf.range(n):
            model.train_step(batches[i])

    step_loop()
    step_s = []
    for _ in range(repeats):
        start = time.perf_counter()
        step_loop()
        step_s.append(time.perf_counter() - start)
    return {
        **fit_peak,
        "train_step_loop_s": step_s,
        "epoch_s": timer.seconds,
        "warmup_fit_s": warmup_s,
        "fit_overhead_s": fit_s - sum(timer.seconds),
        "steps_per_execution": model.steps_per_execution,
        "train_reconstruction_error": float(history.history["reconstruction_error"][-1]),
        "check_reconstruction_error": reconstruction_error(
            model.kernel.numpy(), model.visible_layer.bias.numpy(),
            model.hidden_layer.bias.numpy(), x[:CHECK_ROWS]),
        "threads": {"tf_intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "tf_inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "notes": "CD-1, momentum SGD, Keras fit",
    }


def run_sklearn(x, repeats, threads=None):  # BLAS threads are capped by `run_one`
    import sklearn
    from sklearn.neural_network import BernoulliRBM

    seconds = []
    for _ in range(repeats):
        rbm = BernoulliRBM(n_components=N_HIDDEN, batch_size=BATCH_SIZE, n_iter=1,
                           learning_rate=LEARNING_RATE, random_state=SEED)
        start = time.perf_counter()
        rbm.fit(x)
        seconds.append(time.perf_counter() - start)
    return {
        "epoch_s": seconds,
        "dtype": str(rbm.components_.dtype),
        "check_reconstruction_error": reconstruction_error(
            rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_, x[:CHECK_ROWS]),
        "versions": {"sklearn": sklearn.__version__},
        "notes": "PCD-1 internally, plain SGD, no shuffling",
    }


class NumpyCD1:
    """CD-1 for a Bernoulli RBM in float32 numpy, the algorithm of tfboltz's train step.

    Per batch ``v0`` of ``n`` rows::

        h0 = sigmoid(v0 W + c);  h ~ Bernoulli(h0)
        v1 = sigmoid(h W^T + b)                     (visible means, not sampled)
        h1 = sigmoid(v1 W + c)
        grad W = (v1^T h1 - v0^T h0) / n,  grad b = mean(v1 - v0),  grad c = mean(h1 - h0)
        m = momentum * m - lr * grad;  theta += m    (keras.optimizers.SGD)

    All arrays are preallocated; the matrix products go to numpy's BLAS.
    """

    def __init__(self, x_init, seed=SEED):
        self.rng = np.random.default_rng(seed)
        f32 = np.float32
        self.w = (0.01 * self.rng.standard_normal((N_VISIBLE, N_HIDDEN))).astype(f32)
        # Visible biases from the data, as tfboltz's `init_from_data`: log-odds of the means.
        p = np.clip(np.mean(x_init, axis=0, dtype=np.float64), 1e-3, 1 - 1e-3)
        self.b = np.log(p / (1 - p)).astype(f32)
        self.c = np.zeros(N_HIDDEN, f32)
        self.m_w, self.m_b, self.m_c = (np.zeros_like(t) for t in (self.w, self.b, self.c))
        self.grad_w = np.empty_like(self.w)
        self.tmp_w = np.empty_like(self.w)
        self.v0 = np.empty((BATCH_SIZE, N_VISIBLE), f32)
        self.v1 = np.empty((BATCH_SIZE, N_VISIBLE), f32)
        self.h0 = np.empty((BATCH_SIZE, N_HIDDEN), f32)
        self.h = np.empty((BATCH_SIZE, N_HIDDEN), f32)
        self.h1 = np.empty((BATCH_SIZE, N_HIDDEN), f32)
        self.u = np.empty((BATCH_SIZE, N_HIDDEN), f32)

    def step(self, v0):
        n = len(v0)
        v1, h0, h, h1, u = (t[:n] for t in (self.v1, self.h0, self.h, self.h1, self.u))
        w, grad_w = self.w, self.grad_w
        sigmoid(np.add(np.matmul(v0, w, out=h0), self.c, out=h0), out=h0)
        self.rng.random(out=u, dtype=np.float32)
        np.less(u, h0, out=h)  # sampled hidden states, as float32 0/1
        sigmoid(np.add(np.matmul(h, w.T, out=v1), self.b, out=v1), out=v1)
        sigmoid(np.add(np.matmul(v1, w, out=h1), self.c, out=h1), out=h1)
        np.matmul(v1.T, h1, out=grad_w)
        grad_w -= np.matmul(v0.T, h0, out=self.tmp_w)
        grad_w *= 1.0 / n
        grad_b = (v1.sum(0) - v0.sum(0)) / n
        grad_c = (h1.sum(0) - h0.sum(0)) / n
        for param, m, grad in ((w, self.m_w, grad_w), (self.b, self.m_b, grad_b),
                               (self.c, self.m_c, grad_c)):
            np.multiply(m, MOMENTUM, out=m)
            np.multiply(grad, LEARNING_RATE, out=grad)
            np.subtract(m, grad, out=m)
            np.add(param, m, out=param)

    def epoch(self, x):
        """One pass over `x` in a fresh random order (as `fit`'s default shuffle)."""
        order = self.rng.permutation(len(x))
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            v0 = self.v0[:len(idx)]
            np.take(x, idx, axis=0, out=v0)
            self.step(v0)


def run_numpy(x, repeats, threads=None):  # BLAS threads are capped by `run_one`
    model = NumpyCD1(x)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.epoch(x)
        seconds.append(time.perf_counter() - start)
    return {
        "epoch_s": seconds,
        "check_reconstruction_error": reconstruction_error(model.w, model.b, model.c,
                                                           x[:CHECK_ROWS]),
        "versions": {"numpy": np.__version__},
        "notes": "CD-1, momentum SGD, OpenBLAS",
    }


RUNNERS = {"tfboltz": run_tfboltz, "sklearn": run_sklearn, "numpy": run_numpy}


def peak_rss_mb():
    """Peak resident memory of this process in MB (1e6 bytes) from ``ru_maxrss``."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bytes_per_unit = 1 if sys.platform == "darwin" else 1024  # KiB on Linux, bytes on macOS
    return maxrss * bytes_per_unit / 1e6


def vm_hwm_mb():
    """Peak resident memory of this process image from /proc (Linux), or None.

    A cross-check of `peak_rss_mb`: unlike ``ru_maxrss``, ``VmHWM`` is not inherited
    across ``fork``/``exec`` from the parent's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    return None


def run_setup(args):
    """Setup child: load MNIST once, save the rows for the contenders, measure the rates.

    It runs in its own process so that the parent never imports TensorFlow nor holds
    the data: a child's ``ru_maxrss`` starts from its parent's peak (the kernel carries
    it over ``fork``/``exec``), so the parent has to stay small.
    """
    limit_blas_threads(args.threads)
    x = load_rows(None, args.n_rows)
    np.save(args.setup / "mnist_rows.npy", x)
    setup = {
        "n_rows": len(x),
        "gflops": {"numpy": numpy_matmul_rate(),
                   "tensorflow": tf_matmul_rate(args.threads)},
        "numpy_cd_products_gflops": numpy_cd_products_rate(),
    }
    (args.setup / "setup.json").write_text(json.dumps(setup))


def run_one(args):
    """Child mode: time one contender in this process and report it."""
    limit_blas_threads(args.threads)
    x = load_rows(args.data, args.n_rows)
    result = RUNNERS[args.only](x, args.repeats, args.threads)
    result.setdefault("threads", {}).update(blas_threads())
    result.update(contender=args.only, n_rows=len(x), best_s=min(result["epoch_s"]))
    result.setdefault("peak_rss_mb", peak_rss_mb())
    result.setdefault("vm_hwm_mb", vm_hwm_mb())
    line = (f"{args.only}: best {result['best_s']:.3f} s/epoch of "
            f"{', '.join(f'{s:.3f}' for s in result['epoch_s'])}; "
            f"peak RSS {result['peak_rss_mb']:.0f} MB")
    print(line, flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


# Parent: all contenders, the table -------------------------------------------------


def run_child(name, extra_args, out):
    """Run this script in a fresh interpreter with `extra_args`; return the JSON in `out`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), *extra_args]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        print(f"  {name} FAILED (exit {proc.returncode}):\n{tail}", flush=True)
        return {"contender": name, "error": tail, "returncode": proc.returncode}
    result = json.loads(out.read_text())
    result["process_wall_s"] = wall
    if proc.stdout.strip():
        print(f"  {proc.stdout.strip()}  [process {wall:.1f} s]", flush=True)
    return result


def verdict(value, target, smaller_than=True):
    if value is None:
        return "n/a"
    ok = value <= target if smaller_than else value >= target
    return "ok" if ok else "MISSED"


def fmt(value, spec):
    return "n/a" if value is None else format(value, spec)


def run_all(args):
    load_before = os.getloadavg()
    cpus = os.cpu_count()
    print(f"CPUs: {cpus}; threads: {args.threads or 'library defaults'}; "
          f"load average before: {load_before[0]:.2f} (1 min); parent peak RSS "
          f"{peak_rss_mb():.0f} MB (a floor under the children's ru_maxrss)", flush=True)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_rbm_") as tmp:
        tmp = Path(tmp)
        print("loading MNIST and measuring the matmul rate ...", flush=True)
        threads = ["--threads", str(args.threads)] if args.threads else []
        setup_args = ["--setup", str(tmp), *threads]
        if args.n_rows:
            setup_args += ["--n-rows", str(args.n_rows)]
        setup = run_child("setup", setup_args, tmp / "setup.json")
        if "error" in setup:
            return 1
        rows = setup["n_rows"]
        batches = n_batches(rows)
        rates = setup["gflops"]
        cd_rate = setup["numpy_cd_products_gflops"]
        best_rate = max(rates.values())
        bound_s = MATMULS_PER_BATCH * batches * MATMUL_FLOP / (best_rate * 1e9)
        print(f"MNIST: {rows} rows x {N_VISIBLE}; {N_VISIBLE}x{N_HIDDEN} Bernoulli RBM, CD-1, "
              f"batch {BATCH_SIZE} ({batches} batches/epoch), best of {args.repeats} "
              f"epoch(s)")
        print(f"matmul rate, float32 ({BATCH_SIZE}x{N_VISIBLE}) @ ({N_VISIBLE}x{N_HIDDEN}): "
              f"numpy {rates['numpy']:.1f} GFLOP/s, TF {rates['tensorflow']:.1f} GFLOP/s "
              f"(numpy, the 5 CD-1 products with their shapes: {cd_rate:.1f} GFLOP/s)")
        print(f"matmul-only lower bound: {MATMULS_PER_BATCH} x {batches} x "
              f"{MATMUL_FLOP / 1e9:.3f} GFLOP / {best_rate:.1f} GFLOP/s = {bound_s:.3f} s/epoch",
              flush=True)
        for name in CONTENDERS:
            print(f"running {name} ...", flush=True)
            out = tmp / f"{name}.json"
            results[name] = run_child(name, ["--only", name, "--data", str(tmp / "mnist_rows.npy"),
                                             "--repeats", str(args.repeats), "--json", str(out),
                                             *threads],
                                      out)
    load_after = os.getloadavg()

    best = {name: r.get("best_s") for name, r in results.items()}
    peak = {name: r.get("peak_rss_mb") for name, r in results.items()}

    def ratio(a, b):
        return None if a is None or b is None else a / b

    vs_sklearn = ratio(best["tfboltz"], best["sklearn"])
    vs_numpy = ratio(best["tfboltz"], best["numpy"])

    print()
    print(f"{'contender':<10} {'s/epoch':>9} {'x bound':>8} {'peak RSS MB':>12}  "
          f"{'recon err':>9}  notes")
    for name in CONTENDERS:
        r = results[name]
        print(f"{name:<10} {fmt(best[name], '9.3f')} {fmt(ratio(best[name], bound_s), '8.2f')} "
              f"{fmt(peak[name], '12.0f')}  {fmt(r.get('check_reconstruction_error'), '9.4f')}"
              f"  {r.get('notes', r.get('error', '')[:60])}")
    print()
    tf_peak = peak["tfboltz"]
    print(f"tfboltz / sklearn time: {fmt(vs_sklearn, '.2f'):>6}   target <= {TARGET_VS_SKLEARN}"
          f"   {verdict(vs_sklearn, TARGET_VS_SKLEARN)}")
    print(f"tfboltz / numpy time:   {fmt(vs_numpy, '.2f'):>6}   target <= {TARGET_VS_NUMPY}"
          f"   {verdict(vs_numpy, TARGET_VS_NUMPY)}")
    print(f"tfboltz peak memory:    {fmt(tf_peak, '.0f'):>6} MB target < {TARGET_PEAK_MB:.0f} MB"
          f"   {verdict(tf_peak, TARGET_PEAK_MB)}")
    if "fit_overhead_s" in results["tfboltz"]:
        r = results["tfboltz"]
        print(f"tfboltz: warm-up fit ({WARMUP_ROWS} rows, tracing) {r['warmup_fit_s']:.2f} s; "
              f"fit overhead outside the timed epochs {r['fit_overhead_s']:.2f} s; "
              f"steps_per_execution {r['steps_per_execution']}")
        loop = min(r["train_step_loop_s"])
        print(f"tfboltz train_step alone, bare graph loop over pre-batched rows: {loop:.3f} "
              f"s/epoch ({fmt(ratio(loop, best['numpy']), '.2f')} x numpy); the rest of the "
              "fit epoch is Keras's input pipeline, step dispatch and callbacks")
    print(f"load average after: {load_after[0]:.2f} (1 min)")
    if max(load_before[0], load_after[0]) > BUSY_LOAD:
        print(f"WARNING: the machine was not idle (load average above {BUSY_LOAD}); "
              "the timings are not representative.")

    summary = {
        "config": {"n_rows": rows,
                   "batches_per_epoch": batches, "batch_size": BATCH_SIZE,
                   "n_visible": N_VISIBLE, "n_hidden": N_HIDDEN, "k": 1,
                   "learning_rate": LEARNING_RATE, "momentum": MOMENTUM,
                   "repeats": args.repeats, "warmup_rows": WARMUP_ROWS,
                   "threads": args.threads},
        "machine": {"cpu_count": cpus, "loadavg_before": load_before,
                    "loadavg_after": load_after, "python": sys.version.split()[0]},
        "matmul": {"flop_per_product": MATMUL_FLOP, "gflops": rates,
                   "numpy_cd_products_gflops": cd_rate, "lower_bound_s": bound_s},
        "contenders": results,
        "ratios": {"tfboltz_over_sklearn": vs_sklearn, "tfboltz_over_numpy": vs_numpy,
                   **{f"{name}_over_bound": ratio(best[name], bound_s) for name in CONTENDERS}},
        "targets": {
            "tfboltz_over_sklearn": {"target": TARGET_VS_SKLEARN,
                                     "met": verdict(vs_sklearn, TARGET_VS_SKLEARN) == "ok"},
            "tfboltz_over_numpy": {"target": TARGET_VS_NUMPY,
                                   "met": verdict(vs_numpy, TARGET_VS_NUMPY) == "ok"},
            "tfboltz_peak_rss_mb": {"target": TARGET_PEAK_MB,
                                    "met": verdict(tf_peak, TARGET_PEAK_MB) == "ok"},
        },
    }
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")
    return 0 if all("error" not in r for r in results.values()) else 1


def main(argv=None):
    args = parse_args(argv)
    if args.setup:
        run_setup(args)
        return 0
    if args.only:
        run_one(args)
        return 0
    return run_all(args)


if __name__ == "__main__":
    sys.exit(main())
