"""Mean-field inference in a layered Boltzmann machine (a DBM): the bottom-up pass
and the fixed-point iterations of the hidden layers' means given the visible rows.

Shared by `tfboltz.DBM`, its classifier layer (`tfboltz.classifier`) and the bounds of
`tfboltz.ais`; the functions take the unit layers and the kernels, not a model.
"""

import numpy as np
import tensorflow as tf

from tfboltz import units as units_lib
from tfboltz.precision import matmul


def make_unit_layers(layer_sizes, visible, top, seed=None):
    """The units layers of a DBM: `visible`, Bernoulli hidden layers, `top`."""
    n = len(layer_sizes)
    return ([units_lib.get(visible, layer_sizes[0], seed, name="layer_0")]
            + [units_lib.get("bernoulli", size, seed, name=f"layer_{i}")
               for i, size in enumerate(layer_sizes[1:-1], start=1)]
            + [units_lib.get(top, layer_sizes[-1], seed, name=f"layer_{n - 1}")])


def layer_input(unit_layers, kernels, states, i, matmul_dtype=None, from_below=None):
    """Input to layer `i` of a layered model from its neighbours' `states`
    (`from_below`: the part from layer ``i - 1``, if already computed)."""
    total = 0.0
    if i > 0:
        total = from_below if from_below is not None else matmul(
            unit_layers[i - 1].scale(states[i - 1]), kernels[i - 1], matmul_dtype)
    if i < len(unit_layers) - 1:
        above = unit_layers[i + 1].scale(states[i + 1])
        total += matmul(above, kernels[i], matmul_dtype, transpose_b=True)
    return total


def initial_means(unit_layers, kernels, v, from_visible=None, matmul_dtype=None):
    """Bottom-up pass; layers below the top get doubled input, standing in for the
    missing top-down input (Salakhutdinov & Hinton 2009). `from_visible`: the input
    of `v` to the first hidden layer, if already computed."""
    means = [v]
    last = len(unit_layers) - 1
    for i in range(1, last + 1):
        if i == 1 and from_visible is not None:
            a = from_visible
        else:
            a = matmul(unit_layers[i - 1].scale(means[-1]), kernels[i - 1], matmul_dtype)
        means.append(unit_layers[i].mean(a if i == last else 2.0 * a))
    return means


def mean_field_means(unit_layers, kernels, v, n_iter, tol, matmul_dtype=None, init=None):
    """Fixed-point iterations of the hidden means of a DBM given visible rows `v`.

    Each iteration updates the layers bottom to top, ``mu_i = mean(input from
    mu_{i-1} and mu_{i+1})``, and stops after `n_iter` iterations or once no mean
    moves by more than `tol`. Returns ``[v, mu_1, ..., mu_L]`` and the iterations run.
    The iterations start from `init` (``[v, mu_1, ..., mu_L]``; its first entry is
    ignored) or, by default, from the doubled bottom-up pass of `initial_means`.
    """
    # The visible rows are fixed: their input to the first hidden layer is computed once.
    from_visible = matmul(unit_layers[0].scale(v), kernels[0], matmul_dtype)
    means = (initial_means(unit_layers, kernels, v, from_visible, matmul_dtype)
             if init is None else [v, *init[1:]])
    n_layers = len(unit_layers)

    def body(it, _, *hidden):
        states = [v, *hidden]
        delta = tf.zeros((), v.dtype)
        for i in range(1, n_layers):
            a = layer_input(unit_layers, kernels, states, i, matmul_dtype,
                            from_visible if i == 1 else None)
            new = unit_layers[i].mean(a)
            delta = tf.maximum(delta, tf.reduce_max(tf.abs(new - states[i])))
            states[i] = new
        return (it + 1, delta, *states[1:])

    out = tf.while_loop(lambda it, delta, *_: tf.logical_and(it < n_iter, delta > tol),
                        body, (tf.constant(0), tf.constant(np.inf, v.dtype), *means[1:]))
    return [v, *out[2:]], out[0]
