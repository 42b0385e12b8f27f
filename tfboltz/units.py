"""Stochastic units: one Keras layer per unit type.

A layer of stochastic units holds its own parameters (a bias per unit, and a
standard deviation for Gaussian units) and knows four things about itself:

* ``mean(inputs)``: the expected state given the input from the connected layers,
* ``sample(inputs, seed)``: a draw from the conditional distribution,
* ``energy(x)``: its own term of the joint energy (the terms that involve this
  layer alone), per example,
* ``log_partition(inputs)``: ``log sum_x exp(<scale(x), inputs> - energy(x))`` per
  example, the term that summing this layer out adds to a free energy.

Here ``inputs`` is the linear input from the other layers (``h @ W.T`` for a
visible layer, ``scale(v) @ W`` for a hidden one), without this layer's bias.
The coupling term of the energy is ``-scale(v) . W . scale(h)``; ``scale`` is the
identity except for Gaussian units, where it divides by the standard deviation.
"""

import math

import keras
import numpy as np
from keras import ops

from tfboltz import validation

_SQRT_2PI_LOG = 0.5 * math.log(2.0 * math.pi)


def _as_seed(seed, fallback):
    """A seed for `keras.random`: an explicit int or SeedGenerator, else the layer's."""
    return fallback if seed is None else seed


class StochasticUnits(keras.layers.Layer):
    """Base class of a layer of stochastic units.

    Args:
        units: number of units; `None` lets the owning model set it at build time.
        seed: int seed of this layer's `keras.random.SeedGenerator`.
        **kwargs: passed to `keras.layers.Layer`.

    Calling the layer on an input returns `mean(inputs)`.
    """

    #: Whether exact enumeration over this layer's states is possible.
    enumerable = False
    #: Whether data must lie in [0, 1].
    unit_interval = False
    #: Whether the bias is the only parameter and enters the energy as ``-b . x``,
    #: so that its likelihood gradient is a difference of mean states.
    linear_bias = True

    def __init__(self, units=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if units is not None:
            units = validation.positive_int("units", units)
        self.units = units
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape=None):
        if self.units is None:
            if input_shape is None:
                raise ValueError(
                    f"Expected `units` to be set before building {self.name}. Received: units=None"
                )
            self.units = int(input_shape[-1])
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs):
        return self.mean(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "seed": self.seed})
        return config

    def b(self, like):
        """The bias in the dtype of `like` (float64 enumeration uses the same code)."""
        return ops.cast(self.bias, like.dtype)

    def bias_as_input(self, delta):
        """The input that shifts the pre-activation as a bias change `delta` would."""
        return delta

    # Defaults shared by units whose state multiplies W directly.
    def scale(self, x):
        """The factor of a state that multiplies the weights (identity here)."""
        return x

    def energy(self, x):
        """Per-example energy of this layer alone: ``-bias . x``."""
        return -ops.sum(x * self.b(x), axis=-1)

    def expected_energy(self, mean):
        """``E[energy(x)]`` over the conditional whose mean is `mean`, the conditional
        held fixed: the statistic of this layer's energy term for a state that is a
        mean, not a sample (a chain without visible sampling). ``energy(mean)`` here,
        exact for an energy linear in ``x`` (for NReLU units, up to a term free of
        parameters).
        """
        return self.energy(mean)

    def validate_data(self, x, name="x"):
        """Raise a `ValueError` if `x` (numpy) is not a valid state of these units."""
        lo, hi = float(np.min(x)), float(np.max(x))
        if self._out_of_range(lo, hi):
            raise ValueError(self._range_message(name, lo, hi))

    def _out_of_range(self, lo, hi):
        """Whether states whose least and largest values are `lo` and `hi` (floats or
        tensors) lie outside what these units take: one rule for `validate_data` and
        `batch_fault`."""
        return ops.logical_and(self.unit_interval, ops.logical_or(lo < 0, hi > 1))

    def _range_message(self, name, lo, hi):
        return (f"Expected values in [0, 1] in `{name}` for {type(self).__name__}. "
                f"Received: values between {lo:.4g} and {hi:.4g}")

    #: Codes of `batch_fault`.
    FAULTS = ("none", "not finite", "out of range", "groups off")

    def batch_fault(self, x):
        """`validate_data` inside a train step: ``[code, min, max]`` of the batch `x`
        (float32 tensor), code an index of `FAULTS` (0: a valid batch). A few
        reductions over the batch, cheap beside its matrix products."""
        lo, hi = ops.min(x), ops.max(x)
        code = ops.where(
            ops.logical_not(ops.all(ops.isfinite(x))), 1,
            ops.where(self._out_of_range(lo, hi), 2, ops.where(self._groups_off(x), 3, 0)))
        return ops.stack([ops.cast(code, x.dtype), lo, hi])

    def _groups_off(self, x):
        """True if `x` breaks a constraint beyond range (the sum of a softmax group)."""
        return False

    def fault_message(self, fault, name="x"):
        """The `ValueError` words for a batch that `batch_fault` refused."""
        code, lo, hi = int(fault[0]), float(fault[1]), float(fault[2])
        what = type(self).__name__
        if code == 1:
            return f"Expected finite values in `{name}`. Received: NaN or inf entries"
        if code == 2:
            return self._range_message(name, lo, hi)
        return (f"Expected each group of softmax units in `{name}` to sum to 1 ({what}). "
                "Received: a group sum farther than 1e-4 from 1")

    def init_bias_from_data(self, x):
        """Set the bias from data so that the layer alone matches the data means."""
        raise NotImplementedError

    def states(self):
        """All joint states of this layer (enumerable units only), as a float32 array."""
        raise ValueError(
            f"Expected units whose states can be enumerated (Bernoulli or Softmax). "
            f"Received: {type(self).__name__}"
        )


