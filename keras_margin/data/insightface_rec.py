"""insightface's `.rec` training sets (MS1MV2 `faces_emore`, Glint360K, CASIA, ...) read and written without MXNet.

Two layouts exist:

- insightface's: record 0 has flag 2 and the labels `[N + 1, N + 1 + C]`;
  the images are at keys `1 .. N`, grouped by identity; then come `C`
  identity records (keys `N + 1 ..`) whose labels are the `[first, end)`
  image keys of each identity, with no image. A `property` file beside
  holds `num_classes,height,width`.
- headerless (im2rec, insightface's shuffled sets): every record is an
  image with its label.

The index (keys, byte offsets, labels) is held in NumPy arrays, so opening
costs memory proportional to the number of records; images are read from
the file by offset only when batches are built.
"""

import os
import tempfile

import numpy as np
import tensorflow as tf

from keras_margin._validation import check_number
from keras_margin.data.identity_dataset import READ_CHUNK, IdentityDataset
from keras_margin.data.images import decode_image
from keras_margin.data.recordio import RecordFile, RecordIOError, frame, pack_payload, read_index, write_index

FLOAT32_EXACT = 1 << 24  # integers above this are not all exact in the header's float32 labels
CLASS_NAMES_FILE = "class_names.txt"


class RecordIODataset(IdentityDataset):
    """An `IdentityDataset` over the image records of a `.rec` file, read by random access.

    It implements the dataset primitives on an index held in NumPy arrays
    (key, byte offset and label of every image) and reads images by offset:
    `labels()` reads no record; `take`, `shard` and `select_identities`
    slice the index; `records` is the stream of `(encoded image bytes,
    int32 label)` in index order, the bytes exactly as stored. Being
    `random_access`, it is shuffled over its whole index every epoch
    (`batches(shuffle=True)`) and its P×K batches are drawn
    (`pk_batches`).

    Build one with `keras_margin.data.from_insightface_rec`.

    Args:
        record_file: a `keras_margin.data.recordio.RecordFile`.
        keys: int64 array, the `.idx` key of each image record.
        offsets: int64 array, its byte offset in the `.rec`.
        labels: int32 array, its class.
        class_names: the identity names, indexed by label.
        channels: channels of the decoded images (1 or 3).
        name: a short description used in messages.
        file_labels: the label each record holds in the file, when `labels`
            are a relabelling (default: `labels`).
    """

    random_access = True

    def __init__(self, record_file, keys, offsets, labels, class_names, channels=3, name=None, file_labels=None):
        self.record_file = record_file
        self.keys = np.asarray(keys, dtype="int64")
        self.offsets = np.asarray(offsets, dtype="int64")
        self._labels = np.asarray(labels, dtype="int32")
        # the label each record holds in the file (differs from `labels` after select_identities)
        self._file_labels = self._labels if file_labels is None else np.asarray(file_labels, dtype="int32")
        self.channels = channels
        self.class_names = [str(n) for n in class_names]
        self.name = name or record_file.path

    def __len__(self):
        return len(self.keys)

    def decode_image(self, image):
        """Encoded image bytes → uint8 `(height, width, channels)` (`keras_margin.data.decode_image`).

        Args:
            image: one record's encoded image.
        """
        return decode_image(image, self.channels)

    @property
    def records(self):
        """The `(encoded image bytes, int32 label)` records in index order, read by offset."""
        records = self._read_positions(tf.data.Dataset.range(len(self)).batch(READ_CHUNK))
        return records.apply(tf.data.experimental.assert_cardinality(len(self)))

    def labels(self):
        """All labels, in index order (no record is read)."""
        return self._labels.copy()

    def read_records(self, positions):
        """`(images, labels)` of the records at `positions` (rows of the index): bytes as stored, int32.

        Args:
            positions: rows of the index.

        Raises:
            RecordIOError: a record that is not where the `.idx` says, is
                truncated, or whose own label disagrees with the index.
        """
        positions = np.asarray(positions, dtype="int64").reshape(-1)
        images = np.empty(len(positions), dtype=object)
        for i, position in enumerate(positions.tolist()):
            offset = int(self.offsets[position])
            _, labels, _, image = self.record_file.read_image_record(offset)
            if labels[0] != self._file_labels[position]:
                raise RecordIOError(
                    f"{self.record_file.path}: the image record at key {self.keys[position]} (byte offset {offset}) "
                    f"has label {labels[0]:g}, but the index puts it in class {self._file_labels[position]}"
                )
            images[i] = image
        return images, self._labels[positions]

    def records_at(self, positions):
        """The encoded images of the records at `positions`, read by offset.

        Args:
            positions: rows of the index.
        """
        return list(self.read_records(positions)[0])

    def _sliced(self, rows, name):
        return self._subset(rows, name=name)

    def _relabelled(self, new_label, class_names, name):
        relabelled = new_label[self._labels]
        rows = np.nonzero(relabelled >= 0)[0]
        return self._subset(rows, labels=relabelled[rows], class_names=class_names, name=name)

    def _subset(self, rows, labels=None, class_names=None, name=None):
        return RecordIODataset(
            self.record_file,
            self.keys[rows],
            self.offsets[rows],
            self._labels[rows] if labels is None else labels,
            self.class_names if class_names is None else class_names,
            self.channels,
            name or self.name,
            self._file_labels[rows],
        )


