"""Print the DBM and semi-supervised results tables from the measured JSON files.

    python docs/experiments/scripts/results_tables.py

The DBM table is that of the published zoo DBM (version 4.0, the files
docs/results/dbm_centered_lr004_e300_mf5_*: scripts/eval_dbm_ais.py's 60,000- and
120,000-beta runs, and scripts/finetune_mnist.py's runs, one row per seed and the mean);
the semi-supervised table reads docs/results/reproduce_mnist*.json
(scripts/reproduce_mnist.py). Rows not measured yet print as "not measured".
"""

import json
import statistics
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "results"  # docs/results
SEMI_ANCHORS = {  # TF1 reference, test accuracy %: RBM, DBM, random initialisation
    100: (81.70, 83.79, 76.24), 1000: (93.65, 93.54, 89.14),
    10000: (97.27, 97.11, 94.50), 60000: (98.73, 98.68, 98.28),
}


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


DBM_PREFIX = "dbm_centered_lr004_e300_mf5_"  # the published mnist_dbm (version 4.0)
DBM_AIS = DBM_PREFIX + "ais_rbm_*k_5steps_seed*.json"  # 60,000 and 120,000 betas
DBM_FINETUNE = {  # recipe -> glob of its runs' result.json copies
    "finite-difference VAT (`--vat 2 --vat-xi 1e-6`, 100 epochs)":
        DBM_PREFIX + "finetune_vat2_dropout0.2_cosine100*.json",
    "plain (`--dropout 0.2 --lr-schedule cosine`, 150 epochs)":
        DBM_PREFIX + "finetune_dropout0.2_cosine150*.json",
}


def load_all(pattern):
    return [json.loads(p.read_text()) for p in sorted(RESULTS.glob(pattern))]


def dbm_table():
    runs = sorted(({**run, "n_betas": result["n_betas"]}
                   for result in load_all(DBM_AIS) for run in result.get("runs", [])),
                  key=lambda run: (run["n_betas"], run["seed"]))
    print("| figure | ours | anchors |")
    print("|---|---|---|")
    if not runs:
        print("| AIS log Z and test ELBO | not measured | -84.62 (paper), -86.37 (TF1 reference) |")
    for run in runs:
        print(f"| log Z ({run['n_betas']:,}-beta AIS, seed {run['seed']}, log of mean ± 3 s.e.) | "
              f"{run['log_z']:.3f} ({run['log_z_low']:.3f}, {run['log_z_high']:.3f}) | |")
    for run in runs:
        elbo = f"{run['test_elbo']:.2f} nats"
        if run["test_elbo"] > 0:  # log p(v) <= 0 for binary v: log Z was underestimated
            elbo += " (**invalid**: AIS did not converge)"
        print(f"| average test ELBO ({run['n_betas']:,}-beta AIS seed {run['seed']}) | {elbo} | "
              "-84.62 (paper), -86.37 (TF1 reference) |")
    for recipe, pattern in DBM_FINETUNE.items():
        errors = {r["seed"]: r["test_error_percent"] for r in load_all(pattern)}
        if not errors:
            cell = "not measured"
        else:
            cell = " / ".join(f"{errors[s]:.2f}%" for s in sorted(errors))
            cell += f" (seed{'s' if len(errors) > 1 else ''} {', '.join(map(str, sorted(errors)))}"
            cell += f"; mean {statistics.mean(errors.values()):.3f}%)" if len(errors) > 1 else ")"
        print(f"| fine-tuned test error, {recipe} | {cell} | "
              "0.95% (paper), 1.32% (TF1 reference) |")


def semi_table():
    rows = {**load("reproduce_mnist.json"), **load("reproduce_mnist_dbm.json")}
    print("| labelled images | RBM + fine-tuning | DBM + fine-tuning | random init | "
          "anchors (RBM / DBM / random) |")
    print("|---|---|---|---|---|")
    for n, anchors in SEMI_ANCHORS.items():
        cells = []
        for start in ("rbm", "dbm", "random"):
            r = rows.get(f"semi_{start}_{n}")
            cells.append(f"{r['test_accuracy_percent']:.2f}%" if r else "not measured")
        print(f"| {n:,} | " + " | ".join(cells) + " | " + " / ".join(f"{a:.2f}" for a in anchors)
              + " |")


def main():
    dbm_table()
    print()
    semi_table()


if __name__ == "__main__":
    main()
