"""Joint training of a two-hidden-layer binary DBM on an accelerator without TensorFlow.

    # here (TensorFlow): the stitched model and the data, as plain arrays
    python docs/experiments/scripts/dbm_joint_jax.py export runs/dbm/pretrained.keras \
        runs/accel/start.npz
    # there (JAX only): several runs of the joint phase side by side, one per seed
    python docs/experiments/scripts/dbm_joint_jax.py train runs/accel/start.npz \
        runs/accel/mnist_train.npz --out runs/accel/out --seeds 0 1 2 3 --epochs 1000
    # here again: back into a tfboltz model, for `eval_dbm_ais.py` and `finetune_mnist.py`
    python docs/experiments/scripts/dbm_joint_jax.py import runs/accel/out/model_e1000_s0.npz \
        runs/dbm/pretrained.keras runs/accel/e1000_s0.keras

Why this exists: the accelerator some sessions are lent carries JAX but no TensorFlow,
and TensorFlow's wheel is far larger than what may travel there, so `DBM.fit` cannot run
on it. `train` transcribes `tb.DBM.train_step` for the zoo's configuration (Bernoulli
visible and hidden layers, two hidden layers, the centered gradient, mean-field
positive phase with a tolerance, PCD-k negative phase, L2) with the optimizer and
schedules of `scripts/train_dbm_mnist.py` (Keras's momentum SGD, the rate decaying
linearly to 0 over the run, momentum 0.5 for 5 epochs then 0.9, each epoch's images
binarised afresh). The models it writes are ordinary tfboltz DBMs once imported, and
every figure reported from them is measured by tfboltz here. `check` compares one
deterministic update (particles set to their conditional means, as tfboltz's
``sample_particles=False``) with tfboltz's own step.

The runs of `--seeds` share one compiled program (`jax.vmap`); `--control-epochs`
adds runs with a shorter schedule (finished runs are frozen while the others go on).
Only the random streams differ from tfboltz (JAX's instead of TensorFlow's).
"""

import argparse
import json
import sys
import time
from pathlib import Path

KEYS = ("w1", "w2", "b0", "b1", "b2", "p0", "p1", "p2", "mu0", "mu1", "mu2")


# TensorFlow side ---------------------------------------------------------------------

def _tf_model(path):
    import tfboltz as tb

    dbm = tb.zoo.from_preset(path)  # a preset name or directory, .weights.h5 or .keras
    if not isinstance(dbm, tb.DBM) or len(dbm.kernels) != 2 or not dbm.centering or not all(
            type(layer) is tb.units.BernoulliUnits for layer in dbm.unit_layers):
        raise ValueError(
            "Expected a centered DBM of Bernoulli layers with two hidden layers (the zoo's "
            f"MNIST configuration). Received: {path}")
    return dbm


def _arrays(dbm):
    values = [*dbm.kernels, *(layer.bias for layer in dbm.unit_layers), *dbm.particles,
              *dbm.offsets]
    return {k: v.numpy() for k, v in zip(KEYS, values)}


def export(args):
    import numpy as np

    import tfboltz as tb

    dbm = _tf_model(args.model)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: getattr(dbm, k) for k in ("k", "n_mean_field", "mean_field_tol", "l2",
                                           "centering_rate", "n_chains")}
    _save_npz(out, {**_arrays(dbm), "config": np.array(json.dumps(config))})
    x, _ = tb.data.load_mnist("train")
    data = out.with_name("mnist_train.npz")
    _save_npz(data, {"x": np.round(x * 255).astype("uint8")})
    print(f"wrote {out} and {data}")


