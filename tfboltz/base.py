"""Machinery shared by the energy-based models: input checks, data-dependent
initialisation, the divergence guard and the defaults of `compile`."""

import keras
import numpy as np
import tensorflow as tf

from tfboltz import validation

#: Rows of the training data used for data-dependent initialisation and the
#: per-epoch free-energy gap.
MONITOR_ROWS = 1000

#: Bound on ``learning_rate * sum|gradient|`` for a step to be applied.
MAX_UPDATE = 1e30


#: Dtypes the matrix products of a model may run in (its `matmul_dtype` argument).
MATMUL_DTYPES = ("float32", "bfloat16", "float16")


def matmul(a, b, dtype=None, **kwargs):
    """`tf.matmul`; with a `dtype` other than float32 the operands are cast to it and the
    product is cast back to the dtype of `a` (mixed precision for the products only)."""
    if dtype is None or dtype == "float32":
        return tf.matmul(a, b, **kwargs)
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), **kwargs), a.dtype)


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


def tempered_input(layer, inputs, beta):
    """The input that makes `layer` sample ``exp(-beta E)``: ``beta (in + b) - b``."""
    return beta * inputs + layer.bias_as_input((beta - 1.0) * layer.b(inputs))


class TrainingDivergedError(FloatingPointError):
    """Raised by `fit` when the statistics or the update stop being finite."""


def as_rows(data):
    """Return the `x` part of `data` (an array, an `(x, y)` tuple or a tensor)."""
    x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
    return x


def _is_stream(x):
    """Data that can only be iterated once (a generator or a `keras.utils.PyDataset`)."""
    return isinstance(x, keras.utils.PyDataset) or callable(getattr(x, "__next__", None))


def take_rows(x, n):
    """Up to `n` rows of `x` (array, tensor or `tf.data.Dataset`) as numpy float32.

    Returns None for streams, which cannot be read ahead without consuming them.
    """
    if _is_stream(x):
        return None
    if isinstance(x, tf.data.Dataset):
        rows, count = [], 0
        for batch in x:
            batch = np.asarray(as_rows(batch))
            rows.append(batch)
            count += len(batch)
            if count >= n:
                break
        return np.concatenate(rows)[:n].astype("float32") if rows else None
    return np.asarray(x[:n], dtype="float32")


