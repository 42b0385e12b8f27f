"""Training wrappers for the classifiers of `tfboltz.classifier`: adversarial training
(Goodfellow et al. 2015), virtual adversarial training (Miyato et al. 2018) and
distillation (Hinton, Vinyals & Dean 2015). Each wraps a Keras classifier in a
`keras.Model` whose `train_step` adds its term; `fit` and the callbacks work as usual.
"""

import keras
import tensorflow as tf

from tfboltz import validation


def _apply_step(model, tape, loss, x, y, y_pred, sample_weight):
    """The end of a wrapper's `train_step`: apply the gradient of `loss` to the
    trainable weights, report `loss` as the loss and the metrics on the clean batch."""
    weights = model.trainable_weights
    model.optimizer.apply_gradients(zip(tape.gradient(loss, weights), weights))
    for metric in model.metrics:
        if metric.name == "loss":
            metric.update_state(loss)
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)


class AdversarialTraining(keras.Model):
    """Fit a classifier on clean and fast-gradient perturbed inputs.

    The adversarial objective of Goodfellow, Shlens & Szegedy ("Explaining and
    Harnessing Adversarial Examples", ICLR 2015)::

        alpha * L(x, y) + (1 - alpha) * L(clip(x + epsilon * sign(grad_x L(x, y))), y)

    with the input gradient taken at the current weights and held constant. With
    ``norm="l2"`` the step is ``epsilon * g / ||g||_2`` per example instead of
    ``epsilon * sign(g)`` (``g = grad_x L(x, y)``): the fast gradient method in the L2
    norm, the first-order form of adversarial training that Miyato et al. set beside
    virtual adversarial training (see `VirtualAdversarialTraining`). The
    wrapper owns no weights of its own: it trains `classifier` in place, so fit the
    wrapper and keep, save or export the classifier. Prediction, evaluation and the
    metrics are the classifier's on clean inputs.

    Each step runs the classifier forward twice and backward twice (once to the
    inputs): an epoch of the zoo DBM's classifier took 2.36 times a plain one
    (benchmarks/bench_all.py, cases finetune and finetune_adv).

    Args:
        classifier: a Keras model with a ``training`` argument (e.g. the Sequential of
            `to_sequential`, or the trainable part of it).
        epsilon: size of the perturbation in input units (> 0): its largest entry
            (``norm="inf"``) or its L2 norm per example (``norm="l2"``).
        alpha: weight of the clean loss, in [0, 1) (0.5 in the paper).
        clip: (low, high) range the perturbed inputs are clipped to, or None. The
            default (0, 1) suits grey levels and the posterior means of the mean-field
            augmentation.
        norm: "inf" (the default: the fast gradient sign method) or "l2".

    Example:
        >>> trainer = AdversarialTraining(clf, epsilon=0.1)
        >>> trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...                 metrics=["accuracy"])
        >>> trainer.fit(x, y, epochs=10)  # clf's weights are the ones trained
    """

    NORMS = ("inf", "l2")

    def __init__(self, classifier, epsilon, alpha=0.5, clip=(0.0, 1.0), norm="inf",
                 **kwargs):
        epsilon, alpha, clip, norm = self.check_settings(epsilon, alpha, clip, norm)
        super().__init__(**kwargs)
        self.classifier = classifier
        self.epsilon, self.alpha, self.clip, self.norm = epsilon, alpha, clip, norm

    @staticmethod
    def check_settings(epsilon, alpha=0.5, clip=(0.0, 1.0), norm="inf"):
        """Return (epsilon, alpha, clip, norm) checked, or raise a `ValueError`."""
        epsilon = validation.non_negative_float("epsilon", epsilon)
        alpha = validation.non_negative_float("alpha", alpha)
        if epsilon == 0.0 or alpha >= 1.0:
            raise ValueError("Expected epsilon > 0 and alpha in [0, 1) (alpha=1 is plain "
                             f"training). Received: epsilon={epsilon}, alpha={alpha}")
        if clip is not None and not (len(clip) == 2 and float(clip[0]) < float(clip[1])):
            raise ValueError("Expected clip=(low, high) with low < high, or None. "
                             f"Received: clip={clip!r}")
        norm = validation.one_of("norm", norm, AdversarialTraining.NORMS)
        return (epsilon, alpha, None if clip is None else (float(clip[0]), float(clip[1])),
                norm)

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def _step_away(self, x, grad):
        step = tf.sign(grad) if self.norm == "inf" else _unit_rows(grad)
        x_adv = x + self.epsilon * step
        return x_adv if self.clip is None else tf.clip_by_value(x_adv, *self.clip)

    def perturb(self, x, y, training=False):
        """The fast-gradient inputs for (x, y) at the current weights."""
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = self.compute_loss(x=x, y=y, y_pred=self(x, training=training),
                                     training=False)
        return tf.stop_gradient(self._step_away(x, tape.gradient(loss, x)))

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            y_pred = self(x, training=True)
            clean = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            with tape.stop_recording():
                x_adv = self._step_away(x, tape.gradient(clean, x))
            adversarial = self.compute_loss(x=x_adv, y=y, y_pred=self(x_adv, training=True),
                                            sample_weight=sample_weight)
            loss = self.alpha * clean + (1.0 - self.alpha) * adversarial
        logs = _apply_step(self, tape, loss, x, y, y_pred, sample_weight)
        del tape
        return logs