def _save_npz(path, arrays):
    import numpy as np

    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def import_(args):
    import numpy as np

    dbm = _tf_model(args.like)
    with np.load(args.npz) as f:
        arrays = {k: f[k] for k in KEYS}
    values = [*dbm.kernels, *(layer.bias for layer in dbm.unit_layers), *dbm.particles,
              *dbm.offsets]
    for var, key in zip(values, KEYS):
        if tuple(var.shape) != arrays[key].shape:
            raise ValueError(f"Expected {key} of shape {tuple(var.shape)}. Received: "
                             f"{arrays[key].shape} in {args.npz}")
    for var, key in zip(values, KEYS):
        var.assign(arrays[key])
    out = Path(args.out)
    tmp = out.with_name(out.stem + ".tmp.keras")
    dbm.save(tmp)
    tmp.replace(out)
    print(f"wrote {out}")


# JAX side ------------------------------------------------------------------------------

def _jax():
    import jax
    import jax.numpy as jnp

    # Full float32 products, as on the CPU (GPUs would otherwise use TF32).
    jax.config.update("jax_default_matmul_precision", "highest")
    return jax, jnp


def step_fn(cfg, means_only=False):
    """One update of one model: ``(state, v, lr, momentum, key) -> (state, stats)``.

    `state` holds the parameters, the momentum buffers (``m_*``), the particles and the
    offsets; `v` a batch of binary rows."""
    jax, jnp = _jax()
    sig = jax.nn.sigmoid
    k, n_mf, tol = int(cfg["k"]), int(cfg["n_mean_field"]), float(cfg["mean_field_tol"])
    l2, rate = float(cfg["l2"]), float(cfg["centering_rate"])

    def bern(p, key):
        return p if means_only else (jax.random.uniform(key, p.shape) < p).astype(p.dtype)

    def mean_field(s, v):
        fv = v @ s["w1"]
        h1 = sig(2.0 * fv + s["b1"])
        h2 = sig(h1 @ s["w2"] + s["b2"])

        def body(carry):
            it, _, h1, h2 = carry
            n1 = sig(fv + h2 @ s["w2"].T + s["b1"])
            n2 = sig(n1 @ s["w2"] + s["b2"])
            delta = jnp.maximum(jnp.max(jnp.abs(n1 - h1)), jnp.max(jnp.abs(n2 - h2)))
            return it + 1, delta, n1, n2

        it, _, h1, h2 = jax.lax.while_loop(
            lambda c: (c[0] < n_mf) & (c[1] > tol), body,
            (jnp.int32(0), jnp.float32(jnp.inf), h1, h2))
        return h1, h2, it

    def step(s, v, lr, momentum, key):
        h1, h2, it = mean_field(s, v)
        p0, p1, p2 = s["p0"], s["p1"], s["p2"]
        for key_i in jax.random.split(key, k):
            k1, k0, k2 = jax.random.split(key_i, 3)
            p1 = bern(sig(p0 @ s["w1"] + p2 @ s["w2"].T + s["b1"]), k1)
            p0 = bern(sig(p1 @ s["w1"].T + s["b0"]), k0)
            p2 = bern(sig(p1 @ s["w2"] + s["b2"]), k2)
        mu0, mu1, mu2 = s["mu0"], s["mu1"], s["mu2"]
        n_pos, n_neg = v.shape[0], p0.shape[0]
        g = {
            "w1": (p0 - mu0).T @ (p1 - mu1) / n_neg - (v - mu0).T @ (h1 - mu1) / n_pos,
            "w2": (p1 - mu1).T @ (p2 - mu2) / n_neg - (h1 - mu1).T @ (h2 - mu2) / n_pos,
            "b0": p0.mean(0) - v.mean(0),
            "b1": p1.mean(0) - h1.mean(0),
            "b2": p2.mean(0) - h2.mean(0),
        }
        # The centered update in ordinary parameters (as `DBM.train_step`).
        g["b0"] = g["b0"] - g["w1"] @ mu1
        g["b1"] = g["b1"] - g["w1"].T @ mu0 - g["w2"] @ mu2
        g["b2"] = g["b2"] - g["w2"].T @ mu1
        g["w1"] = g["w1"] + l2 * s["w1"]
        g["w2"] = g["w2"] + l2 * s["w2"]
        finite = jnp.all(jnp.array([jnp.all(jnp.isfinite(x)) for x in g.values()]))
        new = dict(s)
        for name, grad in g.items():
            m = momentum * s["m_" + name] - lr * grad  # Keras's SGD with momentum
            new["m_" + name] = m
            new[name] = s[name] + m
        new.update(p0=p0, p1=p1, p2=p2)
        for name, mean in (("mu0", v.mean(0)), ("mu1", h1.mean(0)), ("mu2", h2.mean(0))):
            new[name] = s[name] + rate * (mean - s[name])
        new = jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, s)
        recon = jnp.mean(jnp.square(v - sig(h1 @ new["w1"].T + new["b0"])))
        return new, {"reconstruction_error": recon, "mean_field_steps": it.astype("float32"),
                     "skipped": 1.0 - finite.astype("float32")}

    return step