class DivergenceGuard(keras.callbacks.Callback):
    """Stops `fit` with a `TrainingDivergedError` when a step was refused.

    The model's train step skips any update whose statistics or gradients are not
    finite (or too large to apply safely) and records the optimizer iteration in
    `model.diverged_at`; the weights therefore stay at the last good step.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        at = int(self.model.diverged_at.numpy())
        if at >= 0:
            self.model.diverged_at.assign(-1)
            self.model.stop_training = True
            raise TrainingDivergedError(
                f"Training diverged at epoch {self._epoch + 1}, step {at - self._start + 1}: "
                "the statistics or the gradient were not finite (NaN or inf) or too "
                "large for a safe update. The update was not applied; the model keeps the "
                "weights of the last good step. Check the data for NaN/inf, or lower the "
                "learning rate."
            )


class EnergyModel(keras.Model):
    """Base class of tfboltz's generative models (a `keras.Model`).

    Subclasses define `visible_layer`, `n_visible`, `_init_from_data(x)` and a
    `train_step` that ends with `self._apply_if_finite(...)`.
    """

    @classmethod
    def from_config(cls, config):
        # Unit layers arrive as serialized configs, which the constructors accept.
        return cls(**config)

    @staticmethod
    def _clip_column_norms(kernel, max_norm):
        """Rescale each unit's incoming weights (a column) to L2 norm <= `max_norm`."""
        norms = tf.norm(kernel, axis=0, keepdims=True)
        kernel.assign(kernel * tf.minimum(1.0, max_norm / (norms + 1e-12)))

    def _make_state(self):
        self.diverged_at = self.add_weight(
            shape=(), dtype="int64", initializer=keras.initializers.Constant(-1),
            trainable=False, name="diverged_at",
        )
        self.data_initialized = self.add_weight(
            shape=(), dtype="bool", initializer="zeros", trainable=False, name="data_initialized"
        )

    def compile(self, optimizer=None, steps_per_execution=50, jit_compile="auto", **kwargs):
        """Configure the model for `fit`.

        Generative models take no loss: the train step computes the gradient of the
        negative log-likelihood from positive and negative statistics and hands it to
        the optimizer.

        Args:
            optimizer: a Keras optimizer; default ``SGD(0.01, momentum=0.9)``.
            steps_per_execution: train steps per call of the compiled function; the
                default of 50 amortises Keras's per-call overhead (progress bars and
                batch-level callbacks then see every 50th batch; `DivergenceGuard`
                still names the exact step).
            jit_compile: `True` compiles the train step with XLA (it works, but on
                CPU it is slower than the default graph); "auto" enables it on GPUs.
            **kwargs: other `keras.Model.compile` arguments (`run_eagerly`, ...).
        """
        if kwargs.get("loss") is not None:
            raise ValueError(
                "Expected no `loss`: generative models compute their own gradient. "
                f"Received: loss={kwargs['loss']!r}"
            )
        if optimizer is None:
            with self.distribute_strategy.scope():
                optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
        super().compile(
            optimizer=optimizer, steps_per_execution=steps_per_execution,
            jit_compile=jit_compile, **kwargs,
        )

    def compile_from_config(self, config):
        """Re-compile a loaded model with the configuration it was saved with."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def make_train_function(self, force=False):
        """The compiled function `fit` calls: `steps_per_execution` train steps.

        Without a distribution strategy, eager mode or XLA, the steps run in one
        `tf.function` that calls `train_step` directly; Keras's generic version wraps
        every step in a nested function call and optional values, which costs about
        a tenth of a CD-1 step on a 2-core CPU. Otherwise Keras's own is used.
        """
        if self.train_function is not None and not force:
            return self.train_function
        if (self.run_eagerly or self.jit_compile or self.steps_per_execution < 2
                or tf.distribute.has_strategy()
                or not isinstance(self.distribute_strategy,
                                  type(tf.distribute.get_strategy()))):
            super().make_train_function(force)
            self.train_function = self._skipping(self.train_function)
            return self.train_function
        steps = self.steps_per_execution

        @tf.function(reduce_retracing=True)
        def multi_step(iterator):
            logs = self.train_step(iterator.get_next())
            for _ in tf.range(steps - 1):
                batch = iterator.get_next_as_optional()
                if batch.has_value():
                    logs = self.train_step(batch.get_value())
            return logs

        self.train_function = self._skipping(multi_step)
        return self.train_function

    #: Set by `tfboltz.callbacks.TrainingCheckpoint` to resume in the middle of an
    #: epoch: batches the next call discards before training, and the batches left
    #: in that epoch (None: not resuming).
    _resume_skip = 0
    _resume_left = None

    def _skipping(self, function):
        """`function`, after first discarding `_resume_skip` batches of the iterator.

        In a resumed epoch Keras still makes the calls of a whole epoch; the ones
        past the data return the last logs without running: a call that starts on an
        exhausted iterator could already have advanced the random state.
        """
        def train_function(iterator):
            while self._resume_skip > 0:
                self._resume_skip -= 1
                iterator.get_next()
            if self._resume_left is not None:
                if self._resume_left <= 0:
                    return self._resume_logs
                self._resume_left -= self.steps_per_execution
            logs = function(iterator)
            if self._resume_left is not None:
                self._resume_logs = logs
            return logs
        return train_function

    # Data checks ---------------------------------------------------------------

    def check_data(self, x, name="x"):
        """Validate visible data: shape, finiteness and the range of the unit type.

        Returns:
            float32 numpy array.

        Raises:
            ValueError: in Keras's wording, before any state changes.
        """
        x = validation.check_rows(x, self.n_visible, name)
        self.visible_layer.validate_data(x, name)
        return x

    def _checked(self, x, name):
        """Validate array-like data; datasets pass through (the step guard covers them)."""
        if x is None or isinstance(x, tf.data.Dataset) or _is_stream(x):
            return x
        return self.check_data(x, name)

    # fit -----------------------------------------------------------------------

    def _epoch_callbacks(self, monitor_rows, validation_rows):
        """Extra callbacks a subclass runs in `fit` (before the user's)."""
        return []

    def fit(self, x=None, y=None, batch_size=None, epochs=1, validation_data=None,
            callbacks=None, **kwargs):
        """Train the model generatively through `keras.Model.fit`.

        `x` holds the visible data (array, tensor or `tf.data.Dataset`); `y` is
        ignored by the generative step. `validation_data` may be an array of visible
        rows. Before the first update the visible biases are set from the data (see
        `init_from_data`). All the usual `fit` arguments work.

        Arrays are shuffled each epoch from the model's `seed` when it has one, so the
        same seed gives the same weights on the same device. For generators, call
        `init_from_data` first (a stream cannot be read ahead); the per-epoch monitors
        then run on validation data only.

        Raises:
            ValueError: bad data, before any state changes.
            TrainingDivergedError: the statistics stopped being finite; the weights of
                the last good step are kept.
        """
        if isinstance(x, tuple) and y is None:
            x = x[0]
        x = self._checked(x, "x")
        val_rows = None
        if validation_data is not None:
            val_x = as_rows(validation_data)
            val_x = self._checked(val_x, "validation_data")
            validation_data = val_x
            val_rows = take_rows(val_x, MONITOR_ROWS)
        if getattr(self, "optimizer", None) is None or not self.compiled:
            self.compile()
        self._prepare_fit()
        monitor = take_rows(x, MONITOR_ROWS)
        if not bool(self.data_initialized.numpy()) and monitor is not None:
            self.init_from_data(x if not isinstance(x, tf.data.Dataset) else monitor)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself
        order_callbacks = []
        if isinstance(x, np.ndarray) and kwargs.get("shuffle", True) and self.seed is not None:
            # Keras shuffles arrays from the global random state; a seeded model
            # shuffles from its own seed so that the same seed gives the same weights.
            x, order = _epoch_ordered_batches(x, batch_size or 32, self.seed)
            order_callbacks = [order]
            batch_size, kwargs["shuffle"] = None, False
        callbacks = [*order_callbacks, DivergenceGuard(),
                     *self._epoch_callbacks(monitor, val_rows),
                     *(callbacks or [])]
        self.diverged_at.assign(-1)
        return super().fit(x, y, batch_size=batch_size, epochs=epochs,
                           validation_data=validation_data, callbacks=callbacks, **kwargs)

    def _prepare_fit(self):
        """Create the optimizer's slots now, in the model's strategy scope (the guarded
        update applies gradients inside a condition, where no variable may be created).
        Under a multi-replica strategy, run one step per call: TensorFlow cannot place
        the cross-replica condition inside Keras's multi-step loop."""
        if not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        if self.distribute_strategy.num_replicas_in_sync > 1 and self.steps_per_execution > 1:
            self.steps_per_execution = 1
            self.train_function = None

    def _sampling_request(self, n, init, clamp):
        """Check the arguments of `sample`: returns ``(n, init rows or None, clamp mask
        as float32 (n, n_visible))``."""
        if init is None:
            if clamp is not None:
                raise ValueError("Expected `init` values to clamp. Received: init=None")
            n = validation.positive_int("n", n)
        else:
            init = self.check_data(init, "init")
            n = len(init) if n is None else validation.positive_int("n", n)
            if n != len(init):
                raise ValueError(f"Expected `n` to match len(init). Received: n={n}, "
                                 f"len(init)={len(init)}")
        mask = np.zeros((n, self.n_visible), "float32")
        if clamp is not None:
            mask = np.broadcast_to(np.asarray(clamp, bool), (n, self.n_visible)).astype("f4")
        return n, init, mask

    def to_sequential(self, num_classes, dropout=0.0, n_mean_field=None, name=None):
        """A `keras.Sequential` classifier initialised from this model's weights.

        See `tfboltz.classifier.to_sequential`.
        """
        from tfboltz.classifier import to_sequential

        return to_sequential(self, num_classes, dropout=dropout, n_mean_field=n_mean_field,
                             name=name)

    def init_from_data(self, x):
        """Data-dependent initialisation (visible biases, persistent chains).

        Called automatically by the first `fit`; call it yourself to control it.
        """
        x = self._checked(x, "x")
        self._init_from_data(np.asarray(x, "float32"))
        self.data_initialized.assign(True)

    #: Apply a plain momentum SGD with TensorFlow's fused kernel (see `_apply_gradients`).
    fused_sgd = True

    def _apply_gradients(self, grads, variables):
        """`optimizer.apply_gradients`, or the same update in one fused kernel per
        variable for a plain momentum SGD.

        Keras's SGD writes ``m = momentum m - lr g`` and ``w += m`` as separate
        element-wise passes over each weight matrix; `ResourceApplyKerasMomentum`
        computes that very rule (Nesterov's too) in one pass. The update is
        memory-bound; on the 2-core test machine one pass instead of several took
        10-20% off a CD-1 epoch while another job shared the CPU, and nothing
        measurable when it was idle. Any other optimizer, or an SGD with weight
        decay, clipping, EMA or gradient accumulation, goes through Keras unchanged.
        """
        optimizer = self.optimizer
        if not (self.fused_sgd and _fusable_sgd(optimizer)):
            optimizer.apply_gradients(zip(grads, variables))
            return
        lr = tf.cast(optimizer.learning_rate, "float32")
        momentum = tf.constant(optimizer.momentum, "float32")
        for g, v in zip(grads, variables):
            if optimizer.momentum == 0:  # w -= lr g
                tf.raw_ops.ResourceApplyGradientDescent(
                    var=v.value.handle, alpha=lr, delta=tf.cast(g, "float32"))
                continue
            m = optimizer.momentums[optimizer._get_variable_index(v)]
            tf.raw_ops.ResourceApplyKerasMomentum(
                var=v.value.handle, accum=m.value.handle, lr=lr, grad=tf.cast(g, "float32"),
                momentum=momentum, use_locking=False, use_nesterov=optimizer.nesterov)
        optimizer.iterations.assign_add(1)

    # Distribution --------------------------------------------------------------------

    @staticmethod
    def _replica_context():
        """The replica context of a multi-replica `tf.distribute` step, else None."""
        if not tf.distribute.has_strategy():
            return None
        ctx = tf.distribute.get_replica_context()
        if ctx is None or ctx.num_replicas_in_sync == 1:
            return None
        return ctx

    def _step_seed(self, generator):
        """`generator`, or under a multi-replica strategy a view of it that folds in
        the replica's id, so that replicas draw different noise from one shared state."""
        ctx = self._replica_context()
        return generator if ctx is None else _ReplicaSeed(generator, ctx.replica_id_in_sync_group)

    def _chain_share(self, chains, name="n_chains"):
        """This replica's rows of persistent `chains` (all of them without a strategy).

        Replica ``r`` of ``R`` owns rows ``[r n / R, (r + 1) n / R)``; after an update
        the shares are gathered back in replica order (`_apply_if_finite`), so the
        variable holds every chain, identical on every device, and saves as usual.
        """
        ctx = self._replica_context()
        if ctx is None:
            return chains
        n, replicas = int(chains.shape[0]), ctx.num_replicas_in_sync
        if n % replicas:
            raise ValueError(f"Expected `{name}` divisible by the number of replicas "
                             f"({replicas}), so that each keeps an equal share of the "
                             f"persistent chains. Received: {name}={n}")
        share = n // replicas
        start = tf.cast(ctx.replica_id_in_sync_group, "int32") * share
        return tf.slice(chains, tf.stack([start, 0]), [share, -1])

    # The guarded update ----------------------------------------------------------

    def _apply_if_finite(self, grads, variables, statistics, after_update, grad_bounds=None,
                         state=(), merge=()):
        """Apply `grads` only if they and `statistics` are finite and bounded.

        A gradient counts as bad if it is not finite or if ``learning_rate * sum|g|``
        exceeds `MAX_UPDATE`, which keeps every update of the usual optimizers (SGD with
        momentum, Adam, RMSprop) far from float32 overflow; a refused step is then the
        only way weights could go bad, and no copy of the weights is needed. For a
        large gradient, `grad_bounds` (``{id(variable): bound on max|g|}``, computed
        from the small statistics it is a product of) replaces the pass over it.
        `after_update(state)` runs after a good update (max-norm, chains, running
        averages); otherwise nothing changes and `diverged_at` records the step for
        `DivergenceGuard` to report.

        Under a multi-replica `tf.distribute` strategy each replica brings the gradient
        of its share of the global batch; the update applies their mean (as a
        single device would on the global batch), and only if every replica's step is
        good. Each entry of `state` is then merged across replicas before
        `after_update` sees it, as `merge` says: "concat" (chain shares, in replica
        order) or "mean".
        """
        grad_bounds = grad_bounds or {}
        ok = self.diverged_at < 0
        for t in statistics:
            ok = tf.logical_and(ok, tf.math.is_finite(tf.reduce_sum(t)))
        lr = tf.cast(self.optimizer.learning_rate, "float32")
        for g, v in zip(grads, variables):
            total = grad_bounds.get(id(v))
            if total is None:
                total = tf.reduce_sum(tf.abs(g))
            ok = tf.logical_and(ok, tf.math.is_finite(total))
            ok = tf.logical_and(ok, lr * total < MAX_UPDATE)

        def bad():
            self.diverged_at.assign(tf.cast(self.optimizer.iterations, "int64"))
            return tf.constant(False)

        ctx = self._replica_context()
        if ctx is None:
            def good():
                self._apply_gradients(grads, variables)
                after_update(list(state))
                return tf.constant(True)

            return tf.cond(ok, good, bad)
        replicas = ctx.num_replicas_in_sync
        # The optimizer sums the replicas' gradients: each brings its share of the mean.
        grads = [g / replicas for g in grads]

        def apply_on_replica(grads):
            self.optimizer.apply_gradients(zip(grads, variables))

        def cross_replica(distribution, grads, ok, state):
            local = distribution.experimental_local_results
            all_ok = tf.reduce_all(tf.stack(local(ok)))
            merged = [tf.concat(local(t), 0) if how == "concat" else tf.add_n(local(t)) / replicas
                      for t, how in zip(state, merge)]

            def good():
                # The optimizer's update needs a replica context (it all-reduces); the
                # condition itself must be decided here, across replicas.
                distribution.extended.call_for_each_replica(apply_on_replica, args=(grads,))
                after_update(merged)
                return tf.constant(True)

            return tf.cond(all_ok, good, bad)

        return ctx.merge_call(cross_replica, args=(grads, ok, list(state)))


def _fusable_sgd(optimizer):
    """True for a plain Keras `SGD` with none of the options (weight decay, clipping,
    EMA, gradient accumulation) that TensorFlow's fused kernels lack."""
    return (type(optimizer) is keras.optimizers.SGD
            and optimizer.weight_decay is None and optimizer.clipnorm is None
            and optimizer.clipvalue is None and optimizer.global_clipnorm is None
            and not optimizer.use_ema and not optimizer.gradient_accumulation_steps)


class _EpochOrder(keras.callbacks.Callback):
    """Tells the input pipeline of `_epoch_ordered_batches` which epoch begins."""

    def __init__(self):
        super().__init__()
        self.epoch = tf.Variable(0, dtype="int64", trainable=False)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch.assign(epoch)


def _epoch_ordered_batches(x, batch_size, seed):
    """Batches of the rows of `x` in an order that depends only on `seed` and the epoch.

    Epoch ``e`` visits the rows in the permutation drawn statelessly from
    ``(seed, e)``, so a run resumed at epoch ``e`` in a new process sees the data in
    the order an uninterrupted run would. Shuffling row indices and gathering batches
    avoids buffering the rows. Returns ``(dataset, callback)``; the callback must run
    in `fit` to advance the epoch.
    """
    order = _EpochOrder()
    rows = tf.constant(x)
    n = len(x)

    def permuted_batches(_):
        key = tf.stack([tf.constant(seed, "int64"), order.epoch.read_value()])
        perm = tf.random.experimental.stateless_shuffle(tf.range(n, dtype="int64"), seed=key)
        return tf.data.Dataset.from_tensor_slices(perm).batch(batch_size)

    dataset = (tf.data.Dataset.from_tensors(0).flat_map(permuted_batches)
               .apply(tf.data.experimental.assert_cardinality(-(-n // batch_size)))
               .map(lambda i: tf.gather(rows, i)).prefetch(1))
    return dataset.with_options(input_options()), order


def input_options():
    """`tf.data.Options` of tfboltz's input pipelines: one input thread and no
    autotuning. On a small CPU tf.data's tuning threads compete with the train step
    (seen: some epochs 50-60% slower at random)."""
    options = tf.data.Options()
    options.threading.private_threadpool_size = 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.enabled = False
    return options


class _ReplicaSeed(keras.random.SeedGenerator):
    """A replica's view of a shared `SeedGenerator`: draws advance the shared state and
    fold in the replica id (a Keras random op accepts it as its `seed`)."""

    def __init__(self, base, replica_id):  # no state of its own: no super().__init__
        self.base = base
        self.replica_id = replica_id

    def next(self, ordered=True):
        seed = self.base.next(ordered)
        offset = tf.cast(self.replica_id, seed.dtype) * tf.constant(1_000_003, seed.dtype)
        return seed + tf.stack([offset, tf.zeros_like(offset)])
