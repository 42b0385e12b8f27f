"""The base of every tfboltz model: a `keras.Model` whose `train_step` computes the
gradient of the negative log-likelihood from positive and negative statistics and
applies it only when it is safe to (the guarded update)."""

import warnings
import weakref

import keras
import numpy as np
import tensorflow as tf

from tfboltz import classifier, distribute, pipeline, progress, samplers, serving, validation, zoo
from tfboltz.callbacks import MomentumScheduler
from tfboltz.keras_compat import TrainerHooks

#: Bound on ``learning_rate * sum|gradient|`` for a step to be applied.
MAX_UPDATE = 1e30
#: `fit` warns (once per model) when a trained weight grows past this while still
#: finite: the units saturate long before (a sigmoid is flat past an input of 40),
#: so such a model has stopped learning, usually from too high a learning rate.
LARGE_WEIGHT = 1e4


class TrainingDivergedError(FloatingPointError):
    """Raised by `fit` when the statistics or the update stop being finite."""


def divergence_message(epoch, step):
    return (f"Training diverged at epoch {epoch}, step {step}: the statistics or the "
            "gradient were not finite (NaN or inf) or too large for a safe update. The "
            "update was not applied; the model keeps the weights of the last good step. "
            "Check the data for NaN/inf, or lower the learning rate.")


class DivergenceGuard(keras.callbacks.Callback):
    """Stops `fit` when a step was refused: a `TrainingDivergedError`, or a
    `ValueError` when the batch itself was not valid data for the visible units.

    The model's train step skips any update whose batch is not valid data, or whose
    statistics or gradients are not finite (or too large to apply safely), and
    records the optimizer iteration in `model.diverged_at`; the weights therefore
    stay at the last good step.
    """

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._start = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        at = int(self.model.diverged_at.numpy())
        if at >= 0:
            self.model.diverged_at.assign(-1)
            self.model.stop_training = True
            raise self.model.refusal_error(self._epoch + 1, at - self._start + 1)

    def on_epoch_end(self, epoch, logs=None):
        self.model.warn_if_weights_explode()