def initial_state(arrays):
    _, jnp = _jax()
    state = {k: jnp.asarray(arrays[k], "float32") for k in KEYS}
    for name in ("w1", "w2", "b0", "b1", "b2"):
        state["m_" + name] = jnp.zeros_like(state[name])
    return state


def epoch_fn(cfg, x, batch_size):
    """``(state, key, lr, momentum, active) -> (state, mean stats)`` over one epoch of
    `x` (float intensities on the device), shuffled and binarised from `key`."""
    jax, jnp = _jax()
    step = step_fn(cfg)
    n_batches = x.shape[0] // batch_size

    def epoch(state, key, lr, momentum, active):
        k_perm, k_bin, k_steps = jax.random.split(key, 3)
        order = jax.random.permutation(k_perm, x.shape[0])[: n_batches * batch_size]
        keys_bin = jax.random.split(k_bin, n_batches)
        keys_step = jax.random.split(k_steps, n_batches)

        def body(s, i):
            rows = x[jax.lax.dynamic_slice_in_dim(order, i * batch_size, batch_size)]
            v = (jax.random.uniform(keys_bin[i], rows.shape) < rows).astype("float32")
            new, stats = step(s, v, lr, momentum, keys_step[i])
            # A finished run (`active` false) stays as it is.
            new = jax.tree.map(lambda a, b: jnp.where(active, a, b), new, s)
            return new, stats

        state, stats = jax.lax.scan(body, state, jnp.arange(n_batches))
        return state, jax.tree.map(jnp.mean, stats)

    return jax.jit(jax.vmap(epoch, in_axes=(0, 0, 0, None, 0)))


