"""Partition functions and likelihoods: annealed importance sampling and enumeration.

AIS (Neal 2001; Salakhutdinov & Murray 2008) anneals from a base model A of
independent visible units, whose log Z is known, to the model B through

    p_beta(v)  oc  exp(-(1 - beta) E_A(v) - beta E_v(v)) * sum_h exp(-beta (E_h(h) - v~.W.h~))

with the hidden units summed out analytically, so every intermediate distribution
is an RBM with its weights and hidden biases scaled by beta and its visible biases
interpolated. Each chain carries a log importance weight
``sum_k log p*_k(v_k) - log p*_{k-1}(v_k)``, and ``Z_B / Z_A`` is the mean weight.

The partition function of a DBN is that of its top RBM; with it, `dbn_bound` gives
the variational lower bound on a DBN's log-likelihood, and `AISMonitor` writes a
cheap estimate of the held-out log-likelihood (or its bound) into the logs of `fit`.
"""

import dataclasses
import math

import keras
import numpy as np
import tensorflow as tf

from tfboltz import samplers, validation
from tfboltz import units as units_lib
from tfboltz.dbm import DBM
from tfboltz.dbn import DBN
from tfboltz.mean_field import layer_input
from tfboltz.pretraining import unit_layer_like
from tfboltz.rbm import RBM

PROPOSALS = ("base_rate", "uniform", "rbm")


@dataclasses.dataclass(frozen=True)
class LogPartitionEstimate:
    """An AIS estimate of log Z with its spread.

    Attributes:
        log_z: ``log Z_A + log mean(w)``.
        log_z_low: ``log Z_A + log(mean(w) - 3 se(w))`` (``-inf`` if that is <= 0).
        log_z_high: ``log Z_A + log(mean(w) + 3 se(w))``.
        log_z_base: log Z of the base model A.
        log_weights: the chains' log importance weights (numpy).
        n_betas: number of intermediate distributions.
        proposal: "base_rate", "uniform" or "rbm".
        n_steps: Gibbs sweeps per intermediate distribution.
    """

    log_z: float
    log_z_low: float
    log_z_high: float
    log_z_base: float
    log_weights: np.ndarray
    n_betas: int
    proposal: str
    n_steps: int = 1

    def __float__(self):
        return self.log_z

    def __repr__(self):
        return (f"LogPartitionEstimate(log_z={self.log_z:.4f}, interval=({self.log_z_low:.4f}, "
                f"{self.log_z_high:.4f}), chains={len(self.log_weights)}, "
                f"n_betas={self.n_betas}, n_steps={self.n_steps}, proposal={self.proposal!r})")

    @classmethod
    def from_log_weights(cls, log_weights, log_z_base, n_betas, proposal, n_steps=1):
        lw = np.asarray(log_weights, np.float64)
        top = lw.max()
        w = np.exp(lw - top)
        mean = w.mean()
        se = w.std(ddof=1) / math.sqrt(len(w)) if len(w) > 1 else 0.0
        low = math.log(mean - 3 * se) if mean - 3 * se > 0 else -math.inf
        return cls(
            log_z=float(log_z_base + log_mean_exp(lw)),
            log_z_low=float(log_z_base + top + low),
            log_z_high=float(log_z_base + top + math.log(mean + 3 * se)),
            log_z_base=float(log_z_base), log_weights=lw, n_betas=int(n_betas),
            proposal=proposal, n_steps=int(n_steps),
        )


def log_mean_exp(x):
    """``log(mean(exp(x)))`` of a 1-D array, in float64, without overflow or underflow.

    ``m + log(sum(exp(x - m))) - log(n)`` with ``m = max(x)`` (0 if that is not
    finite), the steps and order of `tfp.math.reduce_logmeanexp`, whose results it
    matches to float64 round-off.

    Args:
        x: the values, e.g. AIS log importance weights.

    Returns:
        float.
    """
    x = np.asarray(x, np.float64)
    top = x.max()
    top = top if np.isfinite(top) else 0.0
    with np.errstate(divide="ignore"):  # every weight zero: log 0 = -inf, as TFP gives
        return float(np.log(np.sum(np.exp(x - top))) + top - math.log(x.size))


def beta_schedule(n_betas):
    """Inverse temperatures from 0 to 1 spaced as in Salakhutdinov & Murray (2008).

    Their 14,500 betas put 500 in [0, 0.5), 4,000 in [0.5, 0.9) and 10,000 in
    [0.9, 1]; other counts keep those proportions.
    """
    n_betas = validation.positive_int("n_betas", n_betas)
    if n_betas < 3:
        return np.linspace(0.0, 1.0, n_betas + 1)
    n1 = max(1, round(n_betas * 500 / 14500))
    n2 = max(1, round(n_betas * 4000 / 14500))
    n3 = n_betas - n1 - n2
    return np.concatenate([
        np.linspace(0.0, 0.5, n1, endpoint=False),
        np.linspace(0.5, 0.9, n2, endpoint=False),
        np.linspace(0.9, 1.0, n3 + 1),
    ])


