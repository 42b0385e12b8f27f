"""AIS log Z and average test log-likelihood of a trained MNIST RBM.

    python scripts/eval_rbm_ais.py runs/rbm500/model.keras --n-betas 20000 --runs 2

The test set is the 10,000 official MNIST test images binarised with seed 0 (each
pixel on with probability equal to its intensity); the base-rate proposal is fitted
to the training images binarised the same way (seed 0).
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import tfboltz as tb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an RBM: a preset name (mnist_rbm) or directory, or a "
                                 ".keras or .weights.h5 file (tfboltz.zoo.from_preset)")
    p.add_argument("--n-chains", type=int, default=100)
    p.add_argument("--n-betas", type=int, default=20000)
    p.add_argument("--runs", type=int, default=1, help="independent AIS runs (seeds 0..)")
    p.add_argument("--n-steps", type=int, default=1,
                   help="Gibbs sweeps at each intermediate temperature (default 1)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args(argv)
    rbm = tb.zoo.from_preset(args.model)
    x_train, _ = tb.data.load_mnist("train", binarize="stochastic", seed=0)
    x_test, _ = tb.data.load_mnist("test", binarize="stochastic", seed=0)
    f_test = rbm.free_energy(x_test).astype(np.float64)
    f_train = rbm.free_energy(x_train[:10000]).astype(np.float64)
    results = []
    for seed in range(args.runs):
        t0 = time.time()
        est = tb.ais.log_partition(rbm, n_chains=args.n_chains, n_betas=args.n_betas, seed=seed,
                                   data=x_train, n_steps=args.n_steps)
        res = {
            "seed": seed, "log_z": est.log_z, "log_z_low": est.log_z_low,
            "log_z_high": est.log_z_high, "seconds": time.time() - t0,
            "test_ll": float(-f_test.mean() - est.log_z),
            "train_ll_10k": float(-f_train.mean() - est.log_z),
        }
        results.append(res)
        print(f"run {seed}: log Z = {est.log_z:.3f} ({est.log_z_low:.3f}, {est.log_z_high:.3f}); "
              f"average test log-likelihood {res['test_ll']:.2f} nats "
              f"(train, 10k rows: {res['train_ll_10k']:.2f}); {res['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "n_chains": args.n_chains, "n_betas": args.n_betas,
                       "n_steps": args.n_steps, "runs": results}, f, indent=2)


if __name__ == "__main__":
    main()