@keras.saving.register_keras_serializable(package="tfboltz")
class BernoulliUnits(StochasticUnits):
    """Binary units, ``p(x_i = 1 | inputs) = sigmoid(inputs_i + b_i)``.

    Energy term ``-b . x``; summing a layer out gives ``sum_i softplus(inputs_i + b_i)``.
    """

    enumerable = True
    unit_interval = True

    def mean(self, inputs):
        return ops.sigmoid(inputs + self.b(inputs))

    def sample(self, inputs, seed=None):
        return self.sample_from_mean(self.mean(inputs), seed)

    def sample_from_mean(self, mean, seed=None):
        u = keras.random.uniform(ops.shape(mean), seed=_as_seed(seed, self.seed_generator))
        return ops.cast(u < mean, mean.dtype)

    def log_partition(self, inputs):
        return ops.sum(ops.softplus(inputs + self.b(inputs)), axis=-1)

    def entropy(self, mean):
        """Per-example entropy of independent units with these means (nats)."""
        m = ops.clip(mean, 1e-7, 1 - 1e-7)
        return -ops.sum(m * ops.log(m) + (1 - m) * ops.log(1 - m), axis=-1)

    def init_bias_from_data(self, x):
        p = np.clip(np.mean(np.asarray(x, np.float64), axis=0), 1e-3, 1 - 1e-3)
        self.bias.assign(np.log(p / (1 - p)).astype("float32"))

    def states(self):
        n = self.units
        if n > 24:
            raise ValueError(
                f"Expected at most 24 Bernoulli units to enumerate. Received: units={n}"
            )
        codes = np.arange(2**n, dtype=np.int64)[:, None]
        return ((codes >> np.arange(n)) & 1).astype("float32")


class _AtLeast(keras.constraints.Constraint):
    """Clips a weight to ``>= floor`` after each optimizer update."""

    def __init__(self, floor):
        self.floor = float(floor)

    def __call__(self, w):
        return ops.maximum(w, ops.cast(self.floor, w.dtype))

    def get_config(self):
        return {"floor": self.floor}


