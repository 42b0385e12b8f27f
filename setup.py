"""Package metadata for tfboltz.

`install_requires` holds library-style ranges (what tfboltz works with); the exact
versions it is tested with are pinned in constraints.txt, which the Makefile installs
with (`pip install -c constraints.txt -e ".[dev]"`).
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
# One version, read from the package without importing it (importing needs its
# requirements, which may not be installed yet).
VERSION = re.search(r'^__version__ = "([^"]+)"',
                    (ROOT / "tfboltz" / "__init__.py").read_text(encoding="utf-8"), re.M).group(1)

setup(
    name="tfboltz",
    version=VERSION,
    description="Boltzmann machines (RBM, DBN, DBM) as Keras 3 / TensorFlow 2 models",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    # TensorFlow 2.21 ships wheels for CPython 3.10-3.13 (Requires-Python >=3.10, no
    # cp314 wheel) and Keras 3.15 needs 3.11 or later: the range is where both install
    # (the requirements resolve on 3.11, 3.12 and 3.13). Tested on Python 3.11, the
    # version constraints.txt was made on, the one the classifiers name.
    python_requires=">=3.11,<3.14",
    classifiers=[
        "Programming Language :: Python :: 3",
        "Programming Language :: Python :: 3 :: Only",
        "Programming Language :: Python :: 3.11",
        "Intended Audience :: Science/Research",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    # The model cards live in the top-level zoo/ directory and install as the package
    # data `tfboltz.zoo_cards`; the presets' weight files in pretrained/ install as
    # `tfboltz.zoo_weights`, so an installed tfboltz loads them offline. tfboltz.zoo
    # reads both through importlib.resources.
    packages=find_packages(include=["tfboltz", "tfboltz.*"])
    + ["tfboltz.zoo_cards", "tfboltz.zoo_weights"],
    package_dir={"tfboltz.zoo_cards": "zoo", "tfboltz.zoo_weights": "pretrained"},
    package_data={"tfboltz.zoo_cards": ["*.json"], "tfboltz.zoo_weights": ["*.weights.h5"]},
    install_requires=[
        # Tested on 2.21; a new TensorFlow minor release changes Keras, XLA and
        # tf.distribute behaviour under the train steps, so the range stops before it.
        "tensorflow>=2.21,<2.22",
        # The range the tests run on: tfboltz.callbacks.set_initial_epoch relies on a
        # private attribute of Keras's fit (tests/test_models.py checks it).
        "keras>=3.15.1,<3.16",
        # MNIST and CIFAR-10 (tfboltz.data); MNIST also has routes without it.
        "tensorflow-datasets>=4.9.10,<5",
        # tf.summary (the TensorBoard callback) needs it; TF 2.21 no longer pulls it in.
        "tensorboard>=2.21,<3",
        "numpy>=1.26,<3",
        # Download progress (tfboltz.zoo).
        "tqdm>=4.60",
        # tfboltz.viz and the CLI's `sample` and `plot`: a small part of the install
        # beside TensorFlow, and the quickstart's figure should not need a second step.
        "matplotlib>=3.8,<4",
    ],
    extras_require={
        "dev": [
            "pytest>=8", "pytest-xdist>=3.5", "ruff>=0.6", "scikit-learn>=1.5",
            # The documentation site (`make docs`).
            "mkdocs>=1.6,<2", "mkdocs-material>=9.6,<10", "mkdocstrings[python]>=1.0,<2",
        ],
        # docs/experiments/scripts/dbm_joint_jax.py, the DBM joint phase for
        # accelerators with JAX and no TensorFlow; its tests skip without it.
        "jax": ["jax>=0.6"],
    },
    entry_points={"console_scripts": ["tfboltz=tfboltz.cli:main"]},
)
