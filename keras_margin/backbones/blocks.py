"""Convolution building blocks shared by the face backbones: PyTorch-style padding, BN, PReLU."""

import keras

BN_EPSILON = 1e-5  # PyTorch's default, as in insightface's modules
BN_MOMENTUM = 0.9  # PyTorch's momentum 0.1, in Keras' convention


def batch_norm(x, name, **kwargs):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name, **kwargs)(x)


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
    `DepthwiseConv2D`.
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
    return keras.layers.Conv2D(
        filters, kernel_size, strides, padding=padding, groups=groups, use_bias=False,
        kernel_initializer=kernel_initializer, name=name,
    )(x)
