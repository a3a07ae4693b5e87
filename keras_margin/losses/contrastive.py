"""Contrastive loss (Hadsell et al. 2006; DeepID2), pair form and in-batch form."""

import keras
from keras import ops

from keras_margin import distances as distance_lib
from keras_margin._validation import check_choice, check_number
from keras_margin.losses.in_batch_loss import InBatchLoss, prepare_inputs, reduce_totals


@keras.saving.register_keras_serializable(package="keras_margin")
def contrastive_loss(same, distance, margin=1.0):
    """Per-pair contrastive loss `same·½d² + (1 − same)·½·max(0, margin − d)²`.

    The pair form, for siamese models that already output one distance per
    pair: use it as the loss with `y_true = same` (1 for a genuine pair, 0 for
    an impostor pair) and `y_pred = distance`.

    Args:
        same: tensor `(batch,)` or `(batch, 1)` of 0/1 (any numeric dtype).
        distance: tensor of the same shape, distances ≥ 0.
        margin: impostor pairs closer than this are penalized.

    Returns:
        float32 tensor of per-pair losses, shaped like `distance`.

    Example:

    ```pycon
    >>> keras.ops.convert_to_numpy(contrastive_loss(np.array([1.0, 0.0]), np.array([0.5, 0.5])))
    array([0.125, 0.125], dtype=float32)
    ```
    """
    distance = ops.cast(distance, "float32")
    same = ops.reshape(ops.cast(same, "float32"), ops.shape(distance))
    impostor = ops.relu(margin - distance)
    return 0.5 * (same * ops.square(distance) + (1.0 - same) * ops.square(impostor))


def batch_contrastive_loss(
    labels, embeddings, margin=1.0, distance="euclidean", sample_weight=None, reduction="sum_over_batch_size"
):
    """Contrastive loss over all pairs i < j of a batch of labelled embeddings.

    Args:
        labels: integer class ids `(batch,)` or `(batch, 1)`.
        embeddings: `(batch, dim)`.
        margin: positive float.
        distance: `"euclidean"`, `"squared_euclidean"` or `"cosine"` (1 − cos).
        sample_weight: optional `(batch,)`; pair (i, j) has weight w_i·w_j.
        reduction: Keras' name of the reduction, as in `ContrastiveLoss`:
            `"sum_over_batch_size"` (default; also `"mean"` or
            `"mean_with_sample_weight"`), the weighted mean over the pairs,
            or `"sum"`, their weighted sum.

    Returns:
        float32 scalar; 0 for a batch with fewer than two examples.

    Example:

    ```pycon
    >>> embeddings = np.array([[0.0, 0.0], [0.0, 0.5], [3.0, 4.0]])
    >>> round(float(batch_contrastive_loss(np.array([0, 0, 1]), embeddings, margin=1.0)), 4)
    0.0417
    ```
    """
    labels, embeddings, weights = prepare_inputs(labels, embeddings, sample_weight)
    total, weight = _contrastive_totals(labels, embeddings, weights, margin, distance)
    return reduce_totals(total, weight, reduction)


def _contrastive_totals(labels, embeddings, weights, margin, distance):
    if distance == "euclidean":
        squared = distance_lib.pairwise_squared_euclidean(embeddings)
        d = distance_lib.safe_sqrt(squared)
    else:
        d = distance_lib.pairwise_distances(embeddings, distance)
        squared = ops.square(d)
    same = ops.cast(ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0)), "float32")
    per_pair = 0.5 * (same * squared + (1.0 - same) * ops.square(ops.relu(margin - d)))
    upper = ops.triu(ops.ones_like(d), k=1)  # each unordered pair once
    pair_weight = upper * ops.expand_dims(weights, 1) * ops.expand_dims(weights, 0)
    return ops.sum(per_pair * pair_weight), ops.sum(pair_weight)


@keras.saving.register_keras_serializable(package="keras_margin")
class ContrastiveLoss(InBatchLoss):
    """In-batch contrastive loss: `y_true` are class labels, `y_pred` embeddings.

    Over all pairs i < j of the batch, with d = distance(x_i, x_j):
    `mean [same·½d² + (1 − same)·½·max(0, margin − d)²]`. Genuine pairs are
    pulled together, impostor pairs pushed to at least `margin` apart. The
    Euclidean distance uses a safe square root, so identical embeddings give
    finite (zero) gradients. Memory is O(batch²): one `(batch, batch)`
    distance matrix from a matrix product.

    `sample_weight` weights pair (i, j) by w_i·w_j; see `InBatchLoss` for the
    reductions. For siamese models that output one distance per pair, use
    the function `keras_margin.losses.contrastive_loss` instead.

    Args:
        margin: positive float, the distance impostor pairs are pushed to.
        distance: `"euclidean"` (default), `"squared_euclidean"` or
            `"cosine"` (1 − cos θ).
        reduction: `"sum_over_batch_size"` (mean over pairs, default) or
            `"sum"`.
        name: optional name.
        dtype: dtype of the loss computation's output.

    Example:

    ```pycon
    >>> model.compile("adam", loss=ContrastiveLoss(margin=1.0), jit_compile=True)
    >>> model.fit(images, labels)  # model outputs embeddings
    ```
    """

    def __init__(self, margin=1.0, distance="euclidean", reduction="sum_over_batch_size", name="contrastive_loss", dtype=None):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.margin = check_number("margin", margin, low=0.0, low_open=True)
        self.distance = check_choice("distance", distance, distance_lib.DISTANCES)

    def totals(self, labels, embeddings, weights):
        return _contrastive_totals(labels, embeddings, weights, self.margin, self.distance)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "distance": self.distance})
        return config
