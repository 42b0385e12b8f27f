"""Minutes-long checks on real MNIST (``make test-slow``)."""

import keras
import pytest

import tfboltz as tb

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mnist():
    x, _ = tb.data.load_mnist("train", binarize="stochastic", seed=0)
    return x


def test_ais_matches_enumeration_on_an_mnist_rbm(mnist):
    """784-18 RBM trained on MNIST: AIS at 10,000 betas against the exact sum over
    all 2^18 hidden states."""
    rbm = tb.RBM(784, 18, learning="pcd", sample_visible=True, seed=0)
    rbm.compile(optimizer=keras.optimizers.SGD(0.05))
    rbm.fit(mnist[:20000], batch_size=100, epochs=2, verbose=0)
    exact = tb.ais.exact_log_partition(rbm, side="hidden")
    est = tb.ais.log_partition(rbm, n_chains=100, n_betas=10000, seed=0, data=mnist, verbose=0)
    assert abs(est.log_z - exact) < 0.1, (est, exact)
    ll = tb.ais.log_likelihood(rbm, mnist[:1000], exact).mean()
    base = tb.RBM(784, 18, seed=0)
    base.init_from_data(mnist)  # independent pixels with the data's marginals
    base_ll = tb.ais.log_likelihood(base, mnist[:1000], tb.ais.exact_log_partition(base)).mean()
    # seen: about -172 against -204 for independent pixels
    assert ll > base_ll + 15, (ll, base_ll)
