"""The common base of the margin heads: kernel, label handling, validation."""

import keras
import numpy as np
from keras import ops

from keras_margin import margins
from keras_margin._validation import check_number, is_concrete


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
        embeddings_shape = tuple(embeddings_shape)
        if len(embeddings_shape) != 2 or embeddings_shape[-1] is None:
            raise ValueError(
                f"{self.__class__.__name__} expects `embeddings` of shape (batch, dim) with a "
                f"known dim. Received: embeddings.shape={embeddings_shape}"
            )
        dim = embeddings_shape[-1]
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
            self._check_label_shape(tuple(labels_shape), tuple(embeddings_shape))
        return (embeddings_shape[0], self.num_classes)

    @staticmethod
    def _check_label_shape(labels_shape, embeddings_shape):
        if not (len(labels_shape) == 1 or (len(labels_shape) == 2 and labels_shape[-1] == 1)):
            raise ValueError(
                f"`labels` must have shape (batch,) or (batch, 1). Received: labels.shape={labels_shape}"
            )
        batch, label_batch = embeddings_shape[0], labels_shape[0]
        if batch is not None and label_batch is not None and batch != label_batch:
            raise ValueError(
                "`labels` and `embeddings` must have the same batch size. Received: "
                f"labels.shape={labels_shape}, embeddings.shape={embeddings_shape}"
            )

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
        """Validates `labels` and returns their float32 one-hot, `(batch, classes)`.

        Accepts shape `(batch,)` or `(batch, 1)`, any integer dtype, or a float
        tensor holding integers. Out-of-range labels raise when the values are
        known (eager); inside a compiled function they give an all-zero row.
        """
        labels = ops.convert_to_tensor(labels)
        self._check_label_shape(tuple(labels.shape), tuple(embeddings.shape))
        labels = ops.reshape(labels, (-1,))
        dtype = keras.backend.standardize_dtype(labels.dtype)
        if "int" not in dtype and "float" not in dtype:
            raise ValueError(f"`labels` must hold integer class ids. Received dtype {dtype}")
        if is_concrete(labels):
            self._check_label_values(ops.convert_to_numpy(labels))
        labels = ops.cast(labels, "int32")
        return ops.one_hot(labels, self.num_classes, dtype="float32")

    def _check_label_values(self, labels):
        labels = np.asarray(labels)
        if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
            raise ValueError(
                "`labels` must hold integer class ids; a float tensor is accepted only when its "
                f"values are whole numbers. Received: {labels[labels != np.round(labels)][:10].tolist()}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = labels[(labels < 0) | (labels >= self.num_classes)]
            raise ValueError(
                f"`labels` must be class ids in [0, {self.num_classes}) (num_classes="
                f"{self.num_classes}). Received out-of-range values: {bad[:10].tolist()}"
            )

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
        raise NotImplementedError

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
