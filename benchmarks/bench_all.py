"""Benchmarks for every model, one command, one table.

    python benchmarks/bench_all.py                    # everything (about 30 min, 2-core AMD EPYC)
    python benchmarks/bench_all.py --json bench.json  # and keep the raw figures
    python benchmarks/bench_all.py --quick            # 6,000 rows, 2,000 betas: a smoke run
    python benchmarks/bench_all.py --case dbm_joint   # only the cases named
    python benchmarks/bench_all.py --case rbm_pcd1 rbm_pcd1_numpy --rounds 3   # median of 3

Cases (MNIST training rows, float32 grey levels; batches of 100 unless said):

rbm_cd1, rbm_pcd1   one `fit` epoch of a 784-1024 Bernoulli RBM, CD-1 and PCD-1
                    (100 chains); beside CD-1 scikit-learn's BernoulliRBM and the
                    plain numpy CD-1 loop of benchmarks/bench_rbm.py, beside PCD-1
                    the numpy loop of benchmarks/numpy_loops.py, same data.
dbm_pretrain        one epoch of each greedy RBM of the 784-500-1000 DBM (doubled
                    784-500, then 500-1000), as `pretrain_dbm` runs them; beside it
                    the two numpy loops.
dbm_joint           one joint epoch of the zoo DBM's recipe (784-500-1000, centered,
                    L2 2e-4): 5 mean-field iterations (no early stop), PCD-5 over
                    100 particles; beside it a numpy loop of the same algorithm.
dbn_updown          one up-down epoch of the 784-500-500-2000 DBN with 10 labels
                    (CD-3 at the top), as scripts/train_dbn_mnist.py runs it; beside
                    it a numpy loop of the same algorithm.
ais_dbm             AIS with 20,000 betas and 100 chains on the zoo's mnist_dbm by the
                    two-stage path (proposal="rbm", 20,000 betas each stage) that the
                    DBM needs.
finetune            one epoch of the DBM's Sequential classifier (784+1000 -> 500
                    -> 1000 -> 10, Adam) on 55,000 rows.
finetune_adv        the same epoch with fast-gradient-sign adversarial training
                    (`tb.fine_tuning.AdversarialTraining`, epsilon 0.1); beside it
                    the plain finetune epoch of the same run.
finetune_vat        the same epoch with virtual adversarial training
                    (`tb.fine_tuning.VirtualAdversarialTraining`, epsilon 2, one
                    power step, exact Hessian-vector product); beside it the plain
                    finetune epoch of the same run.
finetune_vat_fd     the same with the paper's finite-difference power step
                    (xi 1e-6) instead of the exact one.
finetune_adv_l2     finetune_adv with the fast gradient method in the L2 norm
                    (epsilon 2, unclipped: `norm="l2", clip=None`); the same
                    products as finetune_adv.
finetune_vat_oriented  finetune_vat with the side of the perturbation chosen by the
                    larger KL (`orient=True`): two more forwards a step.
*_bf16              rbm_cd1, rbm_pcd1, dbm_pretrain and dbm_joint with
                    `matmul_dtype="bfloat16"` (mixed precision); their products are
                    timed in bfloat16 too, their numpy peer is the float32 one.
*_xla               rbm_cd1, dbm_pretrain and finetune compiled with XLA
                    (`jit_compile=True`), which fuses the element-wise work and the
                    optimizer update; on this CPU it pays for these and not for the
                    DBM joint step (its mean-field loop) or PCD.
scale_h*, scale_b*  RBM CD-1 on 10,000 rows with 512..4096 hidden units (batch 100),
                    and with batches of 20..1000 (1024 hidden units).

Each case runs in its own process, so its peak resident memory is its own. The time
of an epoch is the best of 3 epochs that follow a first one (which traces the train
function), each timed from its first to its last batch: the same best-of-3 as the
products beside it and the peers, since one epoch on a shared virtual machine varies
by 10-25%. Beside it: the time that the case's matrix products alone take on this
machine, measured in the same process by running exactly those products (same
shapes, same transposed operands, same count, one compiled TensorFlow loop; an RBM's
epoch adds the one product of its epoch-end monitors, 1,000 rows); their
rate in GFLOP/s; the ratio epoch / products (target: at most 1.2); and, where the
case has a numpy peer, the ratio epoch / numpy epoch, the peer timed the same way in
its own process (target: at most 0.8). AIS target: under 3 minutes.
"""

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
HERE = Path(__file__).resolve().parent
B = 100
TIMED_EPOCHS = 3  # epochs timed after the tracing one; a case reports the best
TARGET_RATIO = 1.2
TARGET_NUMPY = 0.8
TARGET_AIS_S = 180.0