def _check_rbm(model, what):
    if not isinstance(model, RBM):
        raise ValueError(f"Expected an RBM for {what}. Received: {type(model).__name__}")
    if model.visible_copies != 1 or model.hidden_copies != 1:
        raise ValueError(
            f"Expected an RBM without copied units for {what} (copies are a pretraining "
            f"device, not a model with a partition function of its own). Received: "
            f"visible_copies={model.visible_copies}, hidden_copies={model.hidden_copies}")


def _check_linear_bias_hidden(model):
    if not isinstance(model.hidden_layer, (units_lib.BernoulliUnits, units_lib.SoftmaxUnits)):
        raise ValueError(
            "Expected Bernoulli or softmax hidden units for AIS (their bias enters "
            f"linearly, so the tempered models stay RBMs). Received: "
            f"{type(model.hidden_layer).__name__}"
        )
    if isinstance(model.visible_layer, units_lib.NReLUUnits):
        raise ValueError("Expected Bernoulli, softmax or Gaussian visible units for AIS; "
                         "NReLU free energies are approximate. Received: NReLUUnits")


def base_model_units(model, proposal="base_rate", data=None):
    """The base model A: a copy of the visible layer with its own biases.

    "base_rate": biases fitted to the visible marginals of `data` (as in Salakhutdinov
    & Murray 2008), or, without data, the model's own visible biases. "uniform": zero
    biases (a uniform distribution for binary units).
    """
    proposal = validation.one_of("proposal", proposal, PROPOSALS)
    vis = model.visible_layer
    base = type(vis).from_config({**vis.get_config(), "name": "ais_base"})
    base.build((None, model.n_visible))
    for src, dst in zip(vis.weights, base.weights):
        dst.assign(src)
    if proposal == "uniform":
        base.bias.assign(np.zeros(model.n_visible, "float32"))
    elif data is not None:
        base.init_bias_from_data(model.check_data(data, "data"))
    return base


def log_partition(model, n_chains=100, n_betas=10000, seed=0, proposal="base_rate", data=None,
                  n_steps=1, verbose=1):
    """Estimate log Z of an RBM, a DBM or a DBN by annealed importance sampling.

    The tempered models scale every weight and hidden bias by beta and interpolate the
    visible biases between the base model's and the model's. For an RBM the chain runs
    on the visible layer with the hidden one summed out; for a DBM of any depth it runs
    on the odd layers with the even ones (the visible layer among them) summed out
    (Salakhutdinov & Hinton 2009, section 3.3), which works for Bernoulli and Gaussian
    visibles alike. For a DBN it is log Z of the top RBM, whose visible layer is
    ``[h_{L-1}, label]`` with labels (the chain anneals the label group with the rest),
    as `dbn_bound` takes it.

    Args:
        model: an `RBM` with Bernoulli or softmax hidden units and Bernoulli, softmax
            or Gaussian visible units, a `DBM`, or a `DBN`.
        n_chains: independent AIS runs.
        n_betas: intermediate distributions.
        seed: int seed.
        proposal: "base_rate" (independent visibles with the data's marginals) or
            "uniform"; for a DBM also "rbm": a two-stage path that first anneals the
            RBM of the first layer from the base-rate model, then brings in the other
            weights (scaled from 0 to 1) with the first layer kept, `n_betas` each. On a
            trained MNIST DBM the one-stage path failed to converge at 20,000 betas
            (its log Z fell below a test image's unnormalised bound) where the RBM of
            the first layer anneals well.
        data: visible rows to fit the base-rate proposal to (for a DBN, its visible
            rows: their recognition means below the top, with uniform labels).
        n_steps: Gibbs sweeps at each intermediate distribution (the importance
            weight is updated once per distribution; each sweep leaves it invariant).
            More sweeps help the chains follow a model whose modes are hard to reach,
            at `n_steps` times the sampling cost.
        verbose: 1 shows a progress bar.

    Returns:
        `LogPartitionEstimate`.

    Example:
        >>> est = tb.ais.log_partition(rbm, n_chains=100, n_betas=20000, data=x_train)
        >>> ll = tb.ais.log_likelihood(rbm, x_test, est).mean()
    """
    given = model
    if isinstance(model, DBN):
        model = model.top
    if not isinstance(model, DBM):
        _check_rbm(model, "AIS")
        _check_linear_bias_hidden(model)
    n_chains = validation.positive_int("n_chains", n_chains)
    n_steps = validation.positive_int("n_steps", n_steps)
    if proposal == "rbm":
        if not isinstance(model, DBM):
            raise ValueError('Expected a DBM for proposal="rbm" (the two-stage path). '
                             f"Received: {type(given).__name__}")
        return _dbm_two_stage(model, n_chains, n_betas, seed, data, n_steps, verbose)
    if isinstance(given, DBN) and data is not None:
        data = _top_visible_data(given, data)
    base = base_model_units(model, proposal, data)
    betas = beta_schedule(n_betas).astype("float32")
    gen = keras.random.SeedGenerator(seed)
    make = _dbm_annealing if isinstance(model, DBM) else _rbm_annealing
    log_z_base, state, transition = make(model, base, n_chains, gen, n_steps)
    _, log_w = _anneal(transition, state, tf.zeros((n_chains,)), betas, verbose)
    return LogPartitionEstimate.from_log_weights(log_w.numpy(), log_z_base, n_betas, proposal,
                                                 n_steps)


