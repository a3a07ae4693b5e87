"""`NormalizedDense`: a bias-free dense layer on L2-normalized vectors."""

import warnings

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
        num_classes: positive integer, the number of output columns (one per
            class), as in the margin heads. It was `units` in 0.1;
            `units=` is still accepted, with a DeprecationWarning, so models
            saved with it load.
        scale: positive float `s` multiplying the cosines, or `"auto"`
            (√2·ln(C − 1), needs num_classes ≥ 3).
        kernel_initializer: initializer of the `(input_dim, num_classes)`
            kernel.
        kernel_regularizer: optional regularizer of the kernel.
        kernel_constraint: optional constraint of the kernel.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Input shape:
        `(batch, input_dim)`.

    Output shape:
        `(batch, num_classes)`.

    Example:

    ```pycon
    >>> layer = NormalizedDense(10, scale=30.0)
    >>> layer(np.ones((4, 8))).shape
    (4, 10)
    ```
    """

    def __init__(
        self,
        num_classes=None,
        scale=1.0,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        num_classes = _renamed_units(num_classes, kwargs)
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)  # the kernel is read in float32
        self.num_classes = check_number("num_classes", num_classes, low=1, integer=True)
        if scale == "auto" and self.num_classes < 3:
            raise ValueError(
                "`scale='auto'` uses the AdaCos scale √2·ln(C − 1), which needs num_classes ≥ 3. "
                f"Received: num_classes={num_classes}; pass a number as `scale`"
            )
        self.scale = scale if scale == "auto" else check_number("scale", scale, low=0.0, low_open=True)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def build(self, input_shape):
        input_dim = check_rank_2_shape("NormalizedDense", input_shape, argument="inputs")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_dim, self.num_classes),
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
        return margins.adacos_scale(self.num_classes) if self.scale == "auto" else self.scale

    @property
    def units(self):
        """Deprecated alias of `num_classes`."""
        warnings.warn("`NormalizedDense.units` is now `num_classes`; `units` goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return self.num_classes

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "scale": self.scale,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            }
        )
        return config


def _renamed_units(num_classes, kwargs):
    """`num_classes`, or the old `units=` keyword popped from `kwargs` with a DeprecationWarning."""
    if "units" not in kwargs:
        if num_classes is None:
            raise TypeError("NormalizedDense() missing required argument: `num_classes`")
        return num_classes
    units = kwargs.pop("units")
    if num_classes is not None:
        raise TypeError(
            "NormalizedDense takes `num_classes` (formerly `units`), not both. "
            f"Received: num_classes={num_classes}, units={units}"
        )
    warnings.warn(
        "NormalizedDense's `units` argument is now `num_classes` (as in the margin heads); pass "
        "`num_classes=` instead. `units=` is accepted, so models saved before load, until the next release",
        DeprecationWarning,
        stacklevel=3,
    )
    return units
