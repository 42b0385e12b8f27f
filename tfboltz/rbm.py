"""Restricted Boltzmann machines trained by CD-k or PCD through `model.fit`."""

import keras
import numpy as np
import tensorflow as tf

from tfboltz import centering as centering_lib
from tfboltz import classifier, distribute, precision, progress, samplers, validation
from tfboltz import units as units_lib
from tfboltz.energy_model import EnergyModel
from tfboltz.precision import MATMUL_DTYPES, matmul
from tfboltz.samplers import SeedStream

LEARNING_RULES = ("cd", "pcd", "pt")
#: Unit types whose tempered conditionals parallel tempering can draw from.
TEMPERABLE_UNITS = (units_lib.BernoulliUnits, units_lib.SoftmaxUnits)
#: Data rows whose means start the centering offsets.
CENTERING_INIT_ROWS = 5000


class EpochMonitor(keras.callbacks.Callback):
    """Adds the per-epoch monitors of a fixed subset of training rows to the logs.

    At the end of each epoch, at the same weights: ``free_energy`` and (binary
    visibles) ``pseudo_log_likelihood`` of up to 1,000 training rows, and with
    validation data ``free_energy_gap`` = mean F(validation rows) - mean F(training
    rows) (Hinton's practical guide, section 6: a gap that keeps growing means the
    model is overfitting). Computing them here rather than in every train step keeps
    the step down to the learning itself.
    """

    def __init__(self, train_rows, validation_rows=None):
        super().__init__()
        self.train_rows = train_rows
        self.validation_rows = validation_rows

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        # One pass for both: they share the rows' hidden input (the monitors' only
        # matrix product).
        f, pll = self.model._monitors(self.train_rows, seed=epoch)
        f_train = float(np.mean(f))
        logs["free_energy"] = f_train
        if pll is not None:
            logs["pseudo_log_likelihood"] = float(np.mean(pll))
        if self.validation_rows is not None:
            f_val = float(np.mean(self.model.free_energy(self.validation_rows)))
            logs["free_energy_gap"] = f_val - f_train