def _top_visible_data(dbn, data):
    """A DBN's visible rows as rows of its top RBM's visible layer: the recognition
    means of the layer below the top, and, with labels, a uniform label group (the
    labels of held-out rows are not the model's to know)."""
    h = dbn.up(data)[-1]
    if dbn.num_classes:
        labels = np.full((len(h), dbn.num_classes), 1.0 / dbn.num_classes, "float32")
        h = np.concatenate([h, labels], 1)
    return h


def _anneal(transition, state, log_w, betas, verbose):
    """Run ``state, delta = transition(state, beta_prev, beta_next)`` over `betas` in
    compiled chunks, accumulating the log weights, with a progress bar."""

    @tf.function(reduce_retracing=True)
    def run(state, log_w, chunk):
        def body(i, state, log_w):
            state, delta = transition(state, chunk[i], chunk[i + 1])
            return i + 1, state, log_w + delta

        _, state, log_w = tf.while_loop(lambda i, *_: i < tf.shape(chunk)[0] - 1, body,
                                        (tf.constant(0), state, log_w))
        return state, log_w

    n_chunks = min(100, len(betas) - 1)
    bounds = np.linspace(0, len(betas) - 1, n_chunks + 1).astype(int)
    progbar = keras.utils.Progbar(len(betas) - 1, verbose=verbose, unit_name="beta")
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        state, log_w = run(state, log_w, tf.constant(betas[lo:hi + 1]))
        progbar.update(int(hi))
    return state, log_w


def _tempered_visible_input(vis, base, a, beta):
    """Visible input at inverse temperature beta: scaled coupling, interpolated bias."""
    return beta * a + vis.bias_as_input((1.0 - beta) * (base.bias - vis.bias))


def _rbm_annealing(model, base, n_chains, gen, n_steps=1):
    vis, hid = model.visible_layer, model.hidden_layer
    # At beta = 0 the hidden units are independent and uniform: Z_0 = Z_A * Z_h(0).
    hid0 = hid.log_partition(-hid.bias[None, :])
    log_z_base = float((base.log_partition(tf.zeros((1, model.n_visible))) + hid0)[0].numpy())

    def log_p(v, a, beta):
        """log p*_beta(v) given a = hidden_input(v) (hidden units summed out)."""
        energy = (1.0 - beta) * base.energy(v) + beta * vis.energy(v)
        return -energy + hid.log_partition(samplers.tempered_input(hid, a, beta))

    def transition(v, b_prev, b_next):
        # The products in float32, whatever the model's matmul_dtype.
        a = tf.matmul(vis.scale(v), model.kernel)
        delta = log_p(v, a, b_next) - log_p(v, a, b_prev)
        for step in range(n_steps):
            if step:
                a = tf.matmul(vis.scale(v), model.kernel)
            h = hid.sample(samplers.tempered_input(hid, a, b_next), gen)
            down = tf.matmul(hid.scale(h), model.kernel, transpose_b=True)
            v = vis.sample(_tempered_visible_input(vis, base, down, b_next), gen)
        return v, delta

    return log_z_base, base.sample(tf.zeros((n_chains, model.n_visible)), gen), transition


def _odd_placed(n_layers, odd, odd_states):
    """A list of `n_layers` layer states with the odd layers' filled in, None elsewhere."""
    states = [None] * n_layers
    for i, x in zip(odd, odd_states):
        states[i] = x
    return states


def _dbm_annealing(model, base, n_chains, gen, n_steps=1):
    layers = model.unit_layers
    odd, even = range(1, len(layers), 2), range(0, len(layers), 2)
    for i in odd:
        if not layers[i].linear_bias:
            raise ValueError("Expected Bernoulli or softmax units on the odd layers for AIS. "
                             f"Received: {type(layers[i]).__name__}")
    log_z_base = float(tf.add_n([base.log_partition(tf.zeros((1, model.n_visible)))] + [
        layers[i].log_partition(-layers[i].bias[None, :]) for i in range(1, len(layers))
    ])[0].numpy())

    def full(odd_states):
        return _odd_placed(len(layers), odd, odd_states)

    def even_inputs(states):
        """The even layers' untempered inputs from the odd layers (float32, whatever
        matmul_dtype); computed once a step, then tempered for both betas."""
        return {i: layer_input(layers, model.kernels, states, i) for i in even}

    def tempered(i, a, beta):
        if i == 0:
            return _tempered_visible_input(layers[0], base, a, beta)
        return samplers.tempered_input(layers[i], a, beta)

    def log_p(states, inputs, beta):
        """log p*_beta of the odd layers' states, the even layers summed out."""
        terms = [-beta * layers[i].energy(states[i]) for i in odd]
        terms += [layers[i].log_partition(tempered(i, inputs[i], beta)) for i in even]
        return tf.add_n(terms)

    def transition(odd_states, b_prev, b_next):
        states = full(odd_states)
        inputs = even_inputs(states)
        delta = log_p(states, inputs, b_next) - log_p(states, inputs, b_prev)
        for step in range(n_steps):
            if step:  # the odd layers have moved
                inputs = even_inputs(states)
            for i in even:  # no even layer feeds another: all inputs are current
                states[i] = layers[i].sample(tempered(i, inputs[i], b_next), gen)
            for i in odd:
                states[i] = layers[i].sample(samplers.tempered_input(
                    layers[i], layer_input(layers, model.kernels, states, i), b_next), gen)
        return tuple(states[i] for i in odd), delta

    start = tuple(layers[i].sample(-layers[i].bias[None, :] * tf.ones((n_chains, 1)), gen)
                  for i in odd)
    return log_z_base, start, transition


