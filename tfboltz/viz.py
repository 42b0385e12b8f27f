"""Figures as PNG files (matplotlib, no display needed).

The figures are drawn on `matplotlib.figure.Figure` objects of their own, not through
pyplot: no window opens, and the backend of a notebook or an application is left as
it was.
"""

import numpy as np


def tile_images(images, image_shape, n_cols=None, pad=1):
    """Arrange rows of `images` into one grid array, each scaled to [0, 1]."""
    images = np.asarray(images, "float32")
    n = len(images)
    n_cols = n_cols or int(np.ceil(np.sqrt(n)))
    n_rows = int(np.ceil(n / n_cols))
    h, w = image_shape
    grid = np.ones((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad), "float32")
    for i, img in enumerate(images):
        img = img.reshape(h, w)
        lo, hi = img.min(), img.max()
        img = (img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)
        r, c = divmod(i, n_cols)
        grid[pad + r * (h + pad):pad + r * (h + pad) + h,
             pad + c * (w + pad):pad + c * (w + pad) + w] = img
    return grid


def save_image_grid(images, path, image_shape, n_cols=None, title=None):
    """Save rows of `images` (each reshaped to `image_shape`) as one PNG grid at `path`."""
    grid = tile_images(images, image_shape, n_cols=n_cols)
    fig = _figure(figsize=(6, 6 * grid.shape[0] / grid.shape[1]))
    ax = fig.subplots()
    ax.imshow(grid, cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def plot_filters(kernel, path, image_shape=(28, 28), n=100, title=None):
    """Save the first `n` filters (columns of ``W``) as image tiles to `path` (PNG)."""
    kernel = np.asarray(kernel)
    return save_image_grid(kernel[:, :n].T, path, image_shape, title=title)


def _figure(figsize):
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=100)


def _save(fig, path):
    fig.savefig(path, bbox_inches="tight")
    return path


def plot_samples(images, path, image_shape=(28, 28), n_cols=None, title=None):
    """Fantasy samples (rows of visible means) as a PNG grid."""
    return save_image_grid(images, path, image_shape, n_cols=n_cols, title=title)


def plot_reconstructions(x, reconstructions, path, image_shape=(28, 28), n=10, title=None):
    """Data (top row) beside reconstructions (bottom row)."""
    rows = np.concatenate([np.asarray(x)[:n], np.asarray(reconstructions)[:n]])
    return save_image_grid(rows, path, image_shape, n_cols=min(n, len(x)),
                           title=title or "data (top) and reconstructions (bottom)")


def project_filters(kernels):
    """Filters of a deeper layer seen in pixel space: ``W_1 W_2 ... W_l`` (columns are
    the hidden units of the last layer, a linear projection through the stack)."""
    out = np.asarray(kernels[0])
    for w in kernels[1:]:
        out = out @ np.asarray(w)
    return out


def plot_mean_field(dbm, x, path, iterations=(0, 1, 2, 5, 10, 20), layer=1, n=8,
                    image_shape=None):
    """A DBM's mean-field settling: one row per example, one column per iteration count,
    showing layer `layer`'s means reshaped to a near-square image."""
    x = np.asarray(x)[:n]
    width = dbm.layer_sizes[layer]
    side = int(np.ceil(np.sqrt(width)))
    tiles = []
    for row in x:
        for it in iterations:
            m = (dbm.mean_field(row[None], n_mean_field=max(it, 1), tol=0.0)[layer][0] if it
                 else dbm.initial_means(row[None].astype("float32"))[layer].numpy()[0])
            tile = np.zeros(side * side, "float32")
            tile[:width] = m
            tiles.append(tile)
    return save_image_grid(np.stack(tiles), path, image_shape or (side, side),
                           n_cols=len(iterations),
                           title=f"layer {layer} means after {', '.join(map(str, iterations))} "
                                 "mean-field iterations (columns)")


def plot_class_samples(dbn, path, per_class=10, steps=1000, seed=0, image_shape=(28, 28)):
    """Class-conditional fantasies of a labelled DBN: one row per label."""
    labels = np.repeat(np.arange(dbn.num_classes), per_class)
    images = dbn.generate(labels, steps=steps, seed=seed)
    return save_image_grid(images, path, image_shape, n_cols=per_class,
                           title=f"one row per label, {steps} Gibbs sweeps at the top")


def plot_history(history, path, keys=None, title=None):
    """Training curves from a `keras.callbacks.History`, a dict of lists, or a CSV log
    (`keras.callbacks.CSVLogger`); one panel per metric."""
    if hasattr(history, "history"):
        history = history.history
    if not isinstance(history, dict):
        import csv

        with open(history, newline="") as f:
            rows = list(csv.DictReader(f))
        # CSVLogger writes "NA" where a metric has no value (e.g. no validation data).
        history = {k: [float("nan") if r[k] in ("NA", "") else float(r[k]) for r in rows]
                   for k in rows[0] if k != "epoch"}
        history = {k: v for k, v in history.items() if not np.all(np.isnan(v))}
    keys = [k for k in (keys or history) if not k.startswith("val_")]
    fig = _figure(figsize=(4 * len(keys), 3))
    axes = fig.subplots(1, len(keys), squeeze=False)
    for ax, key in zip(axes[0], keys):
        ax.plot(np.arange(1, len(history[key]) + 1), history[key], label="train")
        if f"val_{key}" in history:
            ax.plot(np.arange(1, len(history[key]) + 1), history[f"val_{key}"],
                    label="validation")
            ax.legend()
        ax.set_xlabel("epoch")
        ax.set_title(key)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_ais_betas(n_betas, estimates, path, title=None):
    """AIS log Z (with its interval) against the number of intermediate distributions.

    Args:
        n_betas: the numbers of betas.
        estimates: one `tfboltz.ais.LogPartitionEstimate` per entry of `n_betas`.
    """
    fig = _figure(figsize=(5, 3.5))
    ax = fig.subplots()
    z = np.array([e.log_z for e in estimates])
    lo = np.array([e.log_z_low if np.isfinite(e.log_z_low) else e.log_z for e in estimates])
    hi = np.array([e.log_z_high for e in estimates])
    ax.errorbar(n_betas, z, yerr=[z - lo, hi - z], marker="o", capsize=3)
    ax.set_xscale("log")
    ax.set_xlabel("number of betas")
    ax.set_ylabel("log Z (AIS, ±3 s.e.)")
    if title:
        ax.set_title(title)
    return _save(fig, path)
