"""How well the power step of virtual adversarial training finds its direction.

    python scripts/check_vat_direction.py runs/ft/classifier.keras --json out.json

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
exact graph direction, and of the exact direction against the float64 reference; and,
for a small seeded MLP (5 -> 32 sigmoid -> 3 softmax, the unit tests' model), the
lowest cosine between the eager and the `tf.function` direction of each step.
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


def cosines(a, b):
    c = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"median": float(np.median(c)), "p10": float(np.percentile(c, 10)),
            "min": float(c.min())}


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
            vat = tb.classifier.VirtualAdversarialTraining(mlp, 0.5, xi=xi, seed=seed)
            step = vat.perturb if mode == "eager" else tf.function(vat.perturb)
            r.append((step(tf.constant(x)) - x).numpy().astype("float64"))
        out["exact" if xi is None else f"xi={xi:g}"] = cosines(*r)["min"]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("classifier", help="classifier.keras of scripts/finetune_mnist.py")
    p.add_argument("--n-rows", type=int, default=1000,
                   help="rows from the held-out end of the training set (55,000 on)")
    p.add_argument("--xi", type=float, nargs="+", default=[1e-6, 1e-3, 1e-2])
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    clf = keras.saving.load_model(args.classifier)
    x, _ = tb.data.load_mnist("train")
    f = clf.layers[0](x[55000:55000 + args.n_rows]).numpy()
    head = keras.Sequential([keras.Input((f.shape[1],)), *clf.layers[1:]])
    directions = {}
    for xi in [None, *args.xi]:
        for mode in ("eager", "graph"):
            vat = tb.classifier.VirtualAdversarialTraining(head, 1.0, xi=xi, seed=args.seed)
            step = vat.perturb if mode == "eager" else tf.function(vat.perturb)
            directions[("exact" if xi is None else f"xi={xi:g}", mode)] = (
                step(tf.constant(f)) - f).numpy().astype("float64")
    exact = directions["exact", "graph"]
    result = {f"{name} {mode} vs exact graph": cosines(r, exact)
              for (name, mode), r in directions.items() if (name, mode) != ("exact", "graph")}
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
    vat = tb.classifier.VirtualAdversarialTraining(head, 1.0)
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
