"""Verification pairs: generated from held-out identities, or read from an LFW-style pairs list."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from keras_margin._validation import check_number
from keras_margin.data.images import read_image


@dataclasses.dataclass(frozen=True)
class VerificationPair:
    """One line of a pairs list: image `number1` of `name1` against image `number2` of `name2`.

    A frozen dataclass; `same` tells whether both images show one person.

    Args:
        name1: the identity (folder) name of the first image.
        number1: the 1-based number of the first image within `name1`'s images.
        name2: the identity name of the second image (equal to `name1` for a
            same-identity pair).
        number2: the 1-based number of the second image within `name2`'s images.

    Example:

    ```pycon
    >>> VerificationPair("Aaron_Peirsol", 1, "Aaron_Peirsol", 2).same
    True
    ```
    """

    name1: str
    number1: int
    name2: str
    number2: int

    @property
    def same(self):
        """Whether both images show the same identity (`name1 == name2`)."""
        return self.name1 == self.name2


def sample_pair_indices(labels, num_pairs, seed=0):
    """Balanced same / different pairs of record indices, in a seeded random order.

    Half the pairs (rounded down) join two different images of one identity,
    chosen uniformly among identities with at least two images; the others
    join images of two different identities, chosen uniformly. No pair
    appears twice, in either order.

    Args:
        labels: int array `(num_images,)`, the label of each record.
        num_pairs: how many pairs.
        seed: integer seed (NumPy's default generator).

    Returns:
        `(first, second, same)`: int64 record indices and a bool array, each `(num_pairs,)`.

    Example:

    ```pycon
    >>> first, second, same = sample_pair_indices(np.array([0, 0, 1, 1, 2, 2]), num_pairs=4, seed=0)
    >>> int(same.sum())
    2
    ```
    """
    labels = np.asarray(labels)
    num_pairs = check_number("num_pairs", num_pairs, low=2, integer=True)
    rng = np.random.default_rng(seed)
    members = {}
    for index, label in enumerate(labels.tolist()):
        members.setdefault(label, []).append(index)
    identities = sorted(members)
    repeated = [label for label in identities if len(members[label]) >= 2]
    if not repeated:
        raise ValueError("No identity has two images, so no same-identity pair can be formed.")
    if len(identities) < 2:
        raise ValueError("Different-identity pairs need at least two identities.")
    num_same = num_pairs // 2
    num_different = num_pairs - num_same
    max_same = sum(len(members[label]) * (len(members[label]) - 1) // 2 for label in repeated)
    max_different = (len(labels) ** 2 - sum(len(m) ** 2 for m in members.values())) // 2
    if num_same > max_same or num_different > max_different:
        raise ValueError(
            f"`num_pairs`={num_pairs} needs {num_same} same and {num_different} different pairs, "
            f"but only {max_same} and {max_different} distinct ones exist."
        )

    chosen = set()

    def draw(count, pick):
        pairs = []
        attempts = 0
        while len(pairs) < count:
            attempts += 1
            if attempts > 100 * count + 1000:
                raise ValueError(
                    f"Could not draw {count} distinct pairs; ask for fewer `num_pairs`."
                )
            i, j = pick()
            key = (min(i, j), max(i, j))
            if key not in chosen:
                chosen.add(key)
                pairs.append((i, j))
        return pairs

    def same_pair():
        label = repeated[rng.integers(len(repeated))]
        i, j = rng.choice(len(members[label]), size=2, replace=False)
        return members[label][i], members[label][j]

    def different_pair():
        a, b = rng.choice(len(identities), size=2, replace=False)
        first, second = members[identities[a]], members[identities[b]]
        return first[rng.integers(len(first))], second[rng.integers(len(second))]

    pairs = draw(num_same, same_pair) + draw(num_different, different_pair)
    same = np.array([True] * num_same + [False] * num_different)
    order = rng.permutation(num_pairs)
    pairs = np.array(pairs, dtype="int64")[order]
    return pairs[:, 0], pairs[:, 1], same[order]


def verification_pairs(dataset, num_pairs, seed=0, preprocess=None):
    """Balanced same / different image pairs from the identities of `dataset`.

    Use it on identities held out of training (`IdentityDataset.split_identities`)
    for open-set evaluation. Reads the labels once, draws the pairs with
    `sample_pair_indices`, then reads only the images used by a pair
    (`IdentityDataset.records_at`; encoded, so `2·num_pairs` small strings at most).

    Args:
        dataset: an `IdentityDataset`.
        num_pairs: how many pairs (half same, half different).
        seed: integer seed.
        preprocess: function applied to each decoded uint8 image.

    Returns:
        A `tf.data.Dataset` of `(image1, image2, same)` with `same` a bool
        scalar, unbatched, in a fixed order.

    Example:

    ```pycon
    >>> train, held_out = faces.split_identities(test_fraction=0.1, seed=0)
    >>> pairs = keras_margin.data.verification_pairs(held_out, 600, seed=0,
    ...     preprocess=keras_margin.data.face_preprocessing((112, 112)))
    ```
    """
    first, second, same = sample_pair_indices(dataset.labels(), num_pairs, seed=seed)
    needed = np.unique(np.concatenate([first, second]))
    kept_images = dataset.records_at(needed)
    if isinstance(kept_images[0], bytes):
        table = tf.constant(kept_images, tf.string)
    else:
        table = tf.constant(np.stack(kept_images))
    slot_of = {index: slot for slot, index in enumerate(needed.tolist())}
    first_slot = np.array([slot_of[i] for i in first.tolist()], dtype="int64")
    second_slot = np.array([slot_of[i] for i in second.tolist()], dtype="int64")

    def load(slot):
        image = dataset.decode_image(table[slot])
        return preprocess(image) if preprocess else image

    pairs = tf.data.Dataset.from_tensor_slices((first_slot, second_slot, same))
    return pairs.map(lambda i, j, s: (load(i), load(j), s), num_parallel_calls=tf.data.AUTOTUNE)


def read_pairs_list(path):
    """Reads a pairs list in LFW's `pairs.txt` format.

    The first line is a header: `<folds> <pairs per fold>` (pairs.txt) or
    `<pairs>` (pairsDevTrain.txt / pairsDevTest.txt). Then one pair per line,
    whitespace separated: `name n1 n2` for two images of one person, or
    `name1 n1 name2 n2` for two people. Image numbers are 1-based, as in LFW.

    Args:
        path: the pairs list (a local path or any path `tf.io.gfile` reads).

    Returns:
        A list of `VerificationPair`, in file order (LFW's folds are
        contiguous blocks of it).

    Raises:
        ValueError: a malformed header or line, or a pair count that differs
            from the header's; the message names the file (and the line).

    Example:

    ```pycon
    >>> pairs = keras_margin.data.read_pairs_list("lfw/pairs.txt")
    >>> dataset = keras_margin.data.pairs_from_list(pairs, "lfw/images", keras_margin.data.face_preprocessing((112, 112)))
    ```
    """
    with tf.io.gfile.GFile(os.fspath(path)) as f:
        lines = [line.split() for line in f.read().splitlines() if line.strip()]
    if not lines or not 1 <= len(lines[0]) <= 2 or not all(v.isdigit() for v in lines[0]):
        raise ValueError(f"{path}: the first line must be `<folds> <pairs per fold>` or `<pairs>`.")
    header = [int(v) for v in lines[0]]
    expected = header[0] * 2 * header[1] if len(header) == 2 else header[0] * 2
    pairs = []
    for line_number, fields in enumerate(lines[1:], start=2):
        try:
            if len(fields) == 3:
                pairs.append(VerificationPair(fields[0], int(fields[1]), fields[0], int(fields[2])))
            elif len(fields) == 4:
                pairs.append(VerificationPair(fields[0], int(fields[1]), fields[2], int(fields[3])))
            else:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"{path}, line {line_number}: expected `name n1 n2` or `name1 n1 name2 n2`. "
                f"Received: {' '.join(fields)!r}"
            ) from None
    if len(pairs) != expected:
        raise ValueError(f"{path}: the header announces {expected} pairs but the file has {len(pairs)}.")
    return pairs


def pairs_from_list(pairs, images_dir, preprocess=None, file_pattern="{name}/{name}_{number:04d}.jpg", channels=3):
    """Image pairs for a pairs list, read from `images_dir` (LFW's folder layout by default).

    Args:
        pairs: list of `VerificationPair`, e.g. from `read_pairs_list`.
        images_dir: folder holding the images.
        preprocess: optional function applied to each decoded uint8 image
            (default `None`: the images stay uint8).
        file_pattern: path of an image relative to `images_dir`, formatted
            with `name` and `number`; default
            `"{name}/{name}_{number:04d}.jpg"` (LFW's layout).
        channels: decode to 1 or 3 channels; default 3.

    Returns:
        A `tf.data.Dataset` of `(image1, image2, same)` in list order.

    Raises:
        ValueError: `pairs` is empty.
        FileNotFoundError: images of the list are missing under `images_dir`.

    Example:

    ```pycon
    >>> pairs = keras_margin.data.read_pairs_list("lfw/pairs.txt")
    >>> dataset = keras_margin.data.pairs_from_list(pairs, "lfw/images", keras_margin.data.face_preprocessing((112, 112)))
    ```
    """
    if not pairs:
        raise ValueError("`pairs` is empty.")

    def path(name, number):
        return os.path.join(os.fspath(images_dir), file_pattern.format(name=name, number=number))

    first = [path(p.name1, p.number1) for p in pairs]
    second = [path(p.name2, p.number2) for p in pairs]
    missing = sorted({p for p in first + second if not tf.io.gfile.exists(p)})
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} images of the pairs list are missing under {images_dir}, e.g. {missing[:3]}"
        )

    def load(file_path):
        image = read_image(file_path, channels)
        return preprocess(image) if preprocess else image

    same = [p.same for p in pairs]
    dataset = tf.data.Dataset.from_tensor_slices((first, second, same))
    return dataset.map(lambda a, b, s: (load(a), load(b), s), num_parallel_calls=tf.data.AUTOTUNE)
