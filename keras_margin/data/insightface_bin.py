"""insightface's `.bin` verification sets (lfw, cfp_fp, agedb_30, calfw, cplfw, ...) read and written without MXNet.

A `.bin` is a pickle of `(bins, issame_list)`: `2·P` encoded images (112×112
JPEGs in the official files) and `P` booleans; pair `i` is
`(bins[2i], bins[2i + 1])`. The official files are Python 2 pickles
(protocol 2, images as byte strings), read here with `encoding="bytes"`.

Only the types such a file holds are unpickled (byte strings, lists, tuples,
booleans, NumPy arrays and scalars), so a `.bin` cannot run code.
"""

import io
import os
import pickle

import numpy as np
import tensorflow as tf

from keras_margin._validation import check_number
from keras_margin.data.images import decode_image

_ALLOWED_GLOBALS = {
    ("_codecs", "encode"),  # Python 3 bytes pickled with protocol 2
    ("builtins", "bytearray"),
    ("builtins", "bytes"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy", "bool_"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}


class _BinUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"a .bin holds images and booleans only; it refers to {module}.{name}")
        return super().find_class(module, name)


def read_bin(path):
    """The encoded images and pair labels of a `.bin` file.

    Args:
        path: the `.bin` file.

    Returns:
        `(images, same)`: a list of `2·P` encoded images (`bytes`) and a bool
        array `(P,)`; pair `i` is `(images[2i], images[2i + 1])`.

    Raises:
        ValueError: the file is not such a pickle, or its image count is not
            twice its pair count; the message names the file.

    Example:

    ```pycon
    >>> images, same = keras_margin.data.read_bin("lfw.bin")
    >>> len(images) == 2 * len(same)
    True
    ```
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        content = f.read()
    try:
        loaded = _BinUnpickler(io.BytesIO(content), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a .bin verification set (a pickle of (images, issame_list)): {error}") from None
    if not isinstance(loaded, (tuple, list)) or len(loaded) != 2:
        raise ValueError(f"{path}: a .bin holds the pair (images, issame_list); found {type(loaded).__name__}")
    bins, issame = loaded
    issame = np.asarray(issame)
    if issame.ndim != 1 or not (issame.dtype == bool or np.isin(issame, (0, 1)).all()):
        raise ValueError(f"{path}: issame_list must be a list of booleans; found shape {issame.shape}, {issame.dtype}")
    if len(bins) != 2 * len(issame):
        raise ValueError(
            f"{path}: {len(bins)} images for {len(issame)} pairs; a .bin holds 2 images per pair "
            f"({2 * len(issame)} expected)"
        )
    images = []
    for i, image in enumerate(bins):
        if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 1:
            image = image.tobytes()
        if not isinstance(image, (bytes, bytearray)):
            raise ValueError(f"{path}: image {i} is a {type(image).__name__}, not encoded image bytes")
        images.append(bytes(image))
    return images, issame.astype(bool)


def pairs_from_bin(path, preprocess=None, channels=3):
    """Image pairs of a `.bin` verification set, in file order, like `pairs_from_list`.

    Args:
        path: the `.bin` file (e.g. insightface's `lfw.bin`).
        preprocess: function applied to each decoded uint8 image, e.g.
            `keras_margin.data.face_preprocessing()` (to [-1, 1], as insightface).
        channels: decode to 1 or 3 (RGB) channels.

    Returns:
        A `tf.data.Dataset` of `(image1, image2, same)`, `same` a bool scalar.

    Example:

    ```pycon
    >>> pairs = keras_margin.data.pairs_from_bin("lfw.bin", keras_margin.data.face_preprocessing())
    ```
    """
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be one of (1, 3). Received: channels={channels!r}")
    images, same = read_bin(path)
    table = tf.constant(images, tf.string)

    def load(index):
        image = decode_image(table[index], channels)
        return preprocess(image) if preprocess else image

    pairs = tf.data.Dataset.from_tensor_slices((tf.range(len(same), dtype=tf.int64), same))
    return pairs.map(lambda i, s: (load(2 * i), load(2 * i + 1), s), num_parallel_calls=tf.data.AUTOTUNE)


def write_pairs_bin(pairs, path, quality=95):
    """Writes `(image1, image2, same)` pairs as a `.bin` that insightface's `load_bin` reads.

    Encoded images (`tf.string`, `bytes`) are stored as they are; decoded
    uint8 images are written as JPEG. The pickle is of `(list of bytes,
    list of bool)`, protocol 4 (every Python 3 reads it).

    Args:
        pairs: a `tf.data.Dataset` or iterable of `(image1, image2, same)`,
            batched or not (e.g. from `pairs_from_list`, `verification_pairs`,
            `pairs_from_bin`, before any float preprocessing).
        path: the `.bin` to write.
        quality: JPEG quality for decoded images.

    Returns:
        The number of pairs written.

    Example:

    ```pycon
    >>> pairs = keras_margin.data.verification_pairs(held_out, 600, seed=0)
    >>> keras_margin.data.write_pairs_bin(pairs, "held_out.bin")
    600
    ```
    """
    quality = check_number("quality", quality, low=1, high=100, integer=True)
    bins, issame = [], []

    def encode(image):
        if isinstance(image, (bytes, bytearray)):
            return bytes(image)
        array = np.asarray(image)
        if array.dtype == object:
            return bytes(array.item())
        if array.dtype != np.uint8 or array.ndim != 3:
            raise ValueError(
                "write_pairs_bin needs encoded images or uint8 (height, width, channels) images. "
                f"Received: dtype {array.dtype}, shape {array.shape} (write the pairs before float preprocessing)"
            )
        return tf.io.encode_jpeg(array, quality=quality).numpy()

    for first, second, same in pairs:
        first, second, same = (v.numpy() if hasattr(v, "numpy") else v for v in (first, second, same))
        same = np.asarray(same)
        if same.ndim == 0:
            first, second, same = [first], [second], same.reshape(1)
        for a, b, s in zip(first, second, same.tolist()):
            bins += [encode(a), encode(b)]
            issame.append(bool(s))
    if not issame:
        raise ValueError("`pairs` is empty.")
    with open(os.fspath(path), "wb") as f:
        pickle.dump((bins, issame), f, protocol=4)
    return len(issame)
