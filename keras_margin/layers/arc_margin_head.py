"""`ArcMarginHead`: additive angular margin (ArcFace)."""

import math

import keras

from keras_margin import margins
from keras_margin._validation import check_choice, check_number
from keras_margin.layers.margin_head import ScaledCosineHead


@keras.saving.register_keras_serializable(package="keras_margin")
class ArcMarginHead(ScaledCosineHead):
    """ArcFace head: target logit `s · cos(θ_y + m)`, others `s · cos θ_j`.

    Embeddings and kernel columns are L2-normalized (Deng et al., CVPR 2019).
    Called with labels it returns the margin logits, for
    `keras.losses.SparseCategoricalCrossentropy(from_logits=True)`; called
    without labels it returns the plain scaled cosines, for closed-set
    prediction. Logits are float32 under every dtype policy.

    cos(θ + m) stops decreasing once θ > π − m. What happens there is set by
    `fallback` (see `keras_margin.margins.combined_margin`):
    `"continuous"` (default) subtracts the constant that makes the target
    logit meet cos(θ + m) at θ = π − m, so the logit stays continuous and
    strictly decreasing in θ and the margin never raises it. insightface's
    rule (`"insightface"`, cos θ − m·sin m) jumps down by about 0.12·s at
    that angle for m = 0.5; `"easy"` drops the margin wherever cos θ ≤ 0;
    `"none"` is the raw formula. The region is only reached early in
    training, so the choice rarely changes results; the continuous rule is the
    default because it is the only one with no jump and no non-monotone part.

    The defaults are the paper's, s = 64 and m = 0.5, with no margin
    warm-up. s = 64 was tuned for many thousands of identities: on a few
    hundred classes and a short schedule it trails, and `scale="auto"`
    trains better; with a handful of classes, where `"auto"` is too small,
    pass a number such as `scale=16.0` (see Scale in the heads guide).

    Labels outside `[0, num_classes)` raise a ValueError when called eagerly.
    Inside a compiled function (`jit_compile=True`, `tf.function`) they cannot
    be checked without a host round trip: their row gets no margin, and
    Keras' sparse cross-entropy returns NaN for them.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        scale: `s`, the radius of the hypersphere: a positive float,
            `"auto"` (the fixed AdaCos scale √2·ln(C − 1)) or `"adaptive"`
            (the dynamic AdaCos scale, recomputed from every training batch,
            kept between 1 and √2·ln(C − 1) in the weight `adaptive_scale`).
            Default 64, the paper's.
        margin: additive angular margin `m` in radians, in [0, π)
            (paper: 0.5).
        fallback: `"continuous"`, `"insightface"`, `"easy"` or `"none"`.
        gradient: `"exact"` (autodiff with cos θ clamped to
            [−1 + 1e-6, 1 − 1e-6] inside the margin) or `"detached"`
            (margin shift without gradient).
        margin_warmup_steps: integer ≥ 0. The margin ramps linearly from 0
            to its value over this many training steps (kept in the weights
            `warmup_step` and `margin_factor`, logged as `margin_factor`);
            0 applies the full margin from the first step.
        **kwargs: the `ScaledCosineHead` arguments `sample_rate` (Partial FC),
            `seed`, `num_subcenters`, `kernel_initializer`, `kernel_regularizer`
            and `kernel_constraint`, and the base `keras.layers.Layer`
            arguments (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`.
        - `labels`: optional integer class ids `(batch,)` or `(batch, 1)`; float
            tensors holding whole numbers are accepted.
        - `training`: whether this is a training call: it advances the margin
            warm-up, the `"adaptive"` scale and Partial FC sampling.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32, in every mode.

    Weights:
        `kernel`: `(dim, num_classes * num_subcenters)`, class-major columns
        (with any `sample_rate`);
        non-trainable: `margin_factor` (), `warmup_step` () with a warm-up,
        `adaptive_scale` () with `scale="adaptive"`.

    Example:

    ```pycon
    >>> images = keras.Input((28, 28, 1))
    >>> labels = keras.Input((), dtype="int32")
    >>> x = keras.layers.Flatten()(images)
    >>> embeddings = keras.layers.Dense(64)(x)
    >>> logits = ArcMarginHead(10)(embeddings, labels=labels)
    >>> model = keras.Model([images, labels], logits)
    >>> model.compile("adam", keras.losses.SparseCategoricalCrossentropy(
    ...     from_logits=True), jit_compile=True)
    ```
    """

    def __init__(
        self,
        num_classes,
        scale=64.0,
        margin=0.5,
        fallback="continuous",
        gradient="exact",
        margin_warmup_steps=0,
        **kwargs,
    ):
        super().__init__(num_classes, scale=scale, margin_warmup_steps=margin_warmup_steps, **kwargs)
        self.gradient = check_choice("gradient", gradient, margins.GRADIENT_MODES)
        self.margin = check_number("margin", margin, low=0.0, high=math.pi, high_open=True)
        self.fallback = check_choice("fallback", fallback, margins.ARC_FALLBACKS)

    def apply_margin(self, cos_target, context):
        return margins.additive_angular_margin(cos_target, self.margin * context.factor, self.fallback)

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "fallback": self.fallback, "gradient": self.gradient})
        return config
