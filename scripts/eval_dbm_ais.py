"""AIS log Z and average test ELBO of a trained MNIST DBM.

    python scripts/eval_dbm_ais.py runs/dbm/model.keras --n-betas 20000 --runs 2

The test set is the 10,000 official MNIST test images binarised with seed 0 (each
pixel on with probability equal to its intensity), as for the RBM figures; the
base-rate proposal is fitted to the training images binarised the same way. The ELBO
uses the mean-field posterior after `--n-mean-field` iterations (tolerance 0: every
iteration runs); that is the bound the paper and the TF1 reference report. Beside it,
the tighter bound with the top layer summed out exactly (`tb.ais.elbo(...,
sum_out_top=True)`, `--top-draws` draws of the layer below it per image; 0 skips it).

`--log-z-from` takes log Z from the JSON of earlier runs of this script instead of
running AIS again (the bounds are recomputed; the model must be the same):

    python scripts/eval_dbm_ais.py mnist_dbm \\
        --log-z-from docs/results/dbm_centered_ais_rbm_20k_5steps_seed0.json
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


import tfboltz as tb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a DBM: a preset name (mnist_dbm) or directory, or a .keras "
                                 "or .weights.h5 file (tfboltz.zoo.from_preset)")
    p.add_argument("--n-chains", type=int, default=100)
    p.add_argument("--n-betas", type=int, default=20000)
    p.add_argument("--runs", type=int, default=1, help="independent AIS runs")
    p.add_argument("--first-seed", type=int, default=0,
                   help="seed of the first run; the others follow it")
    p.add_argument("--n-steps", type=int, default=1,
                   help="Gibbs sweeps per intermediate distribution")
    p.add_argument("--n-mean-field", type=int, default=30)
    p.add_argument("--proposal", default="base_rate", choices=["base_rate", "uniform", "rbm"],
                   help='"rbm": the two-stage path (RBM of the first layer, then the rest)')
    p.add_argument("--top-draws", type=int, default=100,
                   help="draws per image for the bound with the top layer summed out "
                        "(0: skip it)")
    p.add_argument("--log-z-from", nargs="+", metavar="JSON",
                   help="reuse log Z of these earlier runs instead of running AIS")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    if args.top_draws < 0:
        p.error(f"--top-draws must be 0 or more, got {args.top_draws}")
    earlier = []
    for path in args.log_z_from or []:
        with open(path) as f:
            earlier += json.load(f)["runs"]
    dbm = tb.zoo.from_preset(args.model)
    x_train, _ = tb.data.load_mnist("train", binarize="stochastic", seed=0)
    x_test, _ = tb.data.load_mnist("test", binarize="stochastic", seed=0)
    dbm.mean_field_tol = 0.0
    t0 = time.time()
    # The ELBO is -E(x, mu) + H(mu) - log Z: compute its log Z-free part once.
    bound_test = tb.ais.elbo(dbm, x_test, 0.0, n_mean_field=args.n_mean_field)
    bound_train = tb.ais.elbo(dbm, x_train[:10000], 0.0, n_mean_field=args.n_mean_field)
    t_elbo = time.time() - t0
    t0 = time.time()
    summed_test = (tb.ais.elbo(dbm, x_test, 0.0, n_mean_field=args.n_mean_field, sum_out_top=True,
                               n_samples=args.top_draws, seed=0)
                   if args.top_draws else None)
    t_summed = time.time() - t0
    results = []
    runs = earlier or [{"seed": s} for s in range(args.first_seed,
                                                   args.first_seed + args.runs)]
    for run in runs:
        seed = run["seed"]
        if earlier:
            res = {k: run[k] for k in ("seed", "log_z", "log_z_low", "log_z_high")}
            res["seconds"] = 0.0
            res["log_z_reused"] = True
        else:
            t0 = time.time()
            est = tb.ais.log_partition(dbm, n_chains=args.n_chains, n_betas=args.n_betas,
                                       seed=seed, data=x_train, proposal=args.proposal,
                                       n_steps=args.n_steps)
            res = {"seed": seed, "log_z": est.log_z, "log_z_low": est.log_z_low,
                   "log_z_high": est.log_z_high, "seconds": time.time() - t0}
        log_z = res["log_z"]
        res["test_elbo"] = float(bound_test.mean() - log_z)
        res["train_elbo_10k"] = float(bound_train.mean() - log_z)
        if summed_test is not None:
            res["test_bound_top_summed_out"] = float(summed_test.mean() - log_z)
        results.append(res)
        print(f"run {seed}: log Z = {log_z:.3f} ({res['log_z_low']:.3f}, "
              f"{res['log_z_high']:.3f}){' (reused)' if earlier else ''}; "
              f"average test ELBO {res['test_elbo']:.2f} nats (train, 10k rows: "
              f"{res['train_elbo_10k']:.2f}); AIS {res['seconds']:.0f} s")
        if summed_test is not None:
            print(f"  with the top layer summed out ({args.top_draws} draws per image): "
                  f"{res['test_bound_top_summed_out']:.2f} nats")
        if bound_test.max() > log_z:
            res["log_z_invalid"] = True
            print(f"  INVALID: log Z is below the unnormalised bound of a test image "
                  f"({bound_test.max():.1f}), so this AIS run did not converge (more betas, "
                  "or a better proposal, are needed)")
    print(f"mean-field for the ELBO ({args.n_mean_field} iterations, 20k rows): {t_elbo:.0f} s"
          + (f"; top summed out, test set: {t_summed:.0f} s" if summed_test is not None else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "n_chains": args.n_chains, "n_betas": args.n_betas,
                       "proposal": args.proposal, "n_steps": args.n_steps,
                       "n_mean_field": args.n_mean_field, "elbo_seconds": t_elbo,
                       "top_draws": args.top_draws, "top_summed_out_seconds": t_summed,
                       "log_z_from": args.log_z_from, "runs": results}, f, indent=2)


if __name__ == "__main__":
    main()