def peak_mb():
    """This process's peak resident memory: VmHWM, which starts afresh at exec (unlike
    ``ru_maxrss``, which inherits the parent's peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_model(cpuinfo=Path("/proc/cpuinfo")):
    """The processor's model name: which settings are fast (XLA, bfloat16) differs
    between the machines this runs on, so every table names its CPU."""
    try:
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


# Matrix products -------------------------------------------------------------------


def products_time(products, repeats, dtype="float32"):
    """Seconds for `repeats` passes over `products` in one compiled TensorFlow loop
    (best of 3, after a warm-up), operands in `dtype`. A product ``(m, k, n)`` is an
    ``(m, k) @ (k, n)``; a fourth and fifth entry say that an operand is stored
    transposed, as the step stores it (``W.T`` products read ``W``)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    pairs = []
    for m, k, n, *flags in products:
        ta, tb = (flags + [False, False])[:2]
        a = rng.random((k, m) if ta else (m, k), dtype="float32")
        b = rng.random((n, k) if tb else (k, n), dtype="float32")
        pairs.append((tf.constant(a, dtype), tf.constant(b, dtype), ta, tb))

    @tf.function
    def loop(count):
        total = tf.zeros((), dtype)
        for _ in tf.range(count):
            for a, b, ta, tb in pairs:
                # A dependency on the running total keeps every product in the loop.
                total += tf.reduce_sum(
                    tf.matmul(a + total * 0, b, transpose_a=ta, transpose_b=tb)[:1, :1])
        return total

    loop(tf.constant(1)).numpy()
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        loop(tf.constant(repeats)).numpy()
        best = min(best, time.perf_counter() - start)
    return best


def flop(products, repeats):
    return 2.0 * repeats * sum(m * k * n for m, k, n, *_ in products)


# Cases -----------------------------------------------------------------------------


