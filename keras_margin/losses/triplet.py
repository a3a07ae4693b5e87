"""Triplet loss (FaceNet) with semi-hard, batch-hard and batch-all mining."""

import keras
from keras import ops

from keras_margin import distances as distance_lib
from keras_margin import margins
from keras_margin._validation import check_choice, check_number
from keras_margin.losses.mining import MINING_STRATEGIES, mine
from keras_margin.losses.in_batch_loss import InBatchLoss, prepare_inputs, reduce_totals


def triplet_loss(
    labels,
    embeddings,
    margin=0.2,
    mining="semi_hard",
    distance="squared_euclidean",
    normalize=True,
    soft=False,
    sample_weight=None,
    reduction="sum_over_batch_size",
):
    """Triplet loss of a batch of labelled embeddings; see `TripletLoss`.

    The function form of `TripletLoss`, for use outside `model.compile`.

    Args:
        labels: integer class ids `(batch,)` or `(batch, 1)` (any integer or
            float dtype holding whole numbers).
        embeddings: `(batch, dim)`.
        margin: non-negative float α; default 0.2.
        mining: `"semi_hard"` (default), `"batch_hard"` or `"batch_all"`.
        distance: `"squared_euclidean"` (default), `"euclidean"` or
            `"cosine"` (1 − cos θ).
        normalize: whether to L2-normalize the embeddings first; default
            `True`.
        soft: use softplus instead of the hinge; default `False`.
        sample_weight: optional per-example weights `(batch,)`, applied
            inside the mined terms as in `TripletLoss`.
        reduction: Keras' name of the reduction, as in `TripletLoss`:
            `"sum_over_batch_size"` (default; also `"mean"` or
            `"mean_with_sample_weight"`), the weighted mean over the mined
            terms, or `"sum"`, their weighted sum.

    Returns:
        float32 scalar; 0 (with zero gradients) when the batch has no valid
        pair or triplet.

    Example:

    ```pycon
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.random.default_rng(0).normal(size=(4, 8))
    >>> loss = triplet_loss(labels, embeddings, mining="batch_hard")   # a float32 scalar
    ```
    """
    labels, embeddings, weights = prepare_inputs(labels, embeddings, sample_weight)
    total, weight = _triplet_totals(labels, embeddings, weights, margin, mining, distance, normalize, soft)
    return reduce_totals(total, weight, reduction)


def _triplet_totals(labels, embeddings, weights, margin, strategy, distance, normalize, soft):
    if normalize:
        embeddings = margins.l2_normalize(embeddings, axis=-1)
    d = distance_lib.pairwise_distances(embeddings, distance)
    hinge = ops.softplus if soft else ops.relu
    return mine(strategy, d, labels, weights, margin, hinge)


@keras.saving.register_keras_serializable(package="keras_margin")
class TripletLoss(InBatchLoss):
    """Triplet loss with online mining: `y_true` labels, `y_pred` embeddings.

    d is the chosen distance on the embeddings (L2-normalized first when
    `normalize=True`). For anchor a, positives p share its label (p ≠ a) and
    negatives n do not. Each mined term is `max(0, d(a,p) − d(a,n) + margin)`
    (`softplus(·)` instead when `soft=True`):

    - `"semi_hard"` (FaceNet, default): one term per positive pair, with the
      negative of smallest d(a, n) > d(a, p), or the farthest negative if
      none is farther than the positive; mean over positive pairs.
    - `"batch_hard"` (Hermans et al.): one term per anchor with a positive
      and a negative, from its farthest positive and closest negative.
    - `"batch_all"`: every valid triplet; mean over those with loss > 0.

    A batch with no valid pair or triplet (all one class, or all distinct
    classes) gives 0 and zero gradients. Distances use a safe square root
    and masked minima/maxima use a finite sentinel, so there is no NaN or
    inf even for identical embeddings.

    Memory is O(batch²): semi-hard mining sorts each anchor's negative
    distances and finds d(a, p)'s place among them by binary search
    (O(batch² log batch) time); batch-all visits anchors one at a time
    (`keras.ops.map`). Nothing of size batch³ is formed.

    `sample_weight` weights a semi-hard pair by w_a·w_p, a batch-hard anchor
    by w_a and a batch-all triplet by w_a·w_p·w_n, inside the weighted mean;
    see `InBatchLoss` for the reductions.

    Under `tf.distribute` the replicas' batches are gathered first, so the
    triplets are mined from the global batch (see `InBatchLoss`).

    Args:
        margin: non-negative float α (FaceNet: 0.2 on normalized embeddings).
        mining: `"semi_hard"`, `"batch_hard"` or `"batch_all"`.
        distance: `"squared_euclidean"` (default), `"euclidean"` or
            `"cosine"` (1 − cos θ).
        normalize: whether to L2-normalize embeddings first.
        soft: use softplus instead of the hinge.
        reduction: `"sum_over_batch_size"` (mean, default) or `"sum"`.
        name: optional name.
        dtype: dtype of the loss computation's output.

    Example:

    ```pycon
    >>> model.compile("adam", loss=TripletLoss(mining="batch_hard"), jit_compile=True)
    >>> model.fit(images, labels)  # model outputs embeddings
    ```
    """

    def __init__(
        self,
        margin=0.2,
        mining="semi_hard",
        distance="squared_euclidean",
        normalize=True,
        soft=False,
        reduction="sum_over_batch_size",
        name="triplet_loss",
        dtype=None,
    ):
        super().__init__(reduction=reduction, name=name, dtype=dtype)
        self.margin = check_number("margin", margin, low=0.0)
        self.mining = check_choice("mining", mining, MINING_STRATEGIES)
        self.distance = check_choice("distance", distance, distance_lib.DISTANCES)
        self.normalize = check_choice("normalize", normalize, (True, False))
        self.soft = check_choice("soft", soft, (True, False))

    def totals(self, labels, embeddings, weights):
        return _triplet_totals(
            labels, embeddings, weights, self.margin, self.mining, self.distance, self.normalize, self.soft
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "mining": self.mining,
                "distance": self.distance,
                "normalize": self.normalize,
                "soft": self.soft,
            }
        )
        return config
