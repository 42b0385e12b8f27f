"""Mixed precision for the matrix products of a model (its `matmul_dtype` argument)."""

import tensorflow as tf

#: Dtypes the matrix products of a model may run in.
MATMUL_DTYPES = ("float32", "bfloat16", "float16")


def matmul(a, b, dtype=None, **kwargs):
    """`tf.matmul`; with a `dtype` other than float32 the operands are cast to it and the
    product is cast back to the dtype of `a` (mixed precision for the products only)."""
    if dtype is None or dtype == "float32":
        return tf.matmul(a, b, **kwargs)
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), **kwargs), a.dtype)


def low_precision(dtype):
    """Whether products in `dtype` cast their operands (anything but float32)."""
    return dtype is not None and dtype != "float32"


def step_operands(variables, dtype):
    """The weights of a train step as the operands of its products: in a low-precision
    `dtype`, each cast once for the step (a step reads a kernel in several products, and
    each cast is a pass over the whole kernel); in float32, None (use the variables)."""
    if not low_precision(dtype):
        return None
    return [tf.cast(v, dtype) for v in variables]
