"""`FusedBatchNormalization`: Keras' BatchNormalization on TensorFlow's fused kernel where it applies."""

import keras


@keras.saving.register_keras_serializable(package="keras_margin")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """`keras.layers.BatchNormalization` that runs one fused kernel per pass on TensorFlow.

    Keras 3 normalizes with separate moment, subtract, multiply and add ops
    (and, under a mixed-precision policy, casts the feature map to float32
    and back around them), a pass over the whole feature map each. On the
    TensorFlow backend this layer computes 4-D channels-last batches with
    `FusedBatchNormV3` instead: one op forward and one backward, statistics
    in float32, the feature map read and written in the compute dtype
    (bfloat16 / float16 under mixed precision). The result, the moving
    statistics (updated with the biased batch variance, as Keras does) and
    the weights are those of `BatchNormalization`; the other backends, other
    ranks and axes, masks, `renorm` and `synchronized` use its code
    unchanged.

    It takes the arguments of `keras.layers.BatchNormalization` (`axis`,
    `momentum`, `epsilon`, `center`, `scale`, the initializers,
    regularizers and constraints, `synchronized`, ...) and has no
    `__init__` of its own.

    Input shape:
        Any; `(batch, height, width, channels)` with `axis=-1` takes the
        fused kernel on TensorFlow.

    Output shape:
        Same as the input.

    Example:

    ```pycon
    >>> layer = FusedBatchNormalization(epsilon=1e-5)
    >>> layer(np.ones((2, 4, 4, 3)), training=True).shape
    (2, 4, 4, 3)
    ```
    """

    def call(self, inputs, training=None, mask=None):
        if not self._takes_fused_kernel(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        # the raw op, not tf.compat.v1.nn.fused_batch_norm, which raises epsilon to cuDNN's old floor 1.001e-5
        x = tf.cast(inputs, self.compute_dtype)
        channels = x.shape[-1]
        gamma = tf.cast(self.gamma, "float32") if self.scale else tf.ones((channels,), "float32")
        beta = tf.cast(self.beta, "float32") if self.center else tf.zeros((channels,), "float32")
        if training and self.trainable:
            empty = tf.zeros((0,), "float32")
            outputs, mean, unbiased_variance = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=self.epsilon, is_training=True
            )[:3]
            # the kernel returns the Bessel-corrected variance; Keras' moving variance averages the biased one
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
            variance = unbiased_variance * tf.maximum(count - 1.0, 1.0) / count
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=gamma, offset=beta, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon, is_training=False,
            )[0]
        return outputs

    def _takes_fused_kernel(self, inputs, mask):
        return (
            keras.backend.backend() == "tensorflow"
            and len(inputs.shape) == 4
            and self.axis in (-1, 3)
            and mask is None
            and not self.renorm
            and not self.synchronized
            and keras.backend.standardize_dtype(self.compute_dtype) in ("float16", "bfloat16", "float32")
        )
