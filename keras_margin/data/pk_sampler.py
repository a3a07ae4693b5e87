"""Class-balanced P×K sampling laws: by grouping a record stream, or by drawing positions of a random-access dataset.

The laws work on records and labels only; `IdentityDataset.pk_batches`
applies the one that fits the dataset, then decodes and batches. This
module imports nothing from the datasets.
"""

import numpy as np
import tensorflow as tf

from keras_margin._validation import check_number


def pk_batches(
    dataset,
    identities_per_batch,
    images_per_identity,
    preprocess=None,
    shuffle_buffer=10_000,
    seed=None,
    labels_as_input=True,
    num_batches=None,
):
    """Batches of P distinct identities × K images each, for mined metric losses.

    Every batch holds `P·K` images: K images of each of P different
    identities, grouped by identity (`labels` reads `a a a b b b ...`).
    The same as `dataset.pk_batches(...)`. How the identities and images
    are chosen depends on how the dataset is read:

    **A stream** (folders, tfds, arrays) is sampled in two passes of
    `group_by_window`, so it needs neither random access nor one dataset per
    identity:

    1. the records are shuffled (through `shuffle_buffer`, with `seed`) and
       grouped by label into groups of K images;
    2. the n-th group of each identity gets key n, and P groups with the same
       key, hence of P different identities, form a batch.

    Each image is used at most once per pass over the data. Identities with
    fewer than K images left in a pass, and groups that find no P partners,
    are dropped (like `drop_remainder=True`). Memory stays bounded by
    encoded images, not decoded ones: at most K − 1 records per identity
    wait in step 1 and at most P − 1 groups per key in step 2.

    **A random-access dataset** (`.rec`, `dataset.random_access`) draws each
    batch independently: P distinct identities uniformly among those with
    at least K images, then K distinct images uniformly within each
    (O(P·K) work per batch). Identities with fewer than K images never
    appear. No shuffle buffer is involved.

    Decoding and `preprocess` run after sampling, on the chosen records only.

    Args:
        dataset: an `IdentityDataset`.
        identities_per_batch: P, at least 2 and at most `dataset.num_classes`.
        images_per_identity: K, at least 1 (2 or more for triplets).
        preprocess: function applied to each decoded uint8 image.
        shuffle_buffer: a stream's records are shuffled through a buffer of
            this size before grouping (0 or `None`: no shuffling); default
            10,000.
        seed: seed; a fresh pipeline with the same seed gives the same batches.
        labels_as_input: `True` (default, as in `IdentityDataset.batches`)
            gives `((images, labels), labels)`, for a model with a labels
            input (a margin head); `False` gives `(images, labels)`, what
            the metric losses (`TripletLoss`, `ContrastiveLoss`) take.
        num_batches: batches per pass; default: a stream's pass ends when its
            groups run out, a random-access pass is `len(dataset) // (P·K)`
            batches.

    Returns:
        A `tf.data.Dataset` of batches with a static batch size `P·K`.

    Example:

    ```pycon
    >>> batches = keras_margin.data.pk_batches(train, 16, 4, seed=0, labels_as_input=False,
    ...     preprocess=keras_margin.data.face_preprocessing((112, 112)))
    >>> model.compile(loss=keras_margin.losses.TripletLoss(), optimizer="adam")
    >>> model.fit(batches, epochs=10)
    ```
    """
    return dataset.pk_batches(
        identities_per_batch,
        images_per_identity,
        preprocess=preprocess,
        shuffle_buffer=shuffle_buffer,
        seed=seed,
        labels_as_input=labels_as_input,
        num_batches=num_batches,
    )


