"""Partial FC: the classes a training step computes logits for, with static shapes.

insightface's Partial FC (An et al., 2021) trains with the logits of a
random subset of the classes: every class present in the batch plus
uniformly drawn others, a fixed number in all. Here the subset is drawn with
`top_k` over random scores in which the batch's classes score highest, so the
count is static and the step compiles under XLA.
"""

import math

import keras
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


def _column_indices(classes, positions, num_subcenters):
    """The kernel columns of `classes` (all K sub-centers of each, class-major), and for every kernel
    column its position among them, or a position ≥ k·K when its class was not kept."""
    if num_subcenters == 1:
        return classes, positions
    subcenters = ops.arange(num_subcenters, dtype="int32")
    columns = ops.reshape(ops.expand_dims(classes, -1) * num_subcenters + subcenters, (-1,))
    column_positions = ops.reshape(ops.expand_dims(positions, -1) * num_subcenters + subcenters, (-1,))
    return columns, column_positions


def _read(variable):
    """The variable's value as a tensor read before a custom gradient, which must not see the variable itself."""
    if isinstance(variable, keras.Variable):
        variable = variable.value
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.convert_to_tensor(variable)
    return ops.convert_to_tensor(variable)


def take_class_columns(kernel, classes, positions, num_subcenters):
    """The columns of `classes` in a `(dim, classes · K)` kernel, `(dim, k·K)`.

    The gradient is written as a gather, not a scatter: each kernel column
    reads its gradient column from the sampled ones, padded with zero columns
    for the classes not kept. Autodiff of a column gather scatters into a
    zero kernel instead, which XLA on CPU runs many times slower than the
    gather (and than the whole step of the full head).

    Args:
        kernel: float `(dim, C·K)`.
        classes: int32 `(k,)`, distinct class ids (from `sample_classes`).
        positions: int32 `(C,)`, each class's position among `classes`, or
            k when it was not kept.
        num_subcenters: K.

    Returns:
        float `(dim, k·K)`.
    """
    columns, column_positions = _column_indices(classes, positions, num_subcenters)
    kernel = _read(kernel)
    dim = kernel.shape[0]

    @ops.custom_gradient
    def taken(kernel):
        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            padded = ops.concatenate([upstream, ops.zeros((dim, num_subcenters), upstream.dtype)], axis=1)
            return ops.take(padded, column_positions, axis=1)

        return ops.take(kernel, columns, axis=1), gradient

    return taken(kernel)


def spread_to_classes(logits, classes, positions, fill_value):
    """`(batch, k)` logits of the kept classes placed in their columns of `(batch, C)`; `fill_value` elsewhere.

    Args:
        logits: float32 `(batch, k)`, column j for class `classes[j]`.
        classes: int32 `(k,)`.
        positions: int32 `(C,)`, each class's column in `logits`, or k.
        fill_value: the logit of the classes not kept.

    Returns:
        float32 `(batch, C)`. Its gradient is a gather of the k kept columns.
    """
    batch = ops.shape(logits)[0]

    @ops.custom_gradient
    def spread(logits):
        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return ops.take(upstream, classes, axis=1)

        padded = ops.concatenate([logits, ops.full((batch, 1), fill_value, logits.dtype)], axis=1)
        return ops.take(padded, positions, axis=1), gradient

    return spread(logits)
