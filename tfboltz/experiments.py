"""MNIST measurements shared by the scripts and the CLI: likelihood, probe, fine-tuning.

The conventions behind every figure in the README:

- Likelihood: AIS log Z with the base-rate proposal fitted to the training images
  binarised with seed 0; the test set is the 10,000 MNIST test images binarised with
  seed 0. RBMs report the average test log-likelihood, DBMs the average test ELBO
  (mean-field posterior, 30 iterations).
- Linear probe: softmax regression (Keras) on standardised features of the grey-level
  images (RBM: hidden means; DBM: the mean-field means of all hidden layers), the
  epoch picked on the last 5,000 training images.
- Fine-tuning: `to_sequential(10)`, Adam, the epoch picked on the last 5,000 training
  images, scored once on the test set, exported as a SavedModel and reloaded in a
  fresh process.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np

from tfboltz import ais, classifier, data, fine_tuning, units, validation


def features(model, x, n_mean_field=30, batch_size=1000):
    """Features of rows `x`: an RBM's hidden means, or a DBM's mean-field means of all
    hidden layers side by side."""
    from tfboltz.dbm import DBM

    if isinstance(model, DBM):
        means = model.mean_field(x, n_mean_field=n_mean_field, batch_size=batch_size)
        return np.concatenate(means[1:], axis=1)
    return model.transform(x, batch_size=batch_size)


def linear_probe(f_train, y_train, f_test, y_test, epochs=20, n_val=5000, seed=0):
    """Test accuracy of softmax regression on standardised features.

    Fitted with Adam on all but the last `n_val` training rows (at most a tenth of
    them); the epoch with the best accuracy on those rows is kept.
    """
    n_val = min(n_val, max(1, len(f_train) // 10))
    mean, std = f_train.mean(0), f_train.std(0) + 1e-6
    f_train, f_test = (f_train - mean) / std, (f_test - mean) / std
    keras.utils.set_random_seed(seed)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    probe = keras.Sequential([keras.Input((f_train.shape[1],)),
                              keras.layers.Dense(n_classes, activation="softmax")])
    probe.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    n = len(f_train) - n_val
    probe.fit(f_train[:n], y_train[:n], validation_data=(f_train[n:], y_train[n:]),
              batch_size=100, epochs=epochs, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=epochs,
                                                       restore_best_weights=True)])
    return float(probe.evaluate(f_test, y_test, batch_size=1000, verbose=0)[1])


def evaluate_mnist(model, n_chains=100, n_betas=20000, seed=0, probe=True, n_mean_field=30,
                   verbose=1):
    """Likelihood (and linear-probe accuracy) of an MNIST RBM or DBM; a dict of figures.

    For a DBM: the mean-field ELBO (``test_elbo``, the papers' figure) and the tighter
    bound with the top layer summed out (``test_bound_top_summed_out``, 100 draws per
    image; see `tfboltz.ais.elbo`)."""
    from tfboltz.dbm import DBM

    x_train, _ = data.load_mnist("train", binarize="stochastic", seed=0)
    x_test, _ = data.load_mnist("test", binarize="stochastic", seed=0)
    t0 = time.time()
    est = ais.log_partition(model, n_chains=n_chains, n_betas=n_betas, seed=seed, data=x_train,
                            verbose=verbose)
    out = {"log_z": est.log_z, "log_z_low": est.log_z_low, "log_z_high": est.log_z_high,
           "n_chains": n_chains, "n_betas": n_betas, "ais_seconds": time.time() - t0}
    if isinstance(model, DBM):
        out["test_elbo"] = float(ais.elbo(model, x_test, est, n_mean_field=n_mean_field).mean())
        if isinstance(model.unit_layers[-2], units.BernoulliUnits):
            out["test_bound_top_summed_out"] = float(ais.elbo(
                model, x_test, est, n_mean_field=n_mean_field, sum_out_top=True).mean())
    else:
        out["test_log_likelihood"] = float(ais.log_likelihood(model, x_test, est).mean())
    if probe:
        g_train, y_train = data.load_mnist("train")
        g_test, y_test = data.load_mnist("test")
        t0 = time.time()
        out["probe_accuracy"] = linear_probe(features(model, g_train), y_train,
                                             features(model, g_test), y_test)
        out["probe_seconds"] = time.time() - t0
    return out


def finetune_mnist(model, out_dir, epochs=30, lr=1e-3, batch_size=100, dropout=0.0, n_val=5000,
                   n_train=None, seed=0, monitor="val_accuracy", min_steps_per_epoch=1,
                   lr_schedule="constant", optimizer="adam", weight_decay=None,
                   jit_compile=False, head_epochs=0, adversarial=None, adversarial_alpha=0.5,
                   adversarial_norm="inf", adversarial_clip=True, vat=None, vat_weight=1.0,
                   vat_xi=None, vat_orient=False, teachers=None, distill_temperature=10.0,
                   distill_weight=0.9, verbose=2):
    """Fine-tune `model.to_sequential(10)` on MNIST, export it, check the export.

    A DBM classifier's first layer (the mean-field augmentation) is frozen, so its
    output is computed once and the trainable layers are fitted on it: the same
    model and the same updates without rerunning mean-field every epoch.

    Args:
        model: a trained RBM or DBM with 784 visible units, or a ready
            `keras.Sequential` classifier (e.g. a randomly initialised baseline).
        out_dir: where ``classifier.keras``, ``savedmodel/`` and ``result.json`` go.
            ``classifier.keras`` holds the picked weights, compiled with a fresh
            optimizer of the recipe's kind at the constant rate `lr` (its state is
            not the fitting's).
        epochs: training epochs (the best on the held-out rows is kept).
        lr: learning rate (the peak of the cosine schedule).
        dropout: dropout before each Dense layer (a rate, or one per Dense layer).
        n_val: training rows held out to pick the epoch. 0 holds out nothing: every
            labelled row is fitted for exactly `epochs` epochs and the last weights
            are kept (for a recipe whose length was chosen on held-out rows before;
            pair it with ``lr_schedule="cosine"``, which ends at a learning rate of 0).
        n_train: labelled rows to use, from the start of the training set (default:
            all of them, of which the last `n_val` are held out); when given, the
            held-out rows are the last `n_val` of them or a tenth, whichever is smaller.
        seed: seed of the classifier's output layer and the data order.
        monitor: what picks the epoch on the held-out rows ("val_accuracy" or
            "val_loss", the finer choice when only a few rows are held out).
        min_steps_per_epoch: small training sets are repeated within an epoch to
            give at least this many steps (fewer, longer epochs for the same updates).
        lr_schedule: "constant", or "cosine": the learning rate decays from `lr` to 0
            over the run along a half cosine (`keras.optimizers.schedules.CosineDecay`).
        optimizer: "adam" (`keras.optimizers.Adam`) or "sgd" (`keras.optimizers.SGD`
            with Nesterov momentum 0.9).
        weight_decay: decoupled weight decay of the optimizer (Keras's `weight_decay`:
            each step shrinks the weights by ``lr * weight_decay``), or None.
        jit_compile: compile the training step with XLA (`Model.compile`'s
            `jit_compile`). Whether it pays depends on the processor and the
            model: without dropout the classifier's epoch was faster with it on
            the Intel and the AMD EPYC machines of benchmarks/bench_all.py; with
            dropout it was several times slower on the AMD one. Measure first.
        head_epochs: epochs that fit only the new output layer, at the constant
            rate `lr`, before the whole classifier is fitted for `epochs` epochs (the
            usual Keras transfer-learning order: the pretrained layers first receive
            gradients through a trained output layer instead of a random one). These
            epochs see no held-out check and are not counted in `epochs`.
        adversarial: epsilon of fast-gradient-sign adversarial training
            (`fine_tuning.AdversarialTraining`), or None for plain training. The
            perturbation is applied to the trainable layers' input: for a DBM the
            mean-field-augmented input ``[v, q(h_2)]``, computed once, perturbed and
            clipped to [0, 1]. Head epochs stay plain.
        adversarial_alpha: weight of the clean loss in the adversarial objective.
        adversarial_norm: "inf" (the sign of the gradient) or "l2" (the gradient
            scaled to L2 norm `adversarial` per row).
        adversarial_clip: clip the perturbed input to [0, 1] (False: leave it, as
            virtual adversarial training does).
        vat: L2 radius of virtual adversarial training
            (`fine_tuning.VirtualAdversarialTraining`) on the same input, or None. Not
            together with `adversarial`. Head epochs stay plain.
        vat_weight: weight of its smoothness term.
        vat_xi: None for the exact power step of `VirtualAdversarialTraining`, or the
            paper's finite-difference step (what this function used, at 1e-6, before
            the exact step existed).
        vat_orient: keep whichever side of the virtual adversarial direction has the
            larger divergence (`VirtualAdversarialTraining`'s `orient`).
        teachers: classifiers (Keras models or ``.keras`` paths) that take the same raw
            inputs, or None. With teachers the classifier is fitted by knowledge
            distillation (`fine_tuning.Distillation`) on the labels and on the
            teachers' averaged log-probabilities of each fitted row, computed once
            before fitting. The held-out rows still pick the epoch by their labels.
            Not together with `adversarial` or `vat`; head epochs stay plain.
        distill_temperature: the distillation temperature.
        distill_weight: weight of the soft (teacher) term, in (0, 1].

    Returns:
        A dict of figures (also written to ``result.json``), with the per-epoch
        metrics of `fit` under ``"history"``.
    """
    epochs = validation.positive_int("epochs", epochs)
    n_val = validation.non_negative_int("n_val", n_val)
    monitor = validation.one_of("monitor", monitor, ("val_accuracy", "val_loss"))
    lr_schedule = validation.one_of("lr_schedule", lr_schedule, ("constant", "cosine"))
    optimizer = validation.one_of("optimizer", optimizer, ("adam", "sgd"))
    head_epochs = validation.non_negative_int("head_epochs", head_epochs)
    if weight_decay is not None:
        weight_decay = validation.non_negative_float("weight_decay", weight_decay)
    if adversarial is not None:
        adversarial, adversarial_alpha, _, adversarial_norm = (
            fine_tuning.AdversarialTraining.check_settings(adversarial, adversarial_alpha,
                                                          norm=adversarial_norm))
    if vat is not None:
        if adversarial is not None:
            raise ValueError("Expected one of adversarial and vat, not both. Received: "
                             f"adversarial={adversarial}, vat={vat}")
        vat, vat_weight, vat_xi, _ = fine_tuning.VirtualAdversarialTraining.check_settings(
            vat, vat_weight, vat_xi)
    for name, flag in (("adversarial_clip", adversarial_clip), ("vat_orient", vat_orient)):
        if not isinstance(flag, bool):
            raise ValueError(f"Expected {name} True or False. Received: {name}={flag!r}")
    teacher_names = None
    if teachers is not None:
        if adversarial is not None or vat is not None:
            raise ValueError("Expected teachers without adversarial or vat. Received: "
                             f"adversarial={adversarial}, vat={vat}, {len(teachers)} teachers")
        distill_temperature, distill_weight = fine_tuning.Distillation.check_settings(
            distill_temperature, distill_weight)
        if isinstance(teachers, (str, Path, keras.Model)):
            teachers = [teachers]
        teacher_names = [str(t) if isinstance(t, (str, Path)) else t.name for t in teachers]
        teachers = [keras.saving.load_model(t) if isinstance(t, (str, Path)) else t
                    for t in teachers]
        if not teachers:
            raise ValueError("Expected at least one teacher. Received: teachers=[]")
        for name, t in zip(teacher_names, teachers):
            if tuple(t.input_shape[1:]) != (784,) or tuple(t.output_shape[1:]) != (10,):
                raise ValueError("Expected teachers that map 784 pixels to 10 classes. "
                                 f"Received: {name} with input shape {t.input_shape} and "
                                 f"output shape {t.output_shape}")
    out_dir = Path(out_dir)
    keras.utils.set_random_seed(seed)
    x, y = data.load_mnist("train")
    x_test, y_test = data.load_mnist("test")
    if n_train is None:
        n_total, n_held = len(x), n_val
    else:
        n_total = validation.positive_int("n_train", n_train)
        n_held = min(n_val, max(1, n_total // 10)) if n_val else 0
    n_fit = n_total - n_held
    if n_fit < 1:
        raise ValueError("Expected more labelled rows than held-out rows. "
                         f"Received: n_train={n_total}, n_val={n_held}")
    out_dir.mkdir(parents=True, exist_ok=True)
    clf = (model if isinstance(model, keras.Sequential)
           else model.to_sequential(10, dropout=dropout))
    first = clf.layers[0]
    t0 = time.time()
    if isinstance(first, classifier.MeanFieldAugmentation):
        def run_first(rows):
            return np.concatenate([first(rows[i:i + 1000]).numpy()
                                   for i in range(0, len(rows), 1000)])
        f = run_first(x[:n_fit + n_held])
        head = keras.Sequential([keras.Input((f.shape[1],)), *clf.layers[1:]])
    else:
        f, head = x[:n_fit + n_held], clf
    t_first = time.time() - t0
    reps = max(1, -(-min_steps_per_epoch * batch_size // n_fit))
    x_fit, y_fit = np.tile(f[:n_fit], (reps, 1)), np.tile(y[:n_fit], reps)
    targets, t_teachers, teacher_figures = y_fit, 0.0, {}
    if teachers is not None:
        t0 = time.time()
        # the fitted rows' soft targets, and the teachers' ensemble (the argmax of their
        # averaged log-probabilities) on the held-out and test rows, beside the student
        log_p = fine_tuning.log_probabilities(teachers, np.concatenate([x[:n_total], x_test]))
        targets, t_teachers = (y_fit, np.tile(log_p[:n_fit], (reps, 1))), time.time() - t0
        guess = log_p.argmax(1)
        teacher_figures = {
            "teachers_test_error_percent": 100 * float(np.mean(guess[n_total:] != y_test)),
            "teachers_val_accuracy": float(np.mean(guess[n_fit:n_total] == y[n_fit:n_total]))
            if n_held else None}

    def make_optimizer(rate):
        if optimizer == "adam":
            return keras.optimizers.Adam(rate, weight_decay=weight_decay)
        return keras.optimizers.SGD(rate, momentum=0.9, nesterov=True,
                                    weight_decay=weight_decay)

    t0 = time.time()
    if head_epochs:
        fit_output_layer(head, x_fit, y_fit, make_optimizer(lr), epochs=head_epochs,
                         batch_size=batch_size, jit_compile=jit_compile, verbose=verbose)
    t_head = time.time() - t0
    rate = lr
    if lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            lr, decay_steps=epochs * -(-reps * n_fit // batch_size))
    fitted = head
    if adversarial is not None:
        fitted = fine_tuning.AdversarialTraining(
            head, adversarial, adversarial_alpha, clip=(0.0, 1.0) if adversarial_clip else None,
            norm=adversarial_norm)
    elif vat is not None:
        fitted = fine_tuning.VirtualAdversarialTraining(head, vat, vat_weight, xi=vat_xi,
                                                       seed=seed, orient=vat_orient)
    elif teachers is not None:
        fitted = fine_tuning.Distillation(head, distill_temperature, distill_weight)
    fitted.compile(optimizer=make_optimizer(rate), loss="sparse_categorical_crossentropy",
                   metrics=["accuracy"], jit_compile=bool(jit_compile))
    t0 = time.time()
    held = dict(validation_data=(f[n_fit:], y[n_fit:n_fit + n_held]),
                callbacks=[keras.callbacks.EarlyStopping(
                    monitor, patience=epochs, restore_best_weights=True)]) if n_held else {}
    hist = fitted.fit(x_fit, targets, batch_size=batch_size, epochs=epochs, verbose=verbose, **held)
    t_fit = time.time() - t0
    # Saved compiled with a fresh optimizer of the recipe's kind at the rate `lr`, built
    # on the classifier's variables, so the file reloads without an optimizer mismatch
    # and `fit` on the reloaded model continues with the recipe's optimizer.
    clf.compile(optimizer=make_optimizer(lr), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    clf.optimizer.build(clf.trainable_variables)
    acc = float(clf.evaluate(x_test, y_test, batch_size=1000, verbose=0)[1])
    if n_held:
        scores = np.asarray(hist.history[monitor])
        best = int(np.argmax(scores) if monitor == "val_accuracy" else np.argmin(scores))
        val_acc = float(hist.history["val_accuracy"][best])
    else:  # nothing held out: the last epoch's weights
        best, val_acc = epochs - 1, None
    tmp = out_dir / "classifier.tmp.keras"
    clf.save(tmp)
    tmp.replace(out_dir / "classifier.keras")
    saved = out_dir / "savedmodel"
    clf.export(str(saved), verbose=False)
    check = check_savedmodel(saved, x_test, clf.predict(x_test, batch_size=1000, verbose=0))
    result = {
        "test_error_percent": 100 * (1 - acc), "test_accuracy_percent": 100 * acc,
        "n_train": n_fit, "n_val": n_held, "best_epoch": best + 1,
        "val_accuracy": val_acc, "epochs": epochs, "lr": lr,
        "dropout": dropout, "batch_size": batch_size, "seed": seed, "monitor": monitor,
        "lr_schedule": lr_schedule, "optimizer": optimizer, "weight_decay": weight_decay,
        "jit_compile": bool(jit_compile), "head_epochs": head_epochs,
        "adversarial_epsilon": adversarial,
        "adversarial_alpha": None if adversarial is None else adversarial_alpha,
        "adversarial_norm": None if adversarial is None else adversarial_norm,
        "adversarial_clip": None if adversarial is None else adversarial_clip,
        "vat_epsilon": vat, "vat_weight": None if vat is None else vat_weight,
        "vat_xi": None if vat is None else (vat_xi or "exact"),
        "vat_orient": None if vat is None else vat_orient,
        "teachers": teacher_names,
        "distill_temperature": None if teachers is None else distill_temperature,
        "distill_weight": None if teachers is None else distill_weight, **teacher_figures,
        "repeats_per_epoch": reps, "first_layer_seconds": t_first,
        "teacher_seconds": t_teachers,
        "head_seconds": t_head, "fit_seconds": t_fit, **check,
        "history": {k: [float(v) for v in vals] for k, vals in hist.history.items()},
    }
    (out_dir / "result.json").write_text(json.dumps(result, indent=1))
    return result


def fit_output_layer(clf, x, y, optimizer, epochs, batch_size=100, jit_compile=False,
                     verbose=0):
    """Fit only the last layer of a Sequential classifier; the others are left as they
    were and trainable again afterwards."""
    below = [layer for layer in clf.layers[:-1] if layer.trainable]
    for layer in below:
        layer.trainable = False
    try:
        clf.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"], jit_compile=bool(jit_compile))
        return clf.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)
    finally:
        for layer in below:
            layer.trainable = True


def check_savedmodel(path, x, expected):
    """Reload a SavedModel in a fresh Python process and compare its predictions."""
    path = Path(path)
    x_file, pred_file = path.parent / "check_x.npy", path.parent / "check_pred.npy"
    np.save(x_file, x)
    code = ("import numpy as np, tensorflow as tf\n"
            f"m = tf.saved_model.load({str(path)!r})\n"
            f"x = np.load({str(x_file)!r})\n"
            f"np.save({str(pred_file)!r}, m.serve(tf.constant(x)).numpy())\n")
    try:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        reloaded = np.load(pred_file)
    finally:
        x_file.unlink(missing_ok=True)
        pred_file.unlink(missing_ok=True)
    return savedmodel_agreement(reloaded, expected)


def savedmodel_agreement(reloaded, expected):
    """Whether reloaded predictions give the same labels, and their largest difference."""
    return {"savedmodel_same_labels": bool(np.array_equal(reloaded.argmax(1),
                                                          expected.argmax(1))),
            "savedmodel_max_abs_diff": float(np.abs(reloaded - expected).max())}
