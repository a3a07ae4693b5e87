"""Convolution building blocks shared by the face backbones: PyTorch-style padding, BN, PReLU."""

import keras

from keras_margin.layers.fused_batch_normalization import FusedBatchNormalization

BN_EPSILON = 1e-5  # PyTorch's default, as in insightface's modules
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1, in Keras' convention


def batch_norm(x, name, **kwargs):
    """Batch normalization with PyTorch's ε and momentum (TensorFlow's fused kernel on 4-D maps)."""
    return FusedBatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name, **kwargs)(x)


def prelu(x, name):
    """Per-channel PReLU, slopes starting at 0.25 as in PyTorch."""
    return keras.layers.PReLU(
        alpha_initializer=keras.initializers.Constant(0.25), shared_axes=[1, 2], name=name
    )(x)


def conv(x, filters, kernel_size, name, strides=1, groups=1, kernel_initializer="he_normal"):
    """A bias-free convolution padded by `kernel_size // 2` on every side, as PyTorch's `padding=k // 2`.

    Keras' `padding="same"` puts the odd pixel of a stride-2 convolution at
    the bottom / right only, which shifts every feature map against the
    PyTorch layout; explicit symmetric padding + `"valid"` matches it.
    Depthwise convolutions (`groups == filters ==` input channels) use
    `DepthwiseConv2D`, other grouped ones `GroupedConv2D`.
    """
    pad = kernel_size // 2
    if pad and strides > 1:
        x = keras.layers.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same" if pad else "valid"  # stride 1: "same" is the symmetric padding
    in_channels = x.shape[-1]
    if groups > 1 and groups == filters == in_channels:
        return keras.layers.DepthwiseConv2D(
            kernel_size, strides, padding=padding, use_bias=False, depthwise_initializer=kernel_initializer,
            name=name,
        )(x)
    if groups > 1:
        return GroupedConv2D(filters, kernel_size, groups, strides, padding, kernel_initializer, name=name)(x)
    return keras.layers.Conv2D(
        filters, kernel_size, strides, padding=padding, groups=groups, use_bias=False,
        kernel_initializer=kernel_initializer, name=name,
    )(x)


@keras.saving.register_keras_serializable(package="keras_margin")
class GroupedConv2D(keras.layers.Layer):
    """A grouped convolution computed as a depthwise convolution and a sum over each group's inputs.

    Same function and kernel layout as `keras.layers.Conv2D(filters,
    kernel_size, groups=groups, use_bias=False)`: kernel `(kh, kw,
    in_channels / groups, filters)`, group g reading input channels
    `g·cin_g …` and writing output channels `g·cout_g …`. TensorFlow's CPU
    kernel for the gradient of a grouped `Conv2D` is very slow; a depthwise
    convolution with `cout_g` filters per input channel followed by a sum
    over the `cin_g` inputs of each group is the same arithmetic with fast
    kernels.

    Args:
        filters: output channels, a multiple of `groups`.
        kernel_size: an int (square kernel).
        groups: number of groups; the input channels must be a multiple.
        strides: an int.
        padding: `"valid"` or `"same"`.
        kernel_initializer: initializer of the kernel.

    Input shape:
        `(batch, height, width, in_channels)`.

    Output shape:
        `(batch, new_height, new_width, filters)`.
    """

    def __init__(self, filters, kernel_size, groups, strides=1, padding="valid", kernel_initializer="he_normal",
                 **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.groups = int(groups)
        self.strides = int(strides)
        self.padding = padding
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        if self.filters % self.groups:
            raise ValueError(f"`filters` must be a multiple of `groups`. Received: filters={filters}, groups={groups}")

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels % self.groups:
            raise ValueError(
                f"GroupedConv2D: the input channels ({in_channels}) must be a multiple of groups={self.groups}"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(self.kernel_size, self.kernel_size, in_channels // self.groups, self.filters),
            initializer=self.kernel_initializer,
        )

    def call(self, inputs):
        from keras import ops

        k, groups = self.kernel_size, self.groups
        cin_g = self.kernel.shape[2]
        cout_g = self.filters // groups
        # (k, k, cin_g, groups·cout_g) → depthwise layout (k, k, groups·cin_g, cout_g)
        kernel = ops.reshape(self.kernel, (k, k, cin_g, groups, cout_g))
        kernel = ops.reshape(ops.transpose(kernel, (0, 1, 3, 2, 4)), (k, k, groups * cin_g, cout_g))
        kernel = ops.cast(kernel, self.compute_dtype)
        outputs = ops.depthwise_conv(inputs, kernel, strides=self.strides, padding=self.padding)
        height, width = outputs.shape[1], outputs.shape[2]
        outputs = ops.reshape(outputs, (-1, height, width, groups, cin_g, cout_g))
        return ops.reshape(ops.sum(outputs, axis=4), (-1, height, width, self.filters))

    def compute_output_shape(self, input_shape):
        size = [input_shape[1], input_shape[2]]
        for i, n in enumerate(size):
            if n is not None:
                size[i] = (n - 1) // self.strides + 1 if self.padding == "same" else (n - self.kernel_size) // self.strides + 1
        return (input_shape[0], *size, self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "groups": self.groups, "strides": self.strides, "padding": self.padding,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
