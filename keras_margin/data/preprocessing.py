"""Per-image face preprocessing for tf.data pipelines: crop / resize, [-1, 1] scaling, flips."""

import tensorflow as tf


def resize_and_crop(image, image_size):
    """Center-crops `image` to the aspect ratio of `image_size`, then resizes to it.

    Args:
        image: `(height, width, channels)` tensor, any numeric dtype.
        image_size: `(height, width)` of the result.

    Returns:
        float32 `(height, width, channels)`, values on the input's scale
        (bilinear, antialiased when shrinking).

    Example:

    ```pycon
    >>> resize_and_crop(np.zeros((250, 200, 3), np.uint8), (112, 112)).shape
    TensorShape([112, 112, 3])
    ```
    """
    target_height, target_width = _check_size(image_size)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    # the largest centered window with the target aspect ratio
    crop_height = tf.minimum(height, (width * target_height) // target_width)
    crop_width = tf.minimum(width, (height * target_width) // target_height)
    image = tf.image.crop_to_bounding_box(
        image, (height - crop_height) // 2, (width - crop_width) // 2, crop_height, crop_width
    )
    image = tf.image.resize(tf.cast(image, tf.float32), (target_height, target_width), antialias=True)
    return tf.ensure_shape(image, (target_height, target_width, None))


def scale_to_unit_range(image):
    """Maps pixel values from `[0, 255]` to `[-1, 1]` (x / 127.5 - 1), as float32.

    Args:
        image: a tensor of pixel values in `[0, 255]`, any numeric dtype and shape.

    Returns:
        float32 tensor of the same shape.

    Example:

    ```pycon
    >>> scale_to_unit_range(np.array([0, 255], np.uint8)).numpy()
    array([-1.,  1.], dtype=float32)
    ```
    """
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def random_flip(image, seed=None):
    """Mirrors `image` left-right with probability 1/2 (training augmentation).

    Args:
        image: `(height, width, channels)` tensor (or a batch of them,
            `(batch, height, width, channels)`, each flipped independently).
        seed: optional integer seed (`tf.image.random_flip_left_right`'s);
            default `None`.

    Returns:
        tensor of the shape and dtype of `image`.

    Example:

    ```pycon
    >>> flipped = random_flip(np.arange(6, dtype=np.uint8).reshape(1, 6, 1), seed=0)
    ```
    """
    return tf.image.random_flip_left_right(image, seed=seed)


def face_preprocessing(image_size=None, channels=None, flip=False, seed=None):
    """The per-image preprocessing function for `IdentityDataset.batches(preprocess=...)` and friends.

    Converts the channel count, crops and resizes, optionally flips, then
    scales to `[-1, 1]` (the insightface convention).

    Args:
        image_size: `(height, width)` (or one int for a square), or `None`
            (the default) to keep the size.
        channels: 1 or 3 to convert grayscale / RGB, `None` (the default) to
            keep.
        flip: random horizontal flips (training augmentation); default
            `False`.
        seed: optional seed of the flips.

    Returns:
        A function from a uint8 `(height, width, channels)` image to float32.

    Example:

    ```pycon
    >>> preprocess = keras_margin.data.face_preprocessing((112, 112), channels=3, flip=True)
    >>> preprocess(np.zeros((250, 250, 3), np.uint8)).shape
    TensorShape([112, 112, 3])
    ```
    """
    if image_size is not None:
        image_size = _check_size(image_size)
    if channels not in (None, 1, 3):
        raise ValueError(f"`channels` must be one of (None, 1, 3). Received: channels={channels!r}")

    def preprocess(image):
        image = tf.convert_to_tensor(image)
        if channels == 3 and image.shape[-1] == 1:
            image = tf.image.grayscale_to_rgb(image)
        elif channels == 1 and image.shape[-1] == 3:
            image = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(image, tf.float32))), image.dtype)
        if image_size is not None:
            image = resize_and_crop(image, image_size)
        if flip:
            image = random_flip(image, seed=seed)
        return scale_to_unit_range(image)

    return preprocess


def _check_size(image_size):
    size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)
    if len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size):
        raise ValueError(
            f"`image_size` must be a positive int or a (height, width) pair of them. Received: image_size={image_size!r}"
        )
    return size
