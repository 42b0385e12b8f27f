"""Where the time of a CD-1 epoch goes: the step built up part by part.

    python benchmarks/profile_rbm_step.py            # 784-1024, batch 100, 60,000 rows
    python benchmarks/profile_rbm_step.py --rounds 5 --json profile.json

One CD-1 epoch of a 784-1024 Bernoulli RBM (600 batches of 100 MNIST rows) run as a
plain compiled TensorFlow loop over the batches, each variant adding one part of the
step to the one before:

products     the four products alone (v0 W, h W^T, v1 W, the stacked gradient)
activations  + the biases and sigmoids, the statistics' concatenation and scaling,
             the bias gradients (no sampling: the hidden means go down)
sampling     + the Bernoulli draw of the hidden states (one Philox call)
update       + the momentum-SGD update of the three parameters (as keras.optimizers.SGD
             computes it): the complete algorithm, with nothing of tfboltz's
fit          tfboltz itself: ``RBM.fit`` with ``SGD(0.01, momentum=0.9)``, which adds
             Keras's multi-step train function, the batch check, the divergence guard,
             the running metric and the epoch-end monitors

The variants run in turn, one epoch each per round, after one tracing epoch each, so
that the machine's drift falls on all of them alike; each reports its best round. The
differences between consecutive lines are the cost of the part added.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

B, V, H, LR, MOMENTUM = 100, 784, 1024, 0.01, 0.9
VARIANTS = ("products", "activations", "sampling", "update", "fit")


def graph_epochs(x):
    """The plain-TensorFlow variants: name -> a function running one epoch."""
    import tensorflow as tf

    batches = tf.constant(x[: len(x) // B * B].reshape(-1, B, V))
    rng = np.random.default_rng(0)
    w = tf.Variable((0.01 * rng.standard_normal((V, H))).astype("float32"))
    b, c = tf.Variable(tf.zeros(V)), tf.Variable(tf.zeros(H))
    slots = [tf.Variable(tf.zeros_like(p)) for p in (w, b, c)]
    sink = tf.Variable(tf.zeros((V, H)))
    gen = tf.random.Generator.from_seed(0)

    def step(v0, parts):
        if parts == "products":
            h0 = v0 @ w
            v1 = tf.matmul(h0, w, transpose_b=True)
            h1 = v1 @ w
            sink.assign(tf.matmul(tf.concat([v1, v0], 0), tf.concat([h1, h0], 0),
                                  transpose_a=True))
            return
        h0 = tf.sigmoid(v0 @ w + c)
        h = tf.cast(gen.uniform(h0.shape) < h0, tf.float32) if parts != "activations" else h0
        v1 = tf.sigmoid(tf.matmul(h, w, transpose_b=True) + b)
        h1 = tf.sigmoid(v1 @ w + c)
        grad_w = tf.matmul(tf.concat([v1, v0], 0), tf.concat([h1 / B, -h0 / B], 0),
                           transpose_a=True)
        grads = (grad_w, tf.reduce_mean(v1 - v0, 0), tf.reduce_mean(h1 - h0, 0))
        if parts in ("activations", "sampling"):
            sink.assign(grad_w)
            b.assign_add(grads[1] * 0)
            c.assign_add(grads[2] * 0)
            return
        for p, m, g in zip((w, b, c), slots, grads):
            m.assign(m * MOMENTUM - g * LR)
            p.assign_add(m)

    def make(parts):
        @tf.function
        def epoch():
            for i in tf.range(batches.shape[0]):
                step(batches[i], parts)
            return sink[0, 0]

        return lambda: epoch().numpy()

    return {name: make(name) for name in VARIANTS[:-1]}


def fit_epoch(x):
    """tfboltz's `fit`, one epoch a call on the same model (its epoch, as a callback
    times it)."""
    import keras

    import tfboltz as tb

    rbm = tb.RBM(V, H, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(LR, momentum=MOMENTUM))
    seconds = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda e, logs: seconds.append(-time.perf_counter()),
        on_epoch_end=lambda e, logs: seconds.__setitem__(-1, seconds[-1] + time.perf_counter()))

    def epoch():
        rbm.fit(x, batch_size=B, epochs=1, verbose=0, callbacks=[timer])
        return seconds[-1]

    return epoch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--n-rows", type=int, default=60000)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    import tfboltz as tb

    x, _ = tb.data.load_mnist("train")
    x = x[: args.n_rows]
    runs = graph_epochs(x)
    fit = fit_epoch(x)
    for run in runs.values():  # trace
        run()
    fit()
    times = {name: [] for name in VARIANTS}
    for _ in range(args.rounds):
        for name in VARIANTS:
            if name == "fit":
                times[name].append(fit())
            else:
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    print(f"{len(x)} rows, batch {B}, {V}-{H} RBM, CD-1; best of {args.rounds} rounds")
    print(f"{'variant':<12}{'epoch s':>9}{'added s':>9}{'ms/step':>9}  all rounds")
    previous = None
    steps = len(x) // B
    for name in VARIANTS:
        added = "" if previous is None else f"{best[name] - previous:>9.2f}"
        per_step = "" if previous is None else f"{1e3 * (best[name] - previous) / steps:>9.2f}"
        print(f"{name:<12}{best[name]:>9.2f}{added:>9}{per_step:>9}  "
              + " ".join(f"{t:.2f}" for t in times[name]))
        previous = best[name]
    if args.json:
        args.json.write_text(json.dumps({"rows": len(x), "best_s": best, "rounds_s": times},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
