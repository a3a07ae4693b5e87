"""`LatestValue`: a metric that reports the last value it was given."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="keras_margin")
class LatestValue(keras.metrics.Metric):
    """Holds the most recent value of a training-time quantity for the logs.

    Layers own one per scheduled quantity (a head's margin factor, its
    adaptive scale), so History records the value in effect at the end of the
    epoch rather than an average over it. Replicas under `tf.distribute` hold
    the same value; reading takes their mean.

    Args:
        name: the name the value is logged under.
        dtype: the value's dtype; default `"float32"`.

    Example:

    ```pycon
    >>> latest = LatestValue(name="scale")
    >>> latest.update_state(30.0)
    >>> float(latest.result())
    30.0
    ```
    """

    def __init__(self, name, dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self.value = self.add_variable(shape=(), initializer="zeros", name="value", aggregation="mean")

    def update_state(self, value):
        self.value.assign(ops.cast(value, self.dtype))

    def result(self):
        return ops.convert_to_tensor(self.value)
