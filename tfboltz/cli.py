"""The `tfboltz` command line.

    tfboltz list                         the zoo's models, where their weights come from
    tfboltz fetch [NAME ...]             download and verify weight files
    tfboltz eval NAME|FILE.keras         AIS log Z, test log-likelihood or ELBO, probe
    tfboltz finetune NAME|FILE.keras     to_sequential, fit, test error, SavedModel
    tfboltz sample NAME|FILE.keras       PNG grid of fantasies
    tfboltz plot KIND NAME|FILE          filters, samples, reconstructions, mean-field, ...
    tfboltz train NAME                   run a model card's recipe
    tfboltz version

A model is named by its zoo name (its verified pretrained weights) or by a `.keras`
file. `tfboltz COMMAND --help` describes each command.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import warnings
from pathlib import Path

# `import tfboltz.zoo as zoo`, not `from tfboltz import zoo`: the first use of a name of
# the package loads all of it (TensorFlow included, see tfboltz/__init__.py), which
# `list`, `fetch`, `train` and `version` do not need; `zoo.from_preset` loads it.

_SOURCES = {
    "checkout": "weights in this checkout",
    "cache": "weights in the cache",
    "package": "weights shipped in the package",
    "download": "weights not here: downloaded on first use",
    "missing": "weights not here, no download location",
    "unpublished": "weights not published",
}


def _one_line(kind, err):
    return f"{kind}: " + " ".join(str(err).split())


def _error(err):
    """The `SystemExit` that prints one line, ``error: ...``, and exits with status 1:
    a bad card, a failed download or a missing file is the user's to fix, not a bug
    to trace."""
    return SystemExit(_one_line("error", err))


def _zoo_errors():
    """What the zoo raises for the user to fix: an invalid card or unknown name
    (ValueError), a failed download (FetchError), a file it cannot read (OSError)."""
    import tfboltz.zoo as zoo

    return zoo.FetchError, ValueError, OSError


def _load(spec):
    """A model from a preset: a zoo name, a preset directory, a card, a `.weights.h5`
    or a `.keras` file (see `tfboltz.zoo.from_preset`)."""
    import tfboltz.zoo as zoo

    try:
        return zoo.from_preset(spec)
    except FileNotFoundError as e:
        raise _error(f"no such model file: {spec} ({e})") from None
    except _zoo_errors() as e:
        raise _error(e) from None


def _list_models():
    """The zoo's names, each invalid card file reported as one line ``warning: ...``
    on stderr (the other models list as usual)."""
    import tfboltz.zoo as zoo

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = zoo.list_models()
    for warning in caught:
        print(_one_line("warning", warning.message), file=sys.stderr)
    return names


def _list(args):
    import tfboltz.zoo as zoo

    try:
        for name in _list_models():
            card = zoo.get_card(name)
            where = zoo.weights_source(name)
            state = _SOURCES[where["source"]]
            if where["verified"] is False:
                state += ", FAILS its sha256 check (from_preset refuses it)"
            print(f"{name:18s} {card['version']:8s} {card['parameters']:>10,d} parameters  "
                  f"{card['description']}\n{'':18s} {state}"
                  + (f": {where['location']}" if where["location"] else ""))
    except _zoo_errors() as e:
        raise _error(e) from None


def _fetch(args):
    import tfboltz.zoo as zoo

    names = args.names or [n for n in _list_models() if zoo.get_card(n)["weights_published"]]
    failed = 0
    for name in names:
        try:
            zoo.fetch(name, cache_dir=args.cache_dir, base_url=args.base_url,
                      timeout=args.timeout)
        except _zoo_errors() as e:
            print(_one_line("error", e), file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def _eval(args):
    from tfboltz import experiments

    model = _load(args.model)
    result = experiments.evaluate_mnist(model, n_chains=args.n_chains, n_betas=args.n_betas,
                                        seed=args.seed, probe=not args.no_probe)
    print(f"log Z = {result['log_z']:.3f} ({result['log_z_low']:.3f}, "
          f"{result['log_z_high']:.3f}) by AIS, {args.n_chains} chains, {args.n_betas} betas")
    if "test_elbo" in result:
        print(f"average test ELBO = {result['test_elbo']:.2f} nats")
    if "test_bound_top_summed_out" in result:
        print(f"  with the top layer summed out (a tighter bound) = "
              f"{result['test_bound_top_summed_out']:.2f} nats")
    else:
        print(f"average test log-likelihood = {result['test_log_likelihood']:.2f} nats")
    if "probe_accuracy" in result:
        print(f"linear probe test accuracy = {100 * result['probe_accuracy']:.2f}%")
    if args.json:
        write_json(args.json, {"model": args.model, **result})


def write_json(path, obj):
    """Write `obj` as JSON to `path` (its folder made if missing) under a temporary name,
    then rename it: a run stopped mid-write leaves the old file or none, never half of
    one. Shared with the scripts that record measurements."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def add_optimizer_arguments(p):
    """The fine-tuning optimizer's flags, shared with scripts/finetune_mnist.py."""
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam",
                   help="sgd: Nesterov momentum 0.9")
    p.add_argument("--weight-decay", type=float, default=None,
                   help="decoupled weight decay (Keras's optimizer weight_decay)")
    p.add_argument("--jit-compile", action="store_true",
                   help="compile the training step with XLA (measure first: faster on "
                        "some CPUs and models, much slower on others)")
    p.add_argument("--head-epochs", type=int, default=0,
                   help="epochs that fit only the new output layer first (constant --lr), "
                        "before --epochs of the whole classifier")
    p.add_argument("--adversarial", type=float, default=None, metavar="EPSILON",
                   help="fast-gradient adversarial training with this epsilon "
                        "(Goodfellow et al. 2015), applied to the trainable layers' input")
    p.add_argument("--adversarial-alpha", type=float, default=0.5,
                   help="weight of the clean loss in the adversarial objective")
    p.add_argument("--adversarial-norm", choices=["inf", "l2"], default="inf",
                   help="inf: the gradient's sign (fast gradient sign); l2: the gradient "
                        "scaled to L2 norm EPSILON per example (fast gradient method)")
    p.add_argument("--adversarial-no-clip", dest="adversarial_clip", action="store_false",
                   help="leave the perturbed input unclipped (default: clipped to [0, 1])")
    p.add_argument("--vat", type=float, default=None, metavar="EPSILON",
                   help="virtual adversarial training (Miyato et al. 2019) with this L2 "
                        "radius, applied to the trainable layers' input")
    p.add_argument("--vat-weight", type=float, default=1.0,
                   help="weight of the virtual adversarial smoothness term")
    p.add_argument("--vat-xi", type=float, default=None, metavar="XI",
                   help="the paper's finite-difference power step of this size instead of "
                        "the exact one (1e-6 in the paper, below float32's resolution)")
    p.add_argument("--vat-orient", action="store_true",
                   help="keep whichever side of the virtual adversarial direction has the "
                        "larger divergence (the power iteration gives an axis, not a side)")
    p.add_argument("--teachers", nargs="+", default=None, metavar="CLASSIFIER",
                   help="knowledge distillation from these fine-tuned classifiers (.keras "
                        "files; their averaged log-probabilities, Hinton et al. 2015)")
    p.add_argument("--distill-temperature", type=float, default=10.0,
                   help="temperature of the distillation's soft targets")
    p.add_argument("--distill-weight", type=float, default=0.9,
                   help="weight of the soft targets' term (the labels' is 1 minus it)")


