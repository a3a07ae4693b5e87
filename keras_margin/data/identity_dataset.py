"""What an identity dataset is: the `IdentityDataset` interface, and `StreamDataset`, its `tf.data` stream.

`IdentityDataset` writes everything users call (splits, batches, P×K
batches, verification pairs) once, on top of a few primitives each source
implements. `StreamDataset` implements them over a `tf.data` stream of
records (tfds, folders, in-memory arrays); `keras_margin.data.RecordIODataset`
over the index of a `.rec` file, read by offset.
"""

import abc

import numpy as np
import tensorflow as tf

from keras_margin._validation import check_number
from keras_margin.data import pairs, pk_sampler

READ_CHUNK = 64  # records a random-access dataset reads per call into Python


class IdentityDataset(abc.ABC):
    """Images labelled by identity: the interface of every dataset of `keras_margin.data`.

    Images stay *encoded* (the JPEG / PNG bytes a file or tfds stores) until
    a batch is built, so grouping and sampling hold only small strings in
    memory. Labels are int32 in `[0, num_classes)`, with
    `class_names[label]` the identity's name. Record order is fixed (nothing
    is shuffled unless asked), so everything derived from a seed is
    reproducible.

    Get one from `keras_margin.data.from_tfds`, `from_folder` or
    `IdentityDataset.from_arrays` (a `StreamDataset`), or from
    `from_insightface_rec` (a `RecordIODataset`); then take
    identity-disjoint splits, batches for a margin head or a metric loss,
    P×K batches, or verification pairs. `IdentityDataset(records,
    class_names, decode_image, name)` builds a `StreamDataset`.

    A source implements these primitives, on which all the rest is written:

    - attributes `class_names` (list of str) and `name` (str);
    - `decode_image(image)`: one stored image → uint8 `(height, width, channels)`;
    - `records`: a `tf.data.Dataset` of `(stored image, int32 label)` in record order;
    - `labels()`: all labels as a NumPy array;
    - `records_at(positions)`: the stored images at some record positions;
    - `_sliced(rows, name)`: the records of a `slice` of positions, as the same kind of dataset;
    - `_relabelled(new_label, class_names, name)`: every record relabelled
      `new_label[label]`, those mapped to −1 dropped.

    A source that reads records by position sets `random_access = True` and
    implements `__len__` and `read_records(positions)`; then `batches`
    shuffles its whole index every epoch instead of a buffer, and
    `pk_batches` draws each batch.

    Example:

    ```pycon
    >>> data = keras_margin.data.from_tfds("mnist", split="train")
    >>> train, held_out = data.split_identities(num_test_identities=2, seed=0)
    >>> batches = train.batches(128, preprocess=keras_margin.data.scale_to_unit_range)
    >>> pairs = held_out.verification_pairs(num_pairs=600, seed=0)
    ```
    """

    random_access = False

    def __new__(cls, *args, **kwargs):
        # `IdentityDataset(records, class_names, decode_image, name)`: the stream over `records`
        return super().__new__(StreamDataset if cls is IdentityDataset else cls)

    # --- the primitives a source implements ------------------------------------------------

    @abc.abstractmethod
    def decode_image(self, image):
        """One stored image (as in `records`) → a uint8 `(height, width, channels)` tensor."""

    @property
    @abc.abstractmethod
    def records(self):
        """A `tf.data.Dataset` of `(stored image, int32 label)` in record order: encoded bytes, or decoded arrays."""

    @abc.abstractmethod
    def labels(self):
        """All labels, in record order, as a NumPy int32 array."""

    @abc.abstractmethod
    def records_at(self, positions):
        """The stored images (encoded bytes or arrays) of the records at sorted, distinct `positions`."""

    @abc.abstractmethod
    def _sliced(self, rows, name):
        """The records at the positions of the `slice` `rows` (a step, no negative bounds), same kind."""

    @abc.abstractmethod
    def _relabelled(self, new_label, class_names, name):
        """Every record relabelled `new_label[label]`; those whose new label is −1 dropped."""

    def read_records(self, positions):
        """`(images, labels)` of the records at `positions`: NumPy arrays of encoded bytes and int32 labels.

        Only a dataset with `random_access` reads records by position.
        """
        raise NotImplementedError(f"{type(self).__name__} is read as a stream, not by position.")

    # --- what every dataset offers, written on the primitives -------------------------------

    @classmethod
    def from_arrays(cls, images, labels, class_names=None, name="arrays"):
        """An `IdentityDataset` over in-memory arrays (already decoded images).

        Args:
            images: array of shape `(num_images, height, width, channels)`.
            labels: integer array of shape `(num_images,)` in `[0, num_classes)`.
            class_names: identity names; default `"0"`, `"1"`, ...
            name: a short description used in messages; default `"arrays"`.

        Returns:
            A `StreamDataset` whose records are the arrays.
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
        return StreamDataset(records, class_names, decode_image=lambda image: image, name=name)

    @property
    def num_classes(self):
        """The number of identities, `len(class_names)`."""
        return len(self.class_names)

    def __repr__(self):
        size = f", num_images={len(self)}" if self.random_access else ""
        return f"{type(self).__name__}({self.name!r}{size}, num_classes={self.num_classes})"

    def images(self, preprocess=None):
        """The decoded `(image, label)` stream in record order, optionally preprocessed per image.

        Args:
            preprocess: function applied to each decoded uint8 image.
        """
        return self._decoded(self.records, preprocess)

    def take(self, num_images):
        """The first `num_images` records (all identities keep their labels).

        Args:
            num_images: how many records.
        """
        num_images = check_number("num_images", num_images, low=0, integer=True)
        return self._sliced(slice(0, num_images, 1), self.name)

    def shard(self, num_shards, index):
        """Every `num_shards`-th record from `index` on: disjoint shards that together hold every record.

        For several workers (`MultiWorkerMirroredStrategy`): give worker `i`
        of `n` `dataset.shard(n, i)`, e.g. inside
        `strategy.distribute_datasets_from_function` with
        `input_context.num_input_pipelines` and `input_context.input_pipeline_id`,
        and build its batches from that shard. (On a `.rec`, tf.data's
        auto-sharding finds no files to split and falls back to sharding the
        elements, so every worker would read and decode all records and keep
        its share; a shard of a `.rec` slices the index instead.)

        Args:
            num_shards: how many shards, at least 1.
            index: which shard, in `[0, num_shards)`.

        Example:

        ```pycon
        >>> def batches(context):
        ...     share = faces.shard(context.num_input_pipelines, context.input_pipeline_id)
        ...     return share.batches(context.get_per_replica_batch_size(512), preprocess, shuffle=True, seed=0)
        >>> distributed = strategy.distribute_datasets_from_function(batches)
        ```
        """
        num_shards = check_number("num_shards", num_shards, low=1, integer=True)
        index = check_number("index", index, low=0, high=num_shards - 1, integer=True)
        return self._sliced(slice(index, None, num_shards), f"{self.name} shard {index}/{num_shards}")

    def select_identities(self, identities, name=None):
        """The images of the given identities, relabelled `0 .. len(identities) - 1` in that order.

        Args:
            identities: distinct labels of this dataset.
            name: description of the subset.
        """
        identities = np.asarray(identities, dtype="int64").reshape(-1)
        if len(np.unique(identities)) != len(identities):
            raise ValueError("`identities` must be distinct labels.")
        if identities.size and (identities.min() < 0 or identities.max() >= self.num_classes):
            raise ValueError(
                f"`identities` must be labels in [0, {self.num_classes}). Received: {identities.tolist()}"
            )
        new_label = np.full(self.num_classes, -1, dtype="int32")
        new_label[identities] = np.arange(len(identities), dtype="int32")
        return self._relabelled(
            new_label,
            [self.class_names[i] for i in identities],
            name or f"{self.name} ({len(identities)} identities)",
        )

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

        A stream is shuffled through a buffer of encoded records; a
        random-access dataset (`.rec`) draws a new permutation of all its
        records every epoch (as insightface shuffles its index) and reads
        them by offset, so there `shuffle_buffer` only switches shuffling on.

        Args:
            batch_size: images per batch.
            preprocess: function applied to each decoded uint8 image, e.g.
                `keras_margin.data.face_preprocessing((112, 112))`.
            shuffle_buffer: shuffle the records through a buffer of this size
                before decoding (`None`: keep record order).
            seed: shuffle seed; a fresh pipeline with the same seed gives the
                same epochs, each epoch in a new order.
            labels_as_input: `True` (default, as in `pk_batches`) gives
                `((images, labels), labels)`, for a model whose margin head
                takes the labels as a second input; `False` gives
                `(images, labels)`, for the metric losses and for prediction.
            drop_remainder: drop a last, smaller batch (needed for static
                shapes under XLA when the loss depends on the batch size).
            shuffle: `True` shuffles (through `shuffle_buffer`, 10,000 when
                it is not given), `False` keeps record order; default:
                shuffle when `shuffle_buffer` is given, else record order, so
                that predictions line up with `labels()`. For training pass
                `shuffle=True` or a `shuffle_buffer`. (`pk_batches` always
                samples at random.)
        """
        batch_size = check_number("batch_size", batch_size, low=1, integer=True)
        shuffle = bool(shuffle_buffer) if shuffle is None else bool(shuffle)
        deterministic = seed is not None or not shuffle
        if not shuffle:
            records = self.records
        elif self.random_access:
            records = self._read_positions(_epoch_permutations(len(self), seed).batch(READ_CHUNK), deterministic)
            records = records.apply(tf.data.experimental.assert_cardinality(len(self)))
        else:
            records = self.records.shuffle(shuffle_buffer or 10_000, seed=seed, reshuffle_each_iteration=True)
        images = self._decoded(records, preprocess, deterministic).batch(batch_size, drop_remainder=drop_remainder)
        if labels_as_input:
            images = images.map(as_head_inputs)
        return images.prefetch(tf.data.AUTOTUNE)

    def pk_batches(
        self,
        identities_per_batch,
        images_per_identity,
        preprocess=None,
        shuffle_buffer=10_000,
        seed=None,
        labels_as_input=True,
        num_batches=None,
    ):
        """Batches of P identities × K images each; see `keras_margin.data.pk_batches` for both sampling laws.

        Args:
            identities_per_batch: P, at least 2 and at most `num_classes`.
            images_per_identity: K, at least 1.
            preprocess: function applied to each decoded uint8 image.
            shuffle_buffer: a stream's shuffle buffer before grouping (a
                random-access dataset draws its batches and needs none).
            seed: seed of the sampling.
            labels_as_input: `True` (default, as in `batches`) gives
                `((images, labels), labels)`, for a margin head; `False`
                gives `(images, labels)`, for the metric losses.
            num_batches: batches per pass (default: until a stream's groups
                run out; `len(self) // (P·K)` with random access).

        Returns:
            A `tf.data.Dataset` of batches with a static batch size `P·K`,
            grouped by identity (`labels` reads `a a a b b b ...`).
        """
        p = check_number("identities_per_batch", identities_per_batch, low=2, integer=True)
        k = check_number("images_per_identity", images_per_identity, low=1, integer=True)
        if p > self.num_classes:
            raise ValueError(
                f"`identities_per_batch` must be at most the number of identities ({self.num_classes}). "
                f"Received: identities_per_batch={p}"
            )
        if num_batches is not None:
            num_batches = check_number("num_batches", num_batches, low=1, integer=True)
        if self.random_access:
            num_batches = num_batches or max(1, len(self) // (p * k))
            positions = pk_sampler.drawn_pk_positions(self.labels(), p, k, num_batches, seed=seed, name=self.name)
            records = self._read_positions(positions)
        else:
            records = pk_sampler.grouped_pk_records(self.records, self.num_classes, p, k, shuffle_buffer, seed)
        batches = self._decoded(records, preprocess).batch(p * k, drop_remainder=True)
        if self.random_access:  # Keras knows the epoch length
            batches = batches.apply(tf.data.experimental.assert_cardinality(num_batches))
        elif num_batches is not None:
            batches = batches.take(num_batches)
        if labels_as_input:
            batches = batches.map(as_head_inputs)
        return batches.prefetch(tf.data.AUTOTUNE)

    def verification_pairs(self, num_pairs, seed=0, preprocess=None):
        """Balanced same / different pairs; see `keras_margin.data.verification_pairs`.

        Args:
            num_pairs: how many pairs (half same, half different).
            seed: integer seed.
            preprocess: function applied to each decoded uint8 image.
        """
        return pairs.verification_pairs(self, num_pairs, seed=seed, preprocess=preprocess)

    def _decoded(self, records, preprocess=None, deterministic=True):
        """`records` decoded by `decode_image`, then `preprocess`ed, in parallel."""

        def decode(image, label):
            image = self.decode_image(image)
            return (preprocess(image) if preprocess else image), label

        return records.map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)

    def _read_positions(self, positions, deterministic=True):
        """Random access: a dataset of int64 position vectors → single `(encoded image, label)` records."""

        def read(batch):
            images, labels = tf.numpy_function(self.read_records, [batch], (tf.string, tf.int32), stateful=False)
            return tf.ensure_shape(images, [None]), tf.ensure_shape(labels, [None])

        return positions.map(read, num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic).unbatch()