def _first_rbm(dbm):
    """The RBM of a DBM's first two layers (same weights and biases)."""
    layers = dbm.unit_layers
    rbm = RBM(dbm.layer_sizes[0], dbm.layer_sizes[1], visible=unit_layer_like(layers[0], "v"),
              hidden=unit_layer_like(layers[1], "h"))
    for dst, src in zip([*rbm.visible_layer.weights, *rbm.hidden_layer.weights, rbm.kernel],
                        [*layers[0].weights, *layers[1].weights, dbm.kernels[0]]):
        dst.assign(src)
    return rbm


def _dbm_two_stage(model, n_chains, n_betas, seed, data, n_steps, verbose):
    """AIS for a DBM along a two-stage path (see `log_partition`, proposal "rbm").

    Stage 1 is RBM AIS for the first two layers, the other layers independent with
    their biases alone. Stage 2 scales the weights above the first layer by gamma from
    0 to 1; its chain runs on the odd layers, the even ones summed out. The chains and
    their log weights carry on from one stage to the next, so the whole is one AIS run.
    """
    layers = model.unit_layers
    odd, even = range(1, len(layers), 2), range(0, len(layers), 2)
    betas = beta_schedule(n_betas).astype("float32")
    gen = keras.random.SeedGenerator(seed)
    rbm = _first_rbm(model)
    _check_linear_bias_hidden(rbm)
    base = base_model_units(rbm, "base_rate", data)
    log_z_base, v, transition = _rbm_annealing(rbm, base, n_chains, gen, n_steps)
    # The layers above the first are independent at gamma = 0: their log partitions.
    log_z_base += sum(float(layers[i].log_partition(tf.zeros((1, layers[i].units)))[0])
                      for i in range(2, len(layers)))
    v, log_w = _anneal(transition, v, tf.zeros((n_chains,)), betas, verbose)

    def kernels(gamma):
        return [model.kernels[0], *[gamma * w for w in model.kernels[1:]]]

    def even_inputs(states):
        """The even layers' inputs at gamma = 1, computed once a step. Every kernel a
        layer above the visibles touches is scaled by gamma, so its input at gamma is
        gamma times this; the visibles' input comes through the unscaled first kernel."""
        return {i: layer_input(layers, model.kernels, states, i) for i in even}

    def scaled(i, a, gamma):
        return a if i == 0 else gamma * a

    def log_p(states, inputs, gamma):
        terms = [-layers[i].energy(states[i]) for i in odd]
        terms += [layers[i].log_partition(scaled(i, inputs[i], gamma)) for i in even]
        return tf.add_n(terms)

    def full(odd_states):
        return _odd_placed(len(layers), odd, odd_states)

    def transition2(odd_states, g_prev, g_next):
        states = full(odd_states)
        inputs = even_inputs(states)
        delta = log_p(states, inputs, g_next) - log_p(states, inputs, g_prev)
        ks = kernels(g_next)
        for step in range(n_steps):
            for i in even:
                a = (scaled(i, inputs[i], g_next) if step == 0
                     else layer_input(layers, ks, states, i))
                states[i] = layers[i].sample(a, gen)
            for i in odd:
                states[i] = layers[i].sample(layer_input(layers, ks, states, i), gen)
        return tuple(states[i] for i in odd), delta

    # A Gibbs step of the gamma = 0 model from the stage-1 visibles: h1 given v, the
    # other odd layers from their biases alone.
    start = [None] * len(layers)
    start[0] = v
    for i in range(2, len(layers), 2):
        start[i] = layers[i].sample(tf.zeros((n_chains, layers[i].units)), gen)
    state = tuple(layers[i].sample(layer_input(layers, kernels(0.0), start, i), gen)
                  for i in odd)
    _, log_w = _anneal(transition2, state, log_w, betas, verbose)
    return LogPartitionEstimate.from_log_weights(log_w.numpy(), log_z_base, 2 * n_betas, "rbm",
                                                 n_steps)


