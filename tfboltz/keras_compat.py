"""Every place tfboltz reaches below Keras's public API, and why.

Keras offers no public route for these three; each is kept to this module, with a
test that fails loudly if Keras changes underneath (`keras` is pinned to the range the
tests run on in setup.py). Nothing else in the package touches a private name of
Keras (tests/test_models.py checks that).

- `set_initial_epoch`: exact resume in the middle of a run moves the first epoch of
  the `fit` in progress, as `keras.callbacks.BackupAndRestore` does, through
  `Model._initial_epoch`.
- `TrainerHooks._maybe_symbolic_build`: under a `tf.distribute` strategy Keras builds
  the model from the first batch averaged over the replicas, which fails on a batch
  that splits unevenly (keras-team/keras#19246); the model is built from the first
  replica's part instead.
- `TrainerHooks._make_function`: under several workers Keras averages a step's scalar
  logs along an axis they lack (tensorflow/tensorflow#72388); the logs get one.
"""

from tfboltz import distribute


def set_initial_epoch(model, epoch):
    """Make the `fit` call in progress start at `epoch` (None: clear it).

    Keras has no public way for a callback to move the first epoch of a running `fit`;
    its own `keras.callbacks.BackupAndRestore` sets the private `Model._initial_epoch`,
    which `fit` reads after `on_train_begin`
    (tests/test_models.py::test_keras_still_uses_the_private_hooks).
    """
    model._initial_epoch = epoch


class TrainerHooks:
    """Overrides of two private hooks of Keras's TensorFlow trainer (see the module's
    docstring); a base class of `tfboltz.energy_model.EnergyModel`, before
    `keras.Model`."""

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if iterator is not None and self._distribute_strategy is not None:
            iterator, data_batch = None, distribute.first_local_batch(
                self._distribute_strategy, iterator)
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def _make_function(self, step_function):
        return super()._make_function(
            distribute.multi_worker_logs(step_function, self.distribute_strategy))