@keras.saving.register_keras_serializable(package="tfboltz")
class GaussianUnits(StochasticUnits):
    """Real-valued units with per-unit standard deviation ``sigma``.

    ``p(x_i | inputs) = N(b_i + sigma_i * inputs_i, sigma_i^2)``, from the energy term
    ``sum_i (x_i - b_i)^2 / (2 sigma_i^2)`` and the coupling ``-(x / sigma) . W . h``.

    A fixed sigma is ``exp(log_sigma)``, a non-trainable weight. A learned sigma is
    trained through ``log_variance = log sigma^2`` (Cho, Ilin & Raiko 2011), with a
    floor: ``sigma_i = exp(max(log_variance_i, 2 log min_sigma) / 2)``, and a Keras
    optimizer clips the weight to the floor after each update (so a unit at the floor
    can leave it). The energy is the same either way; Cho et al.'s coupling
    ``-(x / sigma^2) . W . h`` is not used (its weight gradient grows as
    ``1 / sigma^2``, and it diverged where this one trains).

    What keeps a learned sigma stable:

    * The floor: the bias's curvature is ``1 / sigma^2``, so a (nearly) constant
      column, whose data standard deviation is ~0, makes the first updates diverge.
      With SGD and momentum ``mu``, ``learning_rate / min_sigma^2`` must stay below
      about ``2 (1 + mu)``. PyDeep bounds sigma from below in the same way.
    * ``log sigma^2`` rather than ``log sigma``: an SGD step on it moves ``log sigma``
      a quarter as far. The push up on ``log sigma`` grows with the square of a
      column's outliers, the pull down is about 1 per update, so sparse columns
      (values 40 standard deviations out) kicked sigma up faster than it came back.
    * `expected_energy` for a chain that carries visible means rather than samples:
      otherwise the negative statistic of ``(x - b)^2`` lacks the conditional's
      variance and sigma grows at every update.

    Saved files hold ``log sigma`` in either case, as they did before
    ``log_variance``, so older files load; `get_weights` returns the weights as they
    are (``log sigma^2`` for a learned sigma).

    Args:
        units: number of units.
        sigma: initial standard deviation (scalar, the same for every unit).
        learn_sigma: whether sigma is trained (through ``log sigma^2``).
        min_sigma: floor on a learned sigma, in the data's units (the default suits
            data standardised per column, as Gaussian visibles expect); unused when
            sigma is fixed.
        seed: seed of the layer's generator.

    Example:
        >>> visible = tb.units.GaussianUnits(learn_sigma=True, min_sigma=0.1)
        >>> rbm = tb.RBM(64, 32, visible=visible, seed=0)
    """

    linear_bias = False

    def __init__(self, units=None, sigma=1.0, learn_sigma=False, min_sigma=0.1, seed=None,
                 **kwargs):
        super().__init__(units=units, seed=seed, **kwargs)
        for name, value in (("sigma", sigma), ("min_sigma", min_sigma)):
            if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
                raise ValueError(
                    f"Invalid value received for argument `{name}`. Expected a positive "
                    f"float. Received: {name}={value}"
                )
        if learn_sigma and sigma < min_sigma:
            raise ValueError(
                f"Expected `sigma` to be at least `min_sigma` with learn_sigma=True. "
                f"Received: sigma={sigma}, min_sigma={min_sigma}"
            )
        self.sigma = float(sigma)
        self.learn_sigma = bool(learn_sigma)
        self.min_sigma = float(min_sigma)

    def build(self, input_shape=None):
        super().build(input_shape)
        if self.learn_sigma:
            floor = 2.0 * math.log(self.min_sigma)
            self.log_variance = self.add_weight(
                shape=(self.units,),
                initializer=keras.initializers.Constant(2.0 * math.log(self.sigma)),
                constraint=_AtLeast(floor),
                name="log_variance",
            )
        else:
            self.log_sigma = self.add_weight(
                shape=(self.units,),
                initializer=keras.initializers.Constant(math.log(self.sigma)),
                trainable=False,
                name="log_sigma",
            )

    def get_config(self):
        config = super().get_config()
        config.update({"sigma": self.sigma, "learn_sigma": self.learn_sigma,
                       "min_sigma": self.min_sigma})
        return config

    def save_own_variables(self, store):
        if not self.learn_sigma:
            super().save_own_variables(store)
            return
        # The layout Keras writes for a fixed sigma, and wrote before log_variance.
        store["0"] = self.bias
        store["1"] = 0.5 * ops.convert_to_numpy(self.log_variance)

    def load_own_variables(self, store):
        if not self.learn_sigma:
            super().load_own_variables(store)
            return
        if len(store.keys()) != 2:
            raise ValueError(
                f"Expected 2 variables (bias, log sigma) for {self.name}. "
                f"Received: {len(store.keys())} variables"
            )
        self.bias.assign(store["0"])
        self.log_variance.assign(2.0 * np.asarray(store["1"], self.log_variance.dtype))

    def std(self, like=None):
        """The standard deviations ``sigma`` (in the dtype of `like`, if given)."""
        if self.learn_sigma:
            floor = 2.0 * math.log(self.min_sigma)
            s = ops.exp(0.5 * ops.maximum(self.log_variance, floor))
        else:
            s = ops.exp(self.log_sigma)
        return s if like is None else ops.cast(s, like.dtype)

    def scale(self, x):
        return x / self.std(x)

    def bias_as_input(self, delta):
        return delta / self.std(delta)

    def mean(self, inputs):
        return self.b(inputs) + self.std(inputs) * inputs

    def sample(self, inputs, seed=None):
        return self.sample_from_mean(self.mean(inputs), seed)

    def sample_from_mean(self, mean, seed=None):
        noise = keras.random.normal(ops.shape(mean), seed=_as_seed(seed, self.seed_generator))
        return mean + self.std(mean) * noise

    def energy(self, x):
        return ops.sum(ops.square(x - self.b(x)) / (2.0 * ops.square(self.std(x))), axis=-1)

    def expected_energy(self, mean):
        """``E[energy(x)]`` over ``N(mean, sigma'^2)``, ``sigma'`` the current sigma.

        ``energy(mean) + sum_i sigma_i'^2 / (2 sigma_i^2)``, with ``sigma'`` under
        `stop_gradient`: its value is ``energy(mean) + units / 2`` and its gradient is
        the mean over samples of the gradient of `energy`, ``d/d log sigma =
        -((mean - b)^2 + sigma^2) / sigma^2``; `energy(mean)` lacks the ``-1`` per
        unit, and a learned sigma fed with it grows at every update.
        """
        if not self.learn_sigma:
            return self.energy(mean)
        s = self.std(mean)
        return self.energy(mean) + ops.sum(0.5 * ops.square(ops.stop_gradient(s) / s), axis=-1)

    def log_partition(self, inputs):
        s = self.std(inputs)
        terms = self.b(inputs) * inputs / s + 0.5 * ops.square(inputs) + ops.log(s) + _SQRT_2PI_LOG
        return ops.sum(terms, axis=-1)

    def init_bias_from_data(self, x):
        """Set the bias to the data means and, for a learned sigma, sigma to the data's
        standard deviations, at least `min_sigma` (a constant column gets the floor)."""
        x = np.asarray(x, np.float64)
        self.bias.assign(np.mean(x, axis=0).astype("float32"))
        if self.learn_sigma:
            sigma = np.maximum(np.std(x, axis=0), self.min_sigma)
            self.log_variance.assign((2.0 * np.log(sigma)).astype("float32"))