def _exact_log_partition_dbm(model, chunk=65536):
    """Sum over every joint state of the odd layers; the even layers (the visible one
    included) are conditionally independent given them and are summed out exactly."""
    layers = model.unit_layers
    odd = list(range(1, len(layers), 2))
    per_layer = [layers[i].states().astype("float64") for i in odd]
    total = int(np.prod([len(s) for s in per_layer]))
    if total > 2**22:
        raise ValueError(f"Expected at most 2**22 joint states of the odd layers to enumerate. "
                         f"Received: {total}")
    grids = np.meshgrid(*[np.arange(len(s)) for s in per_layer], indexing="ij")
    index = [g.ravel() for g in grids]
    kernels = [tf.cast(w, tf.float64) for w in model.kernels]
    terms = []
    for lo in range(0, total, chunk):
        states = [None] * len(layers)
        for j, i in enumerate(odd):
            states[i] = tf.constant(per_layer[j][index[j][lo:lo + chunk]])
        term = -tf.add_n([layers[i].energy(states[i]) for i in odd])
        for i in range(0, len(layers), 2):
            a = 0.0
            if i > 0:
                a = tf.matmul(layers[i - 1].scale(states[i - 1]), kernels[i - 1])
            if i < len(layers) - 1:
                a += tf.matmul(layers[i + 1].scale(states[i + 1]), kernels[i], transpose_b=True)
            term += layers[i].log_partition(a)
        terms.append(term)
    return float(tf.reduce_logsumexp(tf.concat(terms, 0)).numpy())


def exact_log_partition(model, side=None, chunk=65536):
    """log Z by summing over every state of one layer (tiny models only), in float64.

    For a DBM the sum runs over the joint states of the odd layers, the even ones
    summed out analytically. For a DBN it is log Z of the top RBM (summed over its
    hidden states: its visible layer holds the label group).

    Args:
        model: an RBM whose summed-over layer is Bernoulli or softmax, a DBM or a DBN.
        side: "visible" or "hidden" (RBMs); default the smaller enumerable side.
        chunk: states per batch.
    """
    if isinstance(model, DBN):
        model = model.top
    if isinstance(model, DBM):
        return _exact_log_partition_dbm(model, chunk)
    _check_rbm(model, "exact enumeration")
    vis, hid = model.visible_layer, model.hidden_layer
    if side is None:
        sides = [s for s, layer in (("visible", vis), ("hidden", hid)) if layer.enumerable]
        if not sides:
            raise ValueError("Expected a Bernoulli or softmax layer to enumerate. Received: "
                             f"{type(vis).__name__} visible, {type(hid).__name__} hidden")
        side = min(sides, key=lambda s: vis.units if s == "visible" else hid.units)
    side = validation.one_of("side", side, ("visible", "hidden"))
    layer, other = (vis, hid) if side == "visible" else (hid, vis)
    states = layer.states().astype("float64")
    w = tf.cast(model.kernel, tf.float64)
    terms = []
    for i in range(0, len(states), chunk):
        s = tf.constant(states[i:i + chunk])
        a = tf.matmul(layer.scale(s), w if side == "visible" else tf.transpose(w))
        terms.append(-layer.energy(s) + other.log_partition(a))
    return float(tf.reduce_logsumexp(tf.concat(terms, 0)).numpy())


def elbo(model, x, log_z, n_mean_field=None, sum_out_top=False, n_samples=100, seed=0,
         batch_size=1000, **kwargs):
    """Per-example variational lower bound on log p(x) of a DBM (nats, numpy).

    ``-E(x, mu) + H(mu) - log Z`` with ``mu`` the mean-field posterior of the hidden
    layers: the energy of a layered model is linear in each layer's state, so under
    the factorised posterior its expectation is the energy at the means. This is the
    bound of Salakhutdinov & Hinton (2009) and of the TF1 reference implementation.

    With ``sum_out_top=True`` the top layer is summed out exactly instead of being
    given a factorised posterior of its own: the posterior is ``q(h_1..h_{L-1})
    p(h_L | h_{L-1})``, a richer family than mean-field, so the bound is tighter:
    never below the mean-field one in expectation, since the top layer's
    log-partition is convex in its input (Jensen)::

        E_q[-E(x, h_1..h_{L-1}) + log sum_{h_L} exp(-E_L(h_L) + h_{L-1} W_L h_L)] + H(q) - log Z

    The log-sum term has no closed form under ``q``; it is averaged over `n_samples`
    draws of ``h_{L-1}`` from ``q`` (stateless, seeded: the same call gives the same
    numbers), an unbiased estimate of the bound. The linear terms are exact.
    It is not the quantity the published anchors report: compare like with like.

    Args:
        model: a `DBM`.
        x: visible rows.
        log_z: a float or a `LogPartitionEstimate`.
        n_mean_field: mean-field iterations (default: the model's `n_mean_field`;
            ``n_iter``, its old name, still works with a `DeprecationWarning`).
        sum_out_top: sum the top layer out (see above).
        n_samples: draws of ``h_{L-1}`` per example for ``sum_out_top``.
        seed: integer seed of those draws.
        batch_size: rows per batch for ``sum_out_top``.
    """
    n_mean_field = validation.renamed(kwargs, "n_iter", "n_mean_field", n_mean_field, "elbo")
    if not isinstance(model, DBM):
        raise ValueError(f"Expected a DBM for the ELBO. Received: {type(model).__name__}")
    log_z = _finite_log_z(log_z)
    if sum_out_top:
        n_samples = validation.positive_int("n_samples", n_samples)
        batch_size = validation.positive_int("batch_size", batch_size)
        seed = validation.non_negative_int("seed", seed)
        below = model.unit_layers[-2]
        if not isinstance(below, units_lib.BernoulliUnits):
            raise ValueError("Expected Bernoulli units below the top layer to sum the top "
                             f"layer out. Received: {type(below).__name__}")
    means = [tf.constant(m) for m in model.mean_field(x, n_mean_field=n_mean_field)]
    if not sum_out_top:
        return mean_field_bound(model, means) - log_z
    # With the top layer summed out, q covers the layers below it only.
    entropy = tf.add_n([layer.entropy(mu) for layer, mu in
                        zip(model.unit_layers[1:-1], means[1:-1])])
    # Everything but the top layer's terms, at the means (linear in each layer).
    linear = -model.energy(means[:-1] + [tf.zeros_like(means[-1])])
    expected = _expected_top_log_partition_fn(model, n_samples, seed)
    summed = np.concatenate([expected(means[-2][i:i + batch_size]).numpy()
                             for i in range(0, len(means[-2]), batch_size)])
    return ((linear + entropy).numpy().astype("float64") + summed.astype("float64")
            - log_z)


