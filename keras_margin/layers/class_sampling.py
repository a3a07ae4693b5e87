"""Partial FC: the classes a training step computes logits for, with static shapes.

insightface's Partial FC (An et al., 2021) trains with the logits of a
random subset of the classes: every class present in the batch plus
uniformly drawn others, a fixed number in all. Here the subset is drawn with
`top_k` over random scores in which the batch's classes score highest, so the
count is static and the step compiles under XLA.
"""

import math

from keras import ops, random


def num_sampled_classes(num_classes, sample_rate):
    """⌈r·C⌉, the number of classes a sampled step computes (at least 2)."""
    return max(2, min(num_classes, math.ceil(sample_rate * num_classes)))


def sample_classes(labels, num_classes, num_sampled, seed_generator):
    """Draws the classes of one step.

    Args:
        labels: int32 `(batch,)` class ids.
        num_classes: C.
        num_sampled: k, the number of classes to keep (≥ the number of
            distinct labels, so that every positive class is kept).
        seed_generator: a `keras.random.SeedGenerator`.

    Returns:
        `(classes, positions)`: int32 `(k,)` ids of the kept classes, and
        int32 `(C,)` mapping each class to its column among them, or to k
        when it was not kept.
    """
    in_batch = ops.scatter_update(
        ops.zeros((num_classes,), "float32"), ops.expand_dims(labels, -1), ops.ones_like(labels, "float32")
    )
    # Scores in [0, 1) for every class and in [2, 3) for the batch's classes.
    scores = random.uniform((num_classes,), seed=seed_generator) + 2.0 * in_batch
    _, classes = ops.top_k(scores, num_sampled)
    classes = ops.cast(classes, "int32")
    positions = ops.scatter_update(
        ops.full((num_classes,), num_sampled, "int32"),
        ops.expand_dims(classes, -1),
        ops.arange(num_sampled, dtype="int32"),
    )
    return classes, positions


def take_class_rows(kernel, classes, num_subcenters):
    """The rows of `classes` in a `(classes · K, dim)` kernel (all K sub-centers of each, class-major).

    A gather along the first axis, so TensorFlow passes the kernel's gradient
    as `IndexedSlices` over these rows only.
    """
    if num_subcenters == 1:
        return ops.take(kernel, classes, axis=0)
    rows = ops.expand_dims(classes, -1) * num_subcenters + ops.arange(num_subcenters, dtype="int32")
    return ops.take(kernel, ops.reshape(rows, (-1,)), axis=0)
