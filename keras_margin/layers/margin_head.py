"""The common base of the margin heads: kernel, label handling, validation."""

import keras
from keras import ops

from keras_margin import margins
from keras_margin._validation import check_number, check_rank_2_shape
from keras_margin.layers.labels import check_label_shape, labels_to_one_hot


class MarginHead(keras.layers.Layer):
    """Base class of the heads: owns `kernel` and turns labels into one-hots.

    Subclasses implement `call(embeddings, labels=None, training=None)` with
    the helpers `cosines`, `target_one_hot` and `embedding_norms`.

    All heads compute in float32 and return float32 logits under every dtype
    policy: the layer never autocasts its inputs (so float labels are not
    rounded to float16) and only the matrix product runs in the policy's
    compute dtype.
    """

    def __init__(
        self,
        num_classes,
        num_subcenters=1,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.num_classes = check_number("num_classes", num_classes, low=2, integer=True)
        self.num_subcenters = check_number("num_subcenters", num_subcenters, low=1, integer=True)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def build(self, embeddings_shape):
        dim = check_rank_2_shape(type(self).__name__, embeddings_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(dim, self.num_classes * self.num_subcenters),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: dim})
        self.built = True

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        if labels_shape is not None:
            check_label_shape(labels_shape, embeddings_shape)
        return (embeddings_shape[0], self.num_classes)

    # Helpers for subclasses -------------------------------------------------

    def cosines(self, embeddings):
        """float32 cos θ_j between each embedding and each class, `(batch, classes)`."""
        cos = margins.cosine_similarity(embeddings, self.kernel, self.compute_dtype)
        return margins.max_over_subcenters(cos, self.num_subcenters)

    @staticmethod
    def embedding_norms(embeddings):
        """float32 ‖x‖ of each embedding, shape `(batch, 1)`."""
        return margins.l2_norm(embeddings, axis=-1, keepdims=True)

    def target_one_hot(self, labels, embeddings):
        """float32 one-hot of the validated labels; see `labels_to_one_hot`."""
        return labels_to_one_hot(labels, embeddings, self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "num_subcenters": self.num_subcenters,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            }
        )
        return config


class ScaledCosineHead(MarginHead):
    """Base of the heads whose logits are `s · cos θ_j` with a target margin.

    Subclasses implement `margin_target(cos_target)`, the target cosine after
    the margin as a function of the true class's cosine, shape `(batch,)`.
    The margin is applied to the target column only, so its cost is O(batch),
    not O(batch × classes).

    Subclasses that set `self.gradient = "detached"` get the shift
    `margin_target(c) − c` without gradient: the target logit has the
    margin's value and the gradient of the plain cosine (as in insightface's
    current training code).
    """

    gradient = "exact"

    def __init__(self, num_classes, scale=64.0, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.scale = check_number("scale", scale, low=0.0, low_open=True)

    def margin_target(self, cos_target):
        raise NotImplementedError(f"{type(self).__name__} must define margin_target(cos_target)")

    def call(self, embeddings, labels=None, training=None):
        cos = self.cosines(embeddings)
        if labels is None:
            return self.scale * cos
        one_hot = self.target_one_hot(labels, embeddings)
        cos_target = margins.target_cosine(cos, one_hot)
        shift = self.margin_target(cos_target) - cos_target
        if self.gradient == "detached":
            shift = ops.stop_gradient(shift)
        return self.scale * margins.shift_target(cos, one_hot, shift)

    def get_config(self):
        config = super().get_config()
        config["scale"] = self.scale
        return config
