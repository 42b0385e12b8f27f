"""Package metadata for tfboltz."""

from setuptools import find_packages, setup

setup(
    name="tfboltz",
    version="0.1.0",
    description="Boltzmann machines (RBM, DBN, DBM) as Keras 3 / TensorFlow 2 models",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    # The model cards live in the top-level zoo/ directory and install as the package
    # data `tfboltz.zoo_cards`; the presets' weight files in pretrained/ install as
    # `tfboltz.zoo_weights`, so an installed tfboltz loads them offline. tfboltz.zoo
    # reads both through importlib.resources.
    packages=find_packages(include=["tfboltz", "tfboltz.*"])
    + ["tfboltz.zoo_cards", "tfboltz.zoo_weights"],
    package_dir={"tfboltz.zoo_cards": "zoo", "tfboltz.zoo_weights": "pretrained"},
    package_data={"tfboltz.zoo_cards": ["*.json"], "tfboltz.zoo_weights": ["*.weights.h5"]},
    install_requires=[
        "tensorflow==2.21.0",
        # The range the tests run on: tfboltz.callbacks.set_initial_epoch relies on a
        # private attribute of Keras's fit (tests/test_models.py checks it).
        "keras>=3.15.1,<3.16",
        # TFP 0.25 is the newest release; it imports beside TF 2.21 once tf-keras is
        # present (it probes for the Keras 2 API at import time).
        "tensorflow-probability==0.25.0",
        "tf-keras==2.21.0",
        "tensorflow-datasets==4.9.10",
        # tf.summary (the TensorBoard callback) needs it; TF 2.21 no longer pulls it in.
        "tensorboard==2.21.0",
        "numpy>=1.26",
        "tqdm",
    ],
    extras_require={
        # jax: the tests of scripts/dbm_joint_jax.py, the joint phase for accelerators
        # that carry JAX but no TensorFlow, checked against tfboltz's own step.
        "dev": ["pytest>=8", "ruff>=0.6", "scikit-learn>=1.5", "matplotlib>=3.8",
                "jax>=0.6"],
    },
    entry_points={"console_scripts": ["tfboltz=tfboltz.cli:main"]},
)
