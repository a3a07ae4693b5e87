"""`IdentityDataset`: images labelled by identity, as a lazily read tf.data stream."""

import numpy as np
import tensorflow as tf

from keras_margin._validation import check_number


class IdentityDataset:
    """Images labelled by identity, read lazily from tfds or a folder.

    The dataset keeps its images *encoded* (the PNG / JPEG bytes tfds
    stores) until a batch is built, so grouping and sampling hold only small
    strings in memory. Labels are int32 in `[0, num_classes)`, with
    `class_names[label]` the identity's name. The order of `records` is
    fixed (no shuffling happens here), so everything derived from a seed is
    reproducible.

    Build one with `keras_margin.data.from_tfds`, `from_folder` or
    `IdentityDataset.from_arrays`; then take identity-disjoint splits, batches
    for a margin head or a metric loss, P×K batches, or verification pairs.

    Args:
        records: a `tf.data.Dataset` of `(image, label)`: `image` encoded bytes
            (or an already decoded tensor when `decode_image` is the identity),
            `label` an int32 scalar.
        class_names: the identity names, indexed by label.
        decode_image: maps one record's `image` to a uint8 `(height, width,
            channels)` tensor.
        name: a short description used in messages.

    Example:

    ```pycon
    >>> data = keras_margin.data.from_tfds("mnist", split="train")
    >>> train, held_out = data.split_identities(num_test_identities=2, seed=0)
    >>> batches = train.batches(128, preprocess=keras_margin.data.scale_to_unit_range)
    >>> pairs = held_out.verification_pairs(num_pairs=600, seed=0)
    ```
    """

    def __init__(self, records, class_names, decode_image, name="identity dataset"):
        self.records = records
        self.class_names = [str(n) for n in class_names]
        self.decode_image = decode_image
        self.name = name

    @classmethod
    def from_arrays(cls, images, labels, class_names=None, name="arrays"):
        """An `IdentityDataset` over in-memory arrays (already decoded images).

        Args:
            images: array of shape `(num_images, height, width, channels)`.
            labels: integer array of shape `(num_images,)` in `[0, num_classes)`.
            class_names: identity names; default `"0"`, `"1"`, ...
        """
        images = np.asarray(images)
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) != len(images):
            raise ValueError(
                "`labels` must have shape (num_images,) matching `images`. "
                f"Received: images.shape={images.shape}, labels.shape={labels.shape}"
            )
        if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
            raise ValueError(f"`labels` must be non-negative integers. Received dtype {labels.dtype}")
        if class_names is None:
            class_names = [str(i) for i in range(int(labels.max()) + 1 if labels.size else 0)]
        if labels.size and labels.max() >= len(class_names):
            raise ValueError(
                f"`labels` go up to {labels.max()} but there are only {len(class_names)} class_names."
            )
        records = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
        return cls(records, class_names, decode_image=lambda image: image, name=name)

    @property
    def num_classes(self):
        return len(self.class_names)

    def __repr__(self):
        return f"IdentityDataset({self.name!r}, num_classes={self.num_classes})"

    def images(self, preprocess=None):
        """The decoded `(image, label)` stream, optionally preprocessed per image."""

        def decode(image, label):
            image = self.decode_image(image)
            return (preprocess(image) if preprocess else image), label

        return self.records.map(decode, num_parallel_calls=tf.data.AUTOTUNE)

    def take(self, num_images):
        """The first `num_images` records (all identities keep their labels)."""
        num_images = check_number("num_images", num_images, low=0, integer=True)
        return IdentityDataset(self.records.take(num_images), self.class_names, self.decode_image, self.name)

    def shard(self, num_shards, index):
        """Every `num_shards`-th record from `index` on (`tf.data.Dataset.shard`), e.g. one worker's share."""
        num_shards = check_number("num_shards", num_shards, low=1, integer=True)
        index = check_number("index", index, low=0, high=num_shards - 1, integer=True)
        return IdentityDataset(
            self.records.shard(num_shards, index), self.class_names, self.decode_image,
            f"{self.name} shard {index}/{num_shards}",
        )

    def records_at(self, positions):
        """The stored images (encoded bytes or arrays) of the records at sorted, distinct `positions`.

        One pass over the records, keeping only those asked for.
        """
        positions = np.asarray(positions, dtype="int64")
        is_needed = np.zeros(int(positions.max()) + 2 if positions.size else 1, dtype=bool)
        is_needed[positions] = True  # the last entry stays False
        last = len(is_needed) - 1
        is_needed = tf.constant(is_needed)
        kept = self.records.enumerate().filter(lambda index, record: tf.gather(is_needed, tf.minimum(index, last)))
        images = {int(index): image for index, (image, _) in kept.as_numpy_iterator()}
        return [images[i] for i in positions.tolist()]

    def labels(self):
        """All labels, in record order, as a NumPy int32 array (one pass, images not decoded)."""
        labels = self.records.map(lambda image, label: label).batch(4096)
        return np.concatenate([np.zeros(0, "int32"), *labels.as_numpy_iterator()]).astype("int32")

    def select_identities(self, identities, name=None):
        """The images of the given identities, relabelled `0 .. len(identities) - 1` in that order.

        Args:
            identities: distinct labels of this dataset.
            name: description of the subset.
        """
        identities, new_label = self._relabelling(identities)
        new_label = tf.constant(new_label)

        records = self.records.map(lambda image, label: (image, tf.gather(new_label, label)))
        records = records.filter(lambda image, label: label >= 0)
        return IdentityDataset(
            records,
            [self.class_names[i] for i in identities],
            self.decode_image,
            name=name or f"{self.name} ({len(identities)} identities)",
        )

    def _relabelling(self, identities):
        """Checks `identities`; returns them and the new label of every old one (-1: dropped)."""
        identities = np.asarray(identities, dtype="int64").reshape(-1)
        if len(np.unique(identities)) != len(identities):
            raise ValueError("`identities` must be distinct labels.")
        if identities.size and (identities.min() < 0 or identities.max() >= self.num_classes):
            raise ValueError(
                f"`identities` must be labels in [0, {self.num_classes}). Received: {identities.tolist()}"
            )
        new_label = np.full(self.num_classes, -1, dtype="int32")
        new_label[identities] = np.arange(len(identities), dtype="int32")
        return identities, new_label

    def split_identities(self, num_test_identities=None, test_fraction=None, seed=0):
        """Identity-disjoint `(train, test)` datasets for open-set evaluation.

        The identities are permuted with `seed` (NumPy's default generator) and
        the first ones go to `test`. Both halves are relabelled from 0;
        their `class_names` say which identity is which.

        Args:
            num_test_identities: how many identities to hold out.
            test_fraction: alternatively, the fraction of identities to hold
                out (rounded, at least one and at most all but one).
            seed: integer seed of the permutation.
        """
        if (num_test_identities is None) == (test_fraction is None):
            raise ValueError("Pass exactly one of `num_test_identities` and `test_fraction`.")
        if test_fraction is not None:
            test_fraction = check_number("test_fraction", test_fraction, low=0, high=1, low_open=True, high_open=True)
            num_test_identities = min(max(1, round(test_fraction * self.num_classes)), self.num_classes - 1)
        num_test_identities = check_number(
            "num_test_identities", num_test_identities, low=1, high=self.num_classes - 1, integer=True
        )
        order = np.random.default_rng(seed).permutation(self.num_classes)
        test_ids, train_ids = np.sort(order[:num_test_identities]), np.sort(order[num_test_identities:])
        return (
            self.select_identities(train_ids, name=f"{self.name} train identities"),
            self.select_identities(test_ids, name=f"{self.name} held-out identities"),
        )

    def batches(
        self,
        batch_size,
        preprocess=None,
        shuffle_buffer=None,
        seed=None,
        labels_as_input=True,
        drop_remainder=False,
        shuffle=None,
    ):
        """Batches for `model.fit`.

        Args:
            batch_size: images per batch.
            preprocess: function applied to each decoded uint8 image, e.g.
                `keras_margin.data.face_preprocessing((112, 112))`.
            shuffle_buffer: shuffle the records through a buffer of this size
                before decoding (`None`: keep record order).
            seed: shuffle seed.
            labels_as_input: `True` gives `((images, labels), labels)`, for a
                model whose margin head takes the labels as a second input;
                `False` gives `(images, labels)`, for the metric losses.
            drop_remainder: drop a last, smaller batch (needed for static
                shapes under XLA when the loss depends on the batch size).
            shuffle: `True` shuffles through `shuffle_buffer` (10,000 when it
                is not given), `False` keeps record order; default: shuffle
                when `shuffle_buffer` is given. (A `.rec` dataset shuffles its
                whole index instead: `RecordIODataset.batches`.)
        """
        batch_size = check_number("batch_size", batch_size, low=1, integer=True)
        records = self.records
        if shuffle or (shuffle is None and shuffle_buffer):
            records = records.shuffle(shuffle_buffer or 10_000, seed=seed, reshuffle_each_iteration=True)
        images = IdentityDataset(records, self.class_names, self.decode_image).images(preprocess)
        images = images.batch(batch_size, drop_remainder=drop_remainder)
        if labels_as_input:
            images = images.map(as_head_inputs)
        return images.prefetch(tf.data.AUTOTUNE)

    def pk_batches(self, identities_per_batch, images_per_identity, **kwargs):
        """Class-balanced batches; see `keras_margin.data.pk_batches`."""
        from keras_margin.data.pk_sampler import pk_batches

        return pk_batches(self, identities_per_batch, images_per_identity, **kwargs)

    def verification_pairs(self, num_pairs, **kwargs):
        """Balanced same / different pairs; see `keras_margin.data.verification_pairs`."""
        from keras_margin.data.pairs import verification_pairs

        return verification_pairs(self, num_pairs, **kwargs)


def as_head_inputs(images, labels):
    """`(images, labels)` → `((images, labels), labels)`: the labels feed the head and the loss.

    For `tf.data.Dataset.map` on a dataset of `(images, labels)` batches, for a
    model whose margin head takes the labels as a second input.

    Args:
        images: a batch of images.
        labels: their labels.

    Returns:
        `((images, labels), labels)`.

    Example:

    ```pycon
    >>> batches = dataset.map(keras_margin.data.as_head_inputs)
    ```
    """
    return (images, labels), labels