def mean_field_bound(model, means):
    """Per-example ``-E(x, mu) + H(mu)`` of a DBM at the factorised posterior `means`
    (``[x, mu_1, ..., mu_L]``; float64 numpy): the ELBO before ``- log Z``. Any means
    give a lower bound on ``log p(x) + log Z``; `elbo` uses the mean-field ones."""
    entropy = tf.add_n([layer.entropy(mu) for layer, mu in
                        zip(model.unit_layers[1:], means[1:])])
    return (-model.energy(means) + entropy).numpy().astype("float64")


def _expected_top_log_partition_fn(model, n_samples, seed):
    """A function of the means `mu` of layer L-1 (a batch of rows): the average over
    `n_samples` draws ``h ~ Bernoulli(mu)`` of the top layer's log-partition given
    the input ``h W_L``. Draw k of a batch uses the stateless seed ``(seed, k)``."""
    kernel, top = model.kernels[-1], model.unit_layers[-1]

    @tf.function(reduce_retracing=True)
    def expected(mu):
        def body(k, total):
            u = tf.random.stateless_uniform(tf.shape(mu), seed=tf.stack([seed, k]))
            h = tf.cast(u < mu, mu.dtype)
            return k + 1, total + top.log_partition(tf.matmul(h, kernel))

        _, total = tf.while_loop(lambda k, _: k < n_samples, body,
                                 (tf.constant(0), tf.zeros(tf.shape(mu)[:1], mu.dtype)))
        return total / n_samples

    return expected


def _finite_log_z(log_z):
    """`log_z` (a number or a `LogPartitionEstimate`) as a finite float, else a
    `ValueError`: a NaN or infinite log Z would turn every bound into NaN or inf."""
    try:
        value = float(log_z)
    except (TypeError, ValueError):
        raise ValueError("Invalid value received for argument `log_z`. Expected a float or a "
                         f"LogPartitionEstimate. Received: log_z={log_z!r}") from None
    if isinstance(log_z, bool) or not math.isfinite(value):
        raise ValueError("Invalid value received for argument `log_z`. Expected a finite "
                         f"float. Received: log_z={log_z!r}")
    return value


def log_likelihood(model, x, log_z):
    """Per-example log-likelihood ``-F(x) - log Z`` in nats (numpy).

    Args:
        model: an RBM.
        x: visible rows.
        log_z: a float or a `LogPartitionEstimate`.
    """
    _check_rbm(model, "log_likelihood")
    log_z = _finite_log_z(log_z)
    return -model.free_energy(x).astype("float64") - log_z


