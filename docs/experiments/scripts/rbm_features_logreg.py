"""Test error of logistic regression on the hidden means of an MNIST RBM.

    python docs/experiments/scripts/rbm_features_logreg.py runs/rbm1024/model.keras \\
        --json runs/rbm1024/logreg.json

Features: ``E[h | v]`` of the 60,000 training and 10,000 test images (grey levels),
standardised. The inverse regularisation C is picked on the last 10,000 training
images (fit on the first 50,000), then the classifier is refit on all 60,000 and
scored once on the test set.
"""

import argparse
import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import tfboltz as tb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="an RBM: a preset name (mnist_rbm) or directory, or a "
                                 ".keras or .weights.h5 file (tfboltz.zoo.from_preset)")
    p.add_argument("--cs", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05])
    p.add_argument("--max-iter", type=int, default=500)
    p.add_argument("--json")
    args = p.parse_args(argv)
    rbm = tb.zoo.from_preset(args.model)
    x_train, y_train = tb.data.load_mnist("train")
    x_test, y_test = tb.data.load_mnist("test")
    f_train, f_test = rbm.transform(x_train), rbm.transform(x_test)

    def fit(c, x, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=args.max_iter))
        return clf.fit(x, y)

    t0 = time.time()
    val = {c: fit(c, f_train[:50000], y_train[:50000]).score(f_train[50000:], y_train[50000:])
           for c in args.cs}
    best = max(val, key=val.get)
    clf = fit(best, f_train, y_train)
    error = 100 * (1 - clf.score(f_test, y_test))
    print(f"validation accuracy by C: {val}; best C = {best}")
    print(f"RBM features + logistic regression: test error {error:.2f}% "
          f"({time.time() - t0:.0f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "validation_accuracy": val, "C": best,
                       "test_error_percent": error}, f, indent=2)


if __name__ == "__main__":
    main()