def _rec_paths(path):
    path = os.fspath(os.path.expanduser(os.fspath(path)))
    if os.path.isdir(path):
        rec = os.path.join(path, "train.rec")
        if not os.path.isfile(rec):
            raise FileNotFoundError(f"{path!r} is a folder without train.rec (expected train.rec, train.idx, property)")
    elif path.endswith(".rec"):
        rec = path
        if not os.path.isfile(rec):
            raise FileNotFoundError(f"No such .rec file: {rec!r}")
    else:
        raise ValueError(f"`path` must be a dataset folder holding train.rec, or a .rec file. Received: path={path!r}")
    folder = os.path.dirname(rec)
    return rec, os.path.splitext(rec)[0] + ".idx", os.path.join(folder, "property"), os.path.join(folder, CLASS_NAMES_FILE)


def _read_property(path):
    """`num_classes, height, width` from a `property` file, or None when there is none."""
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        fields = f.read().strip().split(",")
    if len(fields) != 3 or not all(v.strip().isdigit() for v in fields):
        raise ValueError(f"{path}: expected `num_classes,height,width`. Received: {','.join(fields)!r}")
    return tuple(int(v) for v in fields)


def _whole(values, what, where):
    rounded = np.round(values)
    bad = np.nonzero((rounded != values) | (rounded < 0))[0]
    if bad.size:
        raise RecordIOError(f"{where}: {what} {values[bad[0]]!r} is not a non-negative whole number")
    return rounded.astype("int64")


def from_insightface_rec(path, channels=3):
    """An identity dataset from an insightface / MXNet `.rec` file, read without MXNet.

    Both layouts are read (see the module docstring): insightface's, where
    the labels come from the identity records (the first image of each
    identity is checked against it at opening, every image when it is read),
    and headerless, where the label of every record is read from its header
    at opening (a vectorized pass over a memory map of the file).

    Args:
        path: a dataset folder (`train.rec`, `train.idx`, optional `property`)
            or a `.rec` file with its `.idx` beside it.
        channels: decode images to 1 (grayscale) or 3 (RGB) channels.

    Returns:
        A `RecordIODataset`: records are the encoded image bytes as stored
        and int32 labels; `class_names` are `"0"` … `"C-1"` (or the lines of
        a `class_names.txt` beside the file, as `write_insightface_rec` writes).

    Raises:
        RecordIOError: the files disagree with the RecordIO layout; the
            message names the file and the byte offset or key.

    Example:

    ```pycon
    >>> faces = keras_margin.data.from_insightface_rec("faces_emore")
    >>> batches = faces.batches(128, data.face_preprocessing(flip=True), shuffle=True, seed=0)
    ```
    """
    if channels not in (1, 3):
        raise ValueError(f"`channels` must be one of (1, 3). Received: channels={channels!r}")
    rec_path, idx_path, property_path, names_path = _rec_paths(path)
    record_file = RecordFile(rec_path)
    keys, offsets = read_index(idx_path)
    if np.any(keys[1:] <= keys[:-1]):  # writers list keys in increasing order; sort only when they did not
        by_key = np.argsort(keys, kind="stable")
        keys, offsets = keys[by_key], offsets[by_key]
        repeated = np.nonzero(keys[1:] == keys[:-1])[0]
        if repeated.size:
            raise RecordIOError(f"{idx_path}: key {keys[repeated[0]]} appears more than once")
    past_end = np.nonzero(offsets + 8 > record_file.size)[0]
    if past_end.size:
        i = int(past_end[0])
        raise RecordIOError(
            f"{idx_path}: key {keys[i]} points at byte offset {offsets[i]}, past the end of {rec_path} "
            f"({record_file.size} bytes)"
        )
    prop = _read_property(property_path)

    header = None
    if len(keys) and keys[0] == 0:
        flag, labels, _, image = record_file.read_image_record(int(offsets[0]))
        if flag >= 2 and not image:
            header = labels
    if header is not None:
        image_keys, labels, num_classes = _insightface_layout(record_file, idx_path, keys, offsets, header)
        rows = image_keys  # keys are 0 .. end - 1, so a key is its row
    else:
        rows = np.arange(len(keys))
        _, header_labels = record_file.read_headers(offsets)
        labels = _whole(header_labels, "the label", rec_path)
        num_classes = int(labels.max()) + 1 if labels.size else 0
    if prop is not None:
        if header is not None and prop[0] != num_classes:
            raise RecordIOError(
                f"{property_path} gives {prop[0]} classes but {rec_path} has {num_classes} identity records"
            )
        num_classes = prop[0]
    if labels.size and labels.max() >= num_classes:
        row = int(np.argmax(labels))
        raise RecordIOError(
            f"{rec_path}: the image record at key {keys[rows][row]} has label {labels[row]}, "
            f"outside [0, {num_classes}) (num_classes from {property_path if prop else 'the labels'})"
        )
    class_names = [str(c) for c in range(num_classes)]
    if os.path.isfile(names_path):
        with open(names_path, encoding="utf-8") as f:
            class_names = f.read().split("\n")
        if len(class_names) != num_classes:
            raise RecordIOError(f"{names_path} names {len(class_names)} identities, but {rec_path} has {num_classes}")
    return RecordIODataset(
        record_file, keys[rows], offsets[rows], labels.astype("int32"), class_names, channels, name=rec_path
    )


