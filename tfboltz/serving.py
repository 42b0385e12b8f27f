"""The generative SavedModel of an RBM, DBM or DBN.

Each model lists its endpoints (`EnergyModel.serving_endpoints`): functions of tensors
that its Python methods call too, with their samplers driven by a stateless seed
(`tfboltz.samplers.SeedStream`), so the same seed gives the same samples in both, on
the same device. This module writes them out, atomically.

Example:
    >>> rbm = tb.RBM(784, 500, seed=0)
    >>> tb.serving.export_model(rbm, "out/rbm")          # or rbm.export("out/rbm")
    >>> served = tf.saved_model.load("out/rbm")
    >>> served.sample(n=16, steps=1000, seed=3)          # == rbm.sample(16, 1000, seed=3)
    >>> served.complete(x, mask, steps=100, seed=0)      # == rbm.sample(init=x, clamp=mask, ...)
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

# The export ------------------------------------------------------------------------


def export_model(model, filepath, verbose=True):
    """Write an RBM, DBM or DBN as a SavedModel with its generative endpoints.

    It needs no prior call of the model. The artifact is written to a temporary
    directory beside `filepath` and renamed into place, so a failed export leaves
    nothing behind. Reload it with ``tf.saved_model.load(filepath)``; tfboltz is not
    needed to serve it. Every endpoint is also a serving signature (``serve`` is the
    default one).

    Endpoints (``x``: float32 ``(batch, n_visible)``; ``mask``: bool, same shape;
    ``n``, ``steps``: int32 scalars; ``seed``: int64 scalar):

    - ``serve(x)``, ``transform(x)``: hidden means, as ``model(x)``: an RBM's hidden
      means, a DBM's top-layer mean-field means, a DBN's top hidden means.
    - ``reconstruct(x)``: ``model.reconstruct(x)``, visible means after a
      deterministic pass up and down (DBM: given the mean-field means of the first
      hidden layer).
    - ``sample(n, steps, seed)``: ``model.sample(n, steps=steps, seed=seed)``
      (DBN: ``model.generate(n=n, steps=steps, seed=seed)``), visible means.
    - ``complete(x, mask, steps, seed)``: ``model.sample(init=x, clamp=mask,
      steps=steps, seed=seed)``: Gibbs sampling with the units where `mask` is True
      clamped to `x`.
    - RBM: ``free_energy(x)``. DBM: ``mean_field(x)``, a dict ``layer_1 .. layer_L``
      of mean-field means (``model.mean_field(x)[1:]``). DBN with labels:
      ``classify(x)``, label probabilities by free energy (``model.classify(x)``),
      and ``generate(labels, steps, seed)`` (``model.generate(labels, steps=steps,
      seed=seed)``).

    Args:
        model: a `tfboltz.RBM`, `tfboltz.DBM` or `tfboltz.DBN`.
        filepath: the directory to create; it must not exist or be empty.
        verbose: print the endpoints written.

    Raises:
        ValueError: `model` is not one of the three, or `filepath` is not a path.
        FileExistsError: `filepath` exists and is not an empty directory.
    """
    if not (isinstance(model, keras.Model)
            and callable(getattr(model, "serving_endpoints", None))):
        raise ValueError("Invalid value received for argument `model`. Expected a tfboltz "
                         f"RBM, DBM or DBN. Received: model of type {type(model).__name__}")
    endpoints = model.serving_endpoints()
    if not isinstance(filepath, (str, os.PathLike)) or not os.fspath(filepath):
        raise ValueError("Invalid value received for argument `filepath`. Expected a path. "
                         f"Received: filepath={filepath!r}")
    path = os.path.abspath(os.fspath(filepath))
    _check_free(path)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, fn, signature in endpoints:
        archive.add_endpoint(name, fn, signature)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.", suffix=".partial", dir=parent)
    try:
        archive.write_out(tmp, verbose=False)
        _check_free(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if verbose:
        lines = [f"  {name}({', '.join(spec.name for spec in signature)})"
                 for name, _, signature in endpoints]
        print(f"Saved artifact at '{path}'. Endpoints:\n" + "\n".join(lines))


def _check_free(path):
    if os.path.exists(path) and not (os.path.isdir(path) and not os.listdir(path)):
        raise FileExistsError(
            f"Expected `filepath` to be a new or empty directory. Received: filepath="
            f"'{path}', which exists and is not empty. Remove it or choose another path.")


def checked(tensor, checks):
    """`tensor`, once the assertions `checks` have passed."""
    with tf.control_dependencies(checks):
        return tf.identity(tensor)


def count_checks(n=None, steps=None):
    """Assertions that `n` is positive and `steps` non-negative (those given)."""
    checks = []
    if n is not None:
        checks.append(tf.debugging.assert_positive(n, message="Expected `n` >= 1."))
    if steps is not None:
        checks.append(tf.debugging.assert_non_negative(steps, message="Expected `steps` >= 0."))
    return checks
