"""Deep Boltzmann machines: mean-field positive phase, PCD negative phase."""

import keras
import numpy as np
import tensorflow as tf

from tfboltz import centering as centering_lib
from tfboltz import classifier, distribute, precision, progress, samplers, validation
from tfboltz import mean_field as mean_field_lib
from tfboltz import units as units_lib
from tfboltz.energy_model import EnergyModel
from tfboltz.precision import MATMUL_DTYPES, matmul
from tfboltz.samplers import SeedStream

VISIBLE_TYPES = (units_lib.BernoulliUnits, units_lib.GaussianUnits)
TOP_TYPES = (units_lib.BernoulliUnits, units_lib.SoftmaxUnits)


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
        self.min_beta = samplers.check_min_beta(min_beta)
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
        self.seed = seed = validation.seed(seed)
        layers = mean_field_lib.make_unit_layers(self.layer_sizes, visible, top, seed)
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
        self.centering_rate = centering_lib.check_rate(centering_rate)
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
        self.offsets = centering_lib.make_offsets(
            self, self.layer_sizes, [f"offset_{i}" for i in range(len(self.layer_sizes))]
        ) if self.centering else []
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
        return samplers.inverse_temperatures(self.n_temperatures, self.min_beta)

    # Conditionals ------------------------------------------------------------------

    def _product_kernels(self):
        """The kernels as products read them: the train step's low-precision copies,
        cast once a step (`precision.step_operands`), or the variables."""
        cast = getattr(self, "_step_kernels", None)
        return self.kernels if cast is None else cast

    def layer_input(self, states, i):
        """Input to layer `i` from its neighbours' `states` (a full list of layers)."""
        return mean_field_lib.layer_input(self.unit_layers, self._product_kernels(), states, i,
                                          self.matmul_dtype)

    def energy(self, states):
        """Per-example energy of a full list of layer states."""
        e = tf.add_n([layer.energy(x) for layer, x in zip(self.unit_layers, states)])
        for i, w in enumerate(self.kernels):
            lower = self.unit_layers[i].scale(states[i])
            upper = self.unit_layers[i + 1].scale(states[i + 1])
            e -= tf.reduce_sum(tf.matmul(lower, w) * upper, axis=-1)
        return e

    def initial_means(self, v):
        """The doubled bottom-up pass that starts mean-field (a list of tensors, one per
        layer; see `tfboltz.mean_field.initial_means`)."""
        return mean_field_lib.initial_means(self.unit_layers, self._product_kernels(), v,
                                            matmul_dtype=self.matmul_dtype)

    def _mean_field(self, v, n_iter, tol):
        return mean_field_lib.mean_field_means(self.unit_layers, self._product_kernels(), v,
                                               n_iter, tol, self.matmul_dtype)

    def mean_field(self, x, n_mean_field=None, tol=None, batch_size=1000, verbose="auto",
                   **kwargs):
        """Mean-field posterior means of each layer given visible rows (numpy list).

        Args:
            x: visible rows.
            n_mean_field: iterations at most (default: the model's `n_mean_field`;
                ``n_iter``, its old name, still works with a `DeprecationWarning`).
            tol: stop once no mean moves more than this (default `mean_field_tol`).
            batch_size: rows per graph call.
            verbose: "auto" (a progress bar over the batches, on a terminal or in a
                notebook, when there are several), 0 or 1 (see `tfboltz.progress`).
        """
        n_iter = validation.renamed(kwargs, "n_iter", "n_mean_field", n_mean_field,
                                    "DBM.mean_field")
        x = self.check_data(x)
        n_iter = self.n_mean_field if n_iter is None else validation.positive_int(
            "n_mean_field", n_iter)
        tol = self.mean_field_tol if tol is None else validation.non_negative_float("tol", tol)
        verbose = progress.resolve_verbose(verbose)
        starts = range(0, len(x), batch_size)
        # One batch is one graph call: nothing to show progress between.
        verbose = verbose if len(starts) > 1 else 0
        bar = progress.progbar(len(x), verbose, "row")
        parts = []
        for i in starts:
            parts.append(self._mean_field_fn(x[i:i + batch_size], tf.constant(n_iter),
                                             tf.constant(tol, tf.float32)))
            if verbose:
                parts[-1][0].numpy()  # on an accelerator, wait: count rows done, not queued
                bar.update(min(i + batch_size, len(x)))
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
        self.init_particles(x)

    def init_particles(self, x):
        """Start the fantasy particles from random data rows and their bottom-up means."""
        rng = np.random.default_rng(self.seed)
        v = x[rng.integers(0, len(x), self.n_chains * self.n_temperatures)]
        means = self.initial_means(tf.constant(v))
        for var, m in zip(self.particles, means):
            var.assign(m)
        for var, m in zip(self.offsets, means):
            var.assign(tf.reduce_mean(m, 0))

    def _unit_grads(self, pos, neg, mu):
        """Gradients of the unit layers' parameters, ``{id(variable): gradient}``: of
        ``mean E(pos) - mean E(neg)`` with the kernels held fixed (`mu`: the centering
        offsets, or zeros). A unit scale that is learned (a Gaussian layer's sigma)
        also enters the coupling ``-scale(x_l) W_l scale(x_l+1)``, so the couplings next
        to such a layer are part of the differentiated energy."""
        layers = self.unit_layers
        unit_vars = [v_ for layer in layers for v_ in layer.trainable_weights]
        learned = [len(layer.trainable_weights) > 1 for layer in layers]
        with tf.GradientTape() as tape:
            e = tf.add_n([tf.reduce_mean(layer.energy(p)) - tf.reduce_mean(layer.energy(q))
                          for layer, p, q in zip(layers, pos, neg)])
            for i, w in enumerate(self.kernels):
                if not (learned[i] or learned[i + 1]):
                    continue
                w = tf.stop_gradient(w)
                for states, sign in ((pos, -1.0), (neg, 1.0)):
                    lower = layers[i].scale(states[i]) - mu[i]
                    upper = layers[i + 1].scale(states[i + 1]) - mu[i + 1]
                    e += sign * tf.reduce_mean(tf.reduce_sum(tf.matmul(lower, w) * upper, -1))
        return dict(zip([id(u) for u in unit_vars],
                        tape.gradient(e, unit_vars, unconnected_gradients="zero")))

    def train_step(self, data):
        self._step_kernels = precision.step_operands(self.kernels, self.matmul_dtype)
        try:
            return self._train_step(data)
        finally:
            self._step_kernels = None

    def _train_step(self, data):
        v = tf.cast(keras.utils.unpack_x_y_sample_weight(data)[0], self.kernels[0].dtype)
        self.check_batch(v)
        seed = self.step_seed(self.seed_generator)
        pos, steps = self._mean_field(v, self.n_mean_field, self.mean_field_tol)
        if self.n_temperatures > 1:
            neg, new_particles = self._tempered_negative_phase(seed)
        else:
            neg = [distribute.chain_share(tf.convert_to_tensor(p)) for p in self.particles]
            for _ in range(self.k):
                neg = self._gibbs_sweep(neg, seed, means=not self.sample_particles)
            new_particles = neg
        neg = distribute.all_chains(*neg)  # every replica's particles: the global negative phase
        n_pos = tf.cast(tf.shape(v)[0], v.dtype)
        n_neg = tf.cast(tf.shape(neg[0])[0], v.dtype)
        layers = self.unit_layers
        # With centering, statistics about the offsets (zero otherwise).
        mu = centering_lib.values(self.offsets) if self.centering else [0.0] * len(layers)
        grads = {}
        for i, w in enumerate(self.kernels):
            lo, hi = layers[i], layers[i + 1]
            g = matmul(tf.concat([lo.scale(neg[i]), lo.scale(pos[i])], 0) - mu[i],
                       tf.concat([(hi.scale(neg[i + 1]) - mu[i + 1]) / n_neg,
                                  -(hi.scale(pos[i + 1]) - mu[i + 1]) / n_pos], 0),
                       self.matmul_dtype, transpose_a=True)
            grads[id(w)] = g
        grads.update(self._unit_grads(pos, neg, mu))
        if self.centering:
            # The centered update in ordinary parameters: b_l = b'_l - W_l mu_l+1 -
            # W_l-1^T mu_l-1, so each bias also moves against its weights' step.
            for i, w in enumerate(self.kernels):
                below, above = centering_lib.bias_corrections(grads[id(w)], mu[i], mu[i + 1])
                grads[id(layers[i].bias)] += below
                grads[id(layers[i + 1].bias)] += above
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
            centering_lib.update_offsets(self.offsets, state[n_layers:], self.centering_rate)
            for var, chains, size in zip(self.particles, state[:n_layers], self.layer_sizes):
                var.assign(chains if self.n_temperatures == 1
                           else samplers.from_ladders(chains, self.n_temperatures, size))

        self._step_kernels = None  # the reconstruction below reads the updated kernels
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
        views = [samplers.ladder_view(p, t_count) for p in self.particles]
        states, m = [rows for rows, _ in views], views[0][1]
        betas = tf.constant(self.betas)
        beta = tf.tile(betas, [m])[:, None]
        start = tf.cast(self.optimizer.iterations, "int32") * self.k
        for step in range(self.k):
            for parity in (1, 0):
                for i in range(parity, len(states), 2):
                    layer = self.unit_layers[i]
                    states[i] = layer.sample(
                        samplers.tempered_input(layer, self.layer_input(states, i), beta), seed)
            # log p_t(x_{t+1}) p_{t+1}(x_t) / (p_t(x_t) p_{t+1}(x_{t+1})) with
            # p_beta(x) ~ exp(-beta E(x)): (beta_t - beta_{t+1}) (E(x_t) - E(x_{t+1})).
            e = tf.reshape(self.energy(states), (m, t_count))
            log_r = (betas[:-1] - betas[1:])[None, :] * (e[:, :-1] - e[:, 1:])
            states = samplers.swap_round(log_r, states, (start + step) % 2, seed,
                                         self.swap_tracker)
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

    def classifier_blocks(self, n_mean_field=None):
        """The layers of `to_sequential` (Salakhutdinov & Hinton 2009, section 5): a
        frozen `MeanFieldAugmentation` giving ``[v, q(h_2)]``; the first Dense layer
        gets both halves of the first hidden layer's input (``W_1`` and ``W_2'``), the
        later ones ``W_l``."""
        aug = classifier.MeanFieldAugmentation.from_dbm(self, n_mean_field=n_mean_field)
        ul, ks = self.unit_layers, self.kernels
        # q(h_2) of a Bernoulli/softmax layer is its own scale.
        first = tf.concat([classifier.visible_scaled(ul[0], ks[0]), tf.transpose(ks[1])], 0)
        blocks = [(ul[1], first, ul[1].bias)]
        blocks += [(ul[i], ks[i - 1], ul[i].bias) for i in range(2, len(ul))]
        return [aug], blocks

    def transform(self, x, batch_size=1000):
        """Top-layer mean-field means of visible rows (numpy; what the model returns
        when called)."""
        return self.mean_field(x, batch_size=batch_size)[-1]

    def reconstruct(self, x, n_mean_field=None, batch_size=1000, **kwargs):
        """Visible means given the mean-field means of the first hidden layer (numpy;
        `n_mean_field` as in `mean_field`)."""
        n_mean_field = validation.renamed(kwargs, "n_iter", "n_mean_field", n_mean_field,
                                          "DBM.reconstruct")
        x = self.check_data(x)
        means = self.mean_field(x, n_mean_field=n_mean_field, batch_size=batch_size)
        return self._visible_means_fn(tf.constant(means[1])).numpy()

    @tf.function(reduce_retracing=True)
    def _reconstruct_fn(self, v):
        """`reconstruct` with the default mean-field settings, as a tensor function."""
        return self._visible_means_fn(self._default_mean_field(v)[1])

    def _default_mean_field(self, v):
        return self._mean_field_fn(v, tf.constant(self.n_mean_field),
                                   tf.constant(self.mean_field_tol, tf.float32))

    def serving_endpoints(self):
        """The endpoints of every model (`EnergyModel.serving_endpoints`) and
        ``mean_field(x)``: a dict ``layer_1 .. layer_L`` of mean-field means (the
        model's `n_mean_field` and `mean_field_tol`)."""
        x_spec = tf.TensorSpec((None, self.n_visible), tf.as_dtype(self.dtype), name="x")

        def mean_field(x):
            means = self._default_mean_field(x)
            return {f"layer_{i}": means[i] for i in range(1, len(means))}

        return [*super().serving_endpoints(), ("mean_field", mean_field, [x_spec])]

    @tf.function(reduce_retracing=True)
    def _visible_means_fn(self, h1):
        return self.unit_layers[0].mean(matmul(self.unit_layers[1].scale(h1), self.kernels[0],
                                               self.matmul_dtype, transpose_b=True))

    # Sampling ------------------------------------------------------------------------

    def sample(self, n=None, steps=1000, init=None, clamp=None, seed=None, means=True,
               verbose="auto"):
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
            seed: int seed (the same as the exported SavedModel's `sample` /
                `complete` with that seed); None takes a fresh one from Keras's global
                random state. Sampling never touches the training generator.
            means: return the final visible means rather than the sampled states.
            verbose: "auto" (a progress bar on a terminal or in a notebook), 0 or 1
                (see `tfboltz.progress`); the samples are the same either way.

        Returns:
            numpy array ``(n, n_visible)``.
        """
        steps, n, v0, mask, seed, verbose = self._sampling_arguments(
            n, steps, init, clamp, seed, verbose, min_steps=1)
        if not verbose:
            out = self._sample_fn(v0, mask, tf.constant(steps), seed, init is None,
                                  bool(means))
            return out.numpy()
        chains = progress.run_sweeps(
            lambda chains, sweeps: self._sample_sweeps_fn(chains, v0, mask, sweeps, seed),
            self._sample_start_fn(v0, seed, init is None), steps, verbose)
        return self._sample_end_fn(chains, v0, mask, bool(means)).numpy()

    @tf.function(reduce_retracing=True)
    def _sample_fn(self, v0, mask, steps, seed, from_noise, means):
        """`steps` Gibbs sweeps from every layer drawn with zero input (`from_noise`)
        or from `v0` and its bottom-up means, the visible units where `mask` is 1
        clamped to `v0`: a pure function of its inputs and the int64 `seed` (draw j
        uses ``[seed, j]``), shared by `sample` and the exported SavedModel."""
        chains = self._sample_sweeps(self._sample_start(v0, seed, from_noise), v0, mask,
                                     steps, seed)
        return self._sample_end(chains, v0, mask, means)

    def _sample_start(self, v0, seed, from_noise):
        """The chains of `_sample_fn` before its first sweep: ``(count, states)``, with
        `count` the index of the next draw of `seed`."""
        stream = SeedStream(seed)
        if from_noise:
            n = tf.shape(v0)[0]
            states = [layer.sample(tf.zeros((n, layer.units), v0.dtype), stream)
                      for layer in self.unit_layers]
        else:
            states = self.initial_means(v0)
        return stream.count, list(states)

    def _sample_sweeps(self, chains, v0, mask, steps, seed):
        """`steps` Gibbs sweeps of the chains of `_sample_start`."""
        count, states = chains

        def body(i, count, *states):
            draws = SeedStream(seed, count)
            out = self._gibbs_sweep(list(states), draws, mask, v0)
            return (i + 1, draws.count, *out)

        out = tf.while_loop(lambda i, *_: i < steps, body,
                            (tf.constant(0, steps.dtype), count, *states))
        return out[1], list(out[2:])

    def _sample_end(self, chains, v0, mask, means):
        states = chains[1]
        if not means:
            return states[0]
        mean = self.unit_layers[0].mean(self.layer_input(states, 0))
        return mask * v0 + (1.0 - mask) * mean

    # `sample` with a progress bar runs these as graphs of their own, the sweeps in
    # chunks between updates of the bar.
    _sample_start_fn = tf.function(_sample_start, reduce_retracing=True)
    _sample_sweeps_fn = tf.function(_sample_sweeps, reduce_retracing=True)
    _sample_end_fn = tf.function(_sample_end, reduce_retracing=True)
