"""Argument and data checks that fail in Keras's own words, before any state changes."""

import numbers
import warnings

import numpy as np


def _int_at_least(name, value, minimum, expected):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected {expected}. "
            f"Received: {name}={value!r}"
        )
    return int(value)


def positive_int(name, value):
    """Return `value` if it is a positive integer, else raise a `ValueError`."""
    return _int_at_least(name, value, 1, "a positive integer")


def int_at_least(name, value, minimum):
    """Return `value` if it is an integer >= `minimum`, else raise a `ValueError`."""
    return _int_at_least(name, value, minimum, f"an integer >= {minimum}")


def non_negative_int(name, value):
    """Return `value` if it is an integer >= 0, else raise a `ValueError`."""
    return _int_at_least(name, value, 0, "a non-negative integer")


def non_negative_float(name, value):
    """Return `value` as a float if it is finite and >= 0, else raise a `ValueError`."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not np.isfinite(value)
        or value < 0
    ):
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected a non-negative float. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def one_of(name, value, choices):
    """Return `value` lower-cased if it is one of `choices`, else raise a `ValueError`."""
    if not isinstance(value, str) or value.lower() not in choices:
        raise ValueError(
            f"Invalid value received for argument `{name}`. Expected one of "
            f"{sorted(choices)}. Received: {name}={value!r}"
        )
    return value.lower()


def check_rows(x, n_features, name="x"):
    """Check a 2-D array of rows with `n_features` columns and finite values.

    Returns the array as float32 numpy.
    """
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(
            f"Expected `{name}` of shape (batch, {n_features}). Received: {name}.shape={x.shape}"
        )
    if (not np.issubdtype(x.dtype, np.number) and x.dtype != bool) or np.iscomplexobj(x):
        raise ValueError(f"Expected real numbers in `{name}`. Received: dtype={x.dtype}")
    if len(x) == 0:
        raise ValueError(f"Expected at least one row in `{name}`. Received: "
                         f"{name}.shape={x.shape}")
    x = x.astype("float32", copy=False)
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise ValueError(
            f"Expected finite values in `{name}`. Received: {bad} NaN or inf entries"
        )
    return x


def renamed(kwargs, old, new, value, owner, strict=True):
    """The value of argument `new`, taking it from `kwargs[old]` (the name it had
    before; a `DeprecationWarning`) when only the old name was given.

    With `strict`, raises a `TypeError` for any other keyword left in `kwargs`, as
    Python would; otherwise the rest is left for the caller (a layer's base class).
    """
    if old in kwargs:
        if value is not None:
            raise TypeError(f"{owner}() got both `{new}` and its old name `{old}`. "
                            f"Pass `{new}` only.")
        warnings.warn(f"{owner}(): `{old}` is now called `{new}`; the old name will be "
                      "removed in a future release.", DeprecationWarning, stacklevel=3)
        value = kwargs.pop(old)
    if strict and kwargs:
        raise TypeError(f"{owner}() got an unexpected keyword argument "
                        f"{next(iter(kwargs))!r}")
    return value


def seed(value, name="seed"):
    """Return `value` if it is None or an integer in [0, 2**31), else raise a
    `ValueError` (a model derives its layers' seeds from it by adding small ints)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not (
            0 <= value < 2**31):
        raise ValueError(f"Invalid value received for argument `{name}`. Expected None or "
                         f"an integer in [0, 2**31). Received: {name}={value!r}")
    return int(value)


def fit_arguments(batch_size, epochs, kwargs):
    """Check `fit`'s counting arguments before anything changes: Keras checks some
    only once training has started, and reads ``batch_size=0`` as its default."""
    if batch_size is not None:
        positive_int("batch_size", batch_size)
    non_negative_int("epochs", epochs)
    non_negative_int("initial_epoch", kwargs.get("initial_epoch", 0))
    for key in ("steps_per_epoch", "validation_steps", "validation_batch_size"):
        if kwargs.get(key) is not None:
            positive_int(key, kwargs[key])
    if kwargs.get("validation_freq", 1) is not None:
        positive_int("validation_freq", kwargs.get("validation_freq", 1))


def labels(y, n, num_classes, name="y"):
    """Integer class labels: `n` of them (or any number if `n` is None), each in
    ``[0, num_classes)``; returns them as int32 numpy. Raises a `ValueError` naming
    what is wrong (shape, NaN, non-integer or out-of-range values)."""
    expected = (f"Expected `{name}` of shape ({'n' if n is None else n},) with integers in "
                f"[0, {num_classes})")
    arr = np.asarray(y)
    if arr.ndim != 1 or (n is not None and len(arr) != n):
        raise ValueError(f"{expected}. Received: {name}.shape={arr.shape}")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{expected}. Received: dtype={arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{expected}. Received: "
                             f"{int(np.sum(~np.isfinite(arr)))} NaN or inf entries")
        if not np.all(arr == np.round(arr)):
            bad = float(arr[arr != np.round(arr)][0])
            raise ValueError(f"{expected}. Received: a non-integer label {bad:g}")
    if len(arr) and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(f"{expected}. Received: labels between {arr.min():g} and "
                         f"{arr.max():g}")
    return arr.astype("int32")