def train(args):
    import numpy as np

    jax, jnp = _jax()
    t_start = time.time()
    out = Path(args.out)
    with np.load(args.start) as f:
        arrays = {k: f[k] for k in KEYS}
        cfg = json.loads(str(f["config"]))
    with np.load(args.data) as f:
        x = f["x"][: args.n_train]
    if x.ndim != 2 or x.shape[1] != arrays["w1"].shape[0] or x.dtype != np.uint8:
        sys.exit(f"Expected uint8 rows of {arrays['w1'].shape[0]} pixels in {args.data}. "
                 f"Received: {x.dtype} of shape {x.shape}")
    if len(x) < args.batch_size:
        sys.exit(f"Expected at least --batch-size ({args.batch_size}) rows. "
                 f"Received: {len(x)}")
    x = jnp.asarray(x, "float32") / 255.0
    out.mkdir(parents=True, exist_ok=True)
    n = len(args.seeds) + len(args.control_seeds)
    one = initial_state(arrays)
    state = jax.tree.map(lambda a: jnp.broadcast_to(a, (n, *a.shape)).copy(), one)
    run_epoch = epoch_fn(cfg, x, args.batch_size)
    epochs = args.epochs
    timing = None
    if args.time_budget is not None:
        # Time a few epochs of a throwaway copy (the compiled program is the same), then
        # take the longest schedule of `--epochs` that fits the budget.
        keys = jnp.stack([jax.random.key(10_000 + i) for i in range(n)])
        lr, active = jnp.full((n,), args.lr, "float32"), jnp.ones((n,), bool)
        trial, _ = run_epoch(state, keys, lr, 0.5, active)
        jax.block_until_ready(trial)
        t0 = time.time()
        for _ in range(3):
            trial, _ = run_epoch(trial, keys, lr, 0.5, active)
        jax.block_until_ready(trial)
        per_epoch = (time.time() - t0) / 3
        left = args.time_budget - (time.time() - t_start)
        fits = [e for e in args.epochs_choices if e * per_epoch <= left]
        if not fits:
            sys.exit(f"no schedule of {args.epochs_choices} fits {left:.0f} s at "
                     f"{per_epoch:.2f} s an epoch")
        epochs = max(fits)
        timing = {"seconds_per_epoch": round(per_epoch, 3), "seconds_left": round(left, 1),
                  "chosen_epochs": epochs}
        print(f"{per_epoch:.3f} s an epoch for {n} runs; {left:.0f} s left: {epochs} epochs",
              flush=True)
        del trial
    runs = [(epochs, s) for s in args.seeds] + [
        (args.control_epochs, s) for s in args.control_seeds]
    horizon = np.array([e for e, _ in runs], "float32")
    max_epochs = int(horizon.max())
    keys = [jax.random.key(s) for _, s in runs]
    log = {"device": str(jax.devices()[0]), "jax": jax.__version__, "config": cfg,
           "runs": [{"epochs": e, "seed": s} for e, s in runs], "lr": args.lr,
           "batch_size": args.batch_size, "n_train": int(x.shape[0]), "timing": timing,
           "epochs": []}

    def save():
        # Every run each time (a finished one is frozen): a cut-off call keeps them all.
        for i, (epochs, seed) in enumerate(runs):
            arrays = {k: np.asarray(state[k][i]) for k in KEYS}
            _save_npz(out / f"model_e{epochs}_s{seed}.npz", arrays)
        tmp = out / "log.tmp.json"
        tmp.write_text(json.dumps(log, indent=1))
        tmp.replace(out / "log.json")

    for e in range(max_epochs):
        t0 = time.time()
        lr = jnp.asarray(args.lr * (1.0 - e / horizon), "float32")
        active = jnp.asarray(e < horizon)
        epoch_keys = jnp.stack([jax.random.fold_in(k, e) for k in keys])
        state, stats = run_epoch(state, epoch_keys, lr, 0.5 if e < 5 else 0.9, active)
        stats = jax.tree.map(lambda a: np.asarray(a).round(5).tolist(), stats)
        log["epochs"].append({"epoch": e + 1, "seconds": round(time.time() - t0, 3), **stats})
        ended = {epochs for epochs, _ in runs if epochs == e + 1}
        if ended or (e + 1) % args.checkpoint_every == 0:
            log["elapsed_seconds"] = round(time.time() - t_start, 1)
            save()
        if (e + 1) % args.print_every == 0 or e == 0 or ended:
            print(f"epoch {e + 1}/{max_epochs} {time.time() - t0:.2f}s "
                  f"recon {stats['reconstruction_error']} skipped {stats['skipped']}",
                  flush=True)
        if any(s > 0 for s in stats["skipped"]):
            print("warning: non-finite updates were skipped", flush=True)
    log["elapsed_seconds"] = round(time.time() - t_start, 1)
    save()
    print(f"done in {log['elapsed_seconds']} s")


