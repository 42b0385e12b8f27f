import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's 8x8 digits, binarised at 0.5: float32 [1797, 64] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0 > 0.5).astype("float32"), d.target.astype("int64")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