def finetune_options(args):
    """The keyword arguments of `experiments.finetune_mnist` set by the flags of
    `add_optimizer_arguments`."""
    names = ("optimizer", "weight_decay", "jit_compile", "head_epochs", "adversarial",
             "adversarial_alpha", "adversarial_norm", "adversarial_clip", "vat", "vat_weight",
             "vat_xi", "vat_orient", "teachers", "distill_temperature", "distill_weight")
    return {name: getattr(args, name) for name in names}


def _finetune(args):
    from tfboltz import experiments

    model = _load(args.model)
    result = experiments.finetune_mnist(model, args.out, epochs=args.epochs, lr=args.lr,
                                        dropout=args.dropout, n_train=args.n_train,
                                        n_val=args.n_val, lr_schedule=args.lr_schedule,
                                        seed=args.seed, **finetune_options(args))
    print(f"test error {result['test_error_percent']:.2f}% (best epoch {result['best_epoch']} "
          f"of {args.epochs}); SavedModel {Path(args.out) / 'savedmodel'} reloaded in a fresh "
          f"process: same labels = {result['savedmodel_same_labels']}")
    return 0 if result["savedmodel_same_labels"] else 1


def _sample(args):
    import numpy as np

    from tfboltz import viz

    model = _load(args.model)
    side = int(round(np.sqrt(model.n_visible)))
    if side * side != model.n_visible:
        raise SystemExit(f"tfboltz sample: {model.n_visible} visible units are not a square "
                         "image; use the Python API")
    images = model.sample(args.n, steps=args.steps, seed=args.seed)
    path = viz.save_image_grid(images, args.out, (side, side),
                               title=f"{args.n} fantasies after {args.steps} Gibbs sweeps")
    print(f"wrote {path}")