class EnergyModel(TrainerHooks, keras.Model):
    """Base class of tfboltz's generative models (a `keras.Model`).

    Subclasses define `visible_layer`, `n_visible`, `_init_from_data(x)` and a
    `train_step` that draws its noise from ``self.step_seed(generator)`` and ends with
    ``self._apply_if_finite(...)``.

    Models compute in float32 (the matrix products may run in bfloat16 or float16:
    the `matmul_dtype` argument of the models); other Keras dtype policies are refused.
    """

    def __init__(self, **kwargs):
        dtype = kwargs.get("dtype")
        if dtype is not None:
            policy = keras.dtype_policies.get(dtype)
            if policy.variable_dtype != "float32" or policy.compute_dtype != "float32":
                raise ValueError(
                    "Invalid value received for argument `dtype`. Expected 'float32' "
                    "(tfboltz models compute in float32; run the matrix products in "
                    "bfloat16 or float16 with `matmul_dtype`). "
                    f"Received: dtype={dtype!r}")
        super().__init__(**kwargs)

    @classmethod
    def from_config(cls, config):
        # Unit layers arrive as serialized configs, which the constructors accept.
        return cls(**config)

    # Presets and export -----------------------------------------------------------

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """A model from a zoo preset, as keras-hub's `from_preset`.

        Args:
            preset: a preset name (see `presets()`), or a local directory or file
                holding one.
            load_weights: False builds the architecture with fresh weights.
            **kwargs: passed to `tfboltz.zoo.from_preset` (e.g. `cache_dir`).

        Example:
            >>> dbm = tb.DBM.from_preset("mnist_dbm")
        """
        return zoo.from_preset(preset, cls=cls, load_weights=load_weights, **kwargs)

    @classmethod
    def presets(cls):
        """The names of the zoo's presets of this class (`from_preset` loads them)."""
        return zoo.list_presets(cls)

    def export(self, filepath, format="tf_saved_model", verbose=True):
        """Write a SavedModel with the generative endpoints of this model.

        See `tfboltz.serving.export_model`: hidden means (`serve`, `transform`),
        `reconstruct`, `sample`, `complete`, and per model `free_energy` (RBM),
        `mean_field` (DBM) or `classify` (DBN with labels). It needs no prior call.
        """
        if format != "tf_saved_model":
            raise ValueError("Invalid value received for argument `format`. Expected "
                             f"'tf_saved_model'. Received: format={format!r}")
        return serving.export_model(self, filepath, verbose=verbose)

    def serving_endpoints(self):
        """``[(name, function, input signature)]`` that `export` writes, `serve` first.

        Every model serves ``serve`` / ``transform(x)`` (what calling it returns),
        ``reconstruct(x)``, ``sample(n, steps, seed)`` and ``complete(x, mask, steps,
        seed)``; subclasses add their own. Each function is the one the model's Python
        method runs, so the two agree.
        """
        dtype = tf.as_dtype(self.dtype)
        width = self.n_visible
        x_spec = tf.TensorSpec((None, width), dtype, name="x")
        mask_spec = tf.TensorSpec((None, width), tf.bool, name="mask")
        steps_spec = tf.TensorSpec((), tf.int32, name="steps")
        seed_spec = tf.TensorSpec((), tf.int64, name="seed")

        def transform(x):
            return self(x)

        def complete(x, mask, steps, seed):
            checks = serving.count_checks(steps=steps) + [tf.debugging.assert_equal(
                tf.shape(mask), tf.shape(x), message="Expected `mask` of the shape of `x`.")]
            mask = serving.checked(tf.cast(mask, dtype), checks)
            return self._sample_fn(x, mask, steps, seed, False, True)

        def sample(n, steps, seed):
            n = serving.checked(n, serving.count_checks(n, steps))
            zeros = tf.zeros((n, width), dtype)
            return self._sample_fn(zeros, zeros, steps, seed, True, True)

        return [("serve", transform, [x_spec]), ("transform", transform, [x_spec]),
                ("reconstruct", self._reconstruct_fn, [x_spec]),
                ("sample", sample, [tf.TensorSpec((), tf.int32, name="n"), steps_spec,
                                    seed_spec]),
                ("complete", complete, [x_spec, mask_spec, steps_spec, seed_spec])]

    # State ---------------------------------------------------------------------------

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
        # Batches the train step passes over without updating (set on resuming in the
        # middle of an epoch, `skip_batches`). A plain tf.Variable: run-time state,
        # not a weight of the model, so saved files do not change.
        self._batches_to_skip = tf.Variable(
            0, dtype="int64", trainable=False, name="batches_to_skip",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
        # `batch_fault` of the batch whose step was refused (code 0: refused for
        # divergence), for the error `fit` raises. Run-time state, as above.
        self._refused_fault = tf.Variable(
            tf.zeros(3), trainable=False, name="refused_fault",
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    def skip_batches(self, n):
        """Make the next `n` train steps pass over their batches without any change.

        A skipped step leaves weights, chains, the optimizer and the random state as
        they were (its metrics still count). `tfboltz.callbacks.TrainingCheckpoint`
        uses it to resume in the middle of an epoch: the batches trained on before the
        interruption come again in the same order and are passed over.
        """
        self._batches_to_skip.assign(validation.non_negative_int("n", n))

    #: The default optimizer's learning rate is this over `hidden_fan_in()` (see `compile`).
    DEFAULT_LEARNING_RATE_SCALE = 2.0
    #: The default optimizer's momentum: the first value for the first
    #: `DEFAULT_MOMENTUM_EPOCHS` epochs of a `fit`, then the second (see `compile`).
    DEFAULT_MOMENTUM = (0.5, 0.9)
    DEFAULT_MOMENTUM_EPOCHS = 5

    def compile(self, optimizer=None, steps_per_execution=50, jit_compile="auto", **kwargs):
        """Configure the model for `fit`.

        Generative models take no loss: the train step computes the gradient of the
        negative log-likelihood from positive and negative statistics and hands it to
        the optimizer.

        With no `optimizer` (and in a `fit` with no `compile` before it) the model
        follows Hinton's practical guide to training RBMs (2010, sections 5 and 9):
        `default_optimizer()` is SGD with momentum 0.5 and learning rate
        ``2 / hidden_fan_in()``, and `fit` raises the momentum to 0.9 from its sixth
        epoch (`default_schedules`; logged as ``momentum``; `train_on_batch` keeps
        0.5). The guide starts with momentum 0.5 while the weights move far and raises
        it once learning settles; and it makes the updates smaller for units with a
        large fan-in, since many small changes in the same direction add up in their
        input. The fan-in is that of the hidden units: `n_visible` for an RBM (a rate
        of 0.0026 for 784 pixels, 0.031 for 64), both neighbouring layers for a DBM.

        The default this replaces, ``SGD(0.01, momentum=0.9)`` from the first step,
        is unstable with PCD on 784-pixel images. On scikit-learn's digits upsampled
        to 28x28, the features of a 784-500 PCD-1 RBM (10 epochs, batch 32) reached
        a linear-probe test accuracy of 76% with it, 93% with these defaults; on the
        8x8 digits, CD-1 reached 89% and 93%, PCD-1 89% and 86%. The scale 2 is the
        largest that kept PCD's accuracy at batch sizes 10, 32 and 100
        (`scripts/check_defaults.py`, docs/results/defaults_digits*.json). An
        optimizer you pass is used exactly as given, and `fit` adds no schedule to it.

        Args:
            optimizer: a Keras optimizer; default `default_optimizer()` (see above).
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
            optimizer = self.default_optimizer()
            # A weak reference: the model's saved state must hold the optimizer once.
            self._default_optimizer = weakref.ref(optimizer)
        else:
            self._default_optimizer = None
        super().compile(
            optimizer=optimizer, steps_per_execution=steps_per_execution,
            jit_compile=jit_compile, **kwargs,
        )
        self._build_optimizer()

    def hidden_fan_in(self):
        """The most units whose states enter one hidden unit's input: in the chain of
        layer sizes (`layer_sizes`, or ``[n_visible, n_hidden]`` for an RBM) a hidden
        layer's units see both neighbouring layers. It scales the default learning
        rate (see `compile`)."""
        sizes = getattr(self, "layer_sizes", None) or [self.n_visible, self.n_hidden]
        sizes = [*sizes, 0]
        return max(sizes[i - 1] + sizes[i + 1] for i in range(1, len(sizes) - 1))

    def default_optimizer(self):
        """The optimizer `compile()` uses when given none: ``SGD(2 / hidden_fan_in(),
        momentum=0.5)``, made in the model's strategy scope (see `compile`)."""
        with self.distribute_strategy.scope():
            return keras.optimizers.SGD(
                learning_rate=self.DEFAULT_LEARNING_RATE_SCALE / self.hidden_fan_in(),
                momentum=self.DEFAULT_MOMENTUM[0])

    def default_schedules(self, callbacks=None):
        """The callbacks `fit` adds for the default optimizer: a
        `tfboltz.callbacks.MomentumScheduler` giving momentum 0.5 for the first 5
        epochs (counted as `fit` counts them, from `initial_epoch`), then 0.9.

        Empty when the model was compiled with an optimizer of the user's, or when
        `callbacks` (the user's) already schedule the momentum.
        """
        ref = getattr(self, "_default_optimizer", None)
        if ref is None or ref() is not self.optimizer:
            return []
        if any(isinstance(c, MomentumScheduler) for c in callbacks or []):
            return []
        first, then = self.DEFAULT_MOMENTUM
        return [MomentumScheduler([first] * self.DEFAULT_MOMENTUM_EPOCHS + [then])]

    def compile_from_config(self, config):
        """Re-compile a loaded model with the configuration it was saved with."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)

    def _build_optimizer(self):
        """Create the optimizer's slots now, in the model's strategy scope: the guarded
        update applies gradients inside a condition, where no variable may be created."""
        if not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)

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
        """Validate array-like data. A dataset's element type and width are checked
        here, its values batch by batch in the train step (`check_batch`)."""
        if isinstance(x, tf.data.Dataset):
            spec = x.element_spec
            while isinstance(spec, (tuple, list)) and spec:
                spec = spec[0]
            if not isinstance(spec, tf.TensorSpec):
                raise ValueError(f"Expected a dataset of visible rows (tensors, or tuples "
                                 f"whose first entry holds them) for `{name}`. Received: "
                                 f"element_spec={x.element_spec}")
            if not (spec.dtype.is_floating or spec.dtype.is_integer or spec.dtype.is_bool):
                raise ValueError(f"Expected real numbers in `{name}`. Received: a dataset "
                                 f"of dtype={spec.dtype.name}")
            if spec.shape.rank is not None and (
                    spec.shape.rank not in (1, 2) or spec.shape[-1] not in (None, self.n_visible)):
                raise ValueError(f"Expected `{name}` rows of width {self.n_visible}. "
                                 f"Received: a dataset of shape {spec.shape}")
            return x
        if x is None or pipeline.is_stream(x):
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
        validation.fit_arguments(batch_size, epochs, kwargs)
        if batch_size is not None and (isinstance(x, tf.data.Dataset) or pipeline.is_stream(x)):
            raise ValueError("Expected no `batch_size` for a dataset or generator: it "
                             f"batches itself. Received: batch_size={batch_size!r}")
        x = self._checked(x, "x")
        val_rows = None
        if validation_data is not None:
            val_x = pipeline.as_rows(validation_data)
            val_x = self._checked(val_x, "validation_data")
            validation_data = val_x
            val_rows = pipeline.take_rows(val_x, pipeline.MONITOR_ROWS)
        monitor = pipeline.take_rows(x, pipeline.MONITOR_ROWS)
        if isinstance(x, tf.data.Dataset) and monitor is not None:
            # The first rows now, before anything changes; every batch in the step.
            self.check_data(monitor, "x")
        self._prepare_fit()
        if not bool(self.data_initialized.numpy()) and monitor is not None:
            self.init_from_data(x if not isinstance(x, tf.data.Dataset) else monitor)
        if isinstance(x, tf.data.Dataset):
            kwargs.setdefault("shuffle", False)  # a dataset shuffles itself
        order_callbacks = []
        if isinstance(x, np.ndarray) and kwargs.get("shuffle", True) and self.seed is not None:
            # Keras shuffles arrays from the global random state; a seeded model
            # shuffles from its own seed so that the same seed gives the same weights.
            x, order = pipeline.epoch_ordered_batches(x, batch_size or 32, self.seed)
            order_callbacks = [order]
            batch_size, kwargs["shuffle"] = None, False
        callbacks = [*order_callbacks, DivergenceGuard(),
                     *self._epoch_callbacks(monitor, val_rows),
                     *self.default_schedules(callbacks), *(callbacks or [])]
        self.diverged_at.assign(-1)
        return super().fit(x, y, batch_size=batch_size, epochs=epochs,
                           validation_data=validation_data, callbacks=callbacks, **kwargs)

    def train_on_batch(self, x, y=None, sample_weight=None, class_weight=None,
                       return_dict=False):
        """One generative update on one batch of visible rows (`keras.Model`'s call).

        The first call compiles the model with the default optimizer if needed and
        initialises it from the batch (`init_from_data`).

        Raises:
            ValueError: bad data, before any state changes.
            TrainingDivergedError: the update was refused (see `fit`).
        """
        x = self._checked(x, "x")
        self._prepare_fit()
        if not bool(self.data_initialized.numpy()):
            self.init_from_data(x)
        self.diverged_at.assign(-1)
        logs = super().train_on_batch(x, y, sample_weight=sample_weight,
                                      class_weight=class_weight, return_dict=return_dict)
        if int(self.diverged_at.numpy()) >= 0:
            self.diverged_at.assign(-1)
            raise self.refusal_error(1, 1)
        return logs

    def _prepare_fit(self):
        """Check that the persistent chains split over the strategy's replicas, before
        anything changes (`fit` and `train_on_batch` call this first, before any
        initialisation), then compile with the defaults if needed. Under a
        distribution strategy, run one step per call: TensorFlow cannot place the
        cross-replica condition of the guarded update inside Keras's multi-step loop."""
        distribute.check_chain_variables(self, self.distribute_strategy.num_replicas_in_sync)
        if getattr(self, "optimizer", None) is None or not self.compiled:
            self.compile()
        self._build_optimizer()
        if distribute.is_distributed(self.distribute_strategy) and self.steps_per_execution > 1:
            self.steps_per_execution = 1
            self.train_function = None

    def _sampling_arguments(self, n, steps, init, clamp, seed, verbose, generator=None,
                            min_steps=0):  # min_steps: 0 or 1
        """Check the arguments every model's `sample` takes, before anything runs.

        Returns ``(steps, n, v0, mask, seed tensor, verbose)``; `v0` is `init`, or zeros
        when the chains start from noise (``init is None``).
        """
        steps = (validation.positive_int("steps", steps) if min_steps
                 else validation.non_negative_int("steps", steps))
        n, init, mask = self._sampling_request(n, init, clamp)
        verbose = progress.resolve_verbose(verbose)
        seed = samplers.sampling_seed(seed, generator)
        v0 = np.zeros((n, self.n_visible), "float32") if init is None else init
        return steps, n, v0, mask, seed, verbose

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

        Its hidden Dense layers start from the generative weights (`classifier_blocks`);
        see `tfboltz.classifier.to_sequential` for the arguments.
        """
        head, blocks = self.classifier_blocks(n_mean_field)
        return classifier.build_sequential(self.n_visible, blocks, num_classes,
                                           dropout=dropout, head=head, name=name)

    def classifier_blocks(self, n_mean_field=None):
        """``(head layers, [(units_layer, kernel, bias), ...])`` of `to_sequential`."""
        raise NotImplementedError(f"{type(self).__name__} has no classifier form.")

    def init_from_data(self, x):
        """Data-dependent initialisation (visible biases, persistent chains).

        Called automatically by the first `fit`; call it yourself to control it.
        """
        x = self._checked(x, "x")
        self._init_from_data(np.asarray(x, "float32"))
        self.data_initialized.assign(True)

    # The guarded update ----------------------------------------------------------

    def step_seed(self, generator):
        """The seed a train step draws its noise from: `generator` (see
        `tfboltz.distribute.step_seed`). Call it once, before any draw: a skipped step
        (`skip_batches`) puts the generator back to the state it had here."""
        self._step_generator = generator
        self._step_seed_state = tf.identity(generator.state.value)
        return distribute.step_seed(generator)

    def check_batch(self, v):
        """Check the batch `v` of a train step against the visible units (every row a
        model trains on passes here, datasets included). Call it in `train_step`
        before the update: `_apply_if_finite` then refuses the step of an invalid
        batch, and `fit` raises the `ValueError` that the same rows would raise as
        an array (`refusal_error`)."""
        self._step_fault = self.visible_layer.batch_fault(v)

    def warn_if_weights_explode(self):
        """Warn once (per model) if a trained weight is larger than `LARGE_WEIGHT` in
        magnitude: finite, so every update was applied, but no longer a sane model."""
        if getattr(self, "_warned_large_weights", False):
            return
        largest = max((float(np.max(np.abs(v.numpy())))
                       for v in self.trainable_variables if np.prod(v.shape)), default=0.0)
        if largest > LARGE_WEIGHT:
            self._warned_large_weights = True
            warnings.warn(f"{type(self).__name__} {self.name!r}: a weight reached "
                          f"{largest:.3g} in magnitude (more than {LARGE_WEIGHT:g}). The "
                          "units saturate and learning has stopped; lower the learning "
                          "rate.", RuntimeWarning, stacklevel=2)

    def refusal_error(self, epoch, step):
        """The error for a refused step: `ValueError` for invalid data (see
        `check_batch`), else `TrainingDivergedError`."""
        fault = self._refused_fault.numpy()
        self._refused_fault.assign(tf.zeros(3))
        if fault[0] == 0:
            return TrainingDivergedError(divergence_message(epoch, step))
        return ValueError(f"{self.visible_layer.fault_message(fault)} in the batch of epoch "
                          f"{epoch}, step {step}. No update was made from that batch on.")

    def _skip(self, seed_state):
        """The skipped step: count it, put the random state back, change nothing else."""
        self._batches_to_skip.assign_sub(1)
        if seed_state is not None:
            self._step_generator.state.assign(seed_state)
        return tf.constant(False)

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

        Under a `tf.distribute` strategy each replica brings the gradient of its rows
        of the global batch, which Keras may split unevenly, some replicas getting none
        (a last batch smaller than the number of replicas). The first of `statistics`
        is the replica's positive phase, one row per row of its batch: the update
        applies the replicas' gradients weighted by their shares of the global rows
        (a replica without rows contributes nothing, and does not count as a bad
        step), which is what a single device computes on the global batch; the
        negative phase of persistent chains is the same on every replica
        (`distribute.all_chains`). It applies only if every replica's step is good.
        Each entry of `state` is then merged across replicas before `after_update`
        sees it, as `merge` says (`distribute.merge_replicas`): "concat" (chain shares,
        in replica order) or "mean" (weighted by rows as the gradients are).
        """
        grad_bounds = grad_bounds or {}
        # The batch's own check (`check_batch`): an invalid batch is refused as a
        # diverging step is, and `fit` reports it as bad data.
        fault = getattr(self, "_step_fault", None)
        self._step_fault = None
        fault = tf.zeros(3) if fault is None else fault
        ok = tf.logical_and(self.diverged_at < 0, tf.equal(fault[0], 0.0))
        for t in statistics:
            ok = tf.logical_and(ok, tf.math.is_finite(tf.reduce_sum(t)))
        lr = tf.cast(self.optimizer.learning_rate, "float32")
        for g, v in zip(grads, variables):
            total = grad_bounds.get(id(v))
            if total is None:
                total = tf.reduce_sum(tf.abs(g))
            ok = tf.logical_and(ok, tf.math.is_finite(total))
            ok = tf.logical_and(ok, lr * total < MAX_UPDATE)
        seed_state = getattr(self, "_step_seed_state", None)
        self._step_seed_state = None

        def bad(fault=fault):
            def first():  # the later steps of the same call are refused as well
                self.diverged_at.assign(tf.cast(self.optimizer.iterations, "int64"))
                self._refused_fault.assign(fault)
                return tf.constant(False)

            return tf.cond(self.diverged_at < 0, first, lambda: tf.constant(False))

        ctx = distribute.replica_context()
        if ctx is None:
            def good():
                self.optimizer.apply_gradients(zip(grads, variables))
                after_update(list(state))
                return tf.constant(True)

            skipping = self._batches_to_skip > 0
            return tf.cond(tf.logical_and(ok, tf.logical_not(skipping)), good,
                           lambda: tf.cond(skipping, lambda: self._skip(seed_state), bad))
        # Collectives in the replica context: they reach the replicas of every worker
        # (a merge_call only sees this worker's).
        share, all_ok, merged = distribute.merge_replicas(
            tf.shape(statistics[0])[0], ok, list(state), list(merge))
        fault = distribute.merge_faults(fault)
        # The optimizer sums the replicas' gradients; select away those of a replica
        # without rows (NaN means).
        grads = [tf.where(share > 0, g * share, tf.zeros_like(g)) for g in grads]

        def apply_on_replica(grads):
            self.optimizer.apply_gradients(zip(grads, variables))

        def cross_replica(distribution, grads, all_ok, merged, seed_state, fault):
            def first(value):  # every replica holds the same value
                return distribution.experimental_local_results(value)[0]

            def good():
                # The optimizer's update needs a replica context (it all-reduces); the
                # condition itself must be decided here, across replicas.
                distribution.extended.call_for_each_replica(apply_on_replica, args=(grads,))
                after_update([first(t) for t in merged])
                return tf.constant(True)

            first_state = None if seed_state is None else first(seed_state)
            skipping = self._batches_to_skip > 0
            return tf.cond(tf.logical_and(first(all_ok), tf.logical_not(skipping)), good,
                           lambda: tf.cond(skipping, lambda: self._skip(first_state),
                                           lambda: bad(first(fault))))

        return ctx.merge_call(cross_replica,
                              args=(grads, all_ok, merged, seed_state, fault))
