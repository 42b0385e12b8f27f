"""How well the power step of virtual adversarial training finds its direction.

    python docs/experiments/scripts/check_vat_direction.py runs/ft/classifier.keras --json out.json

On a fine-tuned MNIST classifier (a `classifier.keras` of scripts/finetune_mnist.py:
its first layer the DBM's frozen mean-field augmentation, then Dense layers with
sigmoid units and a softmax), one power step from a seeded random direction ``d`` on
held-out rows, computed

- exactly (`VirtualAdversarialTraining`'s default, ``H d`` by a forward-mode and a
  backward product), eagerly and inside a `tf.function`;
- by the paper's finite difference at several ``xi``, eagerly and in a graph;
- as a float64 reference: the central difference of the unclipped KL's gradient along
  ``d``, the Dense layers evaluated in float64 with numpy.

Prints the cosines (median, 10th percentile, minimum over rows) of each against the
exact graph direction, and of the exact direction against the float64 reference; the
same for each against ``g``, the input gradient of the cross-entropy of the predicted
class (the direction of the fast gradient method with the classifier's own label), with
absolute cosines beside the signed ones (the power iteration fixes an axis, not a side),
the share of rows on which each direction points where that cross-entropy rises, and
the same for the exact direction with ``orient=True``; and, for a small seeded MLP
(5 -> 32 sigmoid -> 3 softmax, the unit tests' model), the lowest cosine between the
eager and the `tf.function` direction of each step.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfboltz as tb  # noqa: E402


def float64_layers(head):
    """(kernel, bias) of each Dense layer in float64; sigmoid hidden units, softmax out."""
    dense = [layer for layer in head.layers if isinstance(layer, keras.layers.Dense)]
    names = [layer.activation.__name__ for layer in dense]
    if names[:-1] != ["sigmoid"] * (len(dense) - 1) or names[-1] != "softmax":
        raise ValueError("Expected Dense layers with sigmoid units and a softmax output. "
                         f"Received activations: {names}")
    return [(layer.kernel.numpy().astype("float64"), layer.bias.numpy().astype("float64"))
            for layer in dense]


def forward64(layers, x):
    """The hidden layers' activations and the class probabilities, float64."""
    hidden, h = [], x
    for w, b in layers[:-1]:
        h = 1 / (1 + np.exp(-(h @ w + b)))
        hidden.append(h)
    z = h @ layers[-1][0] + layers[-1][1]
    z -= z.max(axis=1, keepdims=True)
    return hidden, np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)


def kl_gradient64(layers, x, p):
    """Gradient in x of KL(p || q(x)), unclipped, float64, by backpropagation by hand."""
    hidden, q = forward64(layers, x)
    g = q - p                                    # dKL/dz for a softmax output
    g = g @ layers[-1][0].T
    for (w, _), h in zip(layers[-2::-1], hidden[::-1]):
        g = (g * h * (1 - h)) @ w.T
    return g


def cosines(a, b, absolute=False):
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    c = np.abs(c) if absolute else c
    return {"median": float(np.median(c)), "p10": float(np.percentile(c, 10)),
            "min": float(c.min())}


def predicted_class_gradient(head, f):
    """Input gradient of the cross-entropy of each row's predicted class."""
    x = tf.constant(f)
    with tf.GradientTape() as tape:
        tape.watch(x)
        q = head(x, training=False)
        loss = tf.reduce_sum(keras.losses.sparse_categorical_crossentropy(
            tf.stop_gradient(tf.argmax(q, axis=1)), q))
    return tape.gradient(loss, x).numpy().astype("float64")


