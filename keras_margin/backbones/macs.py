"""Multiply-accumulate count of a model's convolutions and dense layers, from the layer shapes."""

import math

import keras

from keras_margin._walk import nested_layers
from keras_margin.backbones.blocks import GroupedConv2D


def count_macs(model):
    """Multiply-accumulates of one forward pass of one image through `model`.

    Counts what dominates a backbone: each `Conv2D` (grouped too),
    `DepthwiseConv2D`, `GroupedConv2D` and `Dense` contributes output elements × (inputs
    feeding each one). Batch norm, PReLU, additions and padding are not
    counted, as in the "FLOPs" insightface publishes (which are MACs).
    Nested models are counted through.

    Args:
        model: a built Keras model with static input shapes.

    Returns:
        An int.

    Example:

    ```pycon
    >>> count_macs(keras_margin.backbones.iresnet50()) / 1e9   # about 6.3
    ```
    """
    total = 0
    for layer in nested_layers(model):
        if isinstance(layer, keras.Model):
            continue  # its layers are in the list already
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kernel = math.prod(layer.kernel_size)
            total += _elements(layer.output.shape) * kernel
        elif isinstance(layer, keras.layers.Conv2D):
            in_channels = layer.input.shape[-1]
            total += _elements(layer.output.shape) * math.prod(layer.kernel_size) * in_channels // layer.groups
        elif isinstance(layer, GroupedConv2D):
            total += _elements(layer.output.shape) * layer.kernel_size**2 * layer.kernel.shape[2]
        elif isinstance(layer, keras.layers.Dense):
            total += _elements(layer.output.shape) * layer.input.shape[-1]
    return int(total)


def _elements(shape):
    if any(v is None for v in shape[1:]):
        raise ValueError(f"count_macs needs static shapes; a layer has output shape {tuple(shape)}")
    return math.prod(shape[1:])