@keras.saving.register_keras_serializable(package="tfboltz")
class SoftmaxUnits(StochasticUnits):
    """Groups of one-hot (multinomial) units: exactly one unit of each group is on.

    ``p(x_g = e_k | inputs) = softmax(inputs_g + b_g)_k``; energy term ``-b . x``;
    summing a group out gives ``logsumexp(inputs_g + b_g)``.

    Args:
        units: number of units, a multiple of `group_size`.
        group_size: units per one-hot group (`None`: one group of all units).
    """

    enumerable = True
    unit_interval = True

    def __init__(self, units=None, group_size=None, seed=None, **kwargs):
        super().__init__(units=units, seed=seed, **kwargs)
        if group_size is not None:
            group_size = validation.positive_int("group_size", group_size)
        self.group_size = group_size
        self._check_groups()

    def _check_groups(self):
        if self.units is not None and self.group_size is not None:
            if self.units % self.group_size:
                raise ValueError(
                    f"Expected `units` to be a multiple of `group_size`. "
                    f"Received: units={self.units}, group_size={self.group_size}"
                )

    def build(self, input_shape=None):
        super().build(input_shape)
        self._check_groups()

    def get_config(self):
        config = super().get_config()
        config["group_size"] = self.group_size
        return config

    @property
    def _group(self):
        return self.group_size or self.units

    def _grouped(self, x):
        return ops.reshape(x, (-1, self.units // self._group, self._group))

    def mean(self, inputs):
        grouped = self._grouped(inputs + self.b(inputs))
        return ops.reshape(ops.softmax(grouped, axis=-1), (-1, self.units))

    def sample(self, inputs, seed=None):
        logits = ops.reshape(inputs + self.b(inputs), (-1, self._group))
        idx = keras.random.categorical(
            logits, 1, seed=_as_seed(seed, self.seed_generator), dtype="int32"
        )[:, 0]
        return ops.reshape(ops.one_hot(idx, self._group, dtype=logits.dtype), (-1, self.units))

    def log_partition(self, inputs):
        return ops.sum(ops.logsumexp(self._grouped(inputs + self.b(inputs)), axis=-1), axis=-1)

    def entropy(self, mean):
        """Per-example entropy of the one-hot groups with these means (nats)."""
        return -ops.sum(mean * ops.log(ops.clip(mean, 1e-7, 1.0)), axis=-1)

    def _groups_off(self, x):
        return ops.any(ops.abs(ops.sum(self._grouped(x), axis=-1) - 1.0) > 1.1e-4)

    def validate_data(self, x, name="x"):
        super().validate_data(x, name)
        sums = np.asarray(x, np.float64).reshape(len(x), -1, self._group).sum(-1)
        if not np.allclose(sums, 1.0, atol=1e-4):
            raise ValueError(
                f"Expected each group of {self._group} softmax units in `{name}` to sum to 1. "
                f"Received: group sums between {sums.min():.4g} and {sums.max():.4g}"
            )

    def init_bias_from_data(self, x):
        p = np.maximum(np.mean(np.asarray(x, np.float64), axis=0), 1e-3)
        self.bias.assign(np.log(p).astype("float32"))

    def states(self):
        g, n_groups = self._group, self.units // self._group
        if g**n_groups > 2**24:
            raise ValueError(
                f"Expected at most 2**24 joint softmax states to enumerate. "
                f"Received: {n_groups} groups of {g}"
            )
        eye = np.eye(g, dtype="float32")
        grids = np.meshgrid(*[np.arange(g)] * n_groups, indexing="ij")
        idx = np.stack([c.ravel() for c in grids], axis=1)
        return eye[idx].reshape(len(idx), self.units)


@keras.saving.register_keras_serializable(package="tfboltz")
class ConcatUnits(StochasticUnits):
    """Several groups of units side by side in one layer, e.g. the pixels-or-features
    and the one-hot label of a DBN's top RBM (Hinton, Osindero & Teh 2006).

    The parts are Bernoulli or softmax units (their bias enters linearly, so the
    layer's energy is ``-b . x`` over all parts). The layer owns one bias vector; each
    part computes its mean, samples, log-partition and entropy on its slice.

    Args:
        parts: units layers (or their configs), each with its size set.
    """

    enumerable = False
    unit_interval = True

    def __init__(self, parts=None, seed=None, **kwargs):
        kwargs.pop("units", None)
        parts = [get(p) for p in (parts or [])]
        if not parts:
            raise ValueError("Expected at least one part for ConcatUnits. Received: parts=[]")
        for part in parts:
            if not isinstance(part, (BernoulliUnits, SoftmaxUnits)) or part.units is None:
                raise ValueError(
                    "Expected Bernoulli or softmax parts with their sizes set for "
                    f"ConcatUnits. Received: {type(part).__name__}(units={part.units})")
        super().__init__(units=sum(p.units for p in parts), seed=seed, **kwargs)
        self.parts = parts
        self.sizes = [p.units for p in parts]

    def build(self, input_shape=None):
        super().build(input_shape)
        for part in self.parts:
            if not part.built:
                part.build((None, part.units))
            part.bias.assign(np.zeros(part.units, "float32"))  # the layer's bias rules
            part.trainable = False

    def get_config(self):
        config = super().get_config()
        config.pop("units", None)
        config["parts"] = [keras.saving.serialize_keras_object(p) for p in self.parts]
        return config

    def split(self, x):
        """`x` cut into one slice per part (last axis)."""
        return ops.split(x, np.cumsum(self.sizes)[:-1].tolist(), axis=-1)

    def _totals(self, inputs):
        return self.split(inputs + self.b(inputs))

    def mean(self, inputs):
        return ops.concatenate([p.mean(t) for p, t in zip(self.parts, self._totals(inputs))],
                               axis=-1)

    def sample(self, inputs, seed=None):
        seed = _as_seed(seed, self.seed_generator)
        return ops.concatenate([p.sample(t, seed) for p, t in
                                zip(self.parts, self._totals(inputs))], axis=-1)

    def log_partition(self, inputs):
        return sum(p.log_partition(t) for p, t in zip(self.parts, self._totals(inputs)))

    def entropy(self, mean):
        return sum(p.entropy(m) for p, m in zip(self.parts, self.split(mean)))

    def _groups_off(self, x):
        off = False
        for part, t in zip(self.parts, self.split(x)):
            off = ops.logical_or(off, part._groups_off(t))
        return off

    def validate_data(self, x, name="x"):
        start = 0
        for part in self.parts:
            part.validate_data(np.asarray(x)[:, start:start + part.units], name)
            start += part.units

    def init_bias_from_data(self, x):
        x = np.asarray(x)
        biases, start = [], 0
        for part in self.parts:
            part.init_bias_from_data(x[:, start:start + part.units])
            biases.append(part.bias.numpy())
            part.bias.assign(np.zeros(part.units, "float32"))
            start += part.units
        self.bias.assign(np.concatenate(biases).astype("float32"))


def _neg_dilog_neg_exp(x, terms=30):
    """``-Li2(-exp(x))``, the integral of softplus from -inf to x, for any real x."""
    t = ops.exp(-ops.abs(x))
    series = ops.zeros_like(x)
    power = ops.ones_like(x)
    for k in range(1, terms + 1):
        power = power * t
        series = series + ((-1.0) ** (k + 1)) * power / (k * k)
    positive = 0.5 * ops.square(x) + math.pi**2 / 6.0 - series
    return ops.where(x > 0, positive, series)


@keras.saving.register_keras_serializable(package="tfboltz")
class NReLUUnits(StochasticUnits):
    """Noisy rectified linear units (Nair & Hinton 2010).

    A unit stands for infinitely many binary copies with biases ``b - i + 0.5``
    (whose summed mean is about ``softplus(x)``, ``x = inputs + b``); it is sampled as
    ``max(0, x + N(0, sigmoid(x)))``, and `mean` is the exact mean of that sampler,
    ``x Phi(x / s) + s phi(x / s)`` with ``s^2 = sigmoid(x)``. Summing a unit out is
    approximated by the integral of the ladder, ``-Li2(-exp(x))`` (whose derivative
    is ``softplus(x)``); the energy term is ``-b . x + x^2 / 2``. Free energies that
    involve these units are therefore approximate, and exact or AIS estimates of
    log Z refuse them.
    """

    def mean(self, inputs):
        x = inputs + self.bias
        s = ops.sqrt(ops.sigmoid(x))
        z = x / s
        cdf = 0.5 * (1.0 + ops.erf(z / math.sqrt(2.0)))
        pdf = ops.exp(-0.5 * ops.square(z)) / math.sqrt(2.0 * math.pi)
        return x * cdf + s * pdf

    def sample(self, inputs, seed=None):
        x = inputs + self.bias
        noise = keras.random.normal(ops.shape(x), seed=_as_seed(seed, self.seed_generator))
        return ops.relu(x + ops.sqrt(ops.sigmoid(x)) * noise)

    def _pre_activation_from_mean(self, mean):
        """Invert `mean`, which is increasing in x, by bisection on [-30, mean + 10]."""
        lo = ops.full_like(mean, -30.0)
        hi = mean + 10.0
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            above = self.mean(mid - self.bias) > mean
            lo, hi = ops.where(above, lo, mid), ops.where(above, mid, hi)
        return 0.5 * (lo + hi)

    def energy(self, x):
        return ops.sum(-x * self.bias + 0.5 * ops.square(x), axis=-1)

    def log_partition(self, inputs):
        return ops.sum(_neg_dilog_neg_exp(inputs + self.bias), axis=-1)

    def _out_of_range(self, lo, hi):
        return lo < 0

    def _range_message(self, name, lo, hi):
        return (f"Expected non-negative values in `{name}` for NReLUUnits. "
                f"Received: minimum {lo:.4g}")

    def init_bias_from_data(self, x):
        m = np.maximum(np.mean(np.asarray(x, np.float32), axis=0), 1e-3)
        self.bias.assign(np.zeros_like(m))
        self.bias.assign(np.asarray(self._pre_activation_from_mean(m[None]))[0])


UNIT_TYPES = {
    "bernoulli": BernoulliUnits,
    "binary": BernoulliUnits,
    "gaussian": GaussianUnits,
    "softmax": SoftmaxUnits,
    "multinomial": SoftmaxUnits,
    "nrelu": NReLUUnits,
    "relu": NReLUUnits,
}


def get(identifier, units=None, seed=None, name=None):
    """Build a units layer from a name, a config dict or an instance.

    Args:
        identifier: one of ``"bernoulli"``, ``"gaussian"``, ``"softmax"``,
            ``"nrelu"`` (aliases ``"binary"``, ``"multinomial"``, ``"relu"``), a dict
            ``{"class_name": ..., "config": ...}`` as `get_config` writes it, or a
            `StochasticUnits` instance (used as given, its size set if unset).
        units: number of units.
        seed: seed for a layer built from a name.
        name: layer name for a layer built from a name.
    """
    if isinstance(identifier, StochasticUnits):
        layer = identifier
    elif isinstance(identifier, dict):
        layer = keras.saving.deserialize_keras_object(identifier)
    elif isinstance(identifier, str) and identifier.lower() in UNIT_TYPES:
        return UNIT_TYPES[identifier.lower()](units=units, seed=seed, name=name)
    else:
        raise ValueError(
            f"Expected a unit type, one of {sorted(set(UNIT_TYPES))}, a units config or a "
            f"StochasticUnits layer. Received: {identifier!r}"
        )
    if layer.units is None:
        layer.units = units
    elif units is not None and layer.units != units:
        raise ValueError(
            f"Expected a units layer of size {units}. Received: {type(layer).__name__} "
            f"with units={layer.units}"
        )
    return layer