def dbn_bound(model, x, log_z, n_samples=100, seed=0, batch_size=1000):
    """Per-example variational lower bound on log p(x) of a DBN (nats, numpy).

    The bound of Salakhutdinov & Murray (2008, section 4), with the DBN's recognition
    weights as the approximate posterior. For layers ``v = h_0, h_1, ..., h_{L-1}``
    below the top RBM::

        Q(h_1..h_{L-1} | v) = Q(h_1 | v) Q(h_2 | h_1) ... Q(h_{L-1} | h_{L-2}),
        Q(h_l = 1 | h_{l-1}) = sigmoid(scale(h_{l-1}) R_l + c_l)   (rec_kernels, rec_biases)

        log p(v) >= E_Q[log p(v | h_1) + ... + log p(h_{L-2} | h_{L-1}) + log p*(h_{L-1})]
                    + H(Q) - log Z

    ``p(h_{l-1} | h_l)`` are the directed generative layers (RBM ``l``'s visible units
    given ``h_l W_l^T``; a density for Gaussian visibles), ``log p*(h) = log sum_c
    exp(-F_top([h, e_c]))`` is the top RBM's unnormalised log-probability of its
    visible layer with the labels (if any) summed out exactly, and ``Z`` is the top
    RBM's partition function (`log_partition` or `exact_log_partition` of the DBN).
    The gap is ``KL(Q || p(h | v))``.

    The expectation has no closed form; it is the mean over `n_samples` draws
    ``h^k ~ Q`` of ``log p(v, h^k) - log Q(h^k | v)``: an unbiased estimate of the
    bound (not of ``log p(v)``), whose spread vanishes where ``Q`` is the exact
    posterior. The draws are stateless and seeded: the same call (rows, seed and
    batch size) gives the same numbers. A DBN of one RBM has no layer to infer: the
    bound is its exact log-likelihood, labels summed out, whatever `n_samples`.

    Args:
        model: a `DBN`.
        x: visible rows.
        log_z: log Z of the top RBM, a float or a `LogPartitionEstimate`.
        n_samples: draws from ``Q`` per example.
        seed: non-negative integer seed of those draws.
        batch_size: rows per batch.

    Returns:
        float64 numpy array, one bound per row.

    Example:
        >>> est = tb.ais.log_partition(dbn, n_chains=100, n_betas=20000, data=x_train)
        >>> bound = tb.ais.dbn_bound(dbn, x_test, est, n_samples=100).mean()
    """
    if not isinstance(model, DBN):
        raise ValueError(f"Expected a DBN for the DBN bound. Received: {type(model).__name__}")
    log_z = _finite_log_z(log_z)
    n_samples = validation.positive_int("n_samples", n_samples)
    seed = validation.non_negative_int("seed", seed)
    batch_size = validation.positive_int("batch_size", batch_size)
    x = model.check_data(x)
    depth = len(model.rbms) - 1
    if not depth:
        n_samples = 1  # nothing to draw: the bound is exact
    bound = _dbn_bound_fn(model, n_samples, seed)
    # Batch b draws from the seed stream after those of the batches before it.
    draws = n_samples * depth
    values = [bound(tf.constant(x[i:i + batch_size]), tf.constant(b * draws, tf.int64)).numpy()
              for b, i in enumerate(range(0, len(x), batch_size))]
    return np.concatenate(values).astype("float64") - log_z


def _log_conditional(layer, x, inputs):
    """``log p(x | inputs)`` of a units layer: ``<scale(x), inputs> - energy(x) -
    log_partition(inputs)`` (a log density for Gaussian units)."""
    return (tf.reduce_sum(layer.scale(x) * inputs, -1) - layer.energy(x)
            - layer.log_partition(inputs))


def _top_log_marginal(dbn, h):
    """``log p*(h)``: the top RBM's unnormalised log-probability of visible features
    `h`, its hidden layer and the labels (if any) summed out."""
    if dbn.num_classes:
        return tf.reduce_logsumexp(-dbn.label_free_energies(h), -1)
    top = dbn.top
    vis, hid = top.visible_layer, top.hidden_layer
    return -vis.energy(h) + hid.log_partition(tf.matmul(vis.scale(h), top.kernel))


def _dbn_bound_fn(dbn, n_samples, seed):
    """A function of a batch of visible rows and the index of its first draw: the
    mean over `n_samples` draws ``h ~ Q`` of ``log p*(v, h) - log Q(h | v)``. Draw
    ``k`` of layer ``l`` uses the stateless seed ``[seed, first + k (L - 1) + l]``."""
    below_top = dbn.rbms[:-1]
    depth = len(below_top)

    def log_ratio(v, stream):
        states, log_q = [v], 0.0
        x = below_top[0].visible_layer.scale(v) if depth else v
        for w, c in zip(dbn.rec_kernels, dbn.rec_biases):
            logits = tf.matmul(x, w) + c
            u = keras.random.uniform(tf.shape(logits), seed=stream)
            x = tf.cast(u < tf.sigmoid(logits), v.dtype)
            log_q += tf.reduce_sum(x * logits - tf.nn.softplus(logits), -1)
            states.append(x)
        log_p = _top_log_marginal(dbn, states[-1])
        for rbm, below, above in zip(below_top, states, states[1:]):
            inputs = tf.matmul(rbm.hidden_layer.scale(above), rbm.kernel, transpose_b=True)
            log_p += _log_conditional(rbm.visible_layer, below, inputs)
        return log_p - log_q

    @tf.function(reduce_retracing=True)
    def bound(v, first):
        def body(k, total):
            stream = samplers.SeedStream(seed, first + k * depth)
            return k + 1, total + log_ratio(v, stream)

        _, total = tf.while_loop(lambda k, _: k < n_samples, body,
                                 (tf.constant(0, tf.int64), tf.zeros(tf.shape(v)[:1], v.dtype)))
        return total / n_samples

    return bound


