"""Mixed precision: `matmul_dtype` runs the matrix products in bfloat16 or float16 and
keeps everything else in float32."""

import keras
import numpy as np
import pytest

import tfboltz as tb


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_rbm_products_in_low_precision(dtype, digits):
    x = digits[0][:200]
    ref = tb.RBM(64, 32, seed=0)
    low = tb.RBM(64, 32, seed=0, matmul_dtype=dtype)
    low.set_weights(ref.get_weights())
    a_ref, a_low = ref.hidden_input(x).numpy(), low.hidden_input(x).numpy()
    assert a_low.dtype == np.float32
    # Rounding of the operands only: 8 significant bits (bfloat16), 11 (float16).
    tol = {"bfloat16": 2 ** -8, "float16": 2 ** -11}[dtype]
    scale = np.abs(x).sum(1, keepdims=True) * np.abs(ref.kernel.numpy()).max()
    assert np.max(np.abs(a_low - a_ref) / scale) < 2 * tol
    assert not np.array_equal(a_low, a_ref)  # the option does change the products
    low.compile(optimizer=keras.optimizers.SGD(0.05))
    low.fit(x, batch_size=50, epochs=1, verbose=0)
    assert all(w.dtype == "float32" for w in low.weights if w.dtype.startswith("float"))
    assert np.isfinite(low.kernel.numpy()).all()
    clone = tb.RBM.from_config(low.get_config())
    assert clone.matmul_dtype == dtype


def test_dbm_trains_in_bfloat16_and_ais_stays_float32(digits):
    x = digits[0][:300]
    dbm = tb.DBM([64, 12, 8], seed=0, matmul_dtype="bfloat16")
    dbm.compile(optimizer=keras.optimizers.SGD(0.05))
    dbm.fit(x, batch_size=50, epochs=2, verbose=0)
    ref = tb.DBM([64, 12, 8], seed=0)
    ref.set_weights(dbm.get_weights())
    # Mean-field in bfloat16 stays close to float32.
    mf_low, mf_ref = dbm.mean_field(x[:50]), ref.mean_field(x[:50])
    assert max(np.max(np.abs(a - b)) for a, b in zip(mf_low[1:], mf_ref[1:])) < 0.02
    # AIS runs its products in float32 whatever the model's matmul_dtype.
    est_low = tb.ais.log_partition(dbm, n_chains=20, n_betas=200, seed=0, data=x, verbose=0)
    est_ref = tb.ais.log_partition(ref, n_chains=20, n_betas=200, seed=0, data=x, verbose=0)
    assert est_low.log_z == est_ref.log_z


def test_bad_matmul_dtype():
    with pytest.raises(ValueError, match="matmul_dtype"):
        tb.RBM(4, 3, matmul_dtype="int8")
    with pytest.raises(ValueError, match="matmul_dtype"):
        tb.DBM([4, 3, 2], matmul_dtype="float64")


def _kernel_casts(model, shapes, batch):
    """How many casts of a whole kernel (a tensor of one of `shapes`) to bfloat16 one
    traced train step makes."""
    import tensorflow as tf

    model.compile(optimizer=keras.optimizers.SGD(0.05))
    graph = tf.function(model.train_step).get_concrete_function(
        tf.TensorSpec((batch, shapes[0][0]), tf.float32)).graph
    return sum(1 for op in graph.get_operations()
               if op.type == "Cast" and op.outputs[0].dtype == tf.bfloat16
               and tuple(op.outputs[0].shape) in shapes)


def test_a_train_step_casts_each_kernel_once(digits):
    """Each kernel is cast to bfloat16 once a step, not once a product (a cast is a pass
    over the whole kernel): CD-1 reads it three times, the DBM's mean-field and Gibbs
    sweeps many more."""
    rbm = tb.RBM(64, 32, seed=0, matmul_dtype="bfloat16")
    assert _kernel_casts(rbm, [(64, 32)], 50) == 1
    dbm = tb.DBM([64, 12, 8], seed=0, matmul_dtype="bfloat16", k=3)
    # Two for the step, one more for the reconstruction metric, which reads the updated
    # first kernel (the old step cast a kernel for each product: 3 for this RBM, 15 for
    # this DBM, the mean-field loop's body counted once).
    assert _kernel_casts(dbm, [(64, 12), (12, 8)], 50) == 3
    # The step's results are those of a cast a product: the same rounding.
    x = digits[0][:100]
    once = tb.RBM(64, 32, seed=0, matmul_dtype="bfloat16")
    every = tb.RBM(64, 32, seed=0, matmul_dtype="bfloat16")
    every.set_weights(once.get_weights())
    every._product_kernel = lambda: every.kernel  # the cast in each product
    for model in (once, every):
        model.compile(optimizer=keras.optimizers.SGD(0.05))
        model.fit(x, batch_size=50, epochs=1, verbose=0, shuffle=False)
    np.testing.assert_array_equal(once.kernel.numpy(), every.kernel.numpy())
