"""`MagFaceHead`: an ArcFace margin that grows with the embedding norm, plus a norm regularizer (MagFace)."""

import math
import warnings

import keras
from keras import ops

from keras_margin import margins
from keras_margin._validation import check_choice, check_number
from keras_margin.layers.margin_head import ScaledCosineHead, check_fixed_scale


@keras.saving.register_keras_serializable(package="keras_margin")
class MagFaceHead(ScaledCosineHead):
    """MagFace head (Meng et al., CVPR 2021): the embedding norm becomes a quality score.

    With `a = clip(‖x‖, l_a, u_a)` the margin is linear in the norm,
    `m(a) = (u_m − l_m) / (u_a − l_a) · (a − l_a) + l_m`, and the target
    logit is `s · cos(θ_y + m(a))`; the others are `s · cos θ_j`. With
    `fallback="easy"` (the official default) the margin applies only where
    cos θ_y > 0; `"insightface"` uses cos θ_y − m(a)·sin m(a) beyond
    θ_y = π − m(a), as in `ArcMarginHead`. A call with labels also adds
    `λ_g · mean(1/a + a/u_a²)` to the model's losses with `add_loss` (in
    `head.losses`; in History as `magface_regularizer` on TensorFlow), which
    rewards larger norms and, against the margin, makes the norm of an easy
    (high-quality) face larger than that of a hard one. Nothing is detached:
    the norm gets gradient from the margin and the regularizer.
    `keras_margin.evaluation.embedding_quality` reads the quality (the norm) of
    the trained embeddings.

    MagFace's analysis gives a unique optimal norm only when
    λ_g ≥ s·k·u_a²·l_a² / (u_a² − l_a²), k = (u_m − l_m) / (u_a − l_a);
    smaller `lambda_g` raise a ValueError (`margins.magface_minimum_lambda`).
    The embedding norm is the quality, so feed the head the backbone's raw
    output (e.g. the final BatchNormalization of `keras_margin.backbones`),
    not normalized embeddings.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        scale: `s`, a positive float or `"auto"`; default 64.
        lower_norm: `l_a` > 0, the lower end of the norm range; default 10.
        upper_norm: `u_a` > `l_a`, the upper end of the norm range;
            default 110.
        lower_margin: `l_m` in `[0, π)`, the margin at `l_a`; default 0.45.
        upper_margin: `u_m` in `[l_m, π)`, the margin at `u_a`; default 0.8.
        lambda_g: λ_g ≥ 0, the weight of the regularizer, at least MagFace's
            bound above; default 35.
        fallback: the target past θ_y = π − m(a): `"easy"` (default, the
            official code's: no margin where cos θ_y ≤ 0), `"insightface"`,
            `"continuous"` or `"none"`, as in `ArcMarginHead`.
        margin_warmup_steps: integer ≥ 0; the margin ramps linearly from 0
            to its value over this many training steps (0, the default: the
            full margin from the first step).
        easy_margin: deprecated, use `fallback`: `True` is
            `fallback="easy"`, `False` is `fallback="insightface"`; accepted
            with a DeprecationWarning until the next release.
        **kwargs: the `ScaledCosineHead` arguments `sample_rate` (Partial FC),
            `seed`, `num_subcenters`, `kernel_initializer`, `kernel_regularizer`
            and `kernel_constraint`, and the base `keras.layers.Layer`
            arguments (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`, not normalized.
        - `labels`: optional integer class ids `(batch,)`; without them the head
            returns the plain scaled cosines and adds no loss.
        - `training`: unused (the regularizer is added in evaluation too, so
            validation losses compare).

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32.

    Example:

    ```pycon
    >>> head = MagFaceHead(1000)
    >>> logits = head(embedder(images), labels=labels)
    >>> model = keras.Model([images, labels], logits)
    >>> model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))  # + the regularizer
    ```
    """

    fixed_target_margin = False

    def __init__(self, num_classes, scale=64.0, lower_norm=10.0, upper_norm=110.0, lower_margin=0.45,
                 upper_margin=0.8, lambda_g=35.0, fallback="easy", margin_warmup_steps=0, easy_margin=None,
                 **kwargs):
        super().__init__(num_classes, scale=check_fixed_scale(scale, num_classes, type(self).__name__),
                         margin_warmup_steps=margin_warmup_steps, **kwargs)
        self.lower_norm = check_number("lower_norm", lower_norm, low=0.0, low_open=True)
        self.upper_norm = check_number("upper_norm", upper_norm, low=self.lower_norm, low_open=True)
        self.lower_margin = check_number("lower_margin", lower_margin, low=0.0, high=math.pi, high_open=True)
        self.upper_margin = check_number("upper_margin", upper_margin, low=self.lower_margin, high=math.pi,
                                         high_open=True)
        self.lambda_g = check_number("lambda_g", lambda_g, low=0.0)
        self.fallback = check_choice("fallback", _fallback_from_easy_margin(fallback, easy_margin),
                                     margins.ARC_FALLBACKS)
        minimum = margins.magface_minimum_lambda(float(self.scale_value), self.lower_norm, self.upper_norm,
                                                 self.lower_margin, self.upper_margin)
        if self.lambda_g < minimum:
            raise ValueError(
                f"`lambda_g={self.lambda_g}` is below MagFace's bound s·k·u_a²·l_a²/(u_a² − l_a²) = {minimum:.4g} "
                f"(s={float(self.scale_value):g}, k=(u_m − l_m)/(u_a − l_a)): the loss then has no unique optimal "
                f"norm. Use lambda_g ≥ {minimum:.4g}, or a smaller scale or margin range."
            )
        self.regularizer_tracker = keras.metrics.Mean(name="magface_regularizer")

    def apply_margin(self, cos_target, context):
        """cos(θ_y + m(a)) with the margin m(a) of each row's norm `context.norms`."""
        margin = margins.magface_margin(context.norms, self.lower_norm, self.upper_norm, self.lower_margin,
                                        self.upper_margin)
        return margins.additive_angular_margin(cos_target, margin * context.factor, self.fallback)

    def regularization(self, context):
        """λ_g · mean(1/a + a/u_a²), logged as `magface_regularizer` on TensorFlow."""
        regularizer = self.lambda_g * ops.mean(
            margins.magface_regularizer(context.norms, self.lower_norm, self.upper_norm))
        if keras.backend.backend() == "tensorflow":
            self.regularizer_tracker.update_state(regularizer)
        return regularizer

    def get_config(self):
        config = super().get_config()
        config.update({
            "lower_norm": self.lower_norm, "upper_norm": self.upper_norm, "lower_margin": self.lower_margin,
            "upper_margin": self.upper_margin, "lambda_g": self.lambda_g, "fallback": self.fallback,
        })
        return config


def _fallback_from_easy_margin(fallback, easy_margin):
    """`fallback`, or the one the deprecated `easy_margin` flag stood for (with a DeprecationWarning)."""
    if easy_margin is None:
        return fallback
    mapped = "easy" if easy_margin else "insightface"
    warnings.warn(
        f"MagFaceHead's `easy_margin` is now `fallback`: pass fallback={mapped!r} instead of "
        f"easy_margin={easy_margin!r} (`easy_margin` goes in the next release)", DeprecationWarning, stacklevel=3)
    if fallback not in ("easy", mapped):
        raise ValueError(
            f"Pass `fallback` only: `easy_margin={easy_margin!r}` means fallback={mapped!r}, which contradicts "
            f"fallback={fallback!r}"
        )
    return mapped