def grouped_pk_records(records, num_classes, p, k, shuffle_buffer=None, seed=None):
    """The records of P×K batches of a stream, one record at a time in batch order (see `pk_batches`).

    Args:
        records: a `tf.data.Dataset` of `(image, int32 label)` records.
        num_classes: labels are in `[0, num_classes)`.
        p, k: identities per batch and images per identity.
        shuffle_buffer: shuffle the records through a buffer of this size first.
        seed: shuffle seed.
    """
    if shuffle_buffer:
        records = records.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)

    groups = records.group_by_window(
        key_func=lambda image, label: tf.cast(label, tf.int64),
        reduce_func=lambda key, window: window.batch(k, drop_remainder=True),
        window_size=k,
    )

    def number_groups(seen, group):
        images, labels = group
        label = labels[0]
        return tf.tensor_scatter_nd_add(seen, [[label]], tf.ones([1], tf.int64)), (images, labels, seen[label])

    groups = groups.scan(tf.zeros([num_classes], tf.int64), number_groups)
    batches = groups.group_by_window(
        key_func=lambda images, labels, occurrence: occurrence,
        reduce_func=lambda key, window: window.batch(p, drop_remainder=True),
        window_size=p,
    )
    return (
        batches.map(lambda images, labels, occurrence: (images, labels))
        .unbatch()  # (K images, K labels) groups
        .unbatch()  # single records, still in batch order
    )


def drawn_pk_positions(labels, p, k, num_batches, seed=None, name="the dataset"):
    """A `tf.data.Dataset` of `num_batches` int64 vectors `(P·K,)`: the positions of independent P×K draws.

    Each vector draws P distinct identities uniformly among those with at
    least K images, then K distinct positions uniformly within each, grouped
    by identity. A fresh pipeline with the same seed gives the same vectors,
    and each pass over it new ones.

    Args:
        labels: int array, the label of each position.
        p, k: identities per batch and images per identity.
        num_batches: vectors per pass.
        seed: seed of the draws.
        name: the dataset's description, for the error message.

    Raises:
        ValueError: fewer than P identities have K images.
    """
    order, starts, sizes = identity_groups(labels)
    eligible = np.nonzero(sizes >= k)[0]
    if len(eligible) < p:
        raise ValueError(
            f"`identities_per_batch`={p} needs {p} identities with at least images_per_identity={k} images; "
            f"{name} has {len(eligible)}."
        )
    num_batches = check_number("num_batches", num_batches, low=1, integer=True)
    starts, sizes = starts[eligible], sizes[eligible]

    def draw(batch_seed):
        rng = np.random.default_rng(int(batch_seed) & 0xFFFFFFFFFFFFFFFF)
        return sample_pk_positions(rng, order, starts, sizes, p, k)

    seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).take(num_batches)
    return seeds.map(lambda s: tf.ensure_shape(tf.numpy_function(draw, [s], tf.int64), [p * k]))


def identity_groups(labels):
    """The records of each class as one run of an ordering: `(order, starts, sizes)`.

    Class `c` owns `order[starts[c] : starts[c] + sizes[c]]`. When the labels
    are already grouped in ascending order (insightface's layout) `order`
    is the identity and no sort happens.
    """
    labels = np.asarray(labels, dtype="int64")
    if labels.size and np.any(labels[1:] < labels[:-1]):
        order = np.argsort(labels, kind="stable")
    else:
        order = np.arange(len(labels))
    sizes = np.bincount(labels, minlength=int(labels.max()) + 1 if labels.size else 0)
    starts = np.r_[0, np.cumsum(sizes)[:-1]].astype("int64")
    return order, starts, sizes


def distinct_integers(rng, n, k):
    """`k` distinct integers drawn uniformly from `[0, n)` in O(k) (Floyd's algorithm), in random order."""
    draws = rng.integers(0, np.arange(n - k + 1, n + 1)) if k else np.zeros(0, "int64")
    chosen, seen = [], set()
    for j, t in zip(range(n - k, n), draws.tolist()):
        value = j if t in seen else t
        seen.add(value)
        chosen.append(value)
    return rng.permutation(np.array(chosen, dtype="int64"))


def sample_pk_positions(rng, order, starts, sizes, p, k):
    """Positions of one P×K batch: P distinct groups uniformly, K distinct members of each uniformly.

    Args:
        rng: a NumPy `Generator`.
        order, starts, sizes: groups as from `identity_groups` (only the
            eligible ones: every size at least `k`).
        p, k: identities per batch and images per identity.

    Returns:
        int64 array `(p·k,)`, grouped by identity.
    """
    groups = distinct_integers(rng, len(starts), p)
    members = [starts[g] + distinct_integers(rng, int(sizes[g]), k) for g in groups.tolist()]
    return order[np.concatenate(members)]
