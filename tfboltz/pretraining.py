"""Greedy layer-wise training of deep models: a stack of RBMs, each trained through
`RBM.fit` on what the one below passes up, then joined into a DBM (`pretrain_dbm`,
Salakhutdinov & Hinton 2009) or a DBN (`pretrain_dbn`, Hinton, Osindero & Teh 2006)."""

import keras
import numpy as np

from tfboltz import validation
from tfboltz.dbm import DBM
from tfboltz.dbn import DBN
from tfboltz.rbm import RBM


def unit_layer_like(layer, name):
    """A fresh, unbuilt units layer with the configuration of `layer`."""
    return type(layer).from_config({**layer.get_config(), "name": name})


def pretrain_dbm(dbm, x, epochs=20, batch_size=100, optimizer=None, learning="cd", k=1,
                 l2=0.0, propagate="means", rbm_kwargs=None, callbacks=None, verbose="auto"):
    """Greedy layer-wise pretraining of a DBM (Salakhutdinov & Hinton 2009, section 3.1).

    One RBM per pair of neighbouring layers, each trained through `RBM.fit` on the
    hidden means of the one below:

    - the bottom RBM has two tied copies of its visible units (``visible_copies=2``):
      on the way up its hidden units get ``2 v W_1``, as a first hidden layer of the
      DBM gets about twice the input from below once its upper neighbour agrees;
    - the top RBM has two tied copies of its hidden units (``hidden_copies=2``): on
      the way down its visible units get ``2 h W_L'``;
    - middle RBMs (three or more hidden layers) are ordinary RBMs whose weights are
      halved when stitched, since each of their layers gets input from both sides in
      the DBM (Salakhutdinov & Hinton 2012).

    In the stitched DBM a hidden layer's input is ``x_below W_l + x_above W_{l+1}'``,
    half of what each RBM gave it alone; the bias of a layer shared by two RBMs is the
    mean of the two RBMs' biases. The persistent particles start from the data, so a
    following `dbm.fit` goes straight to joint training.

    Args:
        dbm: the `DBM` whose weights are set.
        x: training rows (numpy), as for `dbm.fit`.
        epochs: epochs per RBM, an int or a list with one entry per RBM.
        batch_size: minibatch size.
        optimizer: a callable returning a fresh Keras optimizer for each RBM (default
            ``SGD(0.01, momentum=0.9)``), or a list of such callables.
        learning: "cd" or "pcd" for every RBM.
        k: Gibbs steps per update.
        l2: L2 weight decay.
        propagate: "means" (the default) or "samples": what each RBM passes up as the
            next one's data.
        rbm_kwargs: extra `RBM` arguments, a dict for all or a list of dicts.
        callbacks: Keras callbacks passed to each RBM's `fit`.
        verbose: passed to `fit`.

    Returns:
        The list of trained RBMs, bottom first.
    """
    if not isinstance(dbm, DBM):
        raise ValueError(f"Expected a DBM to pretrain. Received: {type(dbm).__name__}")
    n_rbms = len(dbm.kernels)
    epochs = _epochs_per_rbm(epochs, n_rbms)
    optimizers = _per_rbm("optimizer", optimizer, n_rbms)
    extra = _per_rbm("rbm_kwargs", rbm_kwargs or {}, n_rbms)
    propagate = validation.one_of("propagate", propagate, ("means", "samples"))
    batch_size = validation.positive_int("batch_size", batch_size)
    data = dbm.check_data(x)  # every check before any weight changes
    layers = dbm.unit_layers
    rbms = []
    rng = np.random.default_rng(dbm.seed)
    for i in range(n_rbms):
        bottom, top = i == 0, i == n_rbms - 1
        rbm = RBM(
            dbm.layer_sizes[i], dbm.layer_sizes[i + 1],
            visible=unit_layer_like(layers[i], "visible") if bottom else "bernoulli",
            hidden=unit_layer_like(layers[i + 1], "hidden") if top else "bernoulli",
            learning=learning, k=k, l2=l2, visible_copies=2 if bottom else 1,
            hidden_copies=2 if top else 1, weight_init_std=dbm.weight_init_std,
            seed=None if dbm.seed is None else dbm.seed + 10 * (i + 1), **extra[i])
        make_optimizer = optimizers[i]
        with rbm.distribute_strategy.scope():  # optimizers belong to the model's strategy
            rbm.compile(optimizer=make_optimizer() if make_optimizer is not None
                        else keras.optimizers.SGD(0.01, momentum=0.9))
        if verbose:
            print(f"Pretraining RBM {i + 1}/{n_rbms}: {dbm.layer_sizes[i]}-"
                  f"{dbm.layer_sizes[i + 1]}"
                  + (" (visible doubled)" if bottom else "") + (" (hidden doubled)" if top else ""))
        rbm.fit(data, batch_size=batch_size, epochs=epochs[i], callbacks=callbacks,
                verbose=verbose)
        rbms.append(rbm)
        if not top:
            data = _pass_up(rbm, data, propagate, rng)
    _stitch(dbm, rbms)
    dbm.init_particles(dbm.check_data(x))
    dbm.data_initialized.assign(True)
    return rbms


