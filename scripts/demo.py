"""The main job: fetch the zoo's MNIST DBM, fine-tune it, export and check a SavedModel.

    make demo            # or: python scripts/demo.py --epochs 10

1. `tfboltz.zoo.fetch("mnist_dbm")`: the weight file is kept if present with the
   card's sha256 (a checkout ships it in pretrained/), else downloaded and verified.
2. `tfboltz.zoo.load("mnist_dbm")`: the verified 784-500-1000 DBM.
3. `dbm.to_sequential(10)`, fitted on 55,000 MNIST training images (the last 5,000
   pick the epoch), scored once on the 10,000 test images.
4. `classifier.export(...)`: a SavedModel, reloaded with `tf.saved_model.load` in a
   fresh Python process, whose predictions are compared with the Keras model's.
"""

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tfboltz as tb  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="mnist_dbm", help="zoo name")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", type=Path, default=Path("runs/demo"))
    args = p.parse_args(argv)
    t_start = time.time()
    paths = tb.zoo.fetch(args.model)
    model = tb.zoo.load(args.model, pretrained=True)
    print(f"loaded {args.model} from {paths[0]}: {type(model).__name__} "
          f"{'-'.join(str(n) for n in getattr(model, 'layer_sizes', [model.n_visible]))}")
    result = tb.experiments.finetune_mnist(model, args.out, epochs=args.epochs, verbose=2)
    print(f"fine-tuned test error: {result['test_error_percent']:.2f}% "
          f"(best of {args.epochs} epochs on the held-out 5,000: epoch {result['best_epoch']})")
    print(f"SavedModel: {args.out / 'savedmodel'}; reloaded in a fresh process: "
          f"{'same' if result['savedmodel_same_labels'] else 'DIFFERENT'} predicted labels, "
          f"largest probability difference {result['savedmodel_max_abs_diff']:.2e}")
    print(f"total {time.time() - t_start:.0f} s")
    return 0 if result["savedmodel_same_labels"] else 1


if __name__ == "__main__":
    sys.exit(main())