def _insightface_layout(record_file, idx_path, keys, offsets, header):
    """Image keys, labels and class count of a set with insightface's header record."""
    rec_path = record_file.path
    if len(header) != 2:
        raise RecordIOError(f"{rec_path}: the header record (key 0) has {len(header)} labels, expected 2")
    first_identity, end = (int(v) for v in _whole(header, "the header record's label", rec_path))
    if not 1 <= first_identity <= end:
        raise RecordIOError(
            f"{rec_path}: the header record (key 0) gives the key range [{first_identity}, {end}), "
            "which must start at 1 or later"
        )
    if len(keys) != end or keys[-1] != end - 1:
        missing = np.setdiff1d(np.arange(end), keys)
        extra = np.setdiff1d(keys, np.arange(end))
        raise RecordIOError(
            f"{rec_path}: the header record (key 0) announces keys 0 .. {end - 1}, but {idx_path} "
            f"lacks {missing[:5].tolist()} and has extra {extra[:5].tolist()}"
        )
    num_images, num_classes = first_identity - 1, end - first_identity
    ranges = np.zeros((num_classes, 2), "float32")
    for c in range(num_classes):
        key = first_identity + c
        _, labels, _, _ = record_file.read_image_record(int(offsets[key]))
        if len(labels) != 2:
            raise RecordIOError(
                f"{rec_path}: the identity record at key {key} has {len(labels)} labels, expected [first, end)"
            )
        ranges[c] = labels
    ranges = _whole(ranges, "an identity record's image key", rec_path)
    expected_first = np.r_[1, ranges[:-1, 1]]
    broken = np.nonzero((ranges[:, 0] != expected_first) | (ranges[:, 1] < ranges[:, 0]))[0]
    if broken.size or (num_classes and ranges[-1, 1] != first_identity):
        c = int(broken[0]) if broken.size else num_classes - 1
        raise RecordIOError(
            f"{rec_path}: the identity record at key {first_identity + c} gives the image keys "
            f"[{ranges[c, 0]}, {ranges[c, 1]}), but the identity records must tile the image keys 1 .. {num_images}"
        )
    sizes = ranges[:, 1] - ranges[:, 0]
    # each identity's class is the label of its images; read the first one of each
    first_images = ranges[sizes > 0, 0]
    _, first_labels = record_file.read_headers(offsets[first_images])
    identity_labels = np.zeros(num_classes, "int64")
    identity_labels[sizes > 0] = _whole(first_labels, "the label", rec_path)
    return np.arange(1, first_identity), np.repeat(identity_labels, sizes), num_classes


