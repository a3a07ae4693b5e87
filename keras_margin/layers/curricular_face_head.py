"""`CurricularFaceHead`: ArcFace's target with hard negatives weighted by training progress (CurricularFace)."""

import math

import keras
from keras import ops

from keras_margin import margins
from keras_margin._distribute import cross_replica_concat
from keras_margin._validation import check_choice, check_number
from keras_margin.layers.margin_head import ScaledCosineHead, check_fixed_scale


@keras.saving.register_keras_serializable(package="keras_margin")
class CurricularFaceHead(ScaledCosineHead):
    """CurricularFace head (Huang et al., CVPR 2020).

    The target logit is ArcFace's `s · cos(θ_y + m)`, with insightface's rule
    `s · (cos θ_y − m·sin m)` where cos θ_y ≤ cos(π − m) (the official
    code's; `fallback` chooses another, as in `ArcMarginHead`). A non-target
    cosine above cos(θ_y + m) is a hard negative and becomes
    `s · cos θ_j · (t + cos θ_j)`; the others stay `s · cos θ_j`. `t`, the
    running mean of the target cosine, starts at 0, so early in training
    hard negatives count less than in ArcFace (easy samples first), and as
    `t` grows towards 1 they count more.

    Each training call first updates
    `t ← momentum · t + (1 − momentum) · mean_batch(cos θ_y)` (the mean over
    the global batch under `tf.distribute`), then uses it; `t` carries no
    gradient. Evaluation calls use the stored `t`. As in the official code,
    whether a negative is hard is decided with the raw cos(θ_y + m), also
    where the target uses the fallback.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        scale: `s`, a positive float or `"auto"` (√2·ln(C − 1)); default 64
            (the paper's).
        margin: additive angular margin `m` in radians, in `[0, π)`;
            default 0.5.
        momentum: of the running mean `t`, in `[0, 1)`; default 0.99 (the
            official update rate 0.01).
        fallback: the target past θ_y = π − m: `"insightface"` (default,
            the official code's), `"continuous"`, `"easy"` or `"none"`, as
            in `ArcMarginHead`.
        margin_warmup_steps: integer ≥ 0; the margin ramps linearly from 0
            to its value over this many training steps (0, the default: the
            full margin from the first step).
        **kwargs: the `ScaledCosineHead` arguments `sample_rate` (Partial FC),
            `seed`, `num_subcenters`, `kernel_initializer`, `kernel_regularizer`
            and `kernel_constraint`, and the base `keras.layers.Layer`
            arguments (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`, not normalized.
        - `labels`: optional integer class ids `(batch,)`; without them the
            head returns the plain scaled cosines.
        - `training`: whether to update `t`.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32.

    Weights:
        `kernel` `(dim, num_classes · num_subcenters)`; non-trainable float32
        `t` () and `margin_factor` ().

    Example:

    ```pycon
    >>> head = CurricularFaceHead(1000)
    >>> logits = head(embeddings, labels=labels, training=True)   # for sparse CE from logits
    >>> float(head.t)   # the running mean of the target cosine
    ```
    """

    def __init__(self, num_classes, scale=64.0, margin=0.5, momentum=0.99, fallback="insightface",
                 margin_warmup_steps=0, **kwargs):
        super().__init__(num_classes, scale=check_fixed_scale(scale, num_classes, type(self).__name__),
                         margin_warmup_steps=margin_warmup_steps, **kwargs)
        self.margin = check_number("margin", margin, low=0.0, high=math.pi, high_open=True)
        self.momentum = check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
        self.fallback = check_choice("fallback", fallback, margins.ARC_FALLBACKS)

    def build(self, embeddings_shape):
        super().build(embeddings_shape)
        self.t = self.add_weight(name="t", shape=(), initializer="zeros", trainable=False, autocast=False,
                                 aggregation="mean")

    def apply_margin(self, cos_target, context):
        return margins.additive_angular_margin(cos_target, self.margin * context.factor, self.fallback)

    def non_target_cosines(self, cos, cos_target, context):
        """Hard negatives, cos θ_j > cos(θ_y + m), become cos θ_j · (t + cos θ_j); updates t in training."""
        hard = ops.stop_gradient(margins.additive_angular_margin(cos_target, self.margin * context.factor, "none"))
        t = ops.convert_to_tensor(self.t)
        if context.training:
            [targets] = cross_replica_concat([ops.stop_gradient(cos_target)])
            t = self.momentum * t + (1.0 - self.momentum) * ops.mean(targets)
            self.t.assign(t)
        return margins.curricular_modulation(cos, hard, ops.stop_gradient(t))

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "momentum": self.momentum, "fallback": self.fallback})
        return config
