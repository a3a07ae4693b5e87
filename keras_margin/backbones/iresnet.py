"""IResNet (insightface's "improved ResNet"), as in `arcface_torch/backbones/iresnet.py`."""

import keras

from keras_margin._validation import check_number
from keras_margin.backbones.blocks import batch_norm, conv, prelu

BLOCKS_PER_STAGE = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    200: (6, 26, 60, 6),
}
STAGE_CHANNELS = (64, 128, 256, 512)
CONV_INITIALIZER = keras.initializers.RandomNormal(stddev=0.1)  # insightface's init of IResNet's convolutions


def iresnet(depth, embedding_dim=512, dropout=0.0, input_shape=(112, 112, 3), name=None):
    """The IResNet face backbone: 112×112 images → an `embedding_dim` embedding.

    Stem: conv 3×3 (64) → BN → PReLU. Four stages of 64 / 128 / 256 / 512
    channels, each starting with stride 2 (112 → 56 → 28 → 14 → 7), of
    improved basic blocks: BN → conv 3×3 → BN → PReLU → conv 3×3 (the
    stage's stride) → BN, added to the shortcut (conv 1×1 + BN where the
    shape changes), with no activation after the add. Output: BN → flatten →
    dropout → Dense → BN without a scale (insightface fixes it at 1).
    BatchNorm uses ε = 1e-5 and PyTorch's momentum; stride-2 convolutions are
    padded symmetrically as in PyTorch. Under a mixed-precision policy the
    trunk computes in the low precision and the last Dense and BN in float32,
    so the embedding is float32.

    Args:
        depth: 18, 34, 50, 100 or 200; another value raises a ValueError.
        embedding_dim: positive integer, the size of the embedding; default
            512.
        dropout: dropout rate before the last Dense, in `[0, 1)`; default 0
            (insightface: 0, or 0.4 for some recipes).
        input_shape: `(height, width, channels)` of the images, channels
            last; default `(112, 112, 3)`.
        name: the model's name (default `None`: `"iresnet<depth>"`).

    Input shape:
        `(batch, height, width, channels)` images, e.g. scaled to [-1, 1].

    Output shape:
        `(batch, embedding_dim)`, not normalized (the heads normalize).

    Returns:
        A functional `keras.Model`.

    Example:

    ```pycon
    >>> embedder = keras_margin.backbones.iresnet(50)
    >>> head = keras_margin.ArcMarginHead(num_classes)
    ```
    """
    if depth not in BLOCKS_PER_STAGE:
        raise ValueError(f"`depth` must be one of {tuple(BLOCKS_PER_STAGE)}. Received: depth={depth!r}")
    embedding_dim = check_number("embedding_dim", embedding_dim, low=1, integer=True)
    dropout = check_number("dropout", dropout, low=0, high=1, high_open=True)
    images = keras.Input(input_shape, name="images")
    x = conv(images, 64, 3, "stem_conv", kernel_initializer=CONV_INITIALIZER)
    x = batch_norm(x, "stem_bn")
    x = prelu(x, "stem_prelu")
    for stage, (channels, blocks) in enumerate(zip(STAGE_CHANNELS, BLOCKS_PER_STAGE[depth]), start=1):
        for block in range(1, blocks + 1):
            x = _block(x, channels, strides=2 if block == 1 else 1, name=f"stage{stage}_block{block}")
    x = batch_norm(x, "output_bn")
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    x = keras.layers.Dense(embedding_dim, dtype="float32", name="fc")(x)
    embeddings = batch_norm(x, "embedding", scale=False, dtype="float32")
    return keras.Model(images, embeddings, name=name or f"iresnet{depth}")


def _block(x, channels, strides, name):
    shortcut = x
    y = batch_norm(x, f"{name}_bn1")
    y = conv(y, channels, 3, f"{name}_conv1", kernel_initializer=CONV_INITIALIZER)
    y = batch_norm(y, f"{name}_bn2")
    y = prelu(y, f"{name}_prelu")
    y = conv(y, channels, 3, f"{name}_conv2", strides=strides, kernel_initializer=CONV_INITIALIZER)
    y = batch_norm(y, f"{name}_bn3")
    if strides != 1 or x.shape[-1] != channels:
        shortcut = conv(x, channels, 1, f"{name}_downsample_conv", strides=strides,
                        kernel_initializer=CONV_INITIALIZER)
        shortcut = batch_norm(shortcut, f"{name}_downsample_bn")
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def iresnet18(**kwargs):
    """The IResNet-18 face backbone: `iresnet(18, **kwargs)`.

    Args:
        **kwargs: the other arguments of `iresnet`: `embedding_dim` (default
            512), `dropout` (default 0), `input_shape` (default
            `(112, 112, 3)`) and `name` (default `"iresnet18"`).

    Returns:
        A functional `keras.Model` from images to `(batch, embedding_dim)`
        embeddings.
    """
    return iresnet(18, **kwargs)


def iresnet34(**kwargs):
    """The IResNet-34 face backbone: `iresnet(34, **kwargs)`.

    Args:
        **kwargs: the other arguments of `iresnet`: `embedding_dim` (default
            512), `dropout` (default 0), `input_shape` (default
            `(112, 112, 3)`) and `name` (default `"iresnet34"`).

    Returns:
        A functional `keras.Model` from images to `(batch, embedding_dim)`
        embeddings.
    """
    return iresnet(34, **kwargs)


def iresnet50(**kwargs):
    """The IResNet-50 face backbone: `iresnet(50, **kwargs)`.

    Args:
        **kwargs: the other arguments of `iresnet`: `embedding_dim` (default
            512), `dropout` (default 0), `input_shape` (default
            `(112, 112, 3)`) and `name` (default `"iresnet50"`).

    Returns:
        A functional `keras.Model` from images to `(batch, embedding_dim)`
        embeddings.

    Example:

    ```pycon
    >>> embedder = keras_margin.backbones.iresnet50(embedding_dim=512, dropout=0.4)
    ```
    """
    return iresnet(50, **kwargs)


def iresnet100(**kwargs):
    """The IResNet-100 face backbone: `iresnet(100, **kwargs)`.

    Args:
        **kwargs: the other arguments of `iresnet`: `embedding_dim` (default
            512), `dropout` (default 0), `input_shape` (default
            `(112, 112, 3)`) and `name` (default `"iresnet100"`).

    Returns:
        A functional `keras.Model` from images to `(batch, embedding_dim)`
        embeddings.
    """
    return iresnet(100, **kwargs)


def iresnet200(**kwargs):
    """The IResNet-200 face backbone: `iresnet(200, **kwargs)`.

    Args:
        **kwargs: the other arguments of `iresnet`: `embedding_dim` (default
            512), `dropout` (default 0), `input_shape` (default
            `(112, 112, 3)`) and `name` (default `"iresnet200"`).

    Returns:
        A functional `keras.Model` from images to `(batch, embedding_dim)`
        embeddings.
    """
    return iresnet(200, **kwargs)