def small_mlp_eager_vs_graph(xi_values, seed):
    """Lowest cosine, eager against `tf.function`, of one power step on a small MLP."""
    x = np.random.default_rng(0).random((8, 5)).astype("float32")
    out = {}
    for xi in [None, *xi_values]:
        r = []
        for mode in ("eager", "graph"):
            keras.utils.set_random_seed(0)
            mlp = keras.Sequential([keras.Input((5,)), keras.layers.Dense(32, activation="sigmoid"),
                                    keras.layers.Dense(3, activation="softmax")])
            vat = tb.fine_tuning.VirtualAdversarialTraining(mlp, 0.5, xi=xi, seed=seed)
            step = vat.perturb if mode == "eager" else tf.function(vat.perturb)
            r.append((step(tf.constant(x)) - x).numpy().astype("float64"))
        out["exact" if xi is None else f"xi={xi:g}"] = cosines(*r)["min"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("classifier", help="classifier.keras of scripts/finetune_mnist.py")
    p.add_argument("--n-rows", type=int, default=1000,
                   help="rows of the training set from --first-row on")
    p.add_argument("--first-row", type=int, default=55000,
                   help="first row (default: the start of the 5,000 held out by fine-tuning)")
    p.add_argument("--xi", type=float, nargs="+", default=[1e-6, 1e-3, 1e-2])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if not Path(args.classifier).is_file():
        p.error(f"no such classifier file: {args.classifier}")
    x, _ = tb.data.load_mnist("train")
    if args.n_rows < 1 or not 0 <= args.first_row <= len(x) - args.n_rows:
        p.error(f"--first-row {args.first_row} and --n-rows {args.n_rows} must pick at least "
                f"one row of the {len(x)} training rows")
    clf = keras.saving.load_model(args.classifier)
    f = clf.layers[0](x[args.first_row:args.first_row + args.n_rows]).numpy()
    head = keras.Sequential([keras.Input((f.shape[1],)), *clf.layers[1:]])
    directions = {}
    for xi in [None, *args.xi]:
        for mode in ("eager", "graph"):
            vat = tb.fine_tuning.VirtualAdversarialTraining(head, 1.0, xi=xi, seed=args.seed)
            step = vat.perturb if mode == "eager" else tf.function(vat.perturb)
            directions[("exact" if xi is None else f"xi={xi:g}", mode)] = (
                step(tf.constant(f)) - f).numpy().astype("float64")
    exact = directions["exact", "graph"]
    result = {f"{name} {mode} vs exact graph": cosines(r, exact)
              for (name, mode), r in directions.items() if (name, mode) != ("exact", "graph")}
    result.update({f"{name} {mode} vs exact graph, absolute": cosines(r, exact, absolute=True)
                   for (name, mode), r in directions.items() if mode == "graph"
                   and name != "exact"})
    oriented = tb.fine_tuning.VirtualAdversarialTraining(head, 1.0, seed=args.seed, orient=True)
    directions["exact, oriented", "graph"] = (
        tf.function(oriented.perturb)(tf.constant(f)) - f).numpy().astype("float64")
    g = predicted_class_gradient(head, f)
    for (name, mode), r in directions.items():
        if mode == "graph":
            result[f"{name} graph vs predicted-class gradient"] = cosines(r, g)
            result[f"{name} graph vs predicted-class gradient, absolute"] = cosines(
                r, g, absolute=True)
            result[f"{name} graph: share of rows where the predicted class's loss rises"] = (
                float(np.mean((r * g).sum(1) > 0)))
    # the float64 reference for the same starting direction
    d = keras.random.normal(f.shape, seed=keras.random.SeedGenerator(args.seed)).numpy()
    d = d.astype("float64") / np.linalg.norm(d, axis=1, keepdims=True)
    layers = float64_layers(head)
    f64 = f.astype("float64")
    q = head.predict(f, verbose=0)
    p64 = forward64(layers, f64)[1]
    t = 1e-4
    hd64 = (kl_gradient64(layers, f64 + t * d, p64)
            - kl_gradient64(layers, f64 - t * d, p64)) / (2 * t)
    vat = tb.fine_tuning.VirtualAdversarialTraining(head, 1.0)
    hd32 = vat._hessian_product(tf.constant(f), tf.constant(q), tf.constant(d, "float32"))
    result["exact float32 H d vs float64 finite difference"] = cosines(
        hd32.numpy().astype("float64"), hd64)
    result["median largest probability"] = float(np.median(q.max(1)))
    result["rows whose other classes are all below 1e-7"] = int(
        (np.sort(q, axis=1)[:, -2] < 1e-7).sum())
    result["rows"] = len(f)
    result["small MLP, lowest cosine eager vs graph"] = small_mlp_eager_vs_graph(args.xi, 3)
    print(json.dumps(result, indent=1))
    if args.json:
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps({"classifier": args.classifier, **result}, indent=1))
        tmp.replace(args.json)


if __name__ == "__main__":
    main()
