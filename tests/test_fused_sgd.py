"""The fused SGD update (TensorFlow's momentum kernels) gives Keras's SGD updates."""

import keras
import numpy as np
import pytest

import tfboltz as tb


@pytest.mark.parametrize("kwargs", [
    {"momentum": 0.9}, {"momentum": 0.5, "nesterov": True}, {"momentum": 0.0},
    {"momentum": 0.9, "learning_rate": keras.optimizers.schedules.ExponentialDecay(
        0.05, decay_steps=3, decay_rate=0.5)},
])
def test_fused_sgd_matches_keras(kwargs, digits):
    x = digits[0][:300]
    models = []
    for fused in (True, False):
        rbm = tb.RBM(64, 16, learning="pcd", n_chains=20, l2=1e-3, seed=0)
        rbm.fused_sgd = fused
        rbm.compile(optimizer=keras.optimizers.SGD(**{"learning_rate": 0.05, **kwargs}),
                    steps_per_execution=4)
        rbm.fit(x, batch_size=30, epochs=2, verbose=0)
        models.append(rbm)
    fused, plain = models
    assert int(fused.optimizer.iterations.numpy()) == int(plain.optimizer.iterations.numpy()) == 20
    moved = np.abs(fused.kernel.numpy()).max()
    assert moved > 1e-2
    for a, b in zip(fused.weights + fused.optimizer.variables,
                    plain.weights + plain.optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_other_optimizers_go_through_keras(digits):
    rbm = tb.RBM(64, 16, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9, clipnorm=1.0))
    rbm.fit(digits[0][:100], batch_size=50, epochs=1, verbose=0)
    adam = tb.RBM(64, 16, seed=0)
    adam.compile(optimizer=keras.optimizers.Adam(1e-3))
    adam.fit(digits[0][:100], batch_size=50, epochs=1, verbose=0)
    assert int(adam.optimizer.iterations.numpy()) == 2
