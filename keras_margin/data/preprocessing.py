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
    """Maps pixel values from [0, 255] to [-1, 1] (x / 127.5 - 1), as float32."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def random_flip(image, seed=None):
    """Mirrors `image` left-right with probability 1/2 (training augmentation)."""
    return tf.image.random_flip_left_right(image, seed=seed)


def face_preprocessing(image_size=None, channels=None, flip=False, seed=None):
    """One function for `IdentityDataset.batches(preprocess=...)` and friends.

    Converts the channel count, crops and resizes, optionally flips, then
    scales to [-1, 1] (the insightface convention).

    Args:
        image_size: `(height, width)`, or `None` to keep the size.
        channels: 1 or 3 to convert grayscale / RGB, `None` to keep.
        flip: random horizontal flips (training augmentation).
        seed: seed of the flips.

    Returns:
        A function from a uint8 `(height, width, channels)` image to float32.
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
