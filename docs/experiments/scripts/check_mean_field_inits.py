"""Does a better optimum of the mean-field objective raise a DBM's test bound?

    python docs/experiments/scripts/check_mean_field_inits.py runs/dbm/model.keras --json out.json

The ELBO of a DBM is ``-E(x, mu) + H(mu) - log Z`` at the mean-field means ``mu``;
any ``mu`` gives a valid lower bound, so the bound of each example is the best optimum
of that objective that mean-field finds. The fixed-point iterations are coordinate
ascent on it and can stop in a local optimum that depends on where they start. This
script computes the unnormalised bound ``-E + H`` (log Z cancels in every comparison)
on the test set (the official images binarised with seed 0, as scripts/eval_dbm_ais.py
does):

- with the model's own mean-field (its ``n_mean_field`` iterations and tolerance, from
  the doubled bottom-up pass): the figure the ELBO uses;
- from the same start with ``--n-iter`` iterations and no tolerance;
- from the constant starts 0, 0.5 and 1 and ``--n-random`` seeded uniform ones, each
  with ``--n-iter`` iterations;

and the gain of the per-example best of all of them over the model's own figure: how
much of the ELBO is lost to the optimiser rather than to the model. With
``--iterations 1 2 5 10``, also the bound after each of those numbers of iterations
from the bottom-up pass (no tolerance): what fewer iterations, as in a cheaper
positive phase of joint training, give up.
"""

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfboltz as tb  # noqa: E402
from tfboltz.mean_field import mean_field_means  # noqa: E402


def bound_from(model, start, n_iter):
    """Per-example ``-E + H`` after `n_iter` mean-field iterations from `start`, no
    tolerance."""
    means, _ = mean_field_means(model.unit_layers, model.kernels, start[0], n_iter, 0.0,
                                model.matmul_dtype, init=start)
    return tb.ais.mean_field_bound(model, means)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a DBM: a preset name (mnist_dbm) or directory, or a "
                                 ".keras or .weights.h5 file (tfboltz.zoo.from_preset)")
    p.add_argument("--n-iter", type=int, default=100, help="iterations from each start")
    p.add_argument("--n-random", type=int, default=4, help="seeded uniform starts")
    p.add_argument("--n-rows", type=int, default=None, help="first rows of the test set only")
    p.add_argument("--iterations", type=int, nargs="*", default=[],
                   help="also the bound after each of these iteration counts from the "
                        "bottom-up pass, no tolerance")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    if (args.n_iter < 1 or args.n_random < 0 or (args.n_rows is not None and args.n_rows < 1)
            or any(n < 1 for n in args.iterations)):
        p.error("--n-iter, --n-rows and --iterations must be at least 1, --n-random at least 0")
    try:
        model = tb.zoo.from_preset(args.model)
    except (FileNotFoundError, ValueError) as err:
        p.error(str(err))
    if not isinstance(model, tb.DBM):
        p.error(f"expected a DBM; {args.model} holds a {type(model).__name__}")
    x, _ = tb.data.load_mnist("test", binarize="stochastic", seed=0)
    x = x[:args.n_rows]
    v = tf.constant(x)
    own = tb.ais.mean_field_bound(model, [tf.constant(m) for m in model.mean_field(x)])
    result = {"model": str(args.model), "rows": len(x), "n_iter": args.n_iter,
              "model_mean_field": float(own.mean())}
    best = own.copy()
    bottom_up = model.initial_means(v)
    starts = [("bottom-up pass", bottom_up)]
    starts += [(f"constant {c:g}", [v] + [tf.fill(tf.shape(m), c) for m in bottom_up[1:]])
               for c in (0.0, 0.5, 1.0)]
    for r in range(args.n_random):
        rng = np.random.default_rng(r)
        starts.append((f"uniform, seed {r}", [v] + [tf.constant(
            rng.uniform(size=m.shape).astype("float32")) for m in bottom_up[1:]]))
    for name, start in starts:
        bound = bound_from(model, start, args.n_iter)
        best = np.maximum(best, bound)
        result[name] = {"mean": float(bound.mean()),
                        "share_above_model_by_0.01": float(np.mean(bound > own + 0.01))}
        print(f"{name}: {bound.mean():.4f} nats (the model's own mean-field: {own.mean():.4f}); "
              f"{result[name]['share_above_model_by_0.01']:.2%} of rows above it by 0.01",
              flush=True)
    result["gain_of_the_per_example_best"] = float(best.mean() - own.mean())
    print(f"gain of the per-example best over the model's own mean-field: "
          f"{result['gain_of_the_per_example_best']:.4f} nats")
    if args.iterations:
        result["bottom-up pass, by iterations"] = {}
    for n in sorted(set(args.iterations)):
        mean = float(bound_from(model, bottom_up, n).mean())
        result["bottom-up pass, by iterations"][str(n)] = mean
        print(f"{n} iterations from the bottom-up pass: {mean:.4f} nats "
              f"({mean - own.mean():+.4f} against the model's own)", flush=True)
    if args.json:
        tmp = args.json.with_name(args.json.name + ".tmp")
        tmp.write_text(json.dumps(result, indent=1))
        tmp.replace(args.json)
    return result


if __name__ == "__main__":
    main()
