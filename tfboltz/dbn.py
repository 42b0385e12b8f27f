"""Deep belief nets (Hinton, Osindero & Teh 2006): a greedy stack of RBMs whose top
RBM may be joined with a softmax label group.

After greedy training (`pretrain_dbn`) the lower RBMs become a directed sigmoid belief
net: generative weights (each RBM's ``W`` and visible bias) point down, recognition
weights (a copy of ``W`` and the hidden bias, untied from then on) point up; the top
RBM stays undirected. `DBN.fit(x, y)` runs the up-down (contrastive wake-sleep)
fine-tuning of the 2006 paper through Keras's `fit`.
"""

import keras
import numpy as np
import tensorflow as tf

from tfboltz import classifier, progress, serving, validation
from tfboltz import units as units_lib
from tfboltz.energy_model import DivergenceGuard, EnergyModel
from tfboltz.rbm import RBM
from tfboltz.samplers import SeedStream, sampling_seed


@keras.saving.register_keras_serializable(package="tfboltz")
class DBN(EnergyModel):
    """A deep belief net of any depth, optionally with labels joined to its top RBM.

    Layers ``v = x_0, x_1, ..., x_L``; RBM ``l`` connects ``x_l`` and ``x_{l+1}``. With
    ``num_classes``, the top RBM's visible layer is ``[x_{L-1}, label]``: Bernoulli units
    and one softmax group (`tfboltz.units.ConcatUnits`).

    Args:
        layer_sizes: ``[n_visible, n_1, ..., n_L]``, at least one RBM.
        visible: unit type of the visible layer ("bernoulli" or "gaussian", or a units
            layer); hidden layers are Bernoulli.
        num_classes: size of the label group joined to the top RBM (0: none;
            ``n_labels``, its old name, still works, as do files saved with it).
        learning: "cd" or "pcd" for the greedy training of every RBM.
        k: Gibbs steps of the top RBM in the up-down fine-tuning.
        l2: L2 weight decay of every RBM's greedy training.
        discriminative: weight of a discriminative term in the up-down update of the
            top RBM (needs labels; 0, the default, is the 2006 paper's purely
            generative up-down). The top RBM's parameters also descend
            ``discriminative * -log p(y | h)``, the cross-entropy of the label
            probabilities `classify` reads (``h`` the deterministic recognition pass
            below the top): the hybrid objective of Larochelle & Bengio (2008) on the
            top RBM. The recognition and generative weights keep their wake-sleep
            updates.
        seed: int seed.

    Example:
        >>> dbn = tb.DBN([784, 500, 500, 2000], num_classes=10, seed=0)
        >>> tb.pretrain_dbn(dbn, x_train, y_train, epochs=30)
        >>> dbn.classify(x_test).argmax(1)                  # by free energy
        >>> dbn.compile(optimizer=keras.optimizers.SGD(0.001))
        >>> dbn.fit(x_train, y_train, batch_size=100, epochs=10)   # up-down
        >>> digits = dbn.generate(np.repeat(np.arange(10), 10), steps=1000)
    """

    def __init__(self, layer_sizes, visible="bernoulli", num_classes=None, learning="cd", k=1,
                 l2=0.0, seed=None, discriminative=0.0, **kwargs):
        num_classes = validation.renamed(kwargs, "n_labels", "num_classes", num_classes, "DBN",
                                         strict=False)
        num_classes = validation.non_negative_int("num_classes", 0 if num_classes is None
                                                  else num_classes)
        super().__init__(**kwargs)
        if not isinstance(layer_sizes, (list, tuple)) or len(layer_sizes) < 2:
            raise ValueError("Expected `layer_sizes` to list the visible size and at least one "
                             f"hidden layer size. Received: layer_sizes={layer_sizes!r}")
        self.layer_sizes = [validation.positive_int("layer_sizes", n) for n in layer_sizes]
        self.n_visible = self.layer_sizes[0]
        self.num_classes = num_classes
        if self.num_classes == 1:
            raise ValueError("Invalid value received for argument `num_classes`. Expected 0 "
                             f"(no labels) or at least 2. Received: num_classes={num_classes!r}")
        self.k = validation.positive_int("k", k)
        self.learning = validation.one_of("learning", learning, ("cd", "pcd"))
        self.l2 = validation.non_negative_float("l2", l2)
        self.discriminative = validation.non_negative_float("discriminative", discriminative)
        if self.discriminative and not self.num_classes:
            raise ValueError("Invalid value received for argument `discriminative`. Expected "
                             "0 for a DBN without labels (num_classes=0). Received: "
                             f"discriminative={discriminative!r}")
        self.seed = seed = validation.seed(seed)
        n_rbms = len(self.layer_sizes) - 1
        rbms = []
        for i in range(n_rbms):
            n_in, n_out = self.layer_sizes[i], self.layer_sizes[i + 1]
            vis = visible if i == 0 else "bernoulli"
            if i == n_rbms - 1 and self.num_classes:
                if i == 0 and not (isinstance(vis, str) and vis.lower() in ("bernoulli",
                                                                              "binary")):
                    raise ValueError("Expected Bernoulli visibles when labels join a one-RBM "
                                     f"DBN. Received: visible={visible!r}")
                vis = units_lib.ConcatUnits([
                    units_lib.BernoulliUnits(n_in, name="features"),
                    units_lib.SoftmaxUnits(self.num_classes, name="labels")], name="visible")
                n_in += self.num_classes
            rbms.append(RBM(n_in, n_out, visible=vis, learning=self.learning, l2=self.l2,
                            sample_visible=self.learning == "pcd",
                            seed=None if seed is None else seed + 10 * i, name=f"rbm_{i + 1}"))
        self.rbms = rbms
        self.visible_layer = rbms[0].visible_layer if not (n_rbms == 1 and self.num_classes) \
            else rbms[0].visible_layer.parts[0]
        self.seed_generator = keras.random.SeedGenerator(seed, name="dbn_seed_generator")
        self.loss_trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ("generative_error", "recognition_error", "top_reconstruction_error",
                         *(("label_cross_entropy",) if self.discriminative else ()))}
        self.build((None, self.n_visible))

    def build(self, input_shape=None):
        if self.built:
            return
        self.rec_kernels, self.rec_biases = [], []
        for i in range(len(self.rbms) - 1):
            a, b = self.layer_sizes[i], self.layer_sizes[i + 1]
            self.rec_kernels.append(self.add_weight(shape=(a, b), initializer="zeros",
                                                    name=f"recognition_kernel_{i + 1}"))
            self.rec_biases.append(self.add_weight(shape=(b,), initializer="zeros",
                                                   name=f"recognition_bias_{i + 1}"))
        self._make_state()
        self.built = True

    def get_config(self):
        config = super().get_config()
        config.update({
            "layer_sizes": self.layer_sizes, "num_classes": self.num_classes, "k": self.k,
            "learning": self.learning, "l2": self.l2, "discriminative": self.discriminative,
            "visible": keras.saving.serialize_keras_object(self.visible_layer),
            "seed": self.seed,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("visible"), dict):
            config["visible"] = keras.saving.deserialize_keras_object(config["visible"])
        return cls(**config)

    @property
    def metrics(self):
        return list(self.loss_trackers.values())

    @property
    def top(self):
        """The top (undirected) RBM."""
        return self.rbms[-1]

    # Passes ------------------------------------------------------------------------

    def _up(self, v, sample=False, seed=None):
        """Recognition pass: ``[v, x_1, ..., x_{L-1}]`` (means, or samples)."""
        states = [v]
        below_scale = self.rbms[0].visible_layer.scale if not (
            len(self.rbms) == 1 and self.num_classes) else (lambda t: t)
        x = below_scale(v)
        for w, c in zip(self.rec_kernels, self.rec_biases):
            p = tf.sigmoid(tf.matmul(x, w) + c)
            x = tf.cast(keras.random.uniform(tf.shape(p), seed=seed) < p, p.dtype) \
                if sample else p
            states.append(x)
        return states

    def _top_visible(self, h, labels):
        return tf.concat([h, labels], -1) if self.num_classes else h

    def label_free_energies(self, h):
        """``F([h, e_c])`` of the top RBM for every label c: shape (N, num_classes), for
        states `h` (tensor) of the layer below the top (what `classify` and
        `tfboltz.ais.dbn_bound` sum the labels out of)."""
        top = self.top
        eye = tf.eye(self.num_classes, dtype=h.dtype)
        a_h = tf.matmul(h, top.kernel[:-self.num_classes])
        a_all = a_h[:, None, :] + tf.matmul(eye, top.kernel[-self.num_classes:])[None]
        vis_bias = top.visible_layer.bias
        e_vis = -(tf.reduce_sum(h * vis_bias[:-self.num_classes], -1)[:, None]
                  + vis_bias[-self.num_classes:][None, :])
        return e_vis - top.hidden_layer.log_partition(a_all)

    def up(self, x, batch_size=1000):
        """Recognition means of every layer below the top RBM (list of numpy arrays)."""
        x = self.check_data(x)
        parts = [[t.numpy() for t in self._up(tf.constant(x[i:i + batch_size]))]
                 for i in range(0, len(x), batch_size)]
        return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]

    def down(self, h, batch_size=1000):
        """Generative pass: visible means of states `h` of the layer just below the top
        RBM (``x_{L-1}``, without labels) through the directed generative weights
        (numpy). With one RBM, `h` is already visible and comes back unchanged."""
        h = validation.check_rows(h, self.layer_sizes[-2], "h")
        return np.concatenate([self._down(tf.constant(h[i:i + batch_size])).numpy()
                               for i in range(0, len(h), batch_size)] or
                              [np.zeros((0, self.n_visible), "float32")])

    def _down(self, x):
        for rbm in reversed(self.rbms[:-1]):
            x = rbm.visible_layer.mean(rbm.visible_input(x))
        return x

    def transform(self, x, batch_size=1000):
        """Top-RBM hidden means of visible rows (numpy; what the model returns when
        called)."""
        x = self.check_data(x)
        return np.concatenate([self(tf.constant(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])

    def reconstruct(self, x, batch_size=1000):
        """Visible means after a deterministic pass up to the top RBM's hidden layer and
        back down (numpy). With labels, the label units take their free-energy
        posterior on the way up."""
        x = self.check_data(x)
        return np.concatenate([self._reconstruct_fn(tf.constant(x[i:i + batch_size])).numpy()
                               for i in range(0, len(x), batch_size)])

    @tf.function(reduce_retracing=True)
    def _reconstruct_fn(self, v):
        h = self._up(v)[-1]
        top = self.top
        if self.num_classes:
            labels = tf.nn.softmax(-self.label_free_energies(h))
            vis = tf.concat([h, labels], -1)
        else:
            vis = h
        h_top = top.hidden_layer.mean(top.hidden_input(vis))
        vis = top.visible_layer.mean(top.visible_input(h_top))
        return self._down(vis[:, :self.layer_sizes[-2]])

    def serving_endpoints(self):
        """The endpoints of every model (`EnergyModel.serving_endpoints`); with labels
        also ``classify(x)`` (label probabilities by free energy) and
        ``generate(labels, steps, seed)``."""
        endpoints = super().serving_endpoints()
        if not self.num_classes:
            return endpoints
        x_spec = tf.TensorSpec((None, self.n_visible), tf.as_dtype(self.dtype), name="x")

        def generate(labels, steps, seed):
            checks = serving.count_checks(steps=steps) + [
                tf.debugging.assert_non_negative(labels, message="Expected labels >= 0."),
                tf.debugging.assert_less(labels, self.num_classes,
                                         message=f"Expected labels < {self.num_classes}.")]
            labels = serving.checked(labels, checks)
            return self._generate_fn(tf.shape(labels)[0], labels, steps, seed, True, True)

        return [*endpoints, ("classify", self._classify_fn, [x_spec]),
                ("generate", generate, [tf.TensorSpec((None,), tf.int32, name="labels"),
                                        tf.TensorSpec((), tf.int32, name="steps"),
                                        tf.TensorSpec((), tf.int64, name="seed")])]

    def classifier_blocks(self, n_mean_field=None):
        """The Dense layers of `to_sequential`: the recognition weights, then the top
        RBM's up-pass (its label inputs, if any, left at zero)."""
        blocks = []
        for i, (w, c) in enumerate(zip(self.rec_kernels, self.rec_biases), start=1):
            kernel = classifier.visible_scaled(self.rbms[0].visible_layer, w) if i == 1 else w
            blocks.append((units_lib.BernoulliUnits(), kernel, c))
        top, n_feat = self.top, self.layer_sizes[-2]
        kernel = top.kernel[:n_feat]
        if len(self.rbms) == 1 and not self.num_classes:
            kernel = classifier.visible_scaled(top.visible_layer, kernel)
        blocks.append((top.hidden_layer, kernel, top.hidden_layer.bias))
        return [], blocks

    def classify(self, x, method="free_energy", steps=100, seed=None, batch_size=1000,
                 verbose="auto"):
        """Label probabilities of rows `x` (numpy, ``(N, num_classes)``).

        "free_energy": ``softmax(-F([h, e_c]))`` over labels c, with ``h`` the
        recognition means below the top (exact for the top RBM; the exported
        SavedModel's `classify`). "gibbs": the label, started at random from `seed`,
        unclamped in `steps` Gibbs sweeps of the top RBM with ``h`` clamped; returns
        the final label means. `verbose` ("auto", 0 or 1, see `tfboltz.progress`)
        shows the Gibbs sweeps' progress; "auto" on a terminal or in a notebook.
        """
        if not self.num_classes:
            raise ValueError("Expected a DBN with labels (num_classes > 0) to classify.")
        method = validation.one_of("method", method, ("free_energy", "gibbs"))
        if method == "free_energy":
            x = self.check_data(x)
            return np.concatenate([self._classify_fn(tf.constant(x[i:i + batch_size])).numpy()
                                   for i in range(0, len(x), batch_size)])
        steps = validation.positive_int("steps", steps) if steps else 0
        verbose = progress.resolve_verbose(verbose)
        seed = sampling_seed(seed, self.top.sampling_seed_generator)
        h = tf.constant(self.up(x, batch_size)[-1])
        if not verbose:
            return self._classify_gibbs_fn(h, tf.constant(steps), seed).numpy()
        out = self._top_chains(*self._classify_gibbs_start_fn(h, seed), steps, True, verbose)
        return out[:, -self.num_classes:].numpy()

    @tf.function(reduce_retracing=True)
    def _classify_fn(self, v):
        return tf.nn.softmax(-self.label_free_energies(self._up(v)[-1]))

    @tf.function(reduce_retracing=True)
    def _classify_gibbs_fn(self, h, steps, seed):
        init, mask, top_seed = self._classify_gibbs_start(h, seed)
        out = self.top._sample_fn(init, mask, steps, top_seed, False, True)
        return out[:, -self.num_classes:]

    def _classify_gibbs_start(self, h, seed):
        """The top RBM's chains of `_classify_gibbs_fn`: ``(init, mask, seed)``, the
        labels of `init` drawn at random, `h` clamped by `mask`."""
        stream = SeedStream(seed)
        n = tf.shape(h)[0]
        labels = tf.one_hot(keras.random.randint((n,), 0, self.num_classes, seed=stream),
                            self.num_classes, dtype=h.dtype)
        mask = tf.concat([tf.ones_like(h), tf.zeros_like(labels)], 1)
        return tf.concat([h, labels], 1), mask, stream.split()

    def _top_chains(self, init, mask, seed, steps, means, verbose):
        """`self.top._sample_fn(init, mask, steps, seed, False, means)` with a progress
        bar: the same sweeps, in chunks (see `tfboltz.progress.run_sweeps`)."""
        top = self.top
        chains = progress.run_sweeps(
            lambda chains, sweeps: top._sample_sweeps_fn(chains, mask, sweeps, seed),
            top._sample_start_fn(init, seed, False), steps, verbose)
        return top._sample_end(chains, means)

    def generate(self, labels=None, n=None, steps=1000, seed=None, verbose="auto"):
        """Fantasies: Gibbs sampling in the top RBM (with `labels` clamped, if given),
        then one generative pass down (means). Returns visible means (numpy).

        Args:
            labels: int class per fantasy (needs `num_classes`), or None.
            n: number of fantasies when `labels` is None.
            steps: Gibbs sweeps at the top.
            seed: int seed (the same as the exported SavedModel's `sample` /
                `generate` with that seed); None takes a fresh one from the top RBM's
                `sampling_seed_generator`.
            verbose: "auto" (a progress bar on a terminal or in a notebook), 0 or 1
                (see `tfboltz.progress`); the fantasies are the same either way.
        """
        if labels is not None:
            if not self.num_classes:
                raise ValueError("Expected a DBN with labels to generate given labels.")
            labels = validation.labels(labels, None, self.num_classes, "labels")
            if not len(labels):
                raise ValueError("Expected at least one label in `labels`. Received: labels=[]")
            n = len(labels)
        n = validation.positive_int("n", n)
        steps = validation.positive_int("steps", steps) if steps else 0
        verbose = progress.resolve_verbose(verbose)
        seed = sampling_seed(seed, self.top.sampling_seed_generator)
        given = labels is not None
        labels = labels.astype("int32") if given else np.zeros(n, "int32")
        if not verbose:
            return self._generate_fn(tf.constant(n), tf.constant(labels), tf.constant(steps),
                                     seed, given, True).numpy()
        return self._generate_chunked(tf.constant(n), tf.constant(labels), steps, seed, given,
                                      True, verbose).numpy()

    @tf.function(reduce_retracing=True)
    def _generate_fn(self, n, labels, steps, seed, given_labels, means):
        """`n` fantasies of the top RBM's chain, started from fair coins (and a random
        or given one-hot label, clamped when `given_labels`), passed down: a pure
        function of its inputs and the int64 `seed`, shared by `generate`, `sample`
        and the exported SavedModel."""
        init, mask, top_seed, count = self._generate_start(n, labels, seed, given_labels)
        top_states = self.top._sample_fn(init, mask, steps, top_seed, False, False)
        return self._generate_end(top_states, seed, count, means)

    def _generate_chunked(self, n, labels, steps, seed, given_labels, means, verbose):
        """`_generate_fn` with a progress bar: the same sweeps, in chunks."""
        init, mask, top_seed, count = self._generate_start_fn(n, labels, seed, given_labels)
        top_states = self._top_chains(init, mask, top_seed, steps, False, verbose)
        return self._generate_end_fn(top_states, seed, count, means)

    def _generate_start(self, n, labels, seed, given_labels):
        """The top RBM's chains of `_generate_fn`: ``(init, mask, seed, count)``, with
        `count` the index of the next draw of `seed`."""
        stream = SeedStream(seed)
        top, num_classes = self.top, self.num_classes
        width = top.n_visible
        init = tf.cast(keras.random.uniform((n, width), seed=stream) < 0.5, "float32")
        mask = tf.zeros((n, width))
        if num_classes:
            if not given_labels:
                labels = keras.random.randint((n,), 0, num_classes, seed=stream)
            init = tf.concat([init[:, :-num_classes], tf.one_hot(labels, num_classes)], 1)
            if given_labels:
                mask = tf.concat([tf.zeros((n, width - num_classes)), tf.ones((n, num_classes))], 1)
        top_seed = stream.split()
        return init, mask, top_seed, stream.count

    def _generate_end(self, top_states, seed, count, means):
        """The fantasies of `_generate_fn` from the top RBM's final states."""
        x = self._down(top_states[:, :self.layer_sizes[-2]])
        return x if means else self.visible_layer.sample_from_mean(x, SeedStream(seed, count))

    def sample(self, n=None, steps=1000, init=None, clamp=None, seed=None, means=True,
               verbose="auto"):
        """Draw visible samples.

        Without `init`: ``generate(n=n, steps=steps, seed=seed)``, fantasies of the
        top RBM passed down. With `init`: `steps` sweeps, each a sampled recognition
        pass up from the visible state, one Gibbs sweep of the top RBM (the labels, if
        any, free: they start at random) and a sampled generative pass down, with the
        units where `clamp` is True kept at their `init` values (completion).

        Args:
            n: number of samples (needed when `init` is None).
            steps: sweeps (Gibbs sweeps of the top RBM without `init`).
            init: starting visible rows, or None.
            clamp: boolean mask of shape `(n_visible,)` or `(n, n_visible)`: the
                units where it is True keep their `init` values.
            seed: int seed (the same as the exported SavedModel's `sample` /
                `complete` with that seed); None takes a fresh one from the top RBM's
                `sampling_seed_generator`.
            means: return the final visible means rather than sampled states.
            verbose: "auto" (a progress bar on a terminal or in a notebook), 0 or 1
                (see `tfboltz.progress`); the samples are the same either way.

        Returns:
            numpy array ``(n, n_visible)``.
        """
        steps, n, v0, mask, seed, verbose = self._sampling_arguments(
            n, steps or 0, init, clamp, seed, verbose, self.top.sampling_seed_generator)
        if not verbose:
            out = self._sample_fn(v0, mask, tf.constant(steps), seed, init is None,
                                  bool(means))
            return out.numpy()
        if init is None:
            return self._generate_chunked(tf.constant(n), tf.zeros((n,), tf.int32), steps, seed,
                                          False, bool(means), verbose).numpy()
        chains = progress.run_sweeps(
            lambda chains, sweeps: self._sample_sweeps_fn(chains, v0, mask, sweeps, seed),
            self._sample_start_fn(v0, seed), steps, verbose)
        return self._sample_end(chains, bool(means)).numpy()

    @tf.function(reduce_retracing=True)
    def _sample_fn(self, v0, mask, steps, seed, from_noise, means):
        """`sample` from `v0` (or, `from_noise`, `generate`'s fantasies of as many
        rows): a pure function of its inputs and the int64 `seed`, shared by `sample`
        and the exported SavedModel."""
        if from_noise:
            n = tf.shape(v0)[0]
            return self._generate_fn(n, tf.zeros((n,), tf.int32), steps, seed, False, means)
        chains = self._sample_sweeps(self._sample_start(v0, seed), v0, mask, steps, seed)
        return self._sample_end(chains, means)

    def _sample_start(self, v0, seed):
        """The chains of `_sample_fn` from `v0` before its first sweep: ``(count, v,
        v_mean, labels)``, the labels (if any) drawn at random, `count` the index of
        the next draw of `seed`."""
        stream = SeedStream(seed)
        n = tf.shape(v0)[0]
        labels = tf.zeros((n, 0), v0.dtype)
        if self.num_classes:
            labels = tf.one_hot(keras.random.randint((n,), 0, self.num_classes, seed=stream),
                                self.num_classes, dtype=v0.dtype)
        return stream.count, v0, v0, labels

    def _sample_sweeps(self, chains, v0, mask, steps, seed):
        """`steps` sweeps (up, top Gibbs sweep, down) of the chains of `_sample_start`."""
        top, n_feat = self.top, self.layer_sizes[-2]

        def body(i, count, v, v_mean, labels):
            draws = SeedStream(seed, count)
            vis = tf.concat([self._up(v, sample=True, seed=draws)[-1], labels], -1)
            u = top.visible_input(top.hidden_layer.sample(top.hidden_input(vis), draws))
            vis = top.visible_layer.sample(u, draws)
            x, labels = vis[:, :n_feat], vis[:, n_feat:]
            if len(self.rbms) == 1:
                v_mean, v = top.visible_layer.mean(u)[:, :n_feat], x
            else:
                for rbm in reversed(self.rbms[1:-1]):
                    x = rbm.visible_layer.sample(rbm.visible_input(x), draws)
                bottom = self.rbms[0]
                v_mean = bottom.visible_layer.mean(bottom.visible_input(x))
                v = self.visible_layer.sample_from_mean(v_mean, draws)
            v = mask * v0 + (1.0 - mask) * v
            v_mean = mask * v0 + (1.0 - mask) * v_mean
            return i + 1, draws.count, v, v_mean, labels

        return tuple(tf.while_loop(lambda i, *_: i < steps, body,
                                   (tf.constant(0, steps.dtype), *chains))[1:])

    @staticmethod
    def _sample_end(chains, means):
        return chains[2] if means else chains[1]

    # `sample`, `generate` and `classify` with a progress bar run these as graphs of
    # their own, the sweeps in chunks between updates of the bar.
    _classify_gibbs_start_fn = tf.function(_classify_gibbs_start, reduce_retracing=True)
    _generate_start_fn = tf.function(_generate_start, reduce_retracing=True)
    _generate_end_fn = tf.function(_generate_end, reduce_retracing=True)
    _sample_start_fn = tf.function(_sample_start, reduce_retracing=True)
    _sample_sweeps_fn = tf.function(_sample_sweeps, reduce_retracing=True)

    def call(self, inputs):
        """Top-RBM hidden means given visible rows (labels, if any, set to zero)."""
        h = self._up(tf.convert_to_tensor(inputs))[-1]
        if self.num_classes:
            h = tf.concat([h, tf.zeros((tf.shape(h)[0], self.num_classes), h.dtype)], -1)
        return self.top.hidden_layer.mean(self.top.hidden_input(h))

    # Greedy training bookkeeping ---------------------------------------------------

    def untie(self):
        """Copy each lower RBM's ``W`` and hidden bias into the recognition weights."""
        for rbm, w, c in zip(self.rbms[:-1], self.rec_kernels, self.rec_biases):
            w.assign(rbm.kernel)
            c.assign(rbm.hidden_layer.bias)

    def _init_from_data(self, x):
        pass  # pretrain_dbn initialises every RBM from its own data

    # Up-down fine-tuning -----------------------------------------------------------

    def fit(self, x=None, y=None, batch_size=None, epochs=1, callbacks=None, **kwargs):
        """Up-down (contrastive wake-sleep) fine-tuning through `keras.Model.fit`.

        Needs `y` (int labels) when the DBN has labels. Run `pretrain_dbn` first.
        """
        validation.fit_arguments(batch_size, epochs, kwargs)
        x = self.check_data(x)
        if self.num_classes:
            if y is None:
                raise ValueError("Expected labels `y` for a DBN with labels. Received: y=None")
            y = validation.labels(y, len(x), self.num_classes)
        else:
            y = np.zeros(len(x), "int32")
        if getattr(self, "optimizer", None) is None or not self.compiled:
            with self.distribute_strategy.scope():
                self.compile(optimizer=keras.optimizers.SGD(0.001))
        self._prepare_fit()
        self.diverged_at.assign(-1)
        return keras.Model.fit(self, x, y, batch_size=batch_size, epochs=epochs,
                               callbacks=[DivergenceGuard(), *self.default_schedules(callbacks),
                                          *(callbacks or [])], **kwargs)

    def train_step(self, data):
        x, y = data[0], data[1]
        v = tf.cast(x, self.top.kernel.dtype)
        self.check_batch(v)
        seed = self.step_seed(self.seed_generator)
        top = self.top
        n = tf.cast(tf.shape(v)[0], v.dtype)
        # Wake: sampled recognition states up to the top RBM.
        wake = self._up(v, sample=True, seed=seed)
        labels = tf.one_hot(tf.cast(y, "int32"), self.num_classes, dtype=v.dtype) \
            if self.num_classes else None
        vis_pos = self._top_visible(wake[-1], labels) if self.num_classes else wake[-1]
        if len(self.rbms) == 1:
            vis_pos = self._top_visible(v, labels) if self.num_classes else v
        a_pos = top.hidden_input(vis_pos)
        h_pos = top.hidden_layer.mean(a_pos)
        h = top.hidden_layer.sample(a_pos, seed)
        vis_neg = vis_pos
        for _ in range(self.k):
            vis_neg = top.visible_layer.sample(top.visible_input(h), seed)
            a_neg = top.hidden_input(vis_neg)
            h_mean = top.hidden_layer.mean(a_neg)
            h = top.hidden_layer.sample(a_neg, seed)
        grad_w, unit_grads = top._statistic_grads(vis_pos, h_pos, vis_neg, h_mean)
        grads = {id(top.kernel): grad_w, **unit_grads}
        gen_err = rec_err = tf.constant(0.0)
        if len(self.rbms) > 1:
            # Sleep: a generative pass down from the top RBM's negative states.
            sleep = [vis_neg[:, :self.layer_sizes[-2]]]
            for rbm in reversed(self.rbms[:-1]):
                p = rbm.visible_layer.mean(rbm.visible_input(sleep[0]))
                s = p if rbm is self.rbms[0] else rbm.visible_layer.sample_from_mean(p, seed)
                sleep.insert(0, s)
            # Generative weights learn to reconstruct the wake states from above.
            for i, rbm in enumerate(self.rbms[:-1]):
                pred = rbm.visible_layer.mean(rbm.visible_input(wake[i + 1]))
                err = rbm.visible_layer.scale(wake[i]) - rbm.visible_layer.scale(pred)
                grads[id(rbm.kernel)] = -tf.matmul(err, wake[i + 1], transpose_a=True) / n
                grads[id(rbm.visible_layer.bias)] = -tf.reduce_mean(err, 0)
                gen_err += tf.reduce_mean(tf.square(err))
            # Recognition weights learn to infer the sleep states from below.
            x_below = self.rbms[0].visible_layer.scale(sleep[0])
            for i, (w, c) in enumerate(zip(self.rec_kernels, self.rec_biases)):
                q = tf.sigmoid(tf.matmul(x_below, w) + c)
                err = sleep[i + 1] - q
                grads[id(w)] = -tf.matmul(x_below, err, transpose_a=True) / n
                grads[id(c)] = -tf.reduce_mean(err, 0)
                rec_err += tf.reduce_mean(tf.square(err))
                x_below = sleep[i + 1]
        if self.discriminative:
            # Hybrid: the label cross-entropy of the free-energy classifier, on the top
            # RBM's parameters only (the features below are held fixed).
            features = tf.stop_gradient(self._up(v)[-1])
            top_vars = [top.kernel, *top.visible_layer.trainable_weights,
                        *top.hidden_layer.trainable_weights]
            with tf.GradientTape() as tape:
                xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.cast(y, "int32"), -self.label_free_energies(features)))
            for var, g in zip(top_vars, tape.gradient(xent, top_vars)):
                if g is not None:
                    grads[id(var)] = grads.get(id(var), 0.0) + self.discriminative * g
            self.loss_trackers["label_cross_entropy"].update_state(xent)
        variables = self.trainable_variables
        grad_list = [grads.get(id(var), tf.zeros_like(var)) for var in variables]
        self._apply_if_finite(grad_list, variables, [h_pos, vis_neg], lambda state: None)
        self.loss_trackers["generative_error"].update_state(gen_err)
        self.loss_trackers["recognition_error"].update_state(rec_err)
        self.loss_trackers["top_reconstruction_error"].update_state(
            tf.reduce_mean(tf.square(vis_pos - vis_neg)))
        return {m.name: m.result() for m in self.metrics}
