"""Boltzmann machines as `keras.Sequential` classifiers (discriminative fine-tuning).

`to_sequential(model, num_classes)` returns a plain Keras classifier that takes raw
inputs, whose hidden Dense layers start from the generative weights:

- RBM: ``Dense(n_hidden)`` with the RBM's ``W`` and hidden bias (the up-pass), then a
  softmax output layer.
- DBM (Salakhutdinov & Hinton 2009, section 5): a `MeanFieldAugmentation` layer runs
  mean-field in the DBM and outputs the data joined with the approximate posterior of
  the second hidden layer, ``[v, q(h_2)]``; the first Dense layer gets both halves of
  the first hidden layer's input (``W_1`` and ``W_2'``), the later ones ``W_l``. The
  augmentation layer is frozen (the posterior stays the generative model's), the
  Dense layers are trainable.

The result compiles, fits and exports (``model.export(path)``) with plain Keras calls.
Training wrappers for the classifier (adversarial, virtual adversarial, distillation)
are in `tfboltz.fine_tuning`.
"""

import keras
import tensorflow as tf

from tfboltz import mean_field, validation
from tfboltz import units as units_lib


@keras.saving.register_keras_serializable(package="tfboltz")
class GroupSoftmax(keras.layers.Layer):
    """Softmax over consecutive groups of `group_size` features (a softmax unit layer's
    mean); the features' count must be a multiple of `group_size`."""

    def __init__(self, group_size, **kwargs):
        super().__init__(**kwargs)
        self.group_size = validation.positive_int("group_size", group_size)

    def call(self, inputs):
        n = inputs.shape[-1]
        grouped = tf.reshape(inputs, (-1, n // self.group_size, self.group_size))
        return tf.reshape(tf.nn.softmax(grouped, axis=-1), (-1, n))

    def get_config(self):
        return {**super().get_config(), "group_size": self.group_size}


@keras.saving.register_keras_serializable(package="tfboltz")
class MeanFieldAugmentation(keras.layers.Layer):
    """``[v, q(h_2)]``: visible rows joined with a DBM's mean-field posterior means of
    its second hidden layer.

    The layer carries its own (frozen) copy of the DBM's weights and runs
    `n_mean_field` mean-field iterations at most, stopping early once no mean moves by more
    than `tol`, exactly as `DBM.mean_field` does.

    Args:
        layer_sizes: the DBM's layer sizes.
        visible: the DBM's visible units (a units layer or its serialized config).
        top: the DBM's top units.
        n_mean_field: mean-field iterations at most (``n_iter``, its old name, still
            works, as do files saved with it).
        tol: convergence tolerance.
    """

    def __init__(self, layer_sizes, visible, top, n_mean_field=None, tol=1e-5, **kwargs):
        n_mean_field = validation.renamed(kwargs, "n_iter", "n_mean_field", n_mean_field,
                                          "MeanFieldAugmentation", strict=False)
        super().__init__(**kwargs)
        self.layer_sizes = [int(n) for n in layer_sizes]
        self.n_mean_field = validation.positive_int(
            "n_mean_field", 10 if n_mean_field is None else n_mean_field)
        self.tol = validation.non_negative_float("tol", tol)
        self.unit_layers = mean_field.make_unit_layers(self.layer_sizes, visible, top)
        self.trainable = False

    def build(self, input_shape=None):
        for layer, size in zip(self.unit_layers, self.layer_sizes):
            if not layer.built:
                layer.build((None, size))
        self.kernels = [self.add_weight(shape=(a, b), initializer="zeros", trainable=False,
                                        name=f"kernel_{i + 1}")
                        for i, (a, b) in enumerate(zip(self.layer_sizes, self.layer_sizes[1:]))]
        # Frozen: the posterior stays the generative model's (set on each unit layer;
        # Keras does not pass a parent's setting on to layers it rebuilt from config).
        for layer in self.unit_layers:
            layer.trainable = False
            for var in layer.weights:
                var.trainable = False
        self.trainable = False
        self.built = True

    def call(self, inputs):
        v = tf.cast(inputs, self.kernels[0].dtype)
        means, _ = mean_field.mean_field_means(self.unit_layers, self.kernels, v,
                                               self.n_mean_field,
                                    tf.constant(self.tol, v.dtype))
        return tf.concat([v, means[2]], axis=-1)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.layer_sizes[0] + self.layer_sizes[2])

    def get_config(self):
        return {
            **super().get_config(), "layer_sizes": self.layer_sizes,
            "visible": keras.saving.serialize_keras_object(self.unit_layers[0]),
            "top": keras.saving.serialize_keras_object(self.unit_layers[-1]),
            "n_mean_field": self.n_mean_field, "tol": self.tol,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "n_iter" in config:  # saved before the argument was renamed
            config["n_mean_field"] = config.pop("n_iter")
        for key in ("visible", "top"):
            if isinstance(config[key], dict):
                config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    @classmethod
    def from_dbm(cls, dbm, n_mean_field=None, tol=None):
        """The augmentation layer of `dbm`, with a copy of its current weights."""
        layer = cls(dbm.layer_sizes, keras.saving.serialize_keras_object(dbm.unit_layers[0]),
                    keras.saving.serialize_keras_object(dbm.unit_layers[-1]),
                    n_mean_field=dbm.n_mean_field if n_mean_field is None else n_mean_field,
                    tol=dbm.mean_field_tol if tol is None else tol, name="mean_field_augmentation")
        layer.build((None, dbm.n_visible))
        for dst_layer, src_layer in zip(layer.unit_layers, dbm.unit_layers):
            for dst, src in zip(dst_layer.weights, src_layer.weights):
                dst.assign(src)
        for dst, src in zip(layer.kernels, dbm.kernels):
            dst.assign(src)
        return layer


def _activation_layers(units_layer, name):
    """The Keras layers after a Dense layer that give these units' mean."""
    if isinstance(units_layer, units_lib.BernoulliUnits):
        return "sigmoid", []
    if isinstance(units_layer, units_lib.NReLUUnits):
        return "relu", []
    if isinstance(units_layer, units_lib.SoftmaxUnits):
        return None, [GroupSoftmax(units_layer._group, name=f"{name}_softmax")]
    raise ValueError("Expected Bernoulli, NReLU or softmax hidden units for a classifier. "
                     f"Received: {type(units_layer).__name__}")


def _hidden_dense(units_layer, kernel, bias, name):
    activation, extra = _activation_layers(units_layer, name)
    dense = keras.layers.Dense(kernel.shape[1], activation=activation, name=name)
    dense.build((None, kernel.shape[0]))
    dense.kernel.assign(kernel)
    dense.bias.assign(bias)
    return [dense, *extra]


def visible_scaled(visible_layer, kernel):
    """``W`` with the rows divided by the visible scale (``v / sigma`` for Gaussian
    units), so that a Dense layer on raw inputs computes ``scale(v) W``."""
    if isinstance(visible_layer, units_lib.GaussianUnits):
        return kernel / tf.reshape(visible_layer.std(), (-1, 1))
    return kernel


def to_sequential(model, num_classes, dropout=0.0, n_mean_field=None, name=None):
    """A `keras.Sequential` classifier initialised from a trained RBM, DBN or DBM.

    The same as ``model.to_sequential(...)``.

    Args:
        model: a trained `tfboltz.RBM`, `tfboltz.DBN` or `tfboltz.DBM`.
        num_classes: size of the softmax output layer (initialised at random), at
            least 2: a softmax over one class is constant.
        dropout: dropout rate before each Dense layer (0 disables it), or a list of
            rates, one per Dense layer from the first to the softmax output (e.g.
            ``[0.2, 0.5, 0.5]`` for a 2-layer DBM: inputs 0.2, hidden layers 0.5).
        n_mean_field: mean-field iterations of a DBM's augmentation layer (default:
            the DBM's `n_mean_field`); DBM only.
        name: the Sequential's name.

    Returns:
        An uncompiled `keras.Sequential` taking raw input rows.

    Example:
        >>> clf = dbm.to_sequential(num_classes=10)
        >>> clf.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...             metrics=["accuracy"])
        >>> clf.fit(x_train, y_train, epochs=10)
        >>> clf.export("out/savedmodel")
    """
    if not callable(getattr(model, "classifier_blocks", None)):
        raise ValueError("Expected an RBM, a DBN or a DBM to turn into a classifier. "
                         f"Received: {type(model).__name__}")
    return model.to_sequential(num_classes, dropout=dropout, n_mean_field=n_mean_field,
                               name=name)


def build_sequential(n_visible, blocks, num_classes, dropout=0.0, head=(), name=None):
    """The Sequential classifier of `to_sequential` from a model's parts.

    Args:
        n_visible: width of the raw input rows.
        blocks: one ``(units_layer, kernel, bias)`` per hidden Dense layer, bottom
            first: the Dense layer computes the units' mean of ``x kernel + bias``.
        num_classes: size of the softmax output layer.
        dropout: a rate, or one rate per Dense layer (the blocks and the output).
        head: Keras layers applied to the raw input first (e.g. a DBM's
            `MeanFieldAugmentation`).
        name: the Sequential's name.
    """
    num_classes = validation.int_at_least("num_classes", num_classes, 2)
    rates = _dropout_rates(dropout, len(blocks) + 1)
    layers = [keras.Input((n_visible,), name="inputs"), *head]
    names = [f"hidden_{i}" for i in range(1, len(blocks) + 1)] + ["output"]
    for (units_layer, kernel, bias), rate, layer_name in zip(blocks, rates, names):
        if rate:
            layers.append(keras.layers.Dropout(rate, name=f"{layer_name}_dropout"))
        layers.extend(_hidden_dense(units_layer, kernel, bias, layer_name))
    if rates[-1]:
        layers.append(keras.layers.Dropout(rates[-1], name="output_dropout"))
    layers.append(keras.layers.Dense(num_classes, activation="softmax", name="output"))
    return keras.Sequential(layers, name=name)


def _dropout_rates(dropout, n_dense):
    """One dropout rate per Dense layer from a rate or a list of `n_dense` rates."""
    if isinstance(dropout, (list, tuple)):
        if len(dropout) != n_dense:
            raise ValueError(f"Expected one dropout rate per Dense layer ({n_dense}). "
                             f"Received: dropout={list(dropout)!r}")
        rates = list(dropout)
    else:
        rates = [dropout] * n_dense
    rates = [validation.non_negative_float("dropout", r) for r in rates]
    if any(r >= 1 for r in rates):
        raise ValueError(f"Expected `dropout` in [0, 1). Received: dropout={dropout!r}")
    return rates
