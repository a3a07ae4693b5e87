"""Triplet mining on a pairwise distance matrix, in O(batch²) memory.

Each strategy takes a `(batch, batch)` distance matrix, integer labels, the
per-example weights and a hinge (`relu` or `softplus`) and returns
`(total, weight)`: the weighted sum of the mined losses and the sum of their
weights, so that `total / weight` is the weighted mean the strategy defines.
Positives of anchor a are the other examples with a's label; negatives are
the examples with another label.
"""

from keras import ops

MINING_STRATEGIES = ("semi_hard", "batch_hard", "batch_all")


def label_masks(labels):
    """float32 `(positive, negative)` masks of shape `(batch, batch)`."""
    same = ops.cast(ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0)), "float32")
    not_self = 1.0 - ops.eye(ops.shape(labels)[0], dtype="float32")
    return same * not_self, 1.0 - same


def finite_sentinel(distances):
    """A finite value above every distance in the batch, with no gradient."""
    return ops.stop_gradient(ops.max(distances)) + 1.0


def count_at_most(sorted_rows, queries):
    """`counts[a, p] = #{n : sorted_rows[a, n] <= queries[a, p]}`.

    A vectorized binary search over each sorted row: ⌈log₂(n + 1)⌉ rounds of
    `take_along_axis` on `(batch, batch)` index arrays, so the result is exact
    (ties included) in O(batch²) memory and O(batch² log batch) time.
    """
    n = sorted_rows.shape[1]
    steps = n.bit_length() if n is not None else 31
    length = ops.shape(sorted_rows)[1]
    low = ops.zeros_like(queries, dtype="int32")
    high = low + ops.cast(length, "int32")
    for _ in range(steps):
        middle = (low + high) // 2
        value = ops.take_along_axis(sorted_rows, ops.minimum(middle, length - 1), axis=1)
        go_right = ops.logical_and(value <= queries, low < high)
        low = ops.where(go_right, middle + 1, low)
        high = ops.where(go_right, high, middle)
    return low


def semi_hard(distances, labels, weights, margin, hinge):
    """FaceNet semi-hard mining, one term per positive pair (a, p).

    The negative is the one with the smallest d(a, n) > d(a, p); if there is
    none, the one with the largest d(a, n). Pairs whose anchor has no
    negative are skipped. The pair (a, p) has weight w_a·w_p.
    """
    positive, negative = label_masks(labels)
    sentinel = finite_sentinel(distances)
    # each anchor's negative distances in ascending order, others pushed to the end
    sorted_negatives = ops.sort(ops.where(negative > 0, distances, sentinel), axis=1)
    num_negatives = ops.cast(ops.sum(negative, axis=1, keepdims=True), "int32")
    closer_or_equal = count_at_most(sorted_negatives, distances)
    index = ops.where(closer_or_equal < num_negatives, closer_or_equal, num_negatives - 1)
    negative_distance = ops.take_along_axis(sorted_negatives, ops.maximum(index, 0), axis=1)

    pair_weight = positive * ops.cast(num_negatives > 0, "float32")
    pair_weight = pair_weight * ops.expand_dims(weights, 1) * ops.expand_dims(weights, 0)
    losses = hinge(distances - negative_distance + margin)
    return ops.sum(losses * pair_weight), ops.sum(pair_weight)


def batch_hard(distances, labels, weights, margin, hinge):
    """Batch-hard mining (Hermans et al. 2017): one term per anchor.

    max(0, max_p d(a, p) − min_n d(a, n) + margin) for anchors with at least
    one positive and one negative, weighted by w_a.
    """
    positive, negative = label_masks(labels)
    sentinel = finite_sentinel(distances)
    hardest_positive = ops.max(ops.where(positive > 0, distances, 0.0), axis=1)
    hardest_negative = ops.min(ops.where(negative > 0, distances, sentinel), axis=1)
    valid = ops.max(positive, axis=1) * ops.max(negative, axis=1)
    anchor_weight = valid * weights
    losses = hinge(hardest_positive - hardest_negative + margin)
    return ops.sum(losses * anchor_weight), ops.sum(anchor_weight)


def batch_all(distances, labels, weights, margin, hinge):
    """Every valid triplet (a, p, n); the mean runs over triplets with loss > 0.

    There are O(batch³) triplets, so they are visited one anchor at a time
    (`keras.ops.map`), keeping memory at O(batch²). The triplet has weight
    w_a·w_p·w_n.
    """
    positive, negative = label_masks(labels)

    def one_anchor(row):
        anchor_distances, anchor_positive, anchor_negative, anchor_weight = row
        # z[p, n] = d(a, p) − d(a, n) + margin
        z = ops.expand_dims(anchor_distances, 1) - ops.expand_dims(anchor_distances, 0) + margin
        triplet_weight = (
            anchor_weight
            * ops.expand_dims(anchor_positive * weights, 1)
            * ops.expand_dims(anchor_negative * weights, 0)
        )
        losses = hinge(z)
        counted = triplet_weight * ops.cast(losses > 0.0, "float32")
        return ops.stack([ops.sum(losses * triplet_weight), ops.sum(counted)])

    per_anchor = ops.map(one_anchor, (distances, positive, negative, weights))
    totals = ops.sum(per_anchor, axis=0)
    return totals[0], totals[1]


def mine(strategy, distances, labels, weights, margin, hinge):
    """Runs the mining `strategy` (one of `MINING_STRATEGIES`)."""
    strategies = {"semi_hard": semi_hard, "batch_hard": batch_hard, "batch_all": batch_all}
    if strategy not in strategies:
        raise ValueError(f"`mining` must be one of {MINING_STRATEGIES}. Received: mining={strategy!r}")
    return strategies[strategy](distances, labels, weights, margin, hinge)
