"""MobileFaceNet, as in `arcface_torch/backbones/mobilefacenet.py` (`get_mbf`, `get_mbf_large`)."""

import keras

from keras_margin._validation import check_number
from keras_margin.backbones.blocks import batch_norm, conv, prelu

CONV_INITIALIZER = keras.initializers.VarianceScaling(2.0, mode="fan_out", distribution="untruncated_normal")


def mobilefacenet(embedding_dim=512, input_shape=(112, 112, 3), blocks=(1, 4, 6, 2), scale=2, name="mobilefacenet"):
    """MobileFaceNet: depthwise-separable blocks and a global depthwise (GDC) output.

    With `c = 64·scale`: conv 3×3 / 2 (c) → a grouped conv 3×3 (64 groups;
    or `blocks[0]` residual blocks) → a stride-2 depthwise block → `blocks[1]`
    residual blocks (c) → a stride-2 block to 2c → `blocks[2]` residual
    blocks → a stride-2 block → `blocks[3]` residual blocks → conv 1×1 (512)
    → the GDC: depthwise conv 7×7 → flatten → Dense without bias → BN. A
    depthwise block is conv 1×1 (expand) → depthwise 3×3 → conv 1×1
    (linear, no PReLU); the residual ones add their input. Every convolution
    but the linear ones is followed by BN and PReLU. The expansion widths
    (128, 256, 512 by stage) are insightface's, whatever the scale.

    Under a mixed-precision policy the GDC's Dense and BN compute in
    float32, so the embedding is float32.

    Args:
        embedding_dim: positive integer, the size of the embedding; default
            512.
        input_shape: `(height, width, channels)`; default `(112, 112, 3)`.
            112×112 gives the 7×7 map the GDC expects (other sizes give a
            `height / 16` map and a matching depthwise kernel).
        blocks: 4 positive integers, residual blocks per stage: `(1, 4, 6, 2)`
            (the default) for MobileFaceNet, `(2, 8, 12, 4)` with `scale=4`
            for the large one.
        scale: positive integer, width multiplier of the trunk
            (c = 64·scale); default 2.
        name: the model's name; default `"mobilefacenet"`.

    Input shape:
        `(batch, height, width, channels)` images.

    Output shape:
        `(batch, embedding_dim)`.

    Returns:
        A functional `keras.Model`.

    Example:

    ```pycon
    >>> embedder = keras_margin.backbones.mobilefacenet(embedding_dim=512)
    ```
    """
    embedding_dim = check_number("embedding_dim", embedding_dim, low=1, integer=True)
    scale = check_number("scale", scale, low=1, integer=True)
    if len(blocks) != 4 or any(not isinstance(b, int) or b < 1 for b in blocks):
        raise ValueError(f"`blocks` must be 4 positive integers. Received: blocks={blocks!r}")
    width = 64 * scale
    images = keras.Input(input_shape, name="images")
    x = _conv_block(images, width, 3, "stem", strides=2)
    if blocks[0] == 1:
        x = _conv_block(x, width, 3, "stem_grouped", groups=64)
    else:
        x = _residual_blocks(x, blocks[0], 128, "stage0")
    x = _depthwise_block(x, width, 128, "stage1_down", strides=2)
    x = _residual_blocks(x, blocks[1], 128, "stage1")
    x = _depthwise_block(x, 2 * width, 256, "stage2_down", strides=2)
    x = _residual_blocks(x, blocks[2], 256, "stage2")
    x = _depthwise_block(x, 2 * width, 512, "stage3_down", strides=2)
    x = _residual_blocks(x, blocks[3], 256, "stage3")
    x = _conv_block(x, 512, 1, "conv_sep")
    # GDC: one depthwise filter over the whole map
    x = keras.layers.DepthwiseConv2D(
        tuple(x.shape[1:3]), use_bias=False, depthwise_initializer=CONV_INITIALIZER, name="gdc_conv"
    )(x)
    x = batch_norm(x, "gdc_bn")
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(embedding_dim, use_bias=False, kernel_initializer=CONV_INITIALIZER, dtype="float32",
                           name="fc")(x)
    embeddings = batch_norm(x, "embedding", dtype="float32")
    return keras.Model(images, embeddings, name=name)


def mobilefacenet_large(embedding_dim=512, input_shape=(112, 112, 3), name="mobilefacenet_large"):
    """The large MobileFaceNet of insightface (`get_mbf_large`): blocks (2, 8, 12, 4), scale 4.

    Args:
        embedding_dim: positive integer, the size of the embedding; default 512.
        input_shape: `(height, width, channels)`; default `(112, 112, 3)`.
        name: the model's name; default `"mobilefacenet_large"`.

    Returns:
        A functional `keras.Model` from images to `(batch, embedding_dim)`
        embeddings.

    Example:

    ```pycon
    >>> embedder = keras_margin.backbones.mobilefacenet_large()
    ```
    """
    return mobilefacenet(embedding_dim, input_shape, blocks=(2, 8, 12, 4), scale=4, name=name)


def _conv_block(x, filters, kernel_size, name, strides=1, groups=1):
    x = conv(x, filters, kernel_size, f"{name}_conv", strides=strides, groups=groups,
             kernel_initializer=CONV_INITIALIZER)
    x = batch_norm(x, f"{name}_bn")
    return prelu(x, f"{name}_prelu")


def _depthwise_block(x, filters, expansion, name, strides=1):
    """conv 1×1 → depthwise 3×3 → linear conv 1×1 (+ the input when `strides == 1` and widths match)."""
    y = _conv_block(x, expansion, 1, f"{name}_expand")
    y = _conv_block(y, expansion, 3, f"{name}_depthwise", strides=strides, groups=expansion)
    y = conv(y, filters, 1, f"{name}_project_conv", kernel_initializer=CONV_INITIALIZER)
    return batch_norm(y, f"{name}_project_bn")


def _residual_blocks(x, count, expansion, name):
    for block in range(1, count + 1):
        y = _depthwise_block(x, x.shape[-1], expansion, f"{name}_block{block}")
        x = keras.layers.Add(name=f"{name}_block{block}_add")([x, y])
    return x
