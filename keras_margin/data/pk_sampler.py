"""Class-balanced P×K batches: from a stream by grouping, or drawn from a random-access dataset."""

import numpy as np
import tensorflow as tf

from keras_margin._validation import check_number
from keras_margin.data.identity_dataset import as_head_inputs


def pk_batches(
    dataset,
    identities_per_batch,
    images_per_identity,
    preprocess=None,
    shuffle_buffer=10_000,
    seed=None,
    labels_as_input=False,
):
    """Batches of P distinct identities × K images each, for mined metric losses.

    Every batch holds `P·K` images: K images of each of P different
    identities, grouped by identity (`labels` reads `a a a b b b ...`).
    It works on the record stream in two passes of `group_by_window`, so it
    needs neither random access nor one dataset per identity:

    1. the records are shuffled (through `shuffle_buffer`, with `seed`) and
       grouped by label into groups of K images;
    2. the n-th group of each identity gets key n, and P groups with the same
       key, hence of P different identities, form a batch.

    A `RecordIODataset` (`from_insightface_rec`) draws its batches by
    random access instead; see `RecordIODataset.pk_batches` for that law.

    Each image is used at most once per pass over the data. Identities with
    fewer than K images left in a pass, and groups that find no P partners,
    are dropped (like `drop_remainder=True`). Memory stays bounded by
    encoded images, not decoded ones: at most K − 1 records per identity
    wait in step 1 and at most P − 1 groups per key in step 2. Decoding and
    `preprocess` run after grouping.

    Args:
        dataset: an `IdentityDataset`.
        identities_per_batch: P, at least 2 and at most `dataset.num_classes`.
        images_per_identity: K, at least 1 (2 or more for triplets).
        preprocess: function applied to each decoded uint8 image.
        shuffle_buffer: records in the shuffle buffer (0 or `None`: no shuffling).
        seed: shuffle seed; a fresh pipeline with the same seed gives the same batches.
        labels_as_input: `True` gives `((images, labels), labels)` for a model
            with a labels input; `False` (default) gives `(images, labels)`.

    Returns:
        A `tf.data.Dataset` of batches with a static batch size `P·K`.

    Example:

    ```pycon
    >>> batches = keras_margin.data.pk_batches(train, 16, 4, seed=0,
    ...     preprocess=keras_margin.data.face_preprocessing((112, 112)))
    >>> model.compile(loss=keras_margin.losses.TripletLoss(), optimizer="adam")
    >>> model.fit(batches, epochs=10)
    ```
    """
    if getattr(dataset, "read_records", None) is not None:  # random access: draw batches, no grouping pass
        return dataset.pk_batches(
            identities_per_batch, images_per_identity, preprocess=preprocess, seed=seed, labels_as_input=labels_as_input
        )
    p = check_number("identities_per_batch", identities_per_batch, low=2, integer=True)
    k = check_number("images_per_identity", images_per_identity, low=1, integer=True)
    if p > dataset.num_classes:
        raise ValueError(
            f"`identities_per_batch` must be at most the number of identities ({dataset.num_classes}). "
            f"Received: identities_per_batch={p}"
        )
    records = dataset.records
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

    groups = groups.scan(tf.zeros([dataset.num_classes], tf.int64), number_groups)
    batches = groups.group_by_window(
        key_func=lambda images, labels, occurrence: occurrence,
        reduce_func=lambda key, window: window.batch(p, drop_remainder=True),
        window_size=p,
    )

    def decode(image, label):
        image = dataset.decode_image(image)
        return (preprocess(image) if preprocess else image), label

    batches = (
        batches.map(lambda images, labels, occurrence: (images, labels))
        .unbatch()  # (K images, K labels) groups
        .unbatch()  # single records, still in batch order
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(p * k, drop_remainder=True)
    )
    if labels_as_input:
        batches = batches.map(as_head_inputs)
    return batches.prefetch(tf.data.AUTOTUNE)


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