def _kl_divergence(p, q):
    """Per-row KL(p || q) between rows of class probabilities."""
    eps = keras.backend.epsilon()
    p = tf.clip_by_value(p, eps, 1.0)
    q = tf.clip_by_value(q, eps, 1.0)
    return tf.reduce_sum(p * (tf.math.log(p) - tf.math.log(q)), axis=-1)


def _unit_rows(d):
    """Each row of `d` scaled to unit L2 norm over all its features."""
    axes = list(range(1, len(d.shape)))
    d = d / (tf.reduce_max(tf.abs(d), axis=axes, keepdims=True) + 1e-12)  # no underflow
    return d / tf.sqrt(tf.reduce_sum(tf.square(d), axis=axes, keepdims=True) + 1e-12)


class VirtualAdversarialTraining(keras.Model):
    """Fit a classifier with virtual adversarial training (VAT).

    The objective of Miyato, Maeda, Koyama & Ishii ("Virtual Adversarial Training: a
    Regularization Method for Supervised and Semi-Supervised Learning", TPAMI 2019;
    ICLR 2016 as "Distributional Smoothing with Virtual Adversarial Training")::

        L(x, y) + weight * KL(p(. | x) || p(. | x + r_vadv))
        r_vadv = epsilon * g / ||g||_2,  g = H d
        H = the Hessian of KL(p(. | x) || p(. | x + r)) in r, at r = 0

    per example, where ``d`` starts as a random unit direction and is refined by
    `n_power` steps of power iteration (each ``d <- H d / ||H d||``), so ``r_vadv``
    points where the classifier's prediction changes fastest within an L2 ball of
    radius `epsilon`. The labels are not used for the perturbation ("virtual").

    ``H d`` is computed exactly: with ``J`` the Jacobian of the class probabilities
    ``q`` with respect to the input, ``H = J' diag(1/p) J`` at ``r = 0`` (the second
    derivatives of ``q`` cancel because its entries sum to 1), so ``H d`` is one
    forward-mode product ``J d`` and one backward product ``J' (J d / p)``. The
    paper's finite difference, ``g = grad_r KL at r = xi * d``, is the limit this
    replaces; it is used when `xi` is given. In float32 its ``q - p`` cancels, and the
    KL it differentiates clips probabilities at 1e-7, which around a confident
    prediction leaves a first-order term (the gradient of the top class's probability,
    whatever ``d`` is): at the paper's ``xi = 1e-6`` the same step run eagerly and
    inside a `tf.function` gave directions with a cosine as low as -0.33 on a small MLP
    (Intel Xeon), and on the zoo DBM's fine-tuned MNIST classifier its direction was
    the input gradient of the predicted class's cross-entropy (median cosine
    0.9999999; on 95% of rows on the side where that loss rises), so the finite
    difference does fast-gradient adversarial training with the classifier's own
    labels; the exact direction lies near the same axis there (median absolute cosine
    0.87) with a random side (see `orient`). The exact float32 product matched a
    float64 finite difference of the unclipped KL (median cosine 0.999999;
    docs/experiments/scripts/check_vat_direction.py). It too loses the direction where the other
    classes' probabilities approach float32's underflow: on a linear softmax it was
    exact with them at 1e-11 and off (cosine 0.79) at 5e-17. The reference
    distribution ``p(. | x)`` and the power iteration use the classifier in inference
    mode (no dropout) and are held constant; the two loss terms are computed in
    training mode. No clipping: ``x + r_vadv`` may leave the data's range.

    The power iteration finds an axis, not a side: ``H`` is symmetric and the KL is
    even in ``r`` to second order, so ``r_vadv`` keeps the sign of the random start
    (on the zoo DBM's fine-tuned classifier it pointed to the side that lowers the
    predicted class on 51% of held-out rows). ``orient=True`` evaluates the KL at
    ``x + r_vadv`` and ``x - r_vadv`` and keeps the larger per example, which is closer
    to the ``argmax`` over the ball that VAT approximates, for two more forward passes.

    Like `AdversarialTraining`, the wrapper owns no weights: it trains `classifier` in
    place. The classifier must output class probabilities (a softmax layer last, as
    `to_sequential` builds). Sample weights weigh the classification loss only. Each
    step runs the classifier forward four times (reference, power step, clean,
    perturbed) and back-propagates through three of them (the power step to the
    inputs, the last two to the weights).

    Args:
        classifier: a Keras model with a ``training`` argument that outputs class
            probabilities.
        epsilon: L2 norm of the perturbation per example, in input units (> 0); the
            paper used 2.0 for 784 grey levels in [0, 1].
        weight: weight of the smoothness term (> 0; 1 in the paper).
        xi: None (the default) for exact Hessian-vector products in the power
            iteration, or the size of the paper's finite-difference step (> 0; the
            paper used 1e-6, which float32 does not resolve: see above).
        n_power: power-iteration steps (>= 1; 1 in the paper).
        seed: seed of the random starting directions.
        orient: keep whichever of ``+r_vadv`` and ``-r_vadv`` gives the larger KL
            (False, the default, is the method as published: the start's sign).

    Example:
        >>> trainer = VirtualAdversarialTraining(clf, epsilon=2.0)
        >>> trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...                 metrics=["accuracy"])
        >>> trainer.fit(x, y, epochs=10)  # clf's weights are the ones trained
    """

    def __init__(self, classifier, epsilon, weight=1.0, xi=None, n_power=1, seed=None,
                 orient=False, **kwargs):
        epsilon, weight, xi, n_power = self.check_settings(epsilon, weight, xi, n_power)
        if not isinstance(orient, bool):
            raise ValueError(f"Expected orient True or False. Received: orient={orient!r}")
        super().__init__(**kwargs)
        self.classifier = classifier
        self.epsilon, self.weight, self.xi, self.n_power = epsilon, weight, xi, n_power
        self.orient = orient
        self.seed_generator = keras.random.SeedGenerator(seed)

    @staticmethod
    def check_settings(epsilon, weight=1.0, xi=None, n_power=1):
        """Return (epsilon, weight, xi, n_power) checked, or raise a `ValueError`."""
        named = [("epsilon", epsilon), ("weight", weight)]
        named += [("xi", xi)] if xi is not None else []
        values = {k: validation.non_negative_float(k, v) for k, v in named}
        n_power = validation.positive_int("n_power", n_power)
        if min(values.values()) == 0.0:
            raise ValueError("Expected epsilon > 0, weight > 0 and xi None or > 0. Received: "
                             + ", ".join(f"{k}={v}" for k, v in values.items()))
        return values["epsilon"], values["weight"], values.get("xi"), n_power

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def perturb(self, x):
        """``x + r_vadv`` at the current weights (inference mode)."""
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        return x + self._direction(x, tf.stop_gradient(self(x, training=False)))

    def _direction(self, x, p):
        d = keras.random.normal(tf.shape(x), seed=self.seed_generator, dtype=x.dtype)
        step = self._hessian_product if self.xi is None else self._finite_difference
        for _ in range(self.n_power):
            d = step(x, p, _unit_rows(d))
        r = self.epsilon * _unit_rows(d)
        if self.orient:
            ahead = _kl_divergence(p, self(x + r, training=False))
            behind = _kl_divergence(p, self(x - r, training=False))
            flip = tf.where(behind > ahead, -1.0, 1.0)
            r = r * tf.reshape(tf.cast(flip, r.dtype), [-1] + [1] * (len(r.shape) - 1))
        return tf.stop_gradient(r)

    def _finite_difference(self, x, p, d):
        """The paper's power step: grad_r KL(p || q(x + r)) at ``r = xi * d``."""
        r = self.xi * d
        with tf.GradientTape() as tape:
            tape.watch(r)
            divergence = tf.reduce_sum(_kl_divergence(p, self(x + r, training=False)))
        return tape.gradient(divergence, r)

    def _hessian_product(self, x, p, d):
        """``H d`` per row, ``H = J' diag(1/p) J`` (see the class docstring)."""
        with tf.GradientTape() as tape:
            tape.watch(x)
            with tf.autodiff.ForwardAccumulator(primals=x, tangents=d) as acc:
                q = self(x, training=False)
            jd = acc.jvp(q, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            # Not clipped like the loss's KL: a confident prediction's other classes
            # have tiny but representable p and carry its direction (J d ~ p there).
            w = tf.math.divide_no_nan(jd, p)
            s = tf.reduce_sum(tf.stop_gradient(w) * q)
        return tape.gradient(s, x)

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
        p = tf.stop_gradient(self(x, training=False))
        r_vadv = self._direction(x, p)
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            clean = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            smoothness = tf.reduce_mean(_kl_divergence(p, self(x + r_vadv, training=True)))
            loss = clean + self.weight * smoothness
        return _apply_step(self, tape, loss, x, y, y_pred, sample_weight)


def log_probabilities(classifiers, x, batch_size=1000):
    """Mean log-probability of each class under `classifiers`, per row of `x`.

    The classifiers output class probabilities (a softmax layer last); they are run in
    inference mode. With several classifiers this is the mean of their log-probabilities,
    whose softmax is the normalised geometric mean of their predictions: the softmax of
    the averaged logits, up to a constant per row. The distillation targets of an
    ensemble for `Distillation`.

    Args:
        classifiers: a Keras classifier, or a list of them with the same classes.
        x: input rows (what the classifiers take).
        batch_size: rows per prediction batch.

    Returns:
        A float32 array of shape (len(x), num_classes).
    """
    if isinstance(classifiers, keras.Model):
        classifiers = [classifiers]
    if not classifiers:
        raise ValueError("Expected at least one classifier. Received: classifiers=[]")
    total = 0.0
    for clf in classifiers:
        p = clf.predict(x, batch_size=batch_size, verbose=0)
        total = total + _log_clipped(tf.constant(p, tf.float32)).numpy()
    return (total / len(classifiers)).astype("float32")


def _log_clipped(p):
    """log p with p clipped at 1e-30: the logits up to a constant per row, except where
    float32's softmax underflowed (a class more than ~69 logits behind the top one),
    whose tempered probability is then negligible anyway."""
    return tf.math.log(tf.maximum(p, 1e-30))


class Distillation(keras.Model):
    """Fit a classifier on the labels and on a teacher's softened predictions.

    Knowledge distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a
    Neural Network", 2015)::

        (1 - weight) * L(x, y) + weight * T^2 * KL(softmax(z_t / T) || softmax(z_s / T))

    with ``L`` the compiled loss on the hard labels, ``z_s`` the student's logits,
    ``z_t`` the teacher's and ``T`` the temperature; ``T^2`` keeps the soft term's
    gradients of the same size as the hard term's whatever ``T`` is (the paper's
    scaling). The logits are recovered as the log of the classifiers' probabilities
    (equal up to a constant per row, which the softmax ignores), so the student is an
    ordinary classifier with a softmax output, as `to_sequential` builds.

    The teacher's log-probabilities are computed once, before fitting
    (`log_probabilities`, which averages an ensemble's), and passed with the labels:
    ``fit(x, (y, teacher_log_probs))``. Validation data are plain ``(x, y)`` and are
    scored on the labels only. Like `AdversarialTraining`, the wrapper owns no weights
    and trains `classifier` in place; prediction and the metrics are the classifier's.
    Sample weights weigh both terms.

    Args:
        classifier: the student, a Keras model with a ``training`` argument that
            outputs class probabilities.
        temperature: ``T`` (> 0; the paper found 8-20 best for MNIST students with
            several hundred hidden units per layer).
        weight: weight of the soft term, in (0, 1] (1: soft targets only).

    Example:
        >>> targets = log_probabilities([teacher_a, teacher_b], x)
        >>> trainer = Distillation(student, temperature=10.0, weight=0.9)
        >>> trainer.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
        ...                 metrics=["accuracy"])
        >>> trainer.fit(x, (y, targets), epochs=10)  # the student's weights are trained
    """

    def __init__(self, classifier, temperature=10.0, weight=0.9, **kwargs):
        temperature, weight = self.check_settings(temperature, weight)
        super().__init__(**kwargs)
        self.classifier = classifier
        self.temperature, self.weight = temperature, weight

    @staticmethod
    def check_settings(temperature=10.0, weight=0.9):
        """Return (temperature, weight) as floats, or raise a `ValueError`."""
        temperature = validation.non_negative_float("temperature", temperature)
        weight = validation.non_negative_float("weight", weight)
        if temperature == 0.0 or not 0.0 < weight <= 1.0:
            raise ValueError("Expected temperature > 0 and weight in (0, 1]. Received: "
                             f"temperature={temperature}, weight={weight}")
        return temperature, weight

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def soft_loss(self, teacher_log_probs, y_pred):
        """Per-row ``T^2 * KL(softmax(z_t / T) || softmax(z_s / T))``."""
        t = self.temperature
        target_log = tf.nn.log_softmax(tf.cast(teacher_log_probs, y_pred.dtype) / t)
        student_log = tf.nn.log_softmax(_log_clipped(y_pred) / t)
        return t * t * tf.reduce_sum(tf.exp(target_log) * (target_log - student_log), -1)

    def train_step(self, data):
        x, targets, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if not (isinstance(targets, (tuple, list)) and len(targets) == 2):
            raise ValueError("Expected fit(x, (y, teacher_log_probs)) for distillation. "
                             f"Received targets of type {type(targets).__name__}")
        y, teacher = targets
        with tf.GradientTape() as tape:
            y_pred = self(x, training=True)
            hard = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
            soft = self.soft_loss(teacher, y_pred)
            if sample_weight is not None:
                soft = soft * tf.reshape(tf.cast(sample_weight, soft.dtype), [-1])
            loss = (1.0 - self.weight) * hard + self.weight * tf.reduce_mean(soft)
        return _apply_step(self, tape, loss, x, y, y_pred, sample_weight)