def _plot(args):
    import numpy as np

    from tfboltz import viz

    if args.kind == "history":
        print(f"wrote {viz.plot_history(args.source, args.out)}")
        return 0
    model = _load(args.source)
    side = int(round(np.sqrt(model.n_visible)))
    shape = (side, side)
    if args.kind == "filters":
        kernel = model.kernel if hasattr(model, "kernel") else (
            model.kernels[0] if hasattr(model, "kernels") else model.rbms[0].kernel)
        path = viz.plot_filters(kernel.numpy(), args.out, image_shape=shape, n=args.n)
    elif args.kind == "samples":
        images = (model.generate(n=args.n, steps=args.steps, seed=args.seed)
                  if hasattr(model, "generate") else
                  model.sample(args.n, steps=args.steps, seed=args.seed))
        path = viz.plot_samples(images, args.out, image_shape=shape)
    elif args.kind == "class-samples":
        path = viz.plot_class_samples(model, args.out, steps=args.steps, seed=args.seed,
                                      image_shape=shape)
    else:
        from tfboltz import data

        x, _ = data.load_mnist("test", binarize="stochastic", seed=0)
        if args.kind == "mean-field":
            path = viz.plot_mean_field(model, x, args.out, image_shape=None)
        else:
            recon = model.reconstruct(x[:10]) if hasattr(model, "reconstruct") else None
            if recon is None:
                means = model.mean_field(x[:10])
                recon = model.unit_layers[0].mean(model.layer_input(means, 0)).numpy()
            path = viz.plot_reconstructions(x[:10], recon, args.out, image_shape=shape)
    print(f"wrote {path}")
    return 0


def _train(args):
    import tfboltz.zoo as zoo

    try:
        card = zoo.get_card(args.name)
    except ValueError as e:
        raise _error(e) from None
    root = Path(__file__).resolve().parent.parent
    script = root / card["recipe"]["script"]
    if not script.is_file():
        raise _error(f"the recipe {card['recipe']['script']} of '{args.name}' is not here; "
                     "recipes run from a source checkout of tfboltz")
    cmd = [sys.executable, str(script), *card["recipe"]["args"], *args.extra]
    print("running:", " ".join(cmd))
    return subprocess.call(cmd, cwd=root)


def _installed_version(*distributions):
    """The version of the first of `distributions` that is installed, from its
    metadata (without importing it)."""
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "not installed"


def _version(args):
    import tfboltz

    tensorflow = _installed_version("tensorflow", "tensorflow-cpu", "tensorflow-macos",
                                    "tf-nightly")
    print(f"tfboltz {tfboltz.__version__} (TensorFlow {tensorflow}, Keras "
          f"{_installed_version('keras')}, Python {platform.python_version()})")


