"""`CenterLossLayer`: center loss with class centers updated at their own rate."""

import threading

import keras
from keras import ops

from keras_margin._distribute import cross_replica_sum, in_multi_replica_context
from keras_margin._validation import check_number, check_rank_2_shape
from keras_margin.layers.labels import check_label_shape, labels_to_one_hot


@keras.saving.register_keras_serializable(package="keras_margin")
class CenterLossLayer(keras.layers.Layer):
    """Center loss (Wen et al., ECCV 2016) as a pass-through layer.

    Put it on the embedding: it returns the embeddings unchanged and, when
    called with labels, adds `weight · ½ · mean_i ‖x_i − c_{y_i}‖²` (sum over
    dimensions, mean over the batch) to the model's losses with `add_loss`.
    The term's gradient reaches the embeddings only.

    The class centers are the non-trainable weight `centers`
    `(num_classes, dim)`: the optimizer never touches them, and they are saved
    with the model. On every call with `training=True` and labels they move
    with their own rate α, from the centers before the update (eq. 4):
    `c_j ← c_j − α · Σ_{i: y_i = j} (c_j − x_i) / (1 + n_j)`, n_j the count
    of class j in the batch. The sums are one-hot matrix products over a fixed
    number of classes, so the update is XLA-safe. Under
    `tf.distribute.MirroredStrategy` the sums and counts are added over all
    replicas first, so N replicas move the centers exactly as one device on
    the same global batch.

    The added term is logged as the metric `center_loss` (its weighted
    value, the amount it adds to `loss`) in `History` on the TensorFlow
    backend; Keras' JAX trainer cannot update a metric owned by a layer, so
    there it is folded into `loss` only.

    Args:
        num_classes: integer ≥ 2.
        alpha: center learning rate α in (0, 1] (paper: 0.5).
        weight: λ, the weight of the term in the total loss, ≥ 0
            (default 0.01, the value the documented recipes were measured
            with; the paper used 0.003 for face recognition).
        centers_initializer: initializer of the centers (default zeros, as
            in the paper).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`.
        - `labels`: optional integer class ids `(batch,)` or `(batch, 1)`; without
            them the layer is the identity.
        - `training`: the centers move only when this is true.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, dim)`, the embeddings unchanged.

    Example:

    ```pycon
    >>> embeddings = backbone(images)
    >>> embeddings = CenterLossLayer(num_classes)(embeddings, labels=labels)
    >>> logits = keras.layers.Dense(num_classes)(embeddings)
    >>> model = keras.Model([images, labels], logits)
    ```
    """

    def __init__(self, num_classes, alpha=0.5, weight=0.01, centers_initializer="zeros", **kwargs):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.num_classes = check_number("num_classes", num_classes, low=2, integer=True)
        self.alpha = check_number("alpha", alpha, low=0.0, high=1.0, low_open=True)
        self.weight = check_number("weight", weight, low=0.0)
        self.centers_initializer = keras.initializers.get(centers_initializer)
        self.center_loss_tracker = keras.metrics.Mean(name="center_loss")
        self._per_thread = threading.local()

    def build(self, embeddings_shape):
        dim = check_rank_2_shape("CenterLossLayer", embeddings_shape)
        self.centers = self.add_weight(
            name="centers",
            shape=(self.num_classes, dim),
            initializer=self.centers_initializer,
            trainable=False,
            # "mean" makes the assign a cross-replica barrier: no replica overwrites
            # another's copy before that replica has read it; the replicas compute
            # identical updates, so their mean is that update.
            aggregation="mean",
        )
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: dim})
        self.built = True

    def call(self, embeddings, labels=None, training=None):
        if labels is None:
            return embeddings
        one_hot = labels_to_one_hot(labels, embeddings, self.num_classes)
        x = ops.cast(embeddings, "float32")
        centers = ops.convert_to_tensor(self.centers)
        own_centers = ops.stop_gradient(ops.matmul(one_hot, centers))
        center_loss = self.weight * ops.mean(0.5 * ops.sum(ops.square(x - own_centers), axis=-1))
        self._add_center_loss(center_loss)
        if keras.backend.backend() == "tensorflow":
            self.center_loss_tracker.update_state(center_loss)
        if training:
            self.centers.assign(self._updated_centers(centers, one_hot, ops.stop_gradient(x)))
        return embeddings

    # Under MirroredStrategy the replicas run as threads over this one layer
    # object and switch threads at every cross-replica sync, including the
    # one in the center update. Keras' add_loss list is shared, so a replica
    # would collect another replica's term. There, the term is kept per thread
    # and handed to Keras through the hooks it uses to collect and clear losses.

    def _add_center_loss(self, loss):
        if in_multi_replica_context():
            self._replica_losses().append(loss)
        else:
            self.add_loss(loss)

    def _replica_losses(self):
        if not hasattr(self._per_thread, "losses"):
            self._per_thread.losses = []
        return self._per_thread.losses

    def _get_own_losses(self):
        return super()._get_own_losses() + list(self._replica_losses())

    def _clear_losses(self):
        super()._clear_losses()
        self._replica_losses().clear()

    def _updated_centers(self, centers, one_hot, x):
        counts = ops.sum(one_hot, axis=0)
        sums = ops.matmul(ops.transpose(one_hot), x)
        counts, sums = cross_replica_sum([counts, sums])
        counts = ops.expand_dims(counts, -1)
        # Σ_{i: y_i = j} (c_j − x_i) = n_j·c_j − Σ_{i: y_i = j} x_i
        step = (counts * centers - sums) / (1.0 + counts)
        return centers - self.alpha * step

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        if labels_shape is not None:
            check_label_shape(labels_shape, embeddings_shape)
        return tuple(embeddings_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "alpha": self.alpha,
                "weight": self.weight,
                "centers_initializer": keras.initializers.serialize(self.centers_initializer),
            }
        )
        return config
