"""Deep Boltzmann machines: mean-field positive phase, PCD negative phase."""

import keras
import numpy as np
import tensorflow as tf

from tfboltz import units as units_lib
from tfboltz import validation
from tfboltz.base import (
    MATMUL_DTYPES,
    EnergyModel,
    from_ladders,
    matmul,
    swap_replicas,
    tempered_input,
    to_ladders,
)

VISIBLE_TYPES = (units_lib.BernoulliUnits, units_lib.GaussianUnits)
TOP_TYPES = (units_lib.BernoulliUnits, units_lib.SoftmaxUnits)


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


@keras.saving.register_keras_serializable(package="tfboltz")
class DBM(EnergyModel):
    """A deep Boltzmann machine (Salakhutdinov & Hinton 2009) of any depth.

    Layers ``x_0 = v, x_1, ..., x_L`` with undirected weights between neighbours and
    none within a layer::

        E(x) = sum_l E_l(x_l) - sum_{l=1..L} scale(x_{l-1}) . W_l . scale(x_l)

    with the layers' own terms as in `RBM` (``-b . x`` for binary and softmax layers,
    ``(v - b)^2 / (2 sigma^2)`` for Gaussian visibles). Learning: the positive
    statistics come from a mean-field posterior of the hidden layers given the data,
    the negative statistics from persistent Gibbs chains over all layers (odd layers
    sampled given the even ones, then even given odd).

    Args:
        layer_sizes: ``[n_visible, n_hidden_1, ..., n_hidden_L]``, at least two
            hidden layers.
        visible: "bernoulli" or "gaussian" (or a units layer of those types).
        top: "bernoulli" or "softmax" (or a units layer) for the top hidden layer.
        n_chains: persistent fantasy particles.
        k: Gibbs sweeps of the particles per update.
        n_mean_field: mean-field iterations per batch (at most).
        mean_field_tol: stop the iterations once no mean moves more than this.
        l2: L2 weight decay on every ``W_l``.
        max_norm: bound on the L2 norm of each unit's incoming weights.
        sparsity_target: target mean activation of the hidden units.
        sparsity_cost: weight of the sparsity penalty on every hidden layer (0 disables
            it): the gradient of ``cost * (q - target)``, with ``q`` the layer's mean
            mean-field activation on the batch, goes to its bias and, times the mean
            state of the layer below, to the weights from below (as in `RBM`, but
            estimated on each batch rather than as a running average).
        weight_init_std: standard deviation of the initial weights.
        sample_particles: True (PCD, the default) samples the fantasy particles;
            False replaces each sample by its conditional mean, a deterministic
            mean-field negative phase (biased; useful where updates must be
            reproducible bit for bit, e.g. checking a distributed step against one
            device).
        matmul_dtype: "float32", or "bfloat16" / "float16" to run the matrix
            products in that dtype, everything else in float32 (see `RBM`).
        n_temperatures: more than 1 runs the particles with parallel tempering (as
            `RBM`'s ``learning="pt"``; Bernoulli and softmax layers, sampled particles):
            each particle is a ladder of replicas at inverse temperatures evenly
            spaced from 1 to `min_beta`, neighbours swap their whole states (every
            layer) by the Metropolis rule on the joint energy after every sweep, and
            the statistics come from the replicas at temperature 1 (`swap_rate` is
            logged).
        min_beta: the lowest inverse temperature of a ladder, in [0, 1).
        centering: True learns with the centered gradient (Montavon & Mueller 2012;
            Melchior, Fischer & Wiskott 2016), for Bernoulli and softmax layers:
            the statistics of every weight are taken about per-layer offsets
            ``mu_l`` (``<(x_l - mu_l)(x_l+1 - mu_l+1)>``) and each bias's gradient
            is corrected by ``-g_W_l mu_l+1 - g_W_l-1^T mu_l-1``, which is the
            centered DBM's update expressed in the ordinary parameters (the model
            stays an ordinary DBM, so AIS, the ELBO and `to_sequential` see
            nothing new). The offsets are running averages of each layer's mean
            over the data's mean-field posteriors, started from the first particles'
            bottom-up means and updated after every step with `centering_rate`.
        centering_rate: the running average's rate, in (0, 1].
        seed: int seed.
    """

    def __init__(self, layer_sizes, visible="bernoulli", top="bernoulli", n_chains=100, k=1,
                 n_mean_field=10, mean_field_tol=1e-5, l2=0.0, max_norm=None,
                 sparsity_target=0.1, sparsity_cost=0.0, weight_init_std=0.01,
                 sample_particles=True, matmul_dtype="float32", n_temperatures=1,
                 min_beta=0.5, centering=False, centering_rate=0.01, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(layer_sizes, (list, tuple)) or len(layer_sizes) < 3:
            raise ValueError(
                "Expected `layer_sizes` to list the visible size and at least two hidden "
                f"layer sizes. Received: layer_sizes={layer_sizes!r}")
        self.layer_sizes = [validation.positive_int("layer_sizes", n) for n in layer_sizes]
        self.n_visible = self.layer_sizes[0]
        self.n_chains = validation.positive_int("n_chains", n_chains)
        self.k = validation.positive_int("k", k)
        self.sample_particles = bool(sample_particles)
        self.n_temperatures = validation.positive_int("n_temperatures", n_temperatures)
        self.min_beta = validation.non_negative_float("min_beta", min_beta)
        if self.min_beta >= 1:
            raise ValueError(
                f"Invalid value received for argument `min_beta`. Expected a float in "
                f"[0, 1). Received: min_beta={min_beta!r}")
        if self.n_temperatures > 1 and not self.sample_particles:
            raise ValueError(
                "Expected sample_particles=True with parallel tempering (n_temperatures "
                f"> 1). Received: sample_particles={sample_particles!r}")
        self.matmul_dtype = validation.one_of("matmul_dtype", matmul_dtype, MATMUL_DTYPES)
        self.n_mean_field = validation.positive_int("n_mean_field", n_mean_field)
        self.mean_field_tol = validation.non_negative_float("mean_field_tol", mean_field_tol)
        self.l2 = validation.non_negative_float("l2", l2)
        self.max_norm = None if max_norm is None else validation.non_negative_float(
            "max_norm", max_norm)
        self.sparsity_target = validation.non_negative_float("sparsity_target", sparsity_target)
        self.sparsity_cost = validation.non_negative_float("sparsity_cost", sparsity_cost)
        self.weight_init_std = validation.non_negative_float("weight_init_std", weight_init_std)
        self.seed = seed
        layers = make_unit_layers(self.layer_sizes, visible, top, seed)
        for layer, allowed, role in ((layers[0], VISIBLE_TYPES, "visible"),
                                     (layers[-1], TOP_TYPES, "top")):
            if not isinstance(layer, allowed):
                raise ValueError(
                    f"Expected {role} units of type "
                    f"{' or '.join(t.__name__ for t in allowed)}; supported DBMs are "
                    "Bernoulli or Gaussian visible, Bernoulli hidden, Bernoulli or softmax "
                    f"top. Received: {type(layer).__name__}")
        if self.n_temperatures > 1 and not all(
                type(layer) in (units_lib.BernoulliUnits, units_lib.SoftmaxUnits)
                for layer in layers):
            raise ValueError(
                "Expected Bernoulli or softmax layers with parallel tempering "
                "(n_temperatures > 1). Received: "
                f"{', '.join(type(layer).__name__ for layer in layers)}")
        self.centering = bool(centering)
        self.centering_rate = validation.non_negative_float("centering_rate", centering_rate)
        if not 0 < self.centering_rate <= 1:
            raise ValueError(
                "Invalid value received for argument `centering_rate`. Expected a float "
                f"in (0, 1]. Received: centering_rate={centering_rate!r}")
        if self.centering and not all(
                type(layer) in (units_lib.BernoulliUnits, units_lib.SoftmaxUnits)
                for layer in layers):
            raise ValueError(
                "Expected Bernoulli or softmax layers with centering=True. Received: "
                f"{', '.join(type(layer).__name__ for layer in layers)}")
        self.unit_layers = layers
        self.seed_generator = keras.random.SeedGenerator(seed, name="dbm_seed_generator")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_error")
        self.mean_field_steps_tracker = keras.metrics.Mean(name="mean_field_steps")
        # Particle statistics: the mean state of each layer over the fantasy particles.
        self.particle_trackers = [keras.metrics.Mean(name=f"particles_mean_{i}")
                                  for i in range(len(self.layer_sizes))]
        self.swap_tracker = keras.metrics.Mean(name="swap_rate")
        self.build((None, self.n_visible))

    @property
    def visible_layer(self):
        return self.unit_layers[0]

    def build(self, input_shape=None):
        if self.built:
            return
        for layer, size in zip(self.unit_layers, self.layer_sizes):
            if not layer.built:
                layer.build((None, size))
        init = keras.initializers.RandomNormal(stddev=self.weight_init_std, seed=self.seed)
        self.kernels = [self.add_weight(shape=(a, b), initializer=init, name=f"kernel_{i + 1}")
                        for i, (a, b) in enumerate(zip(self.layer_sizes, self.layer_sizes[1:]))]
        # With tempering, temperature-major: the first `n_chains` rows at temperature 1.
        rows = self.n_chains * self.n_temperatures
        self.particles = [self.add_weight(shape=(rows, size), initializer="zeros",
                                          trainable=False, name=f"particles_{i}")
                          for i, size in enumerate(self.layer_sizes)]
        # The centering offsets (only with centering: older files have none).
        self.offsets = [self.add_weight(shape=(size,), initializer="zeros", trainable=False,
                                        name=f"offset_{i}")
                        for i, size in enumerate(self.layer_sizes)] if self.centering else []
        self._make_state()
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update({
            "layer_sizes": self.layer_sizes,
            "visible": keras.saving.serialize_keras_object(self.unit_layers[0]),
            "top": keras.saving.serialize_keras_object(self.unit_layers[-1]),
            "n_chains": self.n_chains, "k": self.k, "n_mean_field": self.n_mean_field,
            "mean_field_tol": self.mean_field_tol, "l2": self.l2, "max_norm": self.max_norm,
            "sparsity_target": self.sparsity_target, "sparsity_cost": self.sparsity_cost,
            "weight_init_std": self.weight_init_std, "sample_particles": self.sample_particles,
            "matmul_dtype": self.matmul_dtype, "n_temperatures": self.n_temperatures,
            "min_beta": self.min_beta, "centering": self.centering,
            "centering_rate": self.centering_rate, "seed": self.seed,
        })
        return config

    @property
    def metrics(self):
        return [self.reconstruction_tracker, self.mean_field_steps_tracker,
                *self.particle_trackers, self.swap_tracker]

    @property
    def betas(self):
        """The inverse temperatures of a tempering ladder, from 1 down to `min_beta`."""
        return np.linspace(1.0, self.min_beta, self.n_temperatures).astype("float32")

    # Conditionals ------------------------------------------------------------------

    def layer_input(self, states, i):
        """Input to layer `i` from its neighbours' `states` (a full list of layers)."""
        return layer_input(self.unit_layers, self.kernels, states, i, self.matmul_dtype)

    def energy(self, states):
        """Per-example energy of a full list of layer states."""
        e = tf.add_n([layer.energy(x) for layer, x in zip(self.unit_layers, states)])
        for i, w in enumerate(self.kernels):
            lower = self.unit_layers[i].scale(states[i])
            upper = self.unit_layers[i + 1].scale(states[i + 1])
            e -= tf.reduce_sum(tf.matmul(lower, w) * upper, axis=-1)
        return e

    def _initial_means(self, v):
        return initial_means(self.unit_layers, self.kernels, v, matmul_dtype=self.matmul_dtype)

    def _mean_field(self, v, n_iter, tol):
        return mean_field_means(self.unit_layers, self.kernels, v, n_iter, tol,
                                self.matmul_dtype)

    def mean_field(self, x, n_iter=None, tol=None, batch_size=1000):
        """Mean-field posterior means of each layer given visible rows (numpy list).

        Args:
            x: visible rows.
            n_iter: iterations at most (default `n_mean_field`).
            tol: stop once no mean moves more than this (default `mean_field_tol`).
        """
        x = self.check_data(x)
        n_iter = self.n_mean_field if n_iter is None else validation.positive_int(
            "n_iter", n_iter)
        tol = self.mean_field_tol if tol is None else validation.non_negative_float("tol", tol)
        parts = [self._mean_field_fn(x[i:i + batch_size], tf.constant(n_iter),
                                     tf.constant(tol, tf.float32))
                 for i in range(0, len(x), batch_size)]
        return [np.concatenate([p[j].numpy() for p in parts]) for j in range(len(self.kernels) + 1)]

    @tf.function(reduce_retracing=True)
    def _mean_field_fn(self, v, n_iter, tol):
        return self._mean_field(v, n_iter, tol)[0]

    def call(self, inputs):
        """Top-layer mean-field means of visible rows."""
        return self._mean_field(tf.convert_to_tensor(inputs), self.n_mean_field,
                                self.mean_field_tol)[0][-1]

    def _gibbs_sweep(self, states, seed, clamp=None, clamp_values=None, means=False):
        """Sample the odd layers given the even ones, then the even given the odd
        (with `means`, set them to their conditional means instead)."""
        states = list(states)
        for parity in (1, 0):
            for i in range(parity, len(states), 2):
                layer, a = self.unit_layers[i], self.layer_input(states, i)
                states[i] = layer.mean(a) if means else layer.sample(a, seed)
                if i == 0 and clamp is not None:
                    states[0] = clamp * clamp_values + (1.0 - clamp) * states[0]
        return states

    # Learning ------------------------------------------------------------------------

    def _init_from_data(self, x):
        self.visible_layer.init_bias_from_data(x)
        self._init_particles(x)

    def _init_particles(self, x):
        """Start the fantasy particles from random data rows and their bottom-up means."""
        rng = np.random.default_rng(self.seed)
        v = x[rng.integers(0, len(x), self.n_chains * self.n_temperatures)]
        means = self._initial_means(tf.constant(v))
        for var, m in zip(self.particles, means):
            var.assign(m)
        for var, m in zip(self.offsets, means):
            var.assign(tf.reduce_mean(m, 0))

    def train_step(self, data):
        v = tf.cast(keras.utils.unpack_x_y_sample_weight(data)[0], self.kernels[0].dtype)
        seed = self._step_seed(self.seed_generator)
        pos, steps = self._mean_field(v, self.n_mean_field, self.mean_field_tol)
        if self.n_temperatures > 1:
            neg, new_particles = self._tempered_negative_phase(seed)
        else:
            neg = [self._chain_share(tf.convert_to_tensor(p)) for p in self.particles]
            for _ in range(self.k):
                neg = self._gibbs_sweep(neg, seed, means=not self.sample_particles)
            new_particles = neg
        n_pos = tf.cast(tf.shape(v)[0], v.dtype)
        n_neg = tf.cast(tf.shape(neg[0])[0], v.dtype)
        layers = self.unit_layers
        # With centering, statistics about the offsets (zero otherwise).
        mu = ([tf.convert_to_tensor(o) for o in self.offsets] if self.centering
              else [0.0] * len(layers))
        grads = {}
        for i, w in enumerate(self.kernels):
            lo, hi = layers[i], layers[i + 1]
            g = matmul(tf.concat([lo.scale(neg[i]), lo.scale(pos[i])], 0) - mu[i],
                       tf.concat([(hi.scale(neg[i + 1]) - mu[i + 1]) / n_neg,
                                  -(hi.scale(pos[i + 1]) - mu[i + 1]) / n_pos], 0),
                       self.matmul_dtype, transpose_a=True)
            grads[id(w)] = g
        unit_vars = [v_ for layer in layers for v_ in layer.trainable_weights]
        with tf.GradientTape() as tape:
            e = tf.add_n([tf.reduce_mean(layer.energy(p)) - tf.reduce_mean(layer.energy(q))
                          for layer, p, q in zip(layers, pos, neg)])
        for var, g in zip(unit_vars, tape.gradient(e, unit_vars, unconnected_gradients="zero")):
            grads[id(var)] = g
        if self.centering:
            # The centered update in ordinary parameters: b_l = b'_l - W_l mu_l+1 -
            # W_l-1^T mu_l-1, so each bias also moves against its weights' step.
            for i, w in enumerate(self.kernels):
                g = grads[id(w)]
                grads[id(layers[i].bias)] -= tf.linalg.matvec(g, mu[i + 1])
                grads[id(layers[i + 1].bias)] -= tf.linalg.matvec(g, mu[i], transpose_a=True)
        if self.l2:
            for w in self.kernels:
                grads[id(w)] += self.l2 * w
        if self.sparsity_cost:
            for i in range(1, len(layers)):
                penalty = self.sparsity_cost * (tf.reduce_mean(pos[i], 0) - self.sparsity_target)
                grads[id(layers[i].bias)] += penalty
                below = tf.reduce_mean(layers[i - 1].scale(pos[i - 1]), 0)
                grads[id(self.kernels[i - 1])] += below[:, None] * penalty[None, :]
        variables = self.trainable_variables
        grad_list = [grads[id(var)] for var in variables]

        n_layers = len(layers)
        batch_means = [tf.reduce_mean(p, 0) for p in pos] if self.centering else []

        def after_update(state):
            if self.max_norm is not None:
                for w in self.kernels:
                    self._clip_column_norms(w, self.max_norm)
            for var, m in zip(self.offsets, state[n_layers:]):
                var.assign(var + self.centering_rate * (m - var))
            for var, chains, size in zip(self.particles, state[:n_layers], self.layer_sizes):
                var.assign(chains if self.n_temperatures == 1
                           else from_ladders(chains, self.n_temperatures, size))

        self._apply_if_finite(grad_list, variables, [*pos[1:], *neg], after_update,
                              state=[*new_particles, *batch_means],
                              merge=["concat"] * n_layers + ["mean"] * len(batch_means))
        recon = layers[0].mean(self.layer_input(pos, 0))
        self.reconstruction_tracker.update_state(tf.reduce_mean(tf.square(v - recon), -1))
        self.mean_field_steps_tracker.update_state(tf.cast(steps, v.dtype))
        for tracker, state in zip(self.particle_trackers, neg):
            tracker.update_state(tf.reduce_mean(state))
        return {m.name: m.result() for m in self.metrics
                if m is not self.swap_tracker or self.n_temperatures > 1}

    def _tempered_negative_phase(self, seed):
        """`k` sweeps of this replica's tempering ladders, each followed by a round of
        swaps. Returns the temperature-1 states of each layer and the ladders as rows
        ``(n, T size)`` to store."""
        t_count = self.n_temperatures
        ladders = [self._chain_share(to_ladders(tf.convert_to_tensor(p), t_count))
                   for p in self.particles]
        m = ladders[0].shape[0] if ladders[0].shape[0] is not None else tf.shape(ladders[0])[0]
        states = [tf.reshape(x, (-1, size)) for x, size in zip(ladders, self.layer_sizes)]
        betas = tf.constant(self.betas)
        beta = tf.tile(betas, [m])[:, None]
        start = tf.cast(self.optimizer.iterations, "int32") * self.k
        for step in range(self.k):
            for parity in (1, 0):
                for i in range(parity, len(states), 2):
                    layer = self.unit_layers[i]
                    states[i] = layer.sample(
                        tempered_input(layer, self.layer_input(states, i), beta), seed)
            # log p_t(x_{t+1}) p_{t+1}(x_t) / (p_t(x_t) p_{t+1}(x_{t+1})) with
            # p_beta(x) ~ exp(-beta E(x)): (beta_t - beta_{t+1}) (E(x_t) - E(x_{t+1})).
            e = tf.reshape(self.energy(states), (m, t_count))
            log_r = (betas[:-1] - betas[1:])[None, :] * (e[:, :-1] - e[:, 1:])
            states, accepted, proposed = swap_replicas(log_r, states, (start + step) % 2, seed)
            self.swap_tracker.update_state(accepted / tf.maximum(proposed, 1.0),
                                           sample_weight=proposed)
        neg = [tf.reshape(x, (m, t_count, size))[:, 0] for x, size in zip(states, self.layer_sizes)]
        rows = [tf.reshape(x, (m, t_count * size)) for x, size in zip(states, self.layer_sizes)]
        return neg, rows

    def test_step(self, data):
        v = tf.cast(keras.utils.unpack_x_y_sample_weight(data)[0], self.kernels[0].dtype)
        pos, steps = self._mean_field(v, self.n_mean_field, self.mean_field_tol)
        recon = self.unit_layers[0].mean(self.layer_input(pos, 0))
        self.reconstruction_tracker.update_state(tf.reduce_mean(tf.square(v - recon), -1))
        self.mean_field_steps_tracker.update_state(tf.cast(steps, v.dtype))
        return {m.name: m.result() for m in self.metrics[:2]}

    # Sampling ------------------------------------------------------------------------

    def sample(self, n=None, steps=1000, init=None, clamp=None, seed=0, means=True):
        """Draw visible samples by block Gibbs sampling over all layers.

        Each sweep samples the odd layers given the even ones, then the even layers
        given the odd ones.

        Args:
            n: number of chains (needed when `init` is None).
            steps: Gibbs sweeps.
            init: starting visible rows (from data); the hidden layers start from
                their bottom-up means. Default: every layer drawn with zero input.
            clamp: boolean mask of shape `(n_visible,)` or `(n, n_visible)`: the
                units where it is True keep their `init` values (conditional
                completion, e.g. the lower half of a digit from its upper half).
            seed: int seed.
            means: return the final visible means rather than the sampled states.

        Returns:
            numpy array ``(n, n_visible)``.
        """
        steps = validation.positive_int("steps", steps)
        n, init, mask = self._sampling_request(n, init, clamp)
        # The training generator, set to `seed` for this draw and then put back, so
        # that sampling never perturbs the training stream.
        gen = self.seed_generator
        saved = gen.state.numpy()
        gen.state.assign(np.array([seed, 0], dtype=saved.dtype))
        try:
            if init is None:
                states = [layer.sample(tf.zeros((n, layer.units)), gen)
                          for layer in self.unit_layers]
                v0 = tf.zeros((n, self.n_visible))
            else:
                v0 = tf.constant(init)
                states = self._initial_means(v0)
            out = self._sample_fn(states, v0, tf.constant(mask), tf.constant(steps),
                                  bool(means))
        finally:
            gen.state.assign(saved)
        return out.numpy()

    @tf.function(reduce_retracing=True)
    def _sample_fn(self, states, v0, mask, steps, means):
        def body(i, *states):
            out = self._gibbs_sweep(list(states), self.seed_generator, mask, v0)
            return (i + 1, *out)

        out = list(tf.while_loop(lambda i, *_: i < steps, body, (tf.constant(0), *states))[1:])
        if not means:
            return out[0]
        mean = self.unit_layers[0].mean(self.layer_input(out, 0))
        return mask * v0 + (1.0 - mask) * mean

def _unit_layer_like(layer, name):
    """A fresh, unbuilt copy of a units layer's configuration."""
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
    from tfboltz.rbm import RBM

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
            visible=_unit_layer_like(layers[i], "visible") if bottom else "bernoulli",
            hidden=_unit_layer_like(layers[i + 1], "hidden") if top else "bernoulli",
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
    dbm._init_particles(dbm.check_data(x))
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
