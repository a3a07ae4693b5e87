"""The image loader: a path or encoded bytes → decoded uint8 pixels → the float32 input of a model.

Every reader of the package decodes here: the identity datasets (folders,
tfds, `.rec`), the pairs (`pairs_from_list`, `pairs_from_bin`,
`verification_pairs`), face alignment of a folder and the serving code
(`keras_margin.serving.load_images`). One decoder (TensorFlow's
`tf.io.decode_image`: JPEG, PNG, BMP, and the first frame of a GIF) and one
preprocessing (`face_preprocessing`) mean an image gives the same pixels in
training, evaluation and serving.

- `decode_image` and `read_image` work on tensors, inside `tf.data.Dataset.map`.
- `load_image` and `load_image_batch` work eagerly on Python values and
  return NumPy arrays.
"""

import os

import numpy as np
import tensorflow as tf

from keras_margin.data.preprocessing import face_preprocessing


def decode_image(image, channels=3):
    """Encoded image bytes → uint8 `(height, width, channels)`; works inside `tf.data.Dataset.map`.

    Args:
        image: a scalar `tf.string` tensor (or `bytes`) holding a JPEG, PNG,
            BMP or GIF file (a GIF gives its first frame).
        channels: 1 (grayscale) or 3 (RGB); images with another channel count
            are converted by the decoder.

    Returns:
        uint8 tensor `(height, width, channels)`.

    Example:

    ```pycon
    >>> pixels = keras_margin.data.decode_image(open("face.jpg", "rb").read())
    >>> pixels.dtype
    tf.uint8
    ```
    """
    _check_channels(channels)
    return tf.io.decode_image(image, channels=channels, expand_animations=False)


def read_image(path, channels=3):
    """The image file at `path` → uint8 `(height, width, channels)`; works inside `tf.data.Dataset.map`.

    Args:
        path: a scalar `tf.string` tensor (or `str`) naming the file; any path
            `tf.io.read_file` reads.
        channels: 1 (grayscale) or 3 (RGB).

    Returns:
        uint8 tensor `(height, width, channels)`.

    Example:

    ```pycon
    >>> images = tf.data.Dataset.from_tensor_slices(["a.jpg", "b.png"]).map(keras_margin.data.read_image)
    ```
    """
    return decode_image(tf.io.read_file(path), channels)


def load_image(image, channels=3):
    """A path or encoded bytes → uint8 NumPy `(height, width, channels)`, eagerly.

    Args:
        image: a file path (`str` or `os.PathLike`) or the encoded bytes of a
            JPEG, PNG, BMP or GIF image.
        channels: 1 (grayscale) or 3 (RGB); default 3.

    Returns:
        uint8 NumPy array `(height, width, channels)`.

    Raises:
        ValueError: the file cannot be read or decoded; the message names it.

    Example:

    ```pycon
    >>> keras_margin.data.load_image("face.jpg").shape
    (112, 112, 3)
    ```
    """
    _check_channels(channels)
    if isinstance(image, (bytes, bytearray, memoryview)):
        source, encoded = "(encoded bytes)", bytes(image)
    else:
        source, encoded = repr(str(image)), None
    try:
        if encoded is None:
            encoded = tf.io.read_file(os.fspath(image))
        return decode_image(encoded, channels).numpy()
    except (tf.errors.OpError, ValueError) as error:
        raise ValueError(f"Cannot read the image {source}: {str(error).splitlines()[0]}") from None


def load_image_batch(images, image_size=None, channels=3):
    """Images → the float32 batch a model takes: decoded, cropped and resized, in `[−1, 1]`.

    Each image goes through `face_preprocessing(image_size, channels)`, the
    preprocessing of training batches without the flip: its channel count
    converted, center-cropped to the aspect ratio of `image_size` and resized
    (bilinear, antialiased), mapped to `[−1, 1]`.

    Args:
        images: an iterable of image paths, encoded bytes (both decoded by
            `load_image` to `channels`), or already decoded uint8 arrays
            `(height, width, channels)` (converted to `channels` as
            `face_preprocessing` does); kinds may be mixed. Each image is
            preprocessed as it is read, so a generator of large photos needs
            memory for one photo and the results only.
        image_size: `(height, width)` (or one int for a square) of the
            result; `None` (the default) keeps the sizes, which must then agree.
        channels: 1 (grayscale) or 3 (RGB); default 3.

    Returns:
        float32 NumPy array `(len(images), height, width, channels)`.

    Raises:
        ValueError: `images` is empty, or an image cannot be read (the
            message names it).

    Example:

    ```pycon
    >>> batch = keras_margin.data.load_image_batch(["a.jpg", "b.jpg"], (112, 112))
    >>> batch.shape, float(batch.min()) >= -1
    ((2, 112, 112, 3), True)
    ```
    """
    _check_channels(channels)
    preprocess = face_preprocessing(image_size, channels)
    batch = [preprocess(image if isinstance(image, np.ndarray) else load_image(image, channels)).numpy()
             for image in images]
    if not batch:
        raise ValueError("`images` is empty.")
    return np.stack(batch)


def _check_channels(channels):
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be one of (1, 3). Received: channels={channels!r}")