class StreamDataset(IdentityDataset):
    """An `IdentityDataset` over a `tf.data` stream of `(image, label)` records.

    What `from_tfds`, `from_folder` and `IdentityDataset.from_arrays` return.
    Everything is computed from passes over the stream: `labels()` and
    `records_at` read it once, `take`, `shard` and `select_identities`
    transform it, `batches` shuffles it through a buffer and `pk_batches`
    groups it.

    Args:
        records: a `tf.data.Dataset` of `(image, label)`: `image` encoded bytes
            (or an already decoded tensor when `decode_image` is the identity),
            `label` an int32 scalar.
        class_names: the identity names, indexed by label.
        decode_image: maps one record's `image` to a uint8 `(height, width,
            channels)` tensor, e.g. `keras_margin.data.decode_image`.
        name: a short description used in messages.

    Example:

    ```pycon
    >>> records = tf.data.Dataset.from_tensor_slices((jpeg_bytes, labels))
    >>> faces = keras_margin.data.StreamDataset(records, names, keras_margin.data.decode_image)
    ```
    """

    def __init__(self, records, class_names, decode_image, name="identity dataset"):
        self._records = records
        self._decode_image = decode_image
        self.class_names = [str(n) for n in class_names]
        self.name = name

    @property
    def records(self):
        """The `tf.data.Dataset` of `(image, label)` the dataset was made from."""
        return self._records

    def decode_image(self, image):
        """One record's image → uint8 `(height, width, channels)`, by the `decode_image` given.

        Args:
            image: one record's stored image.
        """
        return self._decode_image(image)

    def labels(self):
        """All labels, in record order, as a NumPy int32 array (one pass, images not decoded)."""
        labels = self._records.map(lambda image, label: label).batch(4096)
        return np.concatenate([np.zeros(0, "int32"), *labels.as_numpy_iterator()]).astype("int32")

    def records_at(self, positions):
        """The stored images (encoded bytes or arrays) of the records at sorted, distinct `positions`.

        One pass over the records, keeping only those asked for.

        Args:
            positions: record positions, sorted and distinct.
        """
        positions = np.asarray(positions, dtype="int64")
        is_needed = np.zeros(int(positions.max()) + 2 if positions.size else 1, dtype=bool)
        is_needed[positions] = True  # the last entry stays False
        last = len(is_needed) - 1
        is_needed = tf.constant(is_needed)
        kept = self._records.enumerate().filter(lambda index, record: tf.gather(is_needed, tf.minimum(index, last)))
        images = {int(index): image for index, (image, _) in kept.as_numpy_iterator()}
        return [images[i] for i in positions.tolist()]

    def _sliced(self, rows, name):
        records = self._records
        if rows.start:
            records = records.skip(rows.start)
        if rows.stop is not None:
            records = records.take(rows.stop - rows.start)
        if rows.step > 1:
            records = records.shard(rows.step, 0)
        return StreamDataset(records, self.class_names, self._decode_image, name)

    def _relabelled(self, new_label, class_names, name):
        new_label = tf.constant(new_label)
        records = self._records.map(lambda image, label: (image, tf.gather(new_label, label)))
        records = records.filter(lambda image, label: label >= 0)
        return StreamDataset(records, class_names, self._decode_image, name)


def _epoch_permutations(count, seed):
    """Positions `0 .. count − 1` in a new random order on every pass (a fresh pipeline repeats `seed`'s)."""

    def permutation(epoch_seed):
        return np.random.default_rng(int(epoch_seed) & 0xFFFFFFFF).permutation(count).astype("int64")

    return tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(1).flat_map(
        lambda epoch_seed: tf.data.Dataset.from_tensor_slices(
            tf.ensure_shape(tf.numpy_function(permutation, [epoch_seed], tf.int64), [count])
        )
    )


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
