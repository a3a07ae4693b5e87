"""Embeddings for evaluation, with the usual flip test-time augmentation."""

import numpy as np
from keras import ops

from keras_margin._validation import check_number


def flip_embeddings(model, images, batch_size=256, flip=True):
    """L2-normalized embeddings of `images`, summed with those of their mirror images.

    For each image x: e = f(x) + f(flip(x)), then e / ‖e‖, with flip the
    left-right mirror (the width axis of channels-last images). This is the
    test-time augmentation the face papers report with.

    Args:
        model: a Keras model from images `(batch, height, width, channels)` to
            embeddings `(batch, dim)`; called with `training=False`.
        images: an array of images, or an iterable of image batches (e.g. a
            batched `tf.data.Dataset` of images only).
        batch_size: images per model call when `images` is an array.
        flip: `False` gives only the normalized f(x).

    Returns:
        float32 NumPy array `(num_images, dim)`.

    Example:

    ```pycon
    >>> embeddings = flip_embeddings(embedder, images, batch_size=128)   # (len(images), dim), unit norm
    ```
    """
    batch_size = check_number("batch_size", batch_size, low=1, integer=True)
    if hasattr(images, "shape") and hasattr(images, "__len__"):
        array = np.asarray(images)
        if array.ndim != 4:
            raise ValueError(f"`images` must have shape (num_images, height, width, channels). Received: {array.shape}")
        batches = (array[i:i + batch_size] for i in range(0, len(array), batch_size))
    else:
        batches = images
    outputs = []
    for batch in batches:
        embedding = model(batch, training=False)
        if flip:
            embedding = embedding + model(ops.flip(ops.convert_to_tensor(batch), axis=2), training=False)
        embedding = ops.cast(embedding, "float32")
        norms = ops.sqrt(ops.maximum(ops.sum(embedding * embedding, axis=1, keepdims=True), 1e-24))
        outputs.append(ops.convert_to_numpy(embedding / norms))
    if not outputs:
        raise ValueError("`images` is empty.")
    return np.concatenate(outputs)
