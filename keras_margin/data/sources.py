"""Identity datasets from tensorflow-datasets names and from identity folders."""

import contextlib
import os

try:
    import fcntl
except ImportError:  # Windows: folders are prepared without a lock
    fcntl = None

import tensorflow as tf
import tensorflow_datasets as tfds

from keras_margin.data.folder_builder import IdentityFolder
from keras_margin.data.identity_dataset import StreamDataset
from keras_margin.data.images import decode_image


def from_tfds(
    name,
    split="train",
    data_dir=None,
    download=True,
    manual_dir=None,
    image_key="image",
    label_key="label",
):
    """An identity dataset (a `StreamDataset`) from a tensorflow-datasets dataset.

    Works with any tfds dataset whose label is a `ClassLabel` (`mnist`,
    `vgg_face2`, ...) or a text name (`lfw`: the identities are then the
    distinct names, sorted). Offline, point `data_dir` at a prepared copy and
    pass `download=False` to fail fast instead of trying the network.

    Args:
        name: tfds name, e.g. `"mnist"`, `"lfw"`, `"vgg_face2"`.
        split: tfds split string (`"train"`, the default, `"test"`,
            `"train[:10%]"`, ...).
        data_dir: tfds `data_dir` (default `None`: tfds' default).
        download: call `download_and_prepare` first (a no-op when
            prepared); default `True`.
        manual_dir: where manually downloaded archives are, for datasets
            such as `vgg_face2` that cannot be downloaded automatically.
        image_key: feature name of the image; default `"image"`.
        label_key: feature name of the identity, a `ClassLabel` or `Text`
            feature; default `"label"`.

    Returns:
        A `StreamDataset` of the split, images still encoded.

    Example:

    ```pycon
    >>> digits = keras_margin.data.from_tfds("mnist", split="train")
    >>> digits.num_classes
    10
    ```
    """
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
        builder.download_and_prepare(download_config=config)
    features = builder.info.features
    for key in (image_key, label_key):
        if key not in features:
            raise ValueError(f"{name!r} has no feature {key!r}; its features are {list(features.keys())}.")
    dataset = builder.as_dataset(
        split=split, shuffle_files=False, decoders={image_key: tfds.decode.SkipDecoding()}
    )
    records = dataset.map(lambda example: (example[image_key], example[label_key]))
    label_feature = features[label_key]
    if isinstance(label_feature, tfds.features.ClassLabel):
        class_names = label_feature.names
        records = records.map(lambda image, label: (image, tf.cast(label, tf.int32)))
    elif isinstance(label_feature, tfds.features.Text):
        records, class_names = _integer_labels(records)
    else:
        raise ValueError(
            f"The {label_key!r} feature of {name!r} must be a ClassLabel or Text. Received: {label_feature}"
        )
    return StreamDataset(records, class_names, decode_image=_image_decoder(features[image_key]), name=f"{name}/{split}")


def from_folder(root_dir, data_dir=None, channels=3, config_name=None, rebuild=False):
    """An identity dataset (a `StreamDataset`) from a folder with one sub-folder per identity.

    The folder is prepared once into tfds record files by `IdentityFolder`
    (in `data_dir`, tfds' default when `None`) and read from there; pass
    `rebuild=True` after the folder changed. Processes that open the same
    folder at once prepare it one at a time (a lock file beside the prepared
    copy), so the others read the finished copy instead of writing over it.

    Args:
        root_dir: the folder, laid out `root_dir/<identity>/<image>`.
        data_dir: tfds `data_dir` for the prepared copy (default `None`:
            tfds' default).
        channels: 1 (grayscale) or 3 (RGB, the default).
        config_name: name of the prepared copy (default: the folder's name).
        rebuild: prepare again even if a prepared copy exists; default
            `False`.

    Returns:
        A `StreamDataset`; `class_names` are the sub-folder names, sorted.

    Example:

    ```pycon
    >>> faces = keras_margin.data.from_folder("my_faces/", channels=3)
    >>> train, held_out = faces.split_identities(test_fraction=0.2, seed=0)
    ```
    """
    def make_builder():
        return IdentityFolder(root_dir, channels=channels, config_name=config_name, data_dir=data_dir)

    config = None
    if rebuild:
        config = tfds.download.DownloadConfig(download_mode=tfds.download.GenerateMode.FORCE_REDOWNLOAD)
    with _exclusive_lock(make_builder().data_dir + ".lock"):
        # built under the lock: a builder reads the prepared copy's info when it is made, and a copy
        # another process finished while this one waited is only seen by a builder made after the wait
        builder = make_builder()
        builder.download_and_prepare(download_config=config)
    dataset = builder.as_dataset(split="train", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    records = dataset.map(lambda example: (example["image"], tf.cast(example["label"], tf.int32)))
    return StreamDataset(
        records,
        builder.info.features["label"].names,
        decode_image=_image_decoder(builder.info.features["image"]),
        name=builder.info.full_name,
    )


def _image_decoder(feature):
    """Decodes the stored bytes of a tfds image feature with `keras_margin.data.decode_image`, to its static shape.

    tfds' own decoder (`feature.decode_example`) is kept for what the loader
    does not read: features that are not uint8 images of 1 or 3 channels.
    """
    if not isinstance(feature, tfds.features.Image) or feature.tf_dtype != tf.uint8 or feature.shape[-1] not in (1, 3):
        return feature.decode_example
    channels, shape = feature.shape[-1], feature.shape

    def decode(image):
        image = decode_image(image, channels)
        image.set_shape(shape)
        return image

    return decode


@contextlib.contextmanager
def _exclusive_lock(path):
    """Holds an exclusive `flock` on the file `path` (created if missing); a no-op where there is no `fcntl`."""
    if fcntl is None:
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _integer_labels(records):
    """Replaces text labels by their index among the sorted distinct names (one pass over the labels)."""
    names = set()
    for batch in records.map(lambda image, label: label).batch(4096).as_numpy_iterator():
        names.update(batch.tolist())
    class_names = sorted(names)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(class_names, tf.string), tf.range(len(class_names), dtype=tf.int32)
        ),
        default_value=-1,
    )
    records = records.map(lambda image, label: (image, table.lookup(label)))
    return records, [n.decode("utf-8") for n in class_names]