def build_parser():
    parser = argparse.ArgumentParser(prog="tfboltz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print versions").set_defaults(func=_version)
    sub.add_parser("list", help="list the zoo's models and where their weights come from",
                   description="List the zoo's models, each with where `from_preset` takes "
                               "its weights file from: this checkout, the cache, the "
                               "installed package, or a download (sha256-checked)."
                   ).set_defaults(func=_list)

    p = sub.add_parser("fetch", help="download and verify weight files",
                       description="Download the weight files of zoo models (default: all with "
                                   "published weights). A file already present with the right "
                                   "sha256 is kept; downloads go to a temporary name, are "
                                   "verified, then moved into place. Each failure prints one "
                                   "line, error: ..., and the exit status is 1.")
    p.add_argument("names", nargs="*", help="model names (default: all published)")
    p.add_argument("--base-url", help="download from here instead of the cards' URLs "
                                      "(also: TFBOLTZ_BASE_URL)")
    p.add_argument("--cache-dir", help="where weight files go (also: TFBOLTZ_MODELS)")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds all the downloads of one model may take, together (not "
                        "each read)")
    p.set_defaults(func=_fetch)

    p = sub.add_parser("eval", help="AIS log Z, test log-likelihood (RBM) or ELBO (DBM), probe",
                       description="Measure an MNIST model: AIS log Z with its interval, the "
                                   "average test log-likelihood (RBM) or ELBO (DBM) on the test "
                                   "set binarised with seed 0, and a linear probe's accuracy.")
    p.add_argument("model", help="zoo name or .keras file")
    p.add_argument("--n-betas", type=int, default=20000)
    p.add_argument("--n-chains", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-probe", action="store_true", help="skip the linear probe")
    p.add_argument("--json", help="write the figures to this file")
    p.set_defaults(func=_eval)

    p = sub.add_parser("finetune", help="fine-tune as a keras.Sequential, export a SavedModel",
                       description="Turn the model into a keras.Sequential classifier "
                                   "(to_sequential), fit it on MNIST, report the test error, "
                                   "export a SavedModel and check it in a fresh process.")
    p.add_argument("model", help="zoo name or .keras file")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    add_optimizer_arguments(p)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="cosine: decay the learning rate to 0 over the run")
    p.add_argument("--n-train", type=int, default=None, help="labelled rows to use")
    p.add_argument("--n-val", type=int, default=5000,
                   help="rows held out to pick the epoch (0: fit every row, keep the last)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/finetune", help="output directory")
    p.set_defaults(func=_finetune)

    p = sub.add_parser("sample", help="PNG grid of fantasies",
                       description="Draw fantasies by Gibbs sampling from noise and save them "
                                   "as a PNG grid.")
    p.add_argument("model", help="zoo name or .keras file")
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--steps", type=int, default=1000, help="Gibbs sweeps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="samples.png")
    p.set_defaults(func=_sample)

    p = sub.add_parser("plot", help="PNG figures: filters, samples, reconstructions, ...",
                       description="Write a figure: filters, samples, reconstructions (MNIST "
                                   "test images), mean-field (a DBM's settling on MNIST test "
                                   "images), class-samples (a labelled DBN), or history (a "
                                   "CSV training log).")
    p.add_argument("kind", choices=["filters", "samples", "reconstructions", "mean-field",
                                    "class-samples", "history"])
    p.add_argument("source", help="zoo name or .keras file (a .csv log for history)")
    p.add_argument("--n", type=int, default=100, help="filters or samples shown")
    p.add_argument("--steps", type=int, default=1000, help="Gibbs sweeps for samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="figure.png")
    p.set_defaults(func=_plot)

    p = sub.add_parser("train", help="run a model card's recipe",
                       description="Run the recipe (script and arguments) of a zoo model card "
                                   "from a source checkout; extra arguments are passed on.")
    p.add_argument("name", help="zoo name")
    p.add_argument("extra", nargs=argparse.REMAINDER, help="extra arguments for the script")
    p.set_defaults(func=_train)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
