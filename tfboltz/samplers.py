"""Sampling machinery shared by the RBM, the DBM and AIS: tempered conditionals, the
layout of parallel-tempering ladders, and replica exchange.

Every sampler of the models is a pure function of its inputs and an int seed: draw
``j`` of a seed ``s`` uses the Keras random seed ``[s, j]`` (`SeedStream`), so the
Python methods (`sample`, `generate`, `classify`) and the exported SavedModel
(`tfboltz.serving`), which call the same function, give the same samples.

A tempered distribution is ``p_beta(x) ~ exp(-beta E(x))``. Parallel tempering
(Desjardins et al. 2010) keeps each persistent chain as a ladder of replicas at inverse
temperatures from 1 down to `min_beta`; after every Gibbs sweep, neighbouring replicas
swap states with the Metropolis probability, and the statistics come from the replicas
at ``beta = 1``.
"""

import numbers

import keras
import numpy as np
import tensorflow as tf

from tfboltz import validation
from tfboltz.distribute import chain_share

_INT31 = 2**31 - 1


def inverse_temperatures(n_temperatures, min_beta):
    """The inverse temperatures of a ladder: `n_temperatures` evenly spaced values from
    1 down to `min_beta` (float32 numpy)."""
    return np.linspace(1.0, min_beta, n_temperatures).astype("float32")


def check_min_beta(min_beta):
    """Return `min_beta` if it is a float in [0, 1), else raise a `ValueError`."""
    if validation.non_negative_float("min_beta", min_beta) >= 1:
        raise ValueError(
            f"Invalid value received for argument `min_beta`. Expected a float in "
            f"[0, 1). Received: min_beta={min_beta!r}")
    return float(min_beta)


def tempered_input(layer, inputs, beta):
    """The input that makes `layer` sample ``exp(-beta E)``: ``beta (in + b) - b``."""
    return beta * inputs + layer.bias_as_input((beta - 1.0) * layer.b(inputs))


def to_ladders(chains, n_temperatures):
    """Temperature-major chain rows ``(T n, w)`` -> one row per ladder ``(n, T w)``.

    Parallel tempering stores replica ``t`` of ladder ``j`` in row ``t n + j`` (so the
    first `n` rows are the chains at temperature 1); a replica's share of the ladders
    under a distribution strategy is then a block of rows of this view.
    """
    width = chains.shape[-1]
    return tf.reshape(tf.transpose(tf.reshape(chains, (n_temperatures, -1, width)), (1, 0, 2)),
                      (-1, n_temperatures * width))


def from_ladders(ladders, n_temperatures, width):
    """The inverse of `to_ladders`."""
    return tf.reshape(tf.transpose(tf.reshape(ladders, (-1, n_temperatures, width)), (1, 0, 2)),
                      (-1, width))


def swap_replicas(log_r, tensors, parity, seed):
    """One round of replica exchange between neighbouring temperatures.

    Args:
        log_r: ``(m, T - 1)`` log Metropolis ratios of swapping replicas ``t`` and
            ``t + 1`` of each of `m` ladders.
        tensors: per-replica states, each ``(m T, width)`` with row ``i T + t``.
        parity: pairs ``(t, t + 1)`` with ``t % 2 == parity`` are proposed (disjoint
            pairs, alternated between rounds).
        seed: seed generator for the acceptance draws.

    Returns:
        The exchanged `tensors`, and the numbers of accepted and proposed swaps.
    """
    pairs = log_r.shape[1]
    m = log_r.shape[0] if log_r.shape[0] is not None else tf.shape(log_r)[0]
    proposed = tf.broadcast_to(tf.range(pairs) % 2 == parity, tf.shape(log_r))
    u = keras.random.uniform(tf.shape(log_r), seed=seed)
    accept = proposed & (tf.math.log(u) < log_r)
    none = tf.zeros((m, 1), bool)
    take_next = tf.concat([accept, none], 1)[:, :, None]
    take_prev = tf.concat([none, accept], 1)[:, :, None]

    def exchange(x):
        width = x.shape[-1]
        x = tf.reshape(x, (m, pairs + 1, width))
        x = tf.where(take_next, tf.roll(x, -1, 1), tf.where(take_prev, tf.roll(x, 1, 1), x))
        return tf.reshape(x, (m * (pairs + 1), width))

    return ([exchange(x) for x in tensors], tf.reduce_sum(tf.cast(accept, "float32")),
            tf.reduce_sum(tf.cast(proposed, "float32")))


def swap_round(log_r, tensors, parity, seed, rate_tracker):
    """`swap_replicas`, recording the acceptance rate of the proposed swaps in
    `rate_tracker` (a `keras.metrics.Mean`). Returns the exchanged `tensors`."""
    tensors, accepted, proposed = swap_replicas(log_r, tensors, parity, seed)
    rate_tracker.update_state(accepted / tf.maximum(proposed, 1.0), sample_weight=proposed)
    return tensors


def ladder_view(chains, n_temperatures):
    """A replica's ladders of a temperature-major chain variable, as rows ``(m T, w)``
    (row ``i T + t``: replica ``t`` of ladder ``i``), and `m`."""
    ladders = chain_share(to_ladders(tf.convert_to_tensor(chains), n_temperatures))
    m = ladders.shape[0] if ladders.shape[0] is not None else tf.shape(ladders)[0]
    return tf.reshape(ladders, (-1, chains.shape[-1])), m


class SeedStream(keras.random.SeedGenerator):
    """Stateless seeds for Keras random ops: draw ``j`` uses ``[seed, count + j]``.

    Keras random ops take it as their `seed` (they call `next`). It holds no variable:
    `seed` and `count` are tensors, so a function of (inputs, seed) stays pure and a
    loop carries `count` as a loop variable, resuming with ``SeedStream(seed, count)``.

    Args:
        seed: int64 scalar (tensor or int).
        count: the index of the next draw.
    """

    def __init__(self, seed, count=0):  # no state variable: no super().__init__
        self.seed = tf.cast(seed, tf.int64)
        self.count = tf.cast(count, tf.int64)

    def next(self, ordered=True):
        key = tf.stack([self.seed, self.count])
        self.count = self.count + 1
        return key

    def split(self):
        """A new seed for an independent stream (one draw of this one)."""
        return tf.cast(keras.random.randint((), 0, _INT31, dtype="int32", seed=self), tf.int64)


def sampling_seed(seed, generator=None):
    """The seed of one draw as an int64 scalar tensor.

    Args:
        seed: an int; or None to take a fresh one from `generator`, or without one
            from Keras's global random state (reproducible after
            `keras.utils.set_random_seed`), as Keras's own ``seed=None`` does.
        generator: a `keras.random.SeedGenerator` kept for sampling (never the
            training one, so that sampling never perturbs training), or None.
    """
    if seed is None:
        return tf.cast(keras.random.randint((), 0, _INT31, dtype="int32", seed=generator),
                       tf.int64)
    if (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)
            or not -(2**63) <= seed < 2**63):
        raise ValueError("Invalid value received for argument `seed`. Expected an integer. "
                         f"Received: seed={seed!r}")
    return tf.constant(int(seed), tf.int64)