class AISMonitor(keras.callbacks.Callback):
    """AIS as a training monitor: a held-out log-likelihood (or its bound) in the logs.

    At the end of the first epoch, of every `every`-th epoch (the `every`-th,
    2 `every`-th, ...) and of the last epoch of `fit`, it estimates log Z of the model
    being trained by AIS (`log_partition`, `n_chains` chains, `n_betas` betas) and
    writes into the epoch's `logs`:

    * ``logs[name]``: the mean over the rows `x` of, for an `RBM`, the
      log-likelihood ``-F(x) - log Z`` (`log_likelihood`); for a `DBM`, the
      mean-field ELBO (`elbo`); for a `DBN`, the variational bound (`dbn_bound`,
      `n_samples` draws per row);
    * ``logs[name + "_spread"]``: the width of AIS's interval on log Z,
      ``log_z_high - log_z_low`` (mean weight -/+ 3 standard errors; ``inf`` when
      the lower end is not finite); the mean moves by as much as log Z does.

    Epochs in between carry the last measured values, so every epoch's logs hold
    both keys: `History` and `CSVLogger` get one value per epoch, and
    ``keras.callbacks.EarlyStopping(monitor=name, mode="max")`` sees a carried value
    as no improvement, so its `patience` counts epochs, not measurements (for `m`
    measurements, ``patience = m * every``). Put this callback before those that read
    its keys. Every measurement uses the same `seed` (common random numbers: the
    epochs differ by the model, not by the draws) and touches no state of the model,
    so training runs as it would without it. It adds about one AIS run of
    ``n_chains x n_betas`` Gibbs steps per measurement.

    For a DBN, pass it to `DBN.fit` (the up-down fine-tuning), not to `pretrain_dbn`,
    whose `fit` calls train the RBMs one by one.

    Args:
        x: held-out visible rows (numpy).
        every: epochs between measurements.
        n_chains: AIS chains.
        n_betas: AIS intermediate distributions (per stage for ``proposal="rbm"``).
        n_steps: Gibbs sweeps per intermediate distribution.
        proposal: AIS base model: "base_rate", "uniform", or for a DBM "rbm" (see
            `log_partition`).
        data: rows the base-rate proposal is fitted to (default `x`).
        n_samples: draws per row of the DBN bound.
        seed: integer seed of AIS and of the DBN bound's draws.
        name: key of the value in the logs.

    Attributes:
        measured_epochs: the (0-based) epochs measured so far.
        last_estimate: the latest `LogPartitionEstimate`.

    Example:
        >>> monitor = tb.ais.AISMonitor(x_val, every=5, n_betas=1000, seed=0)
        >>> stop = keras.callbacks.EarlyStopping(monitor="val_log_likelihood",
        ...                                      mode="max", patience=20)
        >>> history = rbm.fit(x_train, epochs=100, callbacks=[monitor, stop])
        >>> history.history["val_log_likelihood"]
    """

    def __init__(self, x, every=1, n_chains=100, n_betas=1000, n_steps=1,
                 proposal="base_rate", data=None, n_samples=10, seed=0,
                 name="val_log_likelihood"):
        super().__init__()
        self.x = np.asarray(x)
        self.every = validation.positive_int("every", every)
        self.n_chains = validation.positive_int("n_chains", n_chains)
        self.n_betas = validation.positive_int("n_betas", n_betas)
        self.n_steps = validation.positive_int("n_steps", n_steps)
        self.proposal = validation.one_of("proposal", proposal, PROPOSALS)
        self.data = data
        self.n_samples = validation.positive_int("n_samples", n_samples)
        self.seed = validation.non_negative_int("seed", seed)
        if not isinstance(name, str) or not name:
            raise ValueError("Invalid value received for argument `name`. Expected a "
                             f"non-empty string. Received: name={name!r}")
        self.name = name
        self.measured_epochs = []
        self.last_estimate = None
        self._last = None

    def on_train_begin(self, logs=None):
        model = self.model
        if not isinstance(model, (RBM, DBM, DBN)):
            raise ValueError("Expected an RBM, a DBM or a DBN to monitor by AIS. "
                             f"Received: {type(model).__name__}")
        if isinstance(model, RBM):
            _check_rbm(model, "AIS")
            _check_linear_bias_hidden(model)
        if self.proposal == "rbm" and not isinstance(model, DBM):
            raise ValueError('Expected a DBM for proposal="rbm" (the two-stage path). '
                             f"Received: {type(model).__name__}")
        self.x = model.check_data(self.x, "x")  # refused before the first epoch runs
        if self.data is not None:
            self.data = model.check_data(self.data, "data")

    def on_epoch_end(self, epoch, logs=None):
        last_epoch = (self.params or {}).get("epochs")
        if (epoch == 0 or (epoch + 1) % self.every == 0 or self._last is None
                or (last_epoch is not None and epoch + 1 == last_epoch)):
            self._last = self._measure()
            self.measured_epochs.append(epoch)
        if logs is not None:
            logs[self.name], logs[self.name + "_spread"] = self._last

    def _measure(self):
        """``(mean, spread)`` of the model as it is now."""
        model = self.model
        est = log_partition(model, n_chains=self.n_chains, n_betas=self.n_betas, seed=self.seed,
                            proposal=self.proposal,
                            data=self.x if self.data is None else self.data,
                            n_steps=self.n_steps, verbose=0)
        self.last_estimate = est
        if isinstance(model, DBN):
            values = dbn_bound(model, self.x, est, n_samples=self.n_samples, seed=self.seed)
        elif isinstance(model, DBM):
            values = elbo(model, self.x, est)
        else:
            values = log_likelihood(model, self.x, est)
        return float(np.mean(values)), float(est.log_z_high - est.log_z_low)
