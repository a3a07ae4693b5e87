"""`NormalizedDense`: a bias-free dense layer on L2-normalized vectors."""

import keras
from keras import ops

from keras_margin import margins
from keras_margin._validation import check_number, check_rank_2_shape


@keras.saving.register_keras_serializable(package="keras_margin")
class NormalizedDense(keras.layers.Layer):
    """Dense layer whose output is the scaled cosine `s · cos θ_j`.

    Both the input rows and the kernel columns are L2-normalized before the
    product, so output `j` is `scale` times the cosine between the input and
    column `j` (NormFace, Wang et al. 2017). With `scale` around 16–64 it is a
    softmax classifier on the hypersphere; with `scale=1` it returns cosines.

    The norms are taken in float32 and only the product of two unit-norm
    operands runs in the layer's compute dtype, so mixed precision cannot
    overflow. The output has the layer's compute dtype, as with `Dense`;
    pass `dtype="float32"` for a final logits layer under mixed precision.

    Args:
        units: positive integer, the number of output columns.
        scale: positive float `s` multiplying the cosines, or `"auto"`
            (√2·ln(units − 1), needs units ≥ 3).
        kernel_initializer: initializer of the `(input_dim, units)` kernel.
        kernel_regularizer: optional regularizer of the kernel.
        kernel_constraint: optional constraint of the kernel.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, input_dim)`.

    Output shape:
        `(batch, units)`.

    Example:

    ```pycon
    >>> layer = NormalizedDense(10, scale=30.0)
    >>> layer(np.ones((4, 8))).shape
    (4, 10)
    ```
    """

    def __init__(
        self,
        units,
        scale=1.0,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)  # the kernel is read in float32
        self.units = check_number("units", units, low=1, integer=True)
        if scale == "auto" and self.units < 3:
            raise ValueError(
                "`scale='auto'` uses the AdaCos scale √2·ln(units − 1), which needs units ≥ 3. "
                f"Received: units={units}; pass a number as `scale`"
            )
        self.scale = scale if scale == "auto" else check_number("scale", scale, low=0.0, low_open=True)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def build(self, input_shape):
        input_dim = check_rank_2_shape("NormalizedDense", input_shape, argument="inputs")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.units),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: input_dim})
        self.built = True

    def call(self, inputs):
        cos = margins.cosine_similarity(inputs, self.kernel, self.compute_dtype)
        return ops.cast(self.scale_value * cos, self.compute_dtype)

    @property
    def scale_value(self):
        """The scale s as a Python float (`"auto"` resolved)."""
        return margins.adacos_scale(self.units) if self.scale == "auto" else self.scale

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "scale": self.scale,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            }
        )
        return config
