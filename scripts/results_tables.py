"""Print the README's DBM and semi-supervised tables from the measured JSON files.

    python scripts/results_tables.py

Reads docs/results/dbm_ais.json (scripts/eval_dbm_ais.py), docs/results/
dbm_finetune.json (scripts/finetune_mnist.py) and docs/results/reproduce_mnist*.json
(scripts/reproduce_mnist.py); rows not measured yet print as "not measured".
"""

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "results"
SEMI_ANCHORS = {  # TF1 reference, test accuracy %: RBM, DBM, random initialisation
    100: (81.70, 83.79, 76.24), 1000: (93.65, 93.54, 89.14),
    10000: (97.27, 97.11, 94.50), 60000: (98.73, 98.68, 98.28),
}


def load(name):
    path = RESULTS / name
    return json.loads(path.read_text()) if path.exists() else {}


def dbm_table(ais_file="dbm_ais.json"):
    ais, ft = load(ais_file), load("dbm_finetune.json")
    print("| figure | ours | anchors |")
    print("|---|---|---|")
    for run in ais.get("runs", []):
        print(f"| log Z (AIS, seed {run['seed']}, ±3 s.e.) | {run['log_z']:.2f} "
              f"({run['log_z_low']:.2f}, {run['log_z_high']:.2f}) | |")
    for run in ais.get("runs", []):
        elbo = f"{run['test_elbo']:.2f} nats"
        if run["test_elbo"] > 0:  # log p(v) <= 0 for binary v: log Z was underestimated
            elbo += " (**invalid**: AIS did not converge)"
        print(f"| average test ELBO (AIS seed {run['seed']}) | {elbo} | "
              "-84.62 (paper), -86.37 (TF1 reference) |")
    if ft:
        print(f"| fine-tuned test error | {ft['test_error_percent']:.2f}% | "
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