def check(args):
    """Two deterministic updates here in JAX against tfboltz's own steps (the second
    one uses the momentum buffers of the first)."""
    import keras
    import numpy as np

    dbm = _tf_model(args.model)
    arrays = _arrays(dbm)
    cfg = {k: getattr(dbm, k) for k in ("k", "n_mean_field", "mean_field_tol", "l2",
                                        "centering_rate", "n_chains")}
    # Any binary rows will do: seeded ones, each pixel on with its own probability.
    rng = np.random.default_rng(0)
    v = (rng.random((200, dbm.n_visible)) < rng.random(dbm.n_visible)).astype("float32")
    lr = 0.002
    jax, jnp = _jax()
    step = step_fn(cfg, means_only=True)
    new = initial_state(arrays)
    for batch in (v[:100], v[100:]):
        new, _ = step(new, jnp.asarray(batch), lr, 0.5, jax.random.key(0))
    dbm.sample_particles = False
    dbm.compile(optimizer=keras.optimizers.SGD(lr, momentum=0.5), jit_compile=False,
                steps_per_execution=1)
    dbm.fit(v, batch_size=100, epochs=1, shuffle=False, verbose=0)
    ref = _arrays(dbm)
    worst = {k: float(np.max(np.abs(np.asarray(new[k]) - ref[k]))) for k in KEYS}
    moved = {k: float(np.max(np.abs(ref[k] - arrays[k]))) for k in KEYS}
    report = {"model": str(args.model), "jax": jax.__version__, "steps": 2, "lr": lr,
              "momentum": 0.5, "max_abs_difference": worst, "max_abs_change": moved}
    print(json.dumps(report, indent=1))
    if args.json:
        tmp = Path(args.json + ".tmp")
        tmp.write_text(json.dumps(report, indent=1))
        tmp.replace(args.json)
    bad = [k for k in KEYS if worst[k] > args.atol + 1e-3 * moved[k]]
    if bad:
        sys.exit(f"the JAX step differs from tfboltz's in {bad}")
    print("the JAX step matches tfboltz's")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("export", help="a tfboltz DBM and MNIST -> npz (TensorFlow)")
    e.add_argument("model")
    e.add_argument("out")
    i = sub.add_parser("import", help="trained npz -> a tfboltz DBM (TensorFlow)")
    i.add_argument("npz")
    i.add_argument("like", help="a .keras DBM of the same configuration")
    i.add_argument("out")
    c = sub.add_parser("check", help="one deterministic update against tfboltz's")
    c.add_argument("model")
    c.add_argument("--atol", type=float, default=1e-5)
    c.add_argument("--json", help="also write the report here")
    t = sub.add_parser("train", help="the joint phase in JAX")
    t.add_argument("start")
    t.add_argument("data")
    t.add_argument("--out", required=True)
    t.add_argument("--seeds", type=int, nargs="+", default=[0])
    t.add_argument("--epochs", type=int, default=300,
                   help="joint-training epochs (default: train_dbm_mnist.py's)")
    t.add_argument("--time-budget", type=float, default=None,
                   help="seconds from the start: time a few epochs first, then run the "
                        "longest of --epochs-choices that fits (instead of --epochs)")
    t.add_argument("--epochs-choices", type=int, nargs="+",
                   default=[200, 300, 400, 600, 800, 1000, 1500, 2000, 3000])
    t.add_argument("--control-seeds", type=int, nargs="*", default=[])
    t.add_argument("--control-epochs", type=int, default=200)
    t.add_argument("--lr", type=float, default=0.004,
                   help="starting rate (default: train_dbm_mnist.py's, the zoo's version 4.0)")
    t.add_argument("--batch-size", type=int, default=100)
    t.add_argument("--n-train", type=int, default=60000)
    t.add_argument("--checkpoint-every", type=int, default=50)
    t.add_argument("--print-every", type=int, default=10)
    args = p.parse_args(argv)
    if args.command == "train" and (args.epochs < 1 or args.control_epochs < 1):
        p.error("--epochs and --control-epochs must be at least 1")
    {"export": export, "import": import_, "check": check, "train": train}[args.command](args)


if __name__ == "__main__":
    main()
