"""Per-epoch schedules for the hyperparameters that Keras's own callbacks don't cover.

The learning rate follows `keras.callbacks.LearningRateScheduler` or a
`keras.optimizers.schedules.LearningRateSchedule`, as for any Keras model.
"""

import keras

from tfboltz import validation


class KScheduler(keras.callbacks.Callback):
    """Sets the number of Gibbs steps ``k`` of an RBM at the start of each epoch.

    Args:
        schedule: function ``epoch (0-based) -> k``, or a list (the last entry holds
            for later epochs).

    Example:
        >>> rbm.fit(x, epochs=30, callbacks=[KScheduler(lambda e: 1 + e // 10)])
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        k = _value(self.schedule, epoch)
        self.model.k.assign(validation.positive_int("k", k))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["k"] = int(self.model.k.numpy())


class MomentumScheduler(keras.callbacks.Callback):
    """Sets the momentum of a Keras `SGD` optimizer at the start of each epoch.

    Keras bakes an SGD momentum into the compiled train function, so a change of
    value retraces it once (a second or so); constant stretches cost nothing.

    Args:
        schedule: function ``epoch (0-based) -> momentum``, or a list.

    Example:
        >>> MomentumScheduler(lambda e: 0.5 if e < 5 else 0.9)  # Hinton's guide
    """

    def __init__(self, schedule):
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch, logs=None):
        value = validation.non_negative_float("momentum", _value(self.schedule, epoch))
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "momentum"):
            raise ValueError(
                f"Expected an optimizer with a `momentum` argument, such as SGD. "
                f"Received: {type(optimizer).__name__}"
            )
        if value > 0 and optimizer.momentum == 0:
            raise ValueError(
                "Expected the optimizer to be compiled with a non-zero momentum, so "
                "that its velocity slots exist. Received: momentum=0"
            )
        if value != optimizer.momentum:
            optimizer.momentum = value
            self.model.make_train_function(force=True)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["momentum"] = float(self.model.optimizer.momentum)


def _value(schedule, epoch):
    if callable(schedule):
        return schedule(epoch)
    schedule = list(schedule)
    return schedule[min(epoch, len(schedule) - 1)]
