"""`CombinedMarginHead`: cos(m1·θ + m2) − m3, the margin family in one layer."""

import math

import keras

from keras_margin import margins
from keras_margin._validation import check_choice, check_number
from keras_margin.layers.margin_head import ScaledCosineHead


@keras.saving.register_keras_serializable(package="keras_margin")
class CombinedMarginHead(ScaledCosineHead):
    """Combined margin head: target logit `s · (cos(m1·θ_y + m2) − m3)`.

    All three margins act together (ArcFace paper, §3.3 / insightface's
    `CombinedMarginLoss`): `m1` is SphereFace's multiplicative angular margin
    (here any real ≥ 1, applied through arccos), `m2` ArcFace's additive
    angular margin and `m3` CosFace's additive cosine margin. `(1, m, 0)`
    is `ArcMarginHead(margin=m)` and `(1, 0, m)` is `CosMarginHead(margin=m)`.
    The formula is valid while m1·θ + m2 ≤ π; beyond that `fallback` applies
    as in `ArcMarginHead` (see `keras_margin.margins.combined_margin`).
    Logits are float32 under every dtype policy; out-of-range labels behave as
    in `ArcMarginHead`.

    The default scale is the paper's 64, as in `ArcMarginHead`, whose advice
    on `scale="auto"` for a few hundred classes applies here too.

    Args:
        num_classes: integer ≥ 2.
        scale: `s`: a positive float, `"auto"` or `"adaptive"`, as in
            `ArcMarginHead` (default 64, the paper's).
        m1: multiplicative angular margin, ≥ 1 (default 1.0).
        m2: additive angular margin in [0, π) (default 0.5).
        m3: additive cosine margin in [0, 2] (default 0.0).
        fallback: `"continuous"`, `"insightface"`, `"easy"` or `"none"`.
        gradient: `"exact"` or `"detached"`, as in `ArcMarginHead`.
        margin_warmup_steps: integer ≥ 0; m2, m3 and m1 − 1 ramp linearly
            from 0 to their values over this many training steps (0: none).
        **kwargs: the `ScaledCosineHead` arguments `sample_rate` (Partial FC),
            `seed`, `num_subcenters`, `kernel_initializer`, `kernel_regularizer`
            and `kernel_constraint`, and the base `keras.layers.Layer`
            arguments (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`.
        - `labels`: optional integer class ids `(batch,)` or `(batch, 1)`.
        - `training`: whether this is a training call: it advances the margin
            warm-up, the `"adaptive"` scale and Partial FC sampling.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32, in every mode.

    Example:

    ```pycon
    >>> head = CombinedMarginHead(1000, m1=1.0, m2=0.3, m3=0.2)
    >>> head(np.random.normal(size=(4, 32)), labels=[0, 1, 2, 3]).shape
    (4, 1000)
    ```
    """

    def __init__(
        self,
        num_classes,
        scale=64.0,
        m1=1.0,
        m2=0.5,
        m3=0.0,
        fallback="continuous",
        gradient="exact",
        margin_warmup_steps=0,
        **kwargs,
    ):
        super().__init__(num_classes, scale=scale, margin_warmup_steps=margin_warmup_steps, **kwargs)
        self.gradient = check_choice("gradient", gradient, margins.GRADIENT_MODES)
        self.m1 = check_number("m1", m1, low=1.0)
        self.m2 = check_number("m2", m2, low=0.0, high=math.pi, high_open=True)
        self.m3 = check_number("m3", m3, low=0.0, high=2.0)
        self.fallback = check_choice("fallback", fallback, margins.ARC_FALLBACKS)

    def apply_margin(self, cos_target, context):
        factor = context.factor
        # m1 = 1 is "no multiplicative margin", so it ramps from 1, not from 0.
        m1 = 1.0 if self.m1 == 1.0 else 1.0 + (self.m1 - 1.0) * factor
        return margins.combined_margin(cos_target, m1, self.m2 * factor, self.m3 * factor, self.fallback)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"m1": self.m1, "m2": self.m2, "m3": self.m3, "fallback": self.fallback, "gradient": self.gradient}
        )
        return config