@keras.saving.register_keras_serializable(package="tfboltz")
class RBM(EnergyModel):
    """A restricted Boltzmann machine with any visible and hidden unit types.

    Energy, with ``scale(x) = x / sigma`` for Gaussian units and ``x`` otherwise::

        E(v, h) = E_v(v) + E_h(h) - scale(v) . W . scale(h)

    where ``E_v(v) = -b . v`` for Bernoulli and softmax units and
    ``sum_i (v_i - b_i)^2 / (2 sigma_i^2)`` for Gaussian units (likewise ``E_h`` with
    the hidden bias ``c``). So Bernoulli-Bernoulli is ``E = -b.v - c.h - v.W.h``.

    Learning follows the gradient of the log-likelihood,
    ``<-dE/dtheta>_data - <-dE/dtheta>_model``: the positive statistics come from the
    data with the hidden means, the negative ones from ``k`` steps of block Gibbs
    sampling started at the data (CD-k) or at persistent chains that live on between
    updates (PCD, Tieleman 2008). The difference is handed to the compiled Keras
    optimizer, so learning rate schedules, momentum and callbacks work as usual.

    Args:
        n_visible: number of visible units.
        n_hidden: number of hidden units.
        visible: unit type of the visible layer: "bernoulli", "gaussian", "softmax",
            "nrelu", or a `tfboltz.units` layer (e.g. ``GaussianUnits(learn_sigma=True)``).
        hidden: unit type of the hidden layer, as `visible`.
        learning: "cd" (contrastive divergence), "pcd" (persistent CD) or "pt"
            (persistent chains with parallel tempering, Desjardins et al. 2010; Bernoulli
            and softmax units only): each persistent chain is a ladder of
            `n_temperatures` replicas at inverse temperatures evenly spaced from 1 down
            to `min_beta` (the replica at ``beta`` samples ``p(v, h) ~ exp(-beta E)``);
            after every Gibbs sweep, neighbouring replicas swap states with the
            Metropolis probability (pairs (0, 1), (2, 3), ... and (1, 2), (3, 4), ... in
            turn), and the negative statistics come from the replicas at ``beta = 1``.
            The mean acceptance of the proposed swaps is logged as `swap_rate`.
        k: Gibbs steps per update (a per-epoch schedule: `tfboltz.callbacks.KScheduler`).
        n_chains: persistent chains for PCD (ladders for PT).
        n_temperatures: replicas per ladder for PT (1 makes PT plain PCD).
        min_beta: the lowest inverse temperature of a PT ladder, in [0, 1).
        sample_visible: sample the visible states in the Gibbs chain (otherwise use
            their means, the usual choice for CD).
        sample_hidden: sample the hidden states that drive the visible ones (otherwise
            use their means: a mean-field chain).
        l2: L2 weight decay on ``W``.
        l1: L1 weight decay on ``W``.
        sparsity_target: target mean activation of the hidden units.
        sparsity_cost: weight of the sparsity penalty (0 disables it).
        sparsity_damping: decay of the running estimate of the hidden activations.
        dropout: probability of dropping (zeroing) each visible unit of the data in
            the positive phase.
        max_norm: upper bound on the L2 norm of each hidden unit's incoming weights.
        weight_init_std: standard deviation of the Gaussian initial weights.
        visible_copies: 2 makes the hidden units see each visible unit twice (two
            copies with tied weights, so the hidden input is ``2 scale(v) W``): the
            bottom RBM of a DBM's greedy pretraining (`tfboltz.pretrain_dbm`).
        hidden_copies: 2 makes the visible units see each hidden unit twice: the top
            RBM of that pretraining. With copies, the weight statistics are those of
            one copy (a factor the learning rate absorbs), and `free_energy`,
            `pseudo_log_likelihood` and `energy` describe the model with the copies
            kept equal; AIS (`tfboltz.ais`) refuses such RBMs.
        matmul_dtype: dtype of the matrix products: "float32" (default), or
            "bfloat16" / "float16" for mixed precision. The weights and states are
            cast to it for each product and the product comes back as float32;
            everything else (unit means and samples, the statistics' sums, the
            gradients, the optimizer's update and the stored weights) stays float32.
            Fast on accelerators with bfloat16/float16 units (and on CPUs with AMX or
            AVX512-BF16); it rounds the weights to 8 (bfloat16) or 11 (float16)
            significant bits in every product. AIS and exact log Z always use float32.
        centering: True learns with the centered gradient (Montavon & Mueller 2012;
            Melchior, Fischer & Wiskott 2016; Bernoulli and softmax units, no
            copies): ``dW`` from ``(v - mu)`` and ``(h - lambda)``, each bias's
            gradient corrected by ``-dW lambda`` (visible) or ``-dW^T mu``
            (hidden): the centered RBM's update in the ordinary parameters, so
            everything else sees an ordinary RBM. The offsets ``mu``, ``lambda``
            are running averages of the data's visible means and hidden
            probabilities, started from the data by the first `fit`.
        centering_rate: the offsets' running-average rate, in (0, 1].
        seed: int seed; the same seed gives the same weights on the same device.

    Example:
        >>> rbm = tb.RBM(784, 500, learning="pcd", seed=0)
        >>> rbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9))
        >>> rbm.fit(x_train, batch_size=100, epochs=10, validation_data=x_val)
        >>> features = rbm.transform(x_test)
    """

    def __init__(self, n_visible, n_hidden, visible="bernoulli", hidden="bernoulli",
                 learning="cd", k=1, n_chains=100, sample_visible=False, sample_hidden=True,
                 l2=0.0, l1=0.0, sparsity_target=0.1, sparsity_cost=0.0, sparsity_damping=0.9,
                 dropout=0.0, max_norm=None, weight_init_std=0.01, visible_copies=1,
                 hidden_copies=1, matmul_dtype="float32", n_temperatures=10, min_beta=0.5,
                 centering=False, centering_rate=0.01, seed=None, **kwargs):
        super().__init__(**kwargs)
        for name, value in (("visible_copies", visible_copies), ("hidden_copies", hidden_copies)):
            if value not in (1, 2) or isinstance(value, bool):
                raise ValueError(f"Invalid value received for argument `{name}`. Expected 1 "
                                 f"or 2. Received: {name}={value!r}")
        self.visible_copies, self.hidden_copies = int(visible_copies), int(hidden_copies)
        self.n_visible = validation.positive_int("n_visible", n_visible)
        self.n_hidden = validation.positive_int("n_hidden", n_hidden)
        self.learning = validation.one_of("learning", learning, LEARNING_RULES)
        self.k_init = validation.positive_int("k", k)
        self.n_chains = validation.positive_int("n_chains", n_chains)
        self.n_temperatures = validation.positive_int("n_temperatures", n_temperatures)
        self.min_beta = samplers.check_min_beta(min_beta)
        self.sample_visible = bool(sample_visible)
        self.sample_hidden = bool(sample_hidden)
        self.l2 = validation.non_negative_float("l2", l2)
        self.l1 = validation.non_negative_float("l1", l1)
        self.sparsity_target = validation.non_negative_float("sparsity_target", sparsity_target)
        self.sparsity_cost = validation.non_negative_float("sparsity_cost", sparsity_cost)
        self.sparsity_damping = validation.non_negative_float("sparsity_damping",
                                                              sparsity_damping)
        self.dropout = validation.non_negative_float("dropout", dropout)
        if self.dropout >= 1:
            raise ValueError(
                f"Invalid value received for argument `dropout`. Expected a float in "
                f"[0, 1). Received: dropout={dropout!r}"
            )
        self.max_norm = None if max_norm is None else validation.non_negative_float(
            "max_norm", max_norm)
        self.weight_init_std = validation.non_negative_float("weight_init_std", weight_init_std)
        self.matmul_dtype = validation.one_of("matmul_dtype", matmul_dtype, MATMUL_DTYPES)
        self.seed = seed = validation.seed(seed)
        vis_seed = None if seed is None else seed + 1
        hid_seed = None if seed is None else seed + 2
        self.visible_layer = units_lib.get(visible, self.n_visible, vis_seed, name="visible")
        self.hidden_layer = units_lib.get(hidden, self.n_hidden, hid_seed, name="hidden")
        if self.learning == "pt":
            for side, layer in (("visible", self.visible_layer), ("hidden", self.hidden_layer)):
                if type(layer) not in TEMPERABLE_UNITS:
                    raise ValueError(
                        f"Expected {side} units of a type parallel tempering supports "
                        f"({', '.join(t.__name__ for t in TEMPERABLE_UNITS)}) with "
                        f"learning='pt'. Received: {side}={type(layer).__name__}")
        self.centering = bool(centering)
        self.centering_rate = centering_lib.check_rate(centering_rate)
        if self.centering and not (self.visible_layer.linear_bias
                                   and self.hidden_layer.linear_bias):
            raise ValueError(
                "Expected Bernoulli or softmax units with centering=True. Received: "
                f"visible={type(self.visible_layer).__name__}, "
                f"hidden={type(self.hidden_layer).__name__}")
        if self.centering and (self.visible_copies, self.hidden_copies) != (1, 1):
            raise ValueError(
                "Expected visible_copies=1 and hidden_copies=1 with centering=True. "
                f"Received: visible_copies={visible_copies}, hidden_copies={hidden_copies}")
        self.seed_generator = keras.random.SeedGenerator(seed, name="rbm_seed_generator")
        self.sampling_seed_generator = keras.random.SeedGenerator(
            0 if seed is None else seed, name="sampling_seed_generator")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_error")
        self.free_energy_tracker = keras.metrics.Mean(name="free_energy")
        self.pll_tracker = keras.metrics.Mean(name="pseudo_log_likelihood")
        self.swap_tracker = keras.metrics.Mean(name="swap_rate")
        self.build((None, self.n_visible))

    def build(self, input_shape=None):
        if self.built:
            return
        for layer, size in ((self.visible_layer, self.n_visible),
                            (self.hidden_layer, self.n_hidden)):
            if not layer.built:
                layer.build((None, size))
        self.kernel = self.add_weight(
            shape=(self.n_visible, self.n_hidden),
            initializer=keras.initializers.RandomNormal(stddev=self.weight_init_std,
                                                        seed=self.seed),
            name="kernel",
        )
        self.k = self.add_weight(shape=(), dtype="int32",
                                 initializer=keras.initializers.Constant(self.k_init),
                                 trainable=False, name="k")
        self.hidden_activity = self.add_weight(
            shape=(self.n_hidden,), initializer=keras.initializers.Constant(self.sparsity_target),
            trainable=False, name="hidden_activity")
        if self.learning in ("pcd", "pt"):
            # PT: temperature-major, rows [t n_chains, (t + 1) n_chains) at betas[t].
            self.persistent_chains = self.add_weight(
                shape=(self.n_chains * self._replicas_per_chain, self.n_visible),
                initializer="zeros", trainable=False, name="persistent_chains")
        # Centering offsets (visible, hidden); none without centering, as in older files.
        self.offsets = centering_lib.make_offsets(
            self, (self.n_visible, self.n_hidden), ("visible_offset", "hidden_offset")
        ) if self.centering else []
        self._make_state()
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update({
            "n_visible": self.n_visible, "n_hidden": self.n_hidden,
            "visible": keras.saving.serialize_keras_object(self.visible_layer),
            "hidden": keras.saving.serialize_keras_object(self.hidden_layer),
            "learning": self.learning, "k": self.k_init, "n_chains": self.n_chains,
            "sample_visible": self.sample_visible, "sample_hidden": self.sample_hidden,
            "l2": self.l2, "l1": self.l1, "sparsity_target": self.sparsity_target,
            "sparsity_cost": self.sparsity_cost, "sparsity_damping": self.sparsity_damping,
            "dropout": self.dropout, "max_norm": self.max_norm,
            "weight_init_std": self.weight_init_std, "visible_copies": self.visible_copies,
            "hidden_copies": self.hidden_copies, "matmul_dtype": self.matmul_dtype,
            "n_temperatures": self.n_temperatures, "min_beta": self.min_beta,
            "centering": self.centering, "centering_rate": self.centering_rate,
            "seed": self.seed,
        })
        return config

    @property
    def metrics(self):
        return [self.reconstruction_tracker, self.free_energy_tracker, self.pll_tracker,
                self.swap_tracker]

    @property
    def _replicas_per_chain(self):
        return self.n_temperatures if self.learning == "pt" else 1

    @property
    def betas(self):
        """The inverse temperatures of a PT ladder, from 1 down to `min_beta`."""
        return samplers.inverse_temperatures(self.n_temperatures, self.min_beta)

    # Conditionals ----------------------------------------------------------------

    def _product_kernel(self):
        """The kernel as products read it: the train step's low-precision copy, cast
        once a step (`precision.step_operands`), or the variable."""
        cast = getattr(self, "_step_kernel", None)
        return self.kernel if cast is None else cast

    def hidden_input(self, v):
        """``scale(v) @ W``: the input the hidden units get from `v` (times
        `visible_copies`)."""
        a = matmul(self.visible_layer.scale(v), self._product_kernel(), self.matmul_dtype)
        return a * float(self.visible_copies) if self.visible_copies != 1 else a

    def visible_input(self, h):
        """``scale(h) @ W.T``: the input the visible units get from `h` (times
        `hidden_copies`)."""
        u = matmul(self.hidden_layer.scale(h), self._product_kernel(), self.matmul_dtype,
                   transpose_b=True)
        return u * float(self.hidden_copies) if self.hidden_copies != 1 else u

    def call(self, inputs):
        """Hidden means given visible rows (what `transform` returns)."""
        return self.hidden_layer.mean(self.hidden_input(inputs))

    def _visible_step(self, h, seed):
        """One half-step down: visible means and the state the chain carries on."""
        u = self.visible_input(h)
        mean = self.visible_layer.mean(u)
        state = self.visible_layer.sample(u, seed) if self.sample_visible else mean
        return mean, state

    def _hidden_state(self, a, seed):
        if self.sample_hidden:
            return self.hidden_layer.sample(a, seed)
        return self.hidden_layer.mean(a)

    def _gibbs(self, v, a, steps, seed, clamp=None, clamp_values=None):
        """`steps` sweeps v -> h -> v from state `v` whose hidden input is `a`.

        Returns the final visible state, its means and its hidden input.
        """
        def body(i, v, v_mean, a):
            h = self._hidden_state(a, seed)
            v_mean, v = self._visible_step(h, seed)
            if clamp is not None:
                v = clamp * clamp_values + (1.0 - clamp) * v
                v_mean = clamp * clamp_values + (1.0 - clamp) * v_mean
            return i + 1, v, v_mean, self.hidden_input(v)

        _, v, v_mean, a = tf.while_loop(
            lambda i, *_: i < steps, body, (tf.constant(0, steps.dtype), v, v, a))
        return v, v_mean, a

    # Energies --------------------------------------------------------------------

    def _free_energy(self, v, a=None):
        a = self.hidden_input(v) if a is None else a
        return self.visible_layer.energy(v) - self.hidden_layer.log_partition(a)

    def free_energy(self, x, batch_size=1000):
        """Per-example free energy ``F(v) = -log sum_h exp(-E(v, h))`` (numpy)."""
        x = self.check_data(x)
        return np.concatenate([self._free_energy_fn(x[i:i + batch_size]).numpy()
                               for i in range(0, len(x), batch_size)] or [np.zeros(0)])

    @tf.function(reduce_retracing=True)
    def _free_energy_fn(self, v):
        return self._free_energy(v)

    def energy(self, v, h):
        """Per-example joint energy ``E(v, h)``."""
        coupling = tf.reduce_sum(self.hidden_input(v) * self.hidden_layer.scale(h), axis=-1)
        return self.visible_layer.energy(v) + self.hidden_layer.energy(h) - coupling

    def pseudo_log_likelihood(self, x, seed=0, batch_size=1000):
        """Stochastic pseudo-log-likelihood per example (binary visibles, numpy).

        ``n_visible * log sigmoid(F(v_flip) - F(v))`` with one visible unit per example,
        chosen at random (with `seed`), flipped: an unbiased estimate of
        ``sum_i log p(v_i | v_-i)``.
        """
        if not self._binary_visible:
            raise ValueError("Expected Bernoulli visible units for the pseudo-log-likelihood. "
                             f"Received: {type(self.visible_layer).__name__}")
        return self._monitors(x, seed, batch_size)[1]

    @tf.function(reduce_retracing=True)
    def _monitor_fn(self, v):
        if not self._binary_visible:
            return self._free_energy(v), tf.zeros((0,))
        a = self.hidden_input(v)
        f_v = self._free_energy(v, a)
        return f_v, self._pseudo_log_likelihood(v, a, f_v, self.sampling_seed_generator)

    def _monitors(self, x, seed, batch_size=1000):
        """`free_energy(x)` and `pseudo_log_likelihood(x, seed)` (None unless the
        visibles are binary) in one pass over the rows `x`."""
        x = self.check_data(x)
        if self._binary_visible:
            self.sampling_seed_generator.state.assign(
                np.array([seed, 1], dtype=self.sampling_seed_generator.state.dtype))
        parts = [self._monitor_fn(tf.constant(x[i:i + batch_size], tf.float32))
                 for i in range(0, len(x), batch_size)]
        f = np.concatenate([p[0].numpy() for p in parts])
        pll = np.concatenate([p[1].numpy() for p in parts]) if self._binary_visible else None
        return f, pll

    def _pseudo_log_likelihood(self, v, a, f_v, seed):
        """Stochastic pseudo-log-likelihood: ``D log sigmoid(F(v_flip) - F(v))`` with
        one random visible unit per example flipped (binary visibles)."""
        batch = tf.shape(v)[0]
        idx = keras.random.randint((batch,), 0, self.n_visible, seed=seed, dtype="int32")
        vi = tf.gather(v, idx, batch_dims=1)
        flipped = 1.0 - tf.round(vi)
        delta = flipped - vi
        a_flip = a + delta[:, None] * tf.gather(self.kernel, idx)
        e_flip = self.visible_layer.energy(v) - delta * tf.gather(self.visible_layer.bias, idx)
        f_flip = e_flip - self.hidden_layer.log_partition(a_flip)
        return self.n_visible * tf.math.log_sigmoid(f_flip - f_v)

    @property
    def _binary_visible(self):
        return isinstance(self.visible_layer, units_lib.BernoulliUnits)

    # Learning --------------------------------------------------------------------

    def _statistic_grads(self, v_pos, h_pos, v_neg, h_neg):
        """Gradient of the negative log-likelihood from positive and negative states.

        ``dW = scale(v-)' scale(h-) / N- - scale(v+)' scale(h+) / N+``; the unit
        parameters' gradients come from differentiating the layers' own energy terms
        (and the coupling, where a unit scale is learned).
        """
        n_pos = tf.cast(tf.shape(v_pos)[0], v_pos.dtype)
        n_neg = tf.cast(tf.shape(v_neg)[0], v_neg.dtype)
        vs_pos, hs_pos = self.visible_layer.scale(v_pos), self.hidden_layer.scale(h_pos)
        vs_neg, hs_neg = self.visible_layer.scale(v_neg), self.hidden_layer.scale(h_neg)
        if self.centering:
            mu, lam = centering_lib.values(self.offsets)
            vs_pos, vs_neg, hs_pos, hs_neg = vs_pos - mu, vs_neg - mu, hs_pos - lam, hs_neg - lam
        # One product of stacked statistics: the scaling falls on the small factors.
        grad_w = matmul(tf.concat([vs_neg, vs_pos], 0),
                        tf.concat([hs_neg / n_neg, -hs_pos / n_pos], 0), self.matmul_dtype,
                        transpose_a=True)
        layers = (self.visible_layer, self.hidden_layer)
        if all(layer.linear_bias for layer in layers):
            # E_l = -b . x: the gradient is <x>_model - <x>_data; no tape needed.
            unit_vars = [layer.bias for layer in layers]
            unit_grads = [tf.reduce_mean(neg, 0) - tf.reduce_mean(pos, 0)
                          for pos, neg in ((v_pos, v_neg), (h_pos, h_neg))]
            if self.centering:
                # b = b' - W lambda, c = c' - W^T mu: the biases follow the weights' step.
                below, above = centering_lib.bias_corrections(grad_w, mu, lam)
                unit_grads[0] += below
                unit_grads[1] += above
            return grad_w, dict(zip([id(u) for u in unit_vars], unit_grads))
        unit_vars = [*self.visible_layer.trainable_weights, *self.hidden_layer.trainable_weights]
        learned_scale = len(unit_vars) > 2
        # Without visible sampling, v_neg holds conditional means: the statistic of their
        # energy must include the conditional's spread (a learned Gaussian sigma).
        neg_visible_energy = (self.visible_layer.energy if self.sample_visible
                              else self.visible_layer.expected_energy)
        with tf.GradientTape() as tape:
            e = (tf.reduce_mean(self.visible_layer.energy(v_pos))
                 + tf.reduce_mean(self.hidden_layer.energy(h_pos))
                 - tf.reduce_mean(neg_visible_energy(v_neg))
                 - tf.reduce_mean(self.hidden_layer.energy(h_neg)))
            if learned_scale:
                w = tf.stop_gradient(self.kernel)
                e -= tf.reduce_mean(tf.reduce_sum(
                    tf.matmul(self.visible_layer.scale(v_pos), w) * self.hidden_layer.scale(h_pos),
                    -1))
                e += tf.reduce_mean(tf.reduce_sum(
                    tf.matmul(self.visible_layer.scale(v_neg), w) * self.hidden_layer.scale(h_neg),
                    -1))
        unit_grads = tape.gradient(e, unit_vars, unconnected_gradients="zero")
        return grad_w, dict(zip([id(u) for u in unit_vars], unit_grads))

    def train_step(self, data):
        (self._step_kernel,) = precision.step_operands([self.kernel], self.matmul_dtype) or [None]
        try:
            return self._train_step(data)
        finally:
            self._step_kernel = None

    def _train_step(self, data):
        v0 = tf.convert_to_tensor(keras.utils.unpack_x_y_sample_weight(data)[0])
        v0 = tf.cast(v0, self.kernel.dtype)
        self.check_batch(v0)
        seed = self.step_seed(self.seed_generator)
        if self.dropout > 0:
            keep = keras.random.uniform(tf.shape(v0), seed=seed) >= self.dropout
            v0 = v0 * tf.cast(keep, v0.dtype)
        a0 = self.hidden_input(v0)
        h0 = self.hidden_layer.mean(a0)
        if self.learning == "pcd":
            chains = distribute.chain_share(tf.convert_to_tensor(self.persistent_chains))
            v_neg, _, a_neg = self._gibbs(chains, self.hidden_input(chains), self.k, seed)
            recon, _ = self._visible_step(self._hidden_state(a0, seed), seed)
            new_chains = v_neg
        elif self.learning == "pt":
            v_neg, a_neg, new_chains = self._tempered_negative_phase(seed)
            recon, _ = self._visible_step(self._hidden_state(a0, seed), seed)
        else:
            h_first = self._hidden_state(a0, seed)
            recon, v1 = self._visible_step(h_first, seed)
            a1 = self.hidden_input(v1)
            v_neg, _, a_neg = self._gibbs(v1, a1, self.k - 1, seed)
            new_chains = v_neg
        if self.learning != "cd":  # every replica's chains: the global negative phase
            v_neg, a_neg = distribute.all_chains(v_neg, a_neg)
        h_neg = self.hidden_layer.mean(a_neg)

        grad_w, unit_grads = self._statistic_grads(v0, h0, v_neg, h_neg)
        # |dW_ij| is at most this, from the small statistics alone (see _apply_if_finite).
        mu, lam = centering_lib.values(self.offsets) if self.centering else (0., 0.)
        bound = tf.add_n([tf.reduce_max(tf.abs(layer.scale(t) - mu))
                          * tf.reduce_max(tf.abs(self.hidden_layer.scale(h) - lam))
                          for layer, t, h in ((self.visible_layer, v0, h0),
                                              (self.visible_layer, v_neg, h_neg))])
        if self.l2:
            grad_w += self.l2 * self.kernel
            bound += self.l2 * tf.reduce_max(tf.abs(self.kernel))
        if self.l1:
            grad_w += self.l1 * tf.sign(self.kernel)
            bound += self.l1
        activity = self.hidden_activity
        if self.sparsity_cost:
            activity = (self.sparsity_damping * self.hidden_activity
                        + (1.0 - self.sparsity_damping) * tf.reduce_mean(h0, 0))
            penalty = self.sparsity_cost * (activity - self.sparsity_target)
            unit_grads[id(self.hidden_layer.bias)] += penalty
            grad_w += tf.reduce_mean(self.visible_layer.scale(v0), 0)[:, None] * penalty[None, :]
            bound += tf.reduce_max(tf.abs(self.visible_layer.scale(v0))) * tf.reduce_max(
                tf.abs(penalty))
        unit_grads[id(self.kernel)] = grad_w
        variables = self.trainable_variables
        grads = [unit_grads[id(v)] for v in variables]
        batch_means = ([tf.reduce_mean(v0, 0), tf.reduce_mean(h0, 0)] if self.centering
                       else [])

        def after_update(state):
            activity, chains = state[:2]
            centering_lib.update_offsets(self.offsets, state[2:], self.centering_rate)
            if self.max_norm is not None:
                self._clip_column_norms(self.kernel, self.max_norm)
            if self.sparsity_cost:
                self.hidden_activity.assign(activity)
            if self.learning == "pcd":
                self.persistent_chains.assign(chains)
            elif self.learning == "pt":
                self.persistent_chains.assign(
                    samplers.from_ladders(chains, self.n_temperatures, self.n_visible))

        self._apply_if_finite(grads, variables, [h0, h_neg, v_neg], after_update,
                              grad_bounds={id(self.kernel): bound * self.n_visible * self.n_hidden},
                              state=[activity, new_chains, *batch_means],
                              merge=["mean", "concat"] + ["mean"] * len(batch_means))
        self.reconstruction_tracker.update_state(tf.reduce_mean(tf.square(v0 - recon), -1))
        logs = {"reconstruction_error": self.reconstruction_tracker.result()}
        if self.learning == "pt":
            logs["swap_rate"] = self.swap_tracker.result()
        return logs

    # Parallel tempering ------------------------------------------------------------

    def _tempered_free_energy(self, v, a, beta):
        """``F_beta(v) = beta E_v(v) - log sum_h exp(beta (a + c) . h)`` per row."""
        return (beta[:, 0] * self.visible_layer.energy(v)
                - self.hidden_layer.log_partition(
                    samplers.tempered_input(self.hidden_layer, a, beta)))

    def _tempered_negative_phase(self, seed):
        """`k` tempered Gibbs sweeps of this replica's ladders, each followed by a round
        of replica swaps. Returns the ``beta = 1`` states, their hidden input, and the
        ladders as rows ``(n, T V)`` to store."""
        t_count, n_vis = self.n_temperatures, self.n_visible
        v, m = samplers.ladder_view(self.persistent_chains, t_count)  # row i T + t
        betas = tf.constant(self.betas)
        beta = tf.tile(betas, [m])[:, None]
        beta_up = tf.tile(tf.concat([betas[1:], betas[-1:]], 0), [m])[:, None]
        beta_down = tf.tile(tf.concat([betas[:1], betas[:-1]], 0), [m])[:, None]
        start = tf.cast(self.optimizer.iterations, "int32") * self.k

        def swap(v, a, parity):
            f_own = tf.reshape(self._tempered_free_energy(v, a, beta), (m, t_count))
            f_up = tf.reshape(self._tempered_free_energy(v, a, beta_up), (m, t_count))
            f_down = tf.reshape(self._tempered_free_energy(v, a, beta_down), (m, t_count))
            # Pair (t, t + 1): log of p_t(v_{t+1}) p_{t+1}(v_t) / (p_t(v_t) p_{t+1}(v_{t+1})).
            log_r = (f_own[:, :-1] + f_own[:, 1:] - f_down[:, 1:] - f_up[:, :-1])
            v, a = samplers.swap_round(log_r, [v, a], parity, seed, self.swap_tracker)
            return v, a

        def body(i, v, a):
            h_in = samplers.tempered_input(self.hidden_layer, a, beta)
            h = self.hidden_layer.sample(h_in, seed) if self.sample_hidden else \
                self.hidden_layer.mean(h_in)
            u_in = samplers.tempered_input(self.visible_layer, self.visible_input(h), beta)
            v = (self.visible_layer.sample(u_in, seed) if self.sample_visible
                 else self.visible_layer.mean(u_in))
            a = self.hidden_input(v)
            if t_count > 1:
                v, a = swap(v, a, (start + i) % 2)
            return i + 1, v, a

        _, v, a = tf.while_loop(lambda i, *_: i < self.k, body,
                                (tf.constant(0, "int32"), v, self.hidden_input(v)))
        v3 = tf.reshape(v, (m, t_count, n_vis))
        a3 = tf.reshape(a, (m, t_count, -1))
        return v3[:, 0], a3[:, 0], tf.reshape(v3, (m, t_count * n_vis))

    def test_step(self, data):
        v = tf.cast(keras.utils.unpack_x_y_sample_weight(data)[0], self.kernel.dtype)
        a = self.hidden_input(v)
        recon = self.visible_layer.mean(self.visible_input(self.hidden_layer.mean(a)))
        f_v = self._free_energy(v, a)
        self.reconstruction_tracker.update_state(tf.reduce_mean(tf.square(v - recon), -1))
        self.free_energy_tracker.update_state(f_v)
        if self._binary_visible:
            self.pll_tracker.update_state(
                self._pseudo_log_likelihood(v, a, f_v, self.seed_generator))
        return {m.name: m.result() for m in self.metrics
                if m is not self.swap_tracker
                and (m is not self.pll_tracker or self._binary_visible)}

    def _epoch_callbacks(self, monitor_rows, validation_rows):
        if monitor_rows is None:
            return []
        return [EpochMonitor(monitor_rows, validation_rows)]

    def _init_from_data(self, x):
        self.visible_layer.init_bias_from_data(x)
        if self.centering:
            rows = x[np.random.default_rng(self.seed).permutation(len(x))[:CENTERING_INIT_ROWS]]
            self.offsets[0].assign(rows.mean(0))
            self.offsets[1].assign(tf.reduce_mean(
                self.hidden_layer.mean(self.hidden_input(tf.constant(rows))), 0))
        if self.learning in ("pcd", "pt"):
            rng = np.random.default_rng(self.seed)
            self.persistent_chains.assign(
                x[rng.integers(0, len(x), self.n_chains * self._replicas_per_chain)])

    # Inference and sampling ----------------------------------------------------------

    def serving_endpoints(self):
        """The endpoints of every model (`EnergyModel.serving_endpoints`) and
        ``free_energy(x)``."""
        x_spec = tf.TensorSpec((None, self.n_visible), tf.as_dtype(self.dtype), name="x")
        return [*super().serving_endpoints(), ("free_energy", self._free_energy_fn, [x_spec])]

    def classifier_blocks(self, n_mean_field=None):
        """The hidden Dense layer of `to_sequential`: the up-pass ``scale(v) W + c``."""
        if self.visible_copies != 1 or self.hidden_copies != 1:
            raise ValueError("Expected an RBM without copied units for a classifier. "
                             f"Received: visible_copies={self.visible_copies}, "
                             f"hidden_copies={self.hidden_copies}")
        kernel = classifier.visible_scaled(self.visible_layer, self.kernel)
        return [], [(self.hidden_layer, kernel, self.hidden_layer.bias)]

    def transform(self, x, batch_size=1000):
        """Hidden means ``E[h | v]`` for each row of `x` (numpy)."""
        x = self.check_data(x)
        return self.predict(x, batch_size=batch_size, verbose=0)

    def reconstruct(self, x, batch_size=1000):
        """Visible means after one deterministic up-down pass (numpy)."""
        x = self.check_data(x)
        return np.concatenate([self._reconstruct_fn(x[i:i + batch_size]).numpy()
                               for i in range(0, len(x), batch_size)])

    @tf.function(reduce_retracing=True)
    def _reconstruct_fn(self, v):
        return self.visible_layer.mean(self.visible_input(self.call(v)))

    def sample(self, n=None, steps=1000, init=None, clamp=None, seed=None, means=True,
               verbose="auto"):
        """Draw visible samples by block Gibbs sampling.

        Args:
            n: number of chains (needed when `init` is None).
            steps: Gibbs sweeps.
            init: starting visible rows (from data); default: noise drawn from the
                visible units with zero input.
            clamp: boolean mask of shape `(n_visible,)` or `(n, n_visible)`: the
                units where it is True keep their `init` values (conditional sampling,
                e.g. completing the lower half of a digit from its upper half).
            seed: int seed for a reproducible draw (the same as the exported
                SavedModel's `sample` / `complete` with that seed); None takes a fresh
                one from `sampling_seed_generator`, never from the training generator.
            means: return the final visible means (probabilities for binary units,
                smoother to look at) rather than the sampled states.
            verbose: "auto" (a progress bar on a terminal or in a notebook), 0 or 1
                (see `tfboltz.progress`); the samples are the same either way.

        Returns:
            numpy array ``(n, n_visible)``.
        """
        steps, n, v0, mask, seed, verbose = self._sampling_arguments(
            n, steps or 0, init, clamp, seed, verbose, self.sampling_seed_generator)
        if not verbose:
            out = self._sample_fn(v0, mask, tf.constant(steps), seed, init is None,
                                  bool(means))
            return out.numpy()
        chains = progress.run_sweeps(
            lambda chains, sweeps: self._sample_sweeps_fn(chains, mask, sweeps, seed),
            self._sample_start_fn(v0, seed, init is None), steps, verbose)
        return self._sample_end(chains, bool(means)).numpy()

    @tf.function(reduce_retracing=True)
    def _sample_fn(self, v0, mask, steps, seed, from_noise, means):
        """`steps` Gibbs sweeps from `v0` (or from noise), the units where `mask` is 1
        clamped to `v0`: a pure function of its inputs and the int64 `seed` (draw j
        uses ``[seed, j]``), shared by `sample` and the exported SavedModel."""
        chains = self._sample_sweeps(self._sample_start(v0, seed, from_noise), mask, steps,
                                     seed)
        return self._sample_end(chains, means)

    def _sample_start(self, v0, seed, from_noise):
        """The chains of `_sample_fn` before its first sweep: ``(v0, count, v,
        v_mean)``, with `count` the index of the next draw of `seed`."""
        stream = SeedStream(seed)
        if from_noise:
            v0 = self.visible_layer.sample(tf.zeros_like(v0), stream)
        return v0, stream.count, v0, v0

    def _sample_sweeps(self, chains, mask, steps, seed):
        """`steps` Gibbs sweeps of the chains of `_sample_start`."""
        v0, count, v, v_mean = chains

        def body(i, count, v, v_mean):
            draws = SeedStream(seed, count)
            h = self._hidden_state(self.hidden_input(v), draws)
            v_mean, v = self._visible_step(h, draws)
            v = mask * v0 + (1.0 - mask) * v
            v_mean = mask * v0 + (1.0 - mask) * v_mean
            return i + 1, draws.count, v, v_mean

        _, count, v, v_mean = tf.while_loop(lambda i, *_: i < steps, body,
                                            (tf.constant(0, steps.dtype), count, v, v_mean))
        return v0, count, v, v_mean

    @staticmethod
    def _sample_end(chains, means):
        return chains[3] if means else chains[2]

    # `sample` with a progress bar runs these as graphs of their own, the sweeps in
    # chunks between updates of the bar.
    _sample_start_fn = tf.function(_sample_start, reduce_retracing=True)
    _sample_sweeps_fn = tf.function(_sample_sweeps, reduce_retracing=True)
