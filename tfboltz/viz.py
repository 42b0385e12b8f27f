"""Figures as PNG files (matplotlib, no display needed)."""

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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = tile_images(images, image_shape, n_cols=n_cols)
    fig, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1]), dpi=100)
    ax.imshow(grid, cmap="gray", interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_filters(kernel, path, image_shape=(28, 28), n=100, title=None):
    """Save the first `n` filters (columns of ``W``) as image tiles to `path` (PNG)."""
    kernel = np.asarray(kernel)
    return save_image_grid(kernel[:, :n].T, path, image_shape, title=title)