def _epochs_per_rbm(epochs, n):
    """`epochs` as one positive int per RBM of a greedy stack."""
    epochs = _per_rbm("epochs", epochs, n)
    for e in epochs:
        validation.positive_int("epochs", e)
    return epochs


def _pass_up(rbm, data, propagate, rng):
    """The next RBM's data in a greedy stack: hidden means, or samples of them."""
    data = rbm.transform(data)
    if propagate == "samples":
        data = (rng.random(data.shape) < data).astype("float32")
    return data


def _per_rbm(name, value, n):
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"Expected one `{name}` entry per RBM ({n}). "
                             f"Received: {name}={value!r}")
        return list(value)
    return [value] * n


def _stitch(dbm, rbms):
    """Set the DBM's weights from pretrained RBMs (see `pretrain_dbm`)."""
    n = len(rbms)
    for i, (rbm, kernel) in enumerate(zip(rbms, dbm.kernels)):
        middle = 0 < i < n - 1
        kernel.assign(rbm.kernel * (0.5 if middle else 1.0))
    layers = dbm.unit_layers
    for dst, src in zip(layers[0].weights, rbms[0].visible_layer.weights):
        dst.assign(src)
    for dst, src in zip(layers[-1].weights, rbms[-1].hidden_layer.weights):
        dst.assign(src)
    for i in range(1, n):
        layers[i].bias.assign(0.5 * (rbms[i - 1].hidden_layer.bias + rbms[i].visible_layer.bias))


def pretrain_dbn(dbn, x, y=None, epochs=20, batch_size=100, optimizer=None, propagate="means",
                 callbacks=None, verbose="auto"):
    """Greedy layer-wise training of a DBN: each RBM through `RBM.fit` on the hidden
    means (or samples) of the one below; the top RBM sees the labels as a one-hot
    group beside its input. Ends by untying the recognition weights (`DBN.untie`).

    Args:
        dbn: the `DBN`.
        x: training rows (numpy).
        y: int labels (needed when the DBN has labels).
        epochs: epochs per RBM, an int or one per RBM.
        batch_size: minibatch size.
        optimizer: callable returning a fresh Keras optimizer per RBM (default
            ``SGD(0.01, momentum=0.9)``).
        propagate: "means" or "samples" passed up as the next RBM's data.
        callbacks, verbose: passed to each `fit`.

    Returns:
        A list with each RBM's `History`.
    """
    if not isinstance(dbn, DBN):
        raise ValueError(f"Expected a DBN to pretrain. Received: {type(dbn).__name__}")
    n_rbms = len(dbn.rbms)
    epochs = _epochs_per_rbm(epochs, n_rbms)
    batch_size = validation.positive_int("batch_size", batch_size)
    propagate = validation.one_of("propagate", propagate, ("means", "samples"))
    data = dbn.check_data(x)
    if dbn.num_classes:
        if y is None:
            raise ValueError("Expected labels `y` for a DBN with labels. Received: y=None")
        y = validation.labels(y, len(data), dbn.num_classes)
    rng = np.random.default_rng(dbn.seed)
    histories = []
    for i, rbm in enumerate(dbn.rbms):
        with rbm.distribute_strategy.scope():  # optimizers belong to the model's strategy
            rbm.compile(optimizer=optimizer() if optimizer is not None
                        else keras.optimizers.SGD(0.01, momentum=0.9))
        inputs = data
        if i == n_rbms - 1 and dbn.num_classes:
            inputs = np.concatenate([data, np.eye(dbn.num_classes, dtype="float32")[y]], 1)
        if verbose:
            print(f"Pretraining RBM {i + 1}/{n_rbms}: {rbm.n_visible}-{rbm.n_hidden}")
        histories.append(rbm.fit(inputs, batch_size=batch_size, epochs=epochs[i],
                                 callbacks=callbacks, verbose=verbose))
        if i < n_rbms - 1:
            data = _pass_up(rbm, data, propagate, rng)
    dbn.untie()
    dbn.data_initialized.assign(True)
    return histories