class EpochTimer:
    """A Keras callback recording the wall-clock of each epoch."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self.t0)

            def timed(self):
                """The fields a case reports: the best epoch after the first, and all."""
                return {"seconds": min(self.seconds[1:]), "epochs_s": self.seconds}

        return _Timer()


def rbm_products(n_vis, n_hid, batch, pcd=False, chains=100):
    """The matrix products of one CD-1 / PCD-1 step of `tb.RBM` (T: transposed)."""
    up, down = (n_vis, n_hid), (n_hid, n_vis, False, True)  # v W; h W.T
    if pcd:  # data up; chains up, down, up; reconstruction down; one stacked gradient
        return [(batch, *up), (chains, *up), (chains, *down), (chains, *up), (batch, *down),
                (n_vis, batch + chains, n_hid, True, False)]
    return [(batch, *up), (batch, *down), (batch, *up), (n_vis, 2 * batch, n_hid, True, False)]


def monitor_products(x, n_hid):
    """The once-an-epoch product of an RBM's `fit`: the hidden input of the (up to)
    1,000 rows whose free energy and pseudo-log-likelihood are logged."""
    from tfboltz.pipeline import MONITOR_ROWS

    return [(min(MONITOR_ROWS, len(x)), x.shape[1], n_hid)]


# The models of the cases, compiled as they are timed (profile_steps.py profiles these).


def new_rbm(n_vis, n_hid, learning="cd", visible_copies=1, hidden_copies=1,
            matmul_dtype="float32", jit=False):
    import keras

    import tfboltz as tb

    rbm = tb.RBM(n_vis, n_hid, learning=learning, seed=0, matmul_dtype=matmul_dtype,
                 visible_copies=visible_copies, hidden_copies=hidden_copies)
    rbm.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=jit)
    return rbm


def second_rbm_rows(x):
    """Stand-in data of the right width for the DBM's second greedy RBM (500 visible
    units): the first 500 columns of `x`, binarised at 0.5."""
    return np.asarray(x[:, :500] > 0.5, "float32")


DBM_JOINT = dict(n_mean_field=5, k=5, centering=True, l2=2e-4)  # the zoo recipe's step


def new_dbm(matmul_dtype="float32"):
    import keras

    import tfboltz as tb

    dbm = tb.DBM([784, 500, 1000], mean_field_tol=0.0, seed=0, matmul_dtype=matmul_dtype,
                 **DBM_JOINT)
    dbm.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9))
    return dbm


def new_dbn():
    import keras

    import tfboltz as tb

    dbn = tb.DBN([784, 500, 500, 2000], num_classes=10, k=3, seed=0)
    dbn.compile(optimizer=keras.optimizers.SGD(0.001, momentum=0.9))
    return dbn


def time_rbm_epoch(x, n_hid, batch, learning="cd", visible_copies=1, hidden_copies=1,
                   matmul_dtype="float32", jit=False):
    rbm = new_rbm(x.shape[1], n_hid, learning, visible_copies, hidden_copies, matmul_dtype,
                  jit)
    timer = EpochTimer()
    rbm.fit(x, batch_size=batch, epochs=1 + TIMED_EPOCHS, verbose=0, callbacks=[timer])
    return timer.timed()


def case_rbm(x, n_hid=1024, batch=B, learning="cd", matmul_dtype="float32", jit=False):
    timed = time_rbm_epoch(x, n_hid, batch, learning, matmul_dtype=matmul_dtype, jit=jit)
    return {**timed, "batches": math.ceil(len(x) / batch),
            "products": rbm_products(x.shape[1], n_hid, batch, pcd=learning == "pcd"),
            "epoch_products": monitor_products(x, n_hid), "dtype": matmul_dtype}


def case_dbm_pretrain(x, jit=False, matmul_dtype="float32"):
    t1 = time_rbm_epoch(x, 500, B, visible_copies=2, jit=jit, matmul_dtype=matmul_dtype)
    x1 = second_rbm_rows(x)
    t2 = time_rbm_epoch(x1, 1000, B, hidden_copies=2, jit=jit, matmul_dtype=matmul_dtype)
    # Doubling scales the inputs; it adds no products.
    prods = rbm_products(784, 500, B) + rbm_products(500, 1000, B)
    return {"seconds": t1["seconds"] + t2["seconds"], "batches": math.ceil(len(x) / B),
            "products": prods,
            "epoch_products": monitor_products(x, 500) + monitor_products(x1, 1000),
            "parts_s": [t1["seconds"], t2["seconds"]], "dtype": matmul_dtype,
            "epochs_s": [t1["epochs_s"], t2["epochs_s"]]}


def dbm_products(batch=B, chains=100, n_mf=5, k=5, sizes=(784, 500, 1000)):
    v, h1, h2 = sizes
    t = (False, True)  # the top-down products use W.T
    prods = [(batch, v, h1), (batch, h1, h2)]            # v W1 (kept), initial h1 W2
    prods += [(batch, h2, h1, *t), (batch, h1, h2)] * n_mf   # each mean-field iteration
    prods += [(chains, v, h1), (chains, h2, h1, *t), (chains, h1, v, *t),
              (chains, h1, h2)] * k                      # k Gibbs sweeps of the particles
    prods += [(v, batch + chains, h1, True, False),
              (h1, batch + chains, h2, True, False)]    # gradients, stacked statistics
    prods += [(batch, h1, v, *t)]                        # reconstruction (metric)
    return prods


def case_dbm_joint(x, matmul_dtype="float32"):
    dbm = new_dbm(matmul_dtype)
    timer = EpochTimer()
    dbm.fit(x, batch_size=B, epochs=1 + TIMED_EPOCHS, verbose=0, callbacks=[timer])
    return {**timer.timed(), "batches": math.ceil(len(x) / B),
            "products": dbm_products(), "dtype": matmul_dtype}


def dbn_products(batch=B, sizes=(784, 500, 500, 2000), num_classes=10, k=3):
    """The matrix products of one up-down step of `tb.DBN` with labels at the top."""
    v, h1, h2, top = sizes
    t, ta = (False, True), (True, False)
    tv = h2 + num_classes
    prods = [(batch, v, h1), (batch, h1, h2), (batch, tv, top)]     # wake up; top up
    prods += [(batch, top, tv, *t), (batch, tv, top)] * k            # CD-k at the top
    prods += [(tv, 2 * batch, top, *ta)]                             # top gradient, stacked
    prods += [(batch, h2, h1, *t), (batch, h1, v, *t)]               # sleep down
    prods += [(batch, h1, v, *t), (batch, h2, h1, *t)]               # generative predictions
    prods += [(v, batch, h1, *ta), (h1, batch, h2, *ta)]             # their gradients
    prods += [(batch, v, h1), (batch, h1, h2)]                       # recognition predictions
    prods += [(v, batch, h1, *ta), (h1, batch, h2, *ta)]             # their gradients
    return prods


def case_dbn_updown(x, y):
    dbn = new_dbn()
    timer = EpochTimer()
    dbn.fit(x, y, batch_size=B, epochs=1 + TIMED_EPOCHS, verbose=0, callbacks=[timer])
    return {**timer.timed(), "batches": math.ceil(len(x) / B), "products": dbn_products()}


def case_numpy(name, x, y):
    """A numpy peer (benchmarks/numpy_loops.py), timed as the tfboltz epochs are: the
    best of the epochs after the first."""
    import numpy_loops as nl

    if name == "rbm_pcd1_numpy":
        seconds = nl.time_epochs(nl.RBMLoop(784, 1024, pcd=True), x, epochs=1 + TIMED_EPOCHS)
    elif name == "dbm_pretrain_numpy":
        x1 = second_rbm_rows(x)  # as case_dbm_pretrain
        first = nl.time_epochs(nl.RBMLoop(784, 500, visible_copies=2), x, epochs=1 + TIMED_EPOCHS)
        second = nl.time_epochs(nl.RBMLoop(500, 1000, hidden_copies=2), x1,
                                epochs=1 + TIMED_EPOCHS)
        return {"seconds": min(first[1:]) + min(second[1:]), "epochs_s": [first, second]}
    elif name == "dbm_joint_numpy":
        seconds = nl.time_epochs(nl.DBMLoop(**DBM_JOINT), x, epochs=1 + TIMED_EPOCHS)
    elif name == "dbn_updown_numpy":
        seconds = nl.time_epochs(nl.DBNLoop(k=3), x, y.astype("int64"), epochs=1 + TIMED_EPOCHS)
    else:
        raise ValueError(f"Unknown case {name!r}")
    return {"seconds": min(seconds[1:]), "epochs_s": seconds}


def case_ais_dbm(x, n_betas=20000):
    import tfboltz as tb

    dbm = tb.zoo.load("mnist_dbm")
    start = time.perf_counter()
    est = tb.ais.log_partition(dbm, n_chains=100, n_betas=n_betas, seed=0, proposal="rbm",
                               data=x, verbose=0)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "log_z": float(est.log_z), "n_betas": n_betas,
            "log_z_interval": [est.log_z_low, est.log_z_high]}


def _batches(f, y):
    """Shuffled batches of (f, y) through the input pipeline tfboltz's own `fit` uses:
    row indices shuffled and gathered, one thread, no autotuning. Keras's default
    pipeline for arrays made some epochs here 50-60% slower at random (tf.data's
    tuning threads competing with the step on 2 cores)."""
    import tensorflow as tf

    from tfboltz.pipeline import input_options

    rows, labels = tf.constant(f), tf.constant(y)
    ds = (tf.data.Dataset.range(len(f)).shuffle(len(f), seed=0).batch(B)
          .map(lambda i: (tf.gather(rows, i), tf.gather(labels, i))).prefetch(1))
    return ds.with_options(input_options())


def finetune_products(d, wrapper=None):
    """The matrix products of one step of the DBM classifier's trainable layers
    (d -> 500 -> 1000 -> 10); with `wrapper` "adversarial" (or "adversarial_l2", the
    same products), "vat", "vat_fd" or "vat_oriented", those of the step of
    `AdversarialTraining` or `VirtualAdversarialTraining` (exact or finite-difference
    power step; oriented: the exact step, then forwards at x + r and x - r)."""
    ta, tb = (True, False), (False, True)
    forward = [(B, d, 500), (B, 500, 1000), (B, 1000, 10)]
    weight_grads = [(1000, B, 10, *ta), (500, B, 1000, *ta), (d, B, 500, *ta)]  # X.T dY
    hidden_grads = [(B, 10, 1000, *tb), (B, 1000, 500, *tb)]                  # dY W.T
    to_input = hidden_grads + [(B, 500, d, *tb)]
    if wrapper is None:
        return forward + weight_grads + hidden_grads
    if wrapper in ("adversarial", "adversarial_l2"):
        # clean forward, its gradient down to the input, the perturbed forward, then the
        # weight gradients of both halves of the loss
        return forward + to_input + forward + 2 * (weight_grads + hidden_grads)
    # the reference forward, one power step (exact: a forward with its tangent J d, the
    # products of two forwards; finite difference: one forward at x + xi d; then back to
    # the input), the clean and the perturbed forwards, the weight gradients of both terms
    power = forward if wrapper == "vat_fd" else 2 * forward
    sides = 2 * forward if wrapper == "vat_oriented" else []
    return (forward + power + to_input + sides + 2 * forward
            + 2 * (weight_grads + hidden_grads))


def case_finetune(x, y, jit=False, wrapper=None):
    import keras

    import tfboltz as tb

    dbm = tb.DBM([784, 500, 1000], seed=0)
    clf = dbm.to_sequential(10)
    first = clf.layers[0]
    f = np.concatenate([first(x[i:i + 1000]).numpy() for i in range(0, len(x), 1000)])
    head = keras.Sequential([keras.Input((f.shape[1],)), *clf.layers[1:]])
    fitted = head
    if wrapper == "adversarial":
        fitted = tb.fine_tuning.AdversarialTraining(head, 0.1)
    elif wrapper == "adversarial_l2":
        fitted = tb.fine_tuning.AdversarialTraining(head, 2.0, clip=None, norm="l2")
    elif wrapper in ("vat", "vat_fd", "vat_oriented"):
        xi = 1e-6 if wrapper == "vat_fd" else None
        fitted = tb.fine_tuning.VirtualAdversarialTraining(
            head, 2.0, xi=xi, seed=0, orient=wrapper == "vat_oriented")
    fitted.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                   steps_per_execution=50, jit_compile=jit)
    timer = EpochTimer()
    fitted.fit(_batches(f, y), epochs=1 + TIMED_EPOCHS, verbose=0, callbacks=[timer])
    return {**timer.timed(), "batches": math.ceil(len(x) / B),
            "products": finetune_products(f.shape[1], wrapper)}


SCALE_HIDDEN = (512, 1024, 2048, 4096)
SCALE_BATCH = (20, 100, 500, 1000)


def run_case(name, x, y):
    if name in ("rbm_cd1", "rbm_pcd1"):
        return case_rbm(x, learning="cd" if name == "rbm_cd1" else "pcd")
    if name == "rbm_cd1_bf16":
        return case_rbm(x, matmul_dtype="bfloat16")
    if name == "rbm_pcd1_bf16":
        return case_rbm(x, learning="pcd", matmul_dtype="bfloat16")
    if name == "dbm_pretrain_bf16":
        return case_dbm_pretrain(x, matmul_dtype="bfloat16")
    if name == "dbm_joint_bf16":
        return case_dbm_joint(x, matmul_dtype="bfloat16")
    if name == "dbm_pretrain":
        return case_dbm_pretrain(x)
    if name == "rbm_cd1_xla":
        return case_rbm(x, jit=True)
    if name == "dbm_pretrain_xla":
        return case_dbm_pretrain(x, jit=True)
    if name == "finetune_xla":
        return case_finetune(x[:55000], y[:55000], jit=True)
    if name == "dbm_joint":
        return case_dbm_joint(x)
    if name.endswith("_numpy"):
        return case_numpy(name, x, y)
    if name == "dbn_updown":
        return case_dbn_updown(x, y)
    if name == "ais_dbm":
        return case_ais_dbm(x, 2000 if len(x) < 60000 else 20000)
    if name == "finetune":
        return case_finetune(x[:55000], y[:55000])
    if name == "finetune_adv":
        return case_finetune(x[:55000], y[:55000], wrapper="adversarial")
    if name == "finetune_adv_l2":
        return case_finetune(x[:55000], y[:55000], wrapper="adversarial_l2")
    if name in ("finetune_vat", "finetune_vat_fd", "finetune_vat_oriented"):
        return case_finetune(x[:55000], y[:55000], wrapper=name[9:])
    if name.startswith("scale_h"):
        return case_rbm(x[:10000], n_hid=int(name[7:]))
    if name.startswith("scale_b"):
        return case_rbm(x[:10000], batch=int(name[7:]))
    raise ValueError(f"Unknown case {name!r}")


def child(args):
    data = np.load(args.data)
    x, y = data["x"], data["y"]
    result = run_case(args.case[0], x, y)
    if "products" in result:
        reps, dtype = result["batches"], result.get("dtype", "float32")
        result["products_s"] = products_time(result["products"], reps, dtype)
        flops = flop(result["products"], reps)
        if result.get("epoch_products"):  # once an epoch, not once a batch
            result["products_s"] += products_time(result["epoch_products"], 1, dtype)
            flops += flop(result["epoch_products"], 1)
        result["gflops"] = flops / result["products_s"] / 1e9
        result["ratio"] = result["seconds"] / result["products_s"]
    result["peak_mb"] = peak_mb()
    args.json.write_text(json.dumps(result))


def cases(quick):
    names = ["rbm_cd1", "rbm_pcd1", "rbm_pcd1_numpy", "dbm_pretrain", "dbm_pretrain_numpy",
             "dbm_joint", "dbm_joint_numpy", "dbn_updown", "dbn_updown_numpy", "ais_dbm",
             "finetune", "finetune_adv", "finetune_adv_l2", "finetune_vat", "finetune_vat_fd",
             "finetune_vat_oriented", "rbm_cd1_bf16", "rbm_pcd1_bf16", "dbm_pretrain_bf16",
             "dbm_joint_bf16", "rbm_cd1_xla", "dbm_pretrain_xla", "finetune_xla"]
    names += [f"scale_h{h}" for h in SCALE_HIDDEN] + [f"scale_b{b}" for b in SCALE_BATCH]
    return names


def peers(data_npy, n_rows):
    """scikit-learn's BernoulliRBM and the numpy CD-1 loop from bench_rbm.py."""
    out = {}
    for name in ("sklearn", "numpy"):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "r.json"
            cmd = [sys.executable, str(HERE / "bench_rbm.py"), "--only", name, "--data",
                   str(data_npy), "--json", str(path), "--repeats", str(TIMED_EPOCHS)]
            if n_rows:
                cmd += ["--n-rows", str(n_rows)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode or not path.exists():
                out[name] = {"error": proc.stderr[-500:]}
                continue
            r = json.loads(path.read_text())
            # VmHWM: ru_maxrss would carry this (TensorFlow-importing) parent's peak over.
            out[name] = {"seconds": r["best_s"], "peak_mb": r.get("vm_hwm_mb")}
    return out


def numpy_seconds(name, results, peer):
    """The epoch of the case's numpy peer, if it ran: bench_rbm.py's CD-1 loop for
    rbm_cd1 (and its variants), else the case ``<name>_numpy`` (without a ``_bf16`` or
    ``_xla`` suffix)."""
    for variant in ("_bf16", "_xla"):  # the same algorithm: the same peer
        name = name.removesuffix(variant)
    if name == "rbm_cd1":
        return peer.get("numpy", {}).get("seconds")
    return results.get(f"{name}_numpy", {}).get("seconds")


def median_round(rounds):
    """``{name: result}`` from the results of several rounds (a list of such dicts): for
    each name, its round with the median epoch (the lower middle one of an even count),
    with every round's epoch under ``seconds_rounds``; a name that failed in any round
    keeps that round's error."""
    merged = {}
    for name in rounds[0]:
        runs = [r[name] for r in rounds]
        failed = [run for run in runs if "seconds" not in run]
        if failed:
            merged[name] = failed[0]
            continue
        ordered = sorted(runs, key=lambda run: run["seconds"])
        merged[name] = dict(ordered[(len(ordered) - 1) // 2])
        if len(runs) > 1:
            merged[name]["seconds_rounds"] = [run["seconds"] for run in runs]
    return merged


def table(results, peer):
    """One line per case: the epoch, its products, their rate, the ratio to them, the
    ratio to the numpy peer, whether both targets are met, peak memory and notes."""
    w = max([16, *(len(name) + 1 for name in results)])
    lines = [f"{'case':<{w}}{'epoch s':>9}{'products s':>12}{'GFLOP/s':>9}{'ratio':>7}"
             f"{'numpy s':>9}{'x numpy':>9}{'target':>8}{'peak MB':>9}  peer"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"{name:<{w}}  FAILED: {r['error'][-200:]}")
            continue
        if name.endswith("_numpy"):
            continue
        ratio = r.get("ratio")
        np_s = numpy_seconds(name, results, peer)
        vs_numpy = r["seconds"] / np_s if np_s else None
        note = ""
        if name == "ais_dbm":
            ok = r["seconds"] < TARGET_AIS_S
            note = f"log Z {r['log_z']:.2f}, {r['n_betas']} betas; target < {TARGET_AIS_S:.0f} s"
        else:
            ok = ratio <= TARGET_RATIO and (vs_numpy is None or vs_numpy <= TARGET_NUMPY)
        if name == "rbm_cd1":
            note = "; ".join(f"{k} {v['seconds']:.2f} s ({r['seconds'] / v['seconds']:.2f}x)"
                             for k, v in peer.items() if "seconds" in v and k != "numpy")
        if name == "rbm_pcd1" and "seconds" in peer.get("sklearn", {}):
            sk = peer["sklearn"]["seconds"]  # BernoulliRBM learns by PCD-1
            note = f"sklearn {sk:.2f} s ({r['seconds'] / sk:.2f}x)"
        if (name.startswith(("finetune_adv", "finetune_vat"))
                and "seconds" in results.get("finetune", {})):
            plain = results["finetune"]["seconds"]
            note = f"plain {plain:.2f} s ({r['seconds'] / plain:.2f}x)"
        cols = (f"{name:<{w}}{r['seconds']:>9.2f}"
                + (f"{r['products_s']:>12.2f}{r['gflops']:>9.1f}{ratio:>7.2f}"
                   if ratio is not None else f"{'':>12}{'':>9}{'':>7}")
                + (f"{np_s:>9.2f}{vs_numpy:>9.2f}" if np_s else f"{'':>9}{'':>9}")
                + f"{'ok' if ok else 'MISSED':>8}{r['peak_mb']:>9.0f}  {note}")
        lines.append(cols.rstrip())
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--case", nargs="+",
                   help="run only these cases (each in its own process), e.g. "
                        "--case finetune finetune_adv")
    p.add_argument("--quick", action="store_true", help="6,000 rows: a smoke run")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the cases (and the CD-1 peers) this many times, in turn, and "
                        "report each one's median round: the numpy peers drift by tens "
                        "of percent between runs on a shared machine, and rounds that "
                        "alternate tfboltz and numpy see the same drift")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--data", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case and args.data:
        child(args)
        return 0
    import tfboltz as tb  # the parent loads the data once and hands it to the children

    x, y = tb.data.load_mnist("train")
    n_rows = 6000 if args.quick else None
    if n_rows:
        x, y = x[:n_rows], y[:n_rows]
    if args.rounds < 1:
        p.error(f"Expected --rounds to be at least 1. Received: --rounds {args.rounds}")
    names = args.case or cases(args.quick)
    rounds, peer_rounds = [], []
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "mnist.npz"
        np.savez(data, x=x, y=y)
        npy = Path(tmp) / "x.npy"
        np.save(npy, x)
        for round_ in range(args.rounds):
            results = {}
            for name in names:
                out = Path(tmp) / f"{name}.json"
                out.unlink(missing_ok=True)
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--case", name, "--data",
                                       str(data), "--json", str(out)],
                                      capture_output=True, text=True)
                if proc.returncode or not out.exists():
                    results[name] = {"error": (proc.stdout + proc.stderr)[-2000:]}
                else:
                    results[name] = json.loads(out.read_text())
                print(f"{name}" + (f" (round {round_ + 1})" if args.rounds > 1 else "")
                      + f": {time.perf_counter() - start:.0f} s in its process", flush=True)
            rounds.append(results)
            peer_rounds.append(peers(npy, n_rows) if "rbm_cd1" in names else {})
    results, peer = median_round(rounds), median_round(peer_rounds)
    import tensorflow as tf

    cpu = cpu_model()
    print(f"\n{len(x)} MNIST rows; TensorFlow {tf.__version__}; {os.cpu_count()} cores "
          f"({cpu}); "
          f"load average {load:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(table(results, peer))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "peers": peer,
                                         "n_rows": len(x), "cpu": cpu,
                                         "rounds": args.rounds}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
