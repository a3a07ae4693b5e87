"""`TargetAngle`: a streaming Keras metric of the angle between features and their class weights."""

import math

import keras
from keras import ops

# Modules, not their classes: keras_margin.layers imports this package (the heads log with LatestValue), so
# margin_head may still be importing when this module is; its classes are looked up when a metric is made.
from keras_margin.layers import margin_head, normalized_dense

# The inversion cuts [-1, 1] into _GRID cells and keeps the one where the target
# crosses the logit, _STAGES times: 1024⁴ = 2⁴⁰, down to 2·2⁻⁴⁰ ≈ 2e-12, below
# float32 resolution. Four wide stages rather than 40 bisection steps keep the
# chain short: torch.compile is slow on long chains of bisection steps.
_GRID = 1024
_STAGES = 4


@keras.saving.register_keras_serializable(package="keras_margin")
class TargetAngle(keras.metrics.Metric):
    """Mean angle θ_y, in degrees, between each embedding and its class weight.

    Computed from a head's logits and the labels, so it goes in
    `model.compile(metrics=[...])` of the model whose output is the head's.
    With `head`, the margin logits of a scaled head (ArcFace, CosFace,
    combined) are mapped back to cos θ_y: the target logit is
    `s · head.apply_margin(cos θ_y, context)`, which increases with cos θ_y under the
    default `fallback="continuous"`, and is inverted by a refined grid search
    with the head's own margin function. Without `head`, the logits are taken as plain
    `s · cos θ_j` (a `NormalizedDense`, or a head called without labels).
    Over a dataset the result equals
    `keras_margin.evaluation.intra_class_angle(embeddings, labels, head.kernel)`.

    Heads whose logits carry the embedding norm (`SphereMarginHead`,
    `LargeMarginHead`) cannot be inverted and are rejected.

    On the JAX backend Keras updates metrics without the model's variables,
    so the head's weights cannot be read there: the metric inverts with the
    head's configured scale and its full margin, and rejects heads whose
    scale or margin moves during training (`scale="adaptive"`,
    `margin_warmup_steps`). Do not pair it with a `MarginScheduler` on JAX.

    Args:
        head: the `ArcMarginHead`, `CosMarginHead` or `CombinedMarginHead`
            (or a `NormalizedDense`) producing the logits; its current scale
            and margin (warm-up included) are used.
        scale: the logits' scale s (> 0) when no head is given; pass
            exactly one of `head` and `scale`.
        name: metric name (the History key), default `"target_angle"`.
        dtype: dtype of the metric's state and result; default
            `"float32"`.

    Example:

    ```pycon
    >>> head = keras_margin.ArcMarginHead(num_classes)
    >>> model = keras.Model([images, labels], head(embedder(images), labels=labels))
    >>> model.compile(loss=..., metrics=[keras_margin.metrics.TargetAngle(head)])
    ```
    """

    def __init__(self, head=None, scale=None, name="target_angle", dtype="float32"):
        super().__init__(name=name, dtype=dtype)
        self._reads_head_weights = keras.backend.backend() != "jax"
        if (not self._reads_head_weights and isinstance(head, margin_head.ScaledCosineHead)
                and (head.scale == "adaptive" or head.margin_warmup_steps)):
            raise ValueError(
                "On the JAX backend Keras updates metrics without the model's variables, so TargetAngle cannot "
                f"follow a moving scale or margin. Received: head with scale={head.scale!r}, "
                f"margin_warmup_steps={head.margin_warmup_steps}; use a fixed scale and no warm-up, or "
                "callbacks.AngleStatistics"
            )
        invertible = (margin_head.ScaledCosineHead, normalized_dense.NormalizedDense)
        if head is not None and not isinstance(head, invertible):
            raise ValueError(
                "`head` must be a scaled-cosine head (ArcMarginHead, CosMarginHead, "
                f"CombinedMarginHead) or a NormalizedDense. Received: head={type(head).__name__}; heads "
                "whose logits carry the embedding norm (SphereMarginHead, LargeMarginHead) cannot be "
                "inverted to angles"
            )
        if isinstance(head, margin_head.ScaledCosineHead) and not head.fixed_target_margin:
            raise ValueError(
                f"`head` is a {type(head).__name__}, whose target logit depends on more than cos θ_y (a drawn or "
                "norm-dependent margin), so its logits cannot be inverted to angles; use "
                "keras_margin.callbacks.AngleStatistics or keras_margin.evaluation.intra_class_angle instead"
            )
        if head is None and scale is None:
            raise ValueError("Pass `head`, or `scale` for plain scaled-cosine logits.")
        if head is not None and scale is not None:
            raise ValueError("Pass `head` or `scale`, not both: the head's scale is used.")
        self.head = head
        self._fixed_scale = None if head is not None else float(scale)
        if head is None and not self._fixed_scale > 0:
            raise ValueError(f"`scale` must be > 0. Received: scale={scale!r}")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    @property
    def scale(self):
        """The logits' scale: the given one, or the head's current scale (a Python float)."""
        return self._fixed_scale if self.head is None else float(ops.convert_to_numpy(self.head.scale_value))

    def _scale(self):
        if self.head is None:
            return self._fixed_scale
        if not self._reads_head_weights:
            return float(self.head.scale_value)  # a fixed scale: checked in __init__
        return ops.convert_to_tensor(self.head.scale_value, "float32")

    def _target_cosine(self, target_logit):
        value = target_logit / self._scale()
        if not isinstance(self.head, margin_head.ScaledCosineHead):
            return ops.clip(value, -1.0, 1.0)
        # the head's own margin_factor weight where the metric can read it
        factor = ops.convert_to_tensor(self.head.margin_factor) if self._reads_head_weights else 1.0
        context = margin_head.MarginContext(norms=None, step=None, training=False, factor=factor)
        steps = ops.arange(1, _GRID, dtype="float32")  # the cells' inner edges, in cell widths from `low`
        low, width = -ops.ones_like(value), 2.0 * ops.ones_like(value)
        for _ in range(_STAGES):
            width = width / _GRID
            edges = ops.expand_dims(low, -1) + ops.expand_dims(width, -1) * steps
            # the target increases with the cosine: the edges below `value` count the cells left of the crossing
            below = self.head.apply_margin(edges, context) < ops.expand_dims(value, -1)
            low = low + ops.sum(ops.cast(below, "float32"), axis=-1) * width
        return low + width / 2.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        logits = ops.cast(y_pred, "float32")
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1, 1))
        target_logit = ops.take_along_axis(logits, labels, axis=1)[:, 0]
        angles = ops.arccos(self._target_cosine(target_logit)) * (180.0 / math.pi)
        if sample_weight is None:
            weights = ops.ones_like(angles)
        else:
            weights = ops.reshape(ops.cast(sample_weight, "float32"), (-1,))
        self.total.assign_add(ops.sum(angles * weights))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        return ops.divide_no_nan(self.total, self.count)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self):
        config = {"name": self.name, "dtype": self.dtype}
        if self.head is not None:
            config["head"] = keras.saving.serialize_keras_object(self.head)
        else:
            config["scale"] = self.scale
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("head") is not None:
            config["head"] = keras.saving.deserialize_keras_object(config["head"])
        return cls(**config)
