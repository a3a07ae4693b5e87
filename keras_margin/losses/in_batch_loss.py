"""Shared input handling and reduction of the in-batch metric losses."""

import keras
from keras import ops

from keras_margin._distribute import cross_replica_concat, share_between_replicas

#: Reductions a loss over pairs or triplets supports, by Keras' names: the
#: weighted mean over its pairs/triplets (`"sum_over_batch_size"`, Keras'
#: default, and its synonyms `"mean"` and `"mean_with_sample_weight"`), or
#: their weighted sum. Keras' `"none"` / `None` is not one: there is no
#: per-example loss to return.
MEAN_REDUCTIONS = ("sum_over_batch_size", "mean", "mean_with_sample_weight")
REDUCTIONS = MEAN_REDUCTIONS + ("sum",)


def check_reduction(reduction):
    """Returns `reduction` if it is one of `REDUCTIONS`; else a ValueError naming the allowed values."""
    if reduction in REDUCTIONS:
        return reduction
    message = f"`reduction` must be one of {REDUCTIONS}. Received: reduction={reduction!r}"
    if reduction in ("none", None):
        message += (
            ". A loss over the pairs or triplets of a batch has no per-example value to return unreduced; "
            "use \"sum\" for the weighted sum"
        )
    raise ValueError(message)


def prepare_inputs(labels, embeddings, sample_weight=None):
    """int32 labels `(batch,)`, float32 embeddings `(batch, dim)`, float32 weights `(batch,)`.

    Labels may be `(batch,)` or `(batch, 1)` of any integer or float dtype
    (Keras hands `y_true` over as floats); they are cast back to int32.
    """
    embeddings = ops.cast(ops.convert_to_tensor(embeddings), "float32")
    if len(embeddings.shape) != 2:
        raise ValueError(
            f"Embeddings (`y_pred`) must have shape (batch, dim). Received: shape={tuple(embeddings.shape)}"
        )
    labels = ops.convert_to_tensor(labels)
    if len(labels.shape) == 2 and labels.shape[-1] == 1:
        labels = ops.reshape(labels, (-1,))
    if len(labels.shape) != 1:
        raise ValueError(
            f"Labels (`y_true`) must have shape (batch,) or (batch, 1). Received: shape={tuple(labels.shape)}"
        )
    if labels.shape[0] is not None and embeddings.shape[0] is not None and labels.shape[0] != embeddings.shape[0]:
        raise ValueError(
            "Labels (`y_true`) and embeddings (`y_pred`) must have the same batch size. Received: "
            f"{tuple(labels.shape)} and {tuple(embeddings.shape)}"
        )
    labels = ops.cast(labels, "int32")
    if sample_weight is None:
        weights = ops.ones_like(labels, dtype="float32")
    else:
        weights = ops.reshape(ops.cast(ops.convert_to_tensor(sample_weight), "float32"), (-1,))
        weights = ops.broadcast_to(weights, ops.shape(labels)) if weights.shape[0] == 1 else weights
    return labels, embeddings, weights


def reduce_totals(total, weight, reduction):
    """Weighted mean `total / weight` (0 when nothing is counted), or the sum.

    All of `MEAN_REDUCTIONS` are the same weighted mean: `weight` is the sum of
    the counted terms' weights, with or without `sample_weight`.
    """
    check_reduction(reduction)
    if reduction == "sum":
        return total
    return total / ops.maximum(weight, 1e-12)


class InBatchLoss(keras.losses.Loss):
    """Base of losses whose terms are pairs or triplets of a batch.

    Such a loss has no per-example value, so `__call__` applies `sample_weight`
    inside the pairs/triplets (see each subclass) and reduces them itself:
    `"sum_over_batch_size"` (default), `"mean"` and `"mean_with_sample_weight"`
    give the weighted mean over the counted pairs/triplets, `"sum"` their
    weighted sum. `reduction="none"` is rejected: there is no per-example loss
    to return. Subclasses implement `totals(labels, embeddings, weights)`.

    Under `tf.distribute` (e.g. MirroredStrategy) the replicas' labels,
    embeddings and weights are gathered first, so pairs and triplets are
    mined over the global batch and training matches one device on that
    batch; each replica's gradient reaches its own examples.
    """

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None):
        check_reduction(reduction)
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def totals(self, labels, embeddings, weights):
        raise NotImplementedError(f"{type(self).__name__} must define totals(labels, embeddings, weights)")

    def __call__(self, y_true, y_pred, sample_weight=None):
        labels, embeddings, weights = prepare_inputs(y_true, y_pred, sample_weight)
        labels, embeddings, weights = cross_replica_concat([labels, embeddings, weights])
        total, weight = self.totals(labels, embeddings, weights)
        return share_between_replicas(reduce_totals(total, weight, self.reduction))

    def call(self, y_true, y_pred):
        return self(y_true, y_pred)
