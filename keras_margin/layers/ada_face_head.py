"""`AdaFaceHead`: a margin that adapts to image quality through the embedding norm (AdaFace)."""

import keras
from keras import ops

from keras_margin import margins
from keras_margin._distribute import cross_replica_concat
from keras_margin._validation import check_number
from keras_margin.layers.margin_head import ScaledCosineHead, check_fixed_scale


@keras.saving.register_keras_serializable(package="keras_margin")
class AdaFaceHead(ScaledCosineHead):
    """AdaFace head (Kim et al., CVPR 2022): quality-adaptive margin.

    The norm `n = clip(‖x‖, 0.001, 100)` (without gradient) is standardized
    with running batch statistics and squashed,
    `ẑ = clip(h · (n − μ) / (σ + 0.001), −1, 1)`, and sets both an angular
    and an additive margin: the target logit is
    `s · (cos(clip(θ_y − m·ẑ, ε, π − ε)) − (m + m·ẑ))`. A high-quality
    (large-norm, ẑ → 1) face gets ArcFace's margin m, a low-quality one
    (ẑ → −1) CosFace's margin m with the angle pushed the other way, so
    unrecognizable images are not forced onto their class. As in the
    official code, every cosine is first clamped to ±(1 − ε), ε = 1e-3, and
    the margins carry no gradient.

    Each training call first updates the running statistics with rate
    1 − `momentum` from the batch's mean and unbiased standard deviation of
    n (over the global batch under `tf.distribute`; a training batch needs
    at least 2 examples), then uses them; evaluation calls use the stored
    ones. They start at μ = 20, σ = 100, the official values.

    AdaFace expects the norm of the backbone's output feature before
    normalization, the final BatchNormalization of `keras_margin.backbones`;
    feed the head that raw output.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        scale: `s`, a positive float or `"auto"`; default 64.
        margin: `m` ≥ 0; default 0.4.
        h: the concentration of ẑ, > 0; default 0.333 (about 68% of ẑ in
            `[−0.333, 0.333]`).
        momentum: of the running statistics, in `[0, 1)`; default 0.99 (the
            official rate 0.01).
        margin_warmup_steps: integer ≥ 0; the margin ramps linearly from 0
            to its value over this many training steps (0, the default: the
            full margin from the first step).
        **kwargs: the `ScaledCosineHead` arguments `sample_rate` (Partial FC),
            `seed`, `num_subcenters`, `kernel_initializer`, `kernel_regularizer`
            and `kernel_constraint`, and the base `keras.layers.Layer`
            arguments (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`, not normalized.
        - `labels`: optional integer class ids `(batch,)`; without them the head
            returns the plain scaled cosines.
        - `training`: whether to update the running statistics.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32.

    Weights:
        `kernel`; non-trainable float32 `norm_mean` (), `norm_std` () and
        `margin_factor` ().

    Example:

    ```pycon
    >>> head = AdaFaceHead(1000)
    >>> logits = head(backbone(images), labels=labels, training=True)
    >>> float(head.norm_mean), float(head.norm_std)
    ```
    """

    fixed_target_margin = False

    def __init__(self, num_classes, scale=64.0, margin=0.4, h=0.333, momentum=0.99, margin_warmup_steps=0,
                 **kwargs):
        super().__init__(num_classes, scale=check_fixed_scale(scale, num_classes, type(self).__name__),
                         margin_warmup_steps=margin_warmup_steps, **kwargs)
        self.margin = check_number("margin", margin, low=0.0)
        self.h = check_number("h", h, low=0.0, low_open=True)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)

    def build(self, embeddings_shape):
        super().build(embeddings_shape)
        self.norm_mean = self.add_weight(name="norm_mean", shape=(), initializer=keras.initializers.Constant(20.0),
                                         trainable=False, autocast=False, aggregation="mean")
        self.norm_std = self.add_weight(name="norm_std", shape=(), initializer=keras.initializers.Constant(100.0),
                                        trainable=False, autocast=False, aggregation="mean")

    def apply_margin(self, cos_target, context):
        """AdaFace's target cosine at ẑ from `context.norms`; updates the running statistics in training."""
        norms = ops.stop_gradient(ops.clip(context.norms, 0.001, 100.0))
        mean, std = ops.convert_to_tensor(self.norm_mean), ops.convert_to_tensor(self.norm_std)
        if context.training:
            if norms.shape[0] == 1:
                raise ValueError("AdaFaceHead needs training batches of at least 2 examples (the norms' std).")
            [batch_norms] = cross_replica_concat([norms])
            rate = 1.0 - self.momentum
            mean = self.momentum * mean + rate * ops.mean(batch_norms)
            std = self.momentum * std + rate * margins.unbiased_std(batch_norms)
            self.norm_mean.assign(mean)
            self.norm_std.assign(std)
        scaler = ops.stop_gradient(margins.adaface_norm_scaler(norms, mean, std, self.h))
        cos_target = ops.clip(cos_target, -1.0 + margins.ADAFACE_EPSILON, 1.0 - margins.ADAFACE_EPSILON)
        return margins.adaface_target(cos_target, self.margin * context.factor, scaler)

    def non_target_cosines(self, cos, cos_target, context):
        """Every cosine clamped to ±(1 − 0.001), as in the official code."""
        return ops.clip(cos, -1.0 + margins.ADAFACE_EPSILON, 1.0 - margins.ADAFACE_EPSILON)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "h": self.h, "momentum": self.momentum})
        return config