def write_insightface_rec(dataset, directory, quality=95, image_size=None, overwrite=False):
    """Writes an identity dataset as an insightface training set: `train.rec`, `train.idx`, `property`.

    The layout is insightface's (see the module docstring): a header record,
    the images grouped by identity at keys `1 .. N` (in label order, and in
    record order within an identity), then one identity record per class.
    Records are framed and split exactly as dmlc-core's writer does, so
    MXNet's `MXIndexedRecordIO` and insightface's readers load the result.
    Encoded images (tfds, folders, `.rec`) are stored as they are; decoded
    ones (`IdentityDataset.from_arrays`) are written as JPEG. The identity
    names go to `class_names.txt` beside, which `from_insightface_rec`
    reads back (insightface ignores it).

    The records are read twice (labels, then images) and staged in a
    temporary file in `directory`, so memory stays proportional to the
    number of records.

    Args:
        dataset: an `IdentityDataset`.
        directory: the folder to write (created if needed).
        quality: JPEG quality for decoded images (insightface's sets use 95).
        image_size: `(height, width)` for the `property` file (default: the
            size of the first image).
        overwrite: replace an existing `train.rec`.

    Returns:
        The path of `train.rec`.

    Example:

    ```pycon
    >>> faces = keras_margin.data.from_folder("my_faces/")
    >>> keras_margin.data.write_insightface_rec(faces, "my_faces_rec")
    >>> keras_margin.data.from_insightface_rec("my_faces_rec")
    ```
    """
    quality = check_number("quality", quality, low=1, high=100, integer=True)
    if image_size is not None:
        image_size = tuple(check_number("image_size", v, low=1, integer=True) for v in image_size)
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    rec_path = os.path.join(directory, "train.rec")
    if os.path.exists(rec_path) and not overwrite:
        raise FileExistsError(f"{rec_path} exists; pass overwrite=True to replace it")
    labels = dataset.labels()
    num_images, num_classes = len(labels), dataset.num_classes
    if num_images + num_classes + 1 > FLOAT32_EXACT:
        raise ValueError(
            f"insightface's layout stores image keys as float32 labels, exact up to {FLOAT32_EXACT}; "
            f"{num_images} images and {num_classes} identities need keys up to {num_images + num_classes}."
        )
    key_of = np.empty(num_images, "int64")
    key_of[np.argsort(labels, kind="stable")] = np.arange(1, num_images + 1)

    encoded = dataset.records.element_spec[0].dtype == tf.string

    def as_bytes(image, label):
        if encoded:
            return image, label
        return tf.io.encode_jpeg(tf.cast(image, tf.uint8), quality=quality), label

    records = dataset.records.map(as_bytes, num_parallel_calls=tf.data.AUTOTUNE)
    staged = np.zeros((num_images, 2), "int64")  # offset, length of each payload in the staging file
    with tempfile.TemporaryFile(dir=directory) as staging:
        position = 0
        for i, (image, label) in enumerate(records.as_numpy_iterator()):
            if i >= num_images or label != labels[i]:
                raise RuntimeError(f"{dataset.name}: the records changed between two reads")
            if image_size is None:
                image_size = _image_size(image, dataset.name)
            payload = pack_payload(float(label), image, record_id=int(key_of[i]))
            staging.write(payload)
            staged[key_of[i] - 1] = (position, len(payload))
            position += len(payload)
        sizes = np.bincount(labels, minlength=num_classes)
        ends = 1 + np.cumsum(sizes)
        identity_payloads = [pack_payload([e - s, e]) for s, e in zip(sizes.tolist(), ends.tolist())]
        keys, offsets = [], []
        with open(rec_path, "wb") as rec:

            def write(key, payload):
                keys.append(key)
                offsets.append(rec.tell())
                rec.write(frame(payload))

            write(0, pack_payload([num_images + 1, num_images + 1 + num_classes]))
            for key in range(1, num_images + 1):
                staging.seek(staged[key - 1, 0])
                write(key, staging.read(staged[key - 1, 1]))
            for c, payload in enumerate(identity_payloads):
                write(num_images + 1 + c, payload)
    write_index(os.path.join(directory, "train.idx"), keys, offsets)
    height, width = image_size or (0, 0)  # an empty dataset has no image size
    with open(os.path.join(directory, "property"), "w") as f:
        f.write(f"{num_classes},{height},{width}")
    with open(os.path.join(directory, CLASS_NAMES_FILE), "w", encoding="utf-8") as f:
        f.write("\n".join(dataset.class_names))
    return rec_path


def _image_size(image, name):
    try:
        return tuple(int(v) for v in decode_image(image, 3).shape[:2])
    except tf.errors.InvalidArgumentError:
        raise ValueError(
            f"{name}: the first image cannot be decoded to read its size; pass `image_size=(height, width)`"
        ) from None
