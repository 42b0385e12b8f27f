"""The centered gradient (Montavon & Mueller 2012; Melchior, Fischer & Wiskott 2016),
shared by the RBM and the DBM.

The statistics of a weight ``W`` between layers ``x`` and ``y`` are taken about
offsets: ``<(x - mu)(y - lambda)>``. Each bias's gradient is then corrected by
``-g_W lambda`` (the layer below) and ``-g_W^T mu`` (the layer above): the centered
model's update expressed in the ordinary parameters, so everything else (AIS, the
ELBO, `to_sequential`) sees an ordinary model. The offsets are running averages of
each layer's mean on the data, started from the data by the first `fit`.
"""

import tensorflow as tf

from tfboltz import validation


def check_rate(centering_rate):
    """Return `centering_rate` if it is a float in (0, 1], else raise a `ValueError`."""
    if not 0 < validation.non_negative_float("centering_rate", centering_rate) <= 1:
        raise ValueError(
            "Invalid value received for argument `centering_rate`. Expected a float "
            f"in (0, 1]. Received: centering_rate={centering_rate!r}")
    return float(centering_rate)


def make_offsets(model, sizes, names):
    """One non-trainable offset variable per layer of `model`."""
    return [model.add_weight(shape=(n,), initializer="zeros", trainable=False, name=name)
            for n, name in zip(sizes, names)]


def bias_corrections(grad_w, mu_below, mu_above):
    """The corrections ``(-g_W mu_above, -g_W^T mu_below)`` of the biases of the layers
    below and above a weight whose centered gradient is `grad_w`."""
    return (-tf.linalg.matvec(grad_w, mu_above),
            -tf.linalg.matvec(grad_w, mu_below, transpose_a=True))


def update_offsets(offsets, batch_means, rate):
    """Move each offset a step `rate` towards its layer's mean on the batch."""
    for var, mean in zip(offsets, batch_means):
        var.assign(var + rate * (mean - var))


def values(offsets):
    """The offsets as tensors (read once per step)."""
    return [tf.convert_to_tensor(o) for o in offsets]
