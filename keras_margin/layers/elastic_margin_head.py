"""`ElasticArcMarginHead`, `ElasticCosMarginHead`: margins drawn from a normal distribution (ElasticFace)."""

import math

import keras
from keras import ops

from keras_margin import margins
from keras_margin._validation import check_choice, check_number
from keras_margin.layers.margin_head import ScaledCosineHead


class ElasticMarginHead(ScaledCosineHead):
    """Base of the ElasticFace heads: a margin per sample and training step from Normal(m, σ).

    Subclasses implement `apply_margin(cos_target, context)` with the margins
    of `drawn_margins(cos_target, context)`.
    """

    fixed_target_margin = False

    def __init__(self, num_classes, scale=64.0, margin=0.5, margin_std=0.05, sorted_margins=False, seed=None,
                 margin_warmup_steps=0, **kwargs):
        super().__init__(num_classes, scale=scale, margin_warmup_steps=margin_warmup_steps, seed=seed, **kwargs)
        self.margin = self.check_margin(margin)
        self.margin_std = check_number("margin_std", margin_std, low=0.0)
        self.sorted_margins = bool(sorted_margins)
        # a stream of its own, apart from the Partial FC class sampling's
        self.margin_seed_generator = keras.random.SeedGenerator(None if seed is None else seed + 1)

    @staticmethod
    def check_margin(margin):
        """The validated mean margin (each subclass has its own range)."""
        raise NotImplementedError("ElasticMarginHead subclasses must define check_margin(margin)")

    def drawn_margins(self, cos_target, context):
        """The margin of each row times `context.factor`: drawn from N(m, σ) in training, m otherwise."""
        if not context.training:
            return self.margin * context.factor
        draws = self.margin + self.margin_std * keras.random.normal(
            ops.shape(cos_target), seed=self.margin_seed_generator)
        draws = ops.maximum(draws, 0.0)  # a negative draw would raise the target logit
        if self.sorted_margins:
            draws = margins.rank_matched(draws, cos_target)
        return draws * context.factor

    def get_config(self):
        config = super().get_config()
        config.update({"margin": self.margin, "margin_std": self.margin_std, "sorted_margins": self.sorted_margins})
        return config


@keras.saving.register_keras_serializable(package="keras_margin")
class ElasticArcMarginHead(ElasticMarginHead):
    """ElasticFace-Arc head (Boutros et al., CVPRW 2022): target `s · cos(θ_y + m_i)`, m_i ~ N(m, σ).

    Each training call draws one margin per sample from Normal(m, σ) (from
    `seed`); evaluation calls use m. With `sorted_margins=True` (ElasticFace+)
    the drawn margins are assigned by rank: the largest margin to the sample
    whose target cosine is smallest, the smallest to the one whose target
    cosine is largest. The official code indexes the sorted margins with the
    sort permutation of the cosines where its inverse (each sample's rank)
    is needed, which does not pair ranks; this head pairs them as the paper
    describes. The paper's σ for "+" is smaller: 0.0175 (arc), 0.02 (cos).
    Draws below 0 are raised to 0, so the margin never raises the target
    logit (at the paper's m and σ that is a 10σ event). Under
    `tf.distribute` each replica draws (and ranks) for its own part of
    the batch, so N replicas are not the same random run as one device.

    Beyond θ_y = π − m_i the official code uses the raw formula (which rises
    again); this head takes `ArcMarginHead`'s `fallback` there, default
    `"continuous"` (`"none"` is the official behaviour).

    Args:
        num_classes: integer ≥ 2, the number of identities.
        scale: `s`: a positive float, `"auto"` or `"adaptive"`, as in
            `ArcMarginHead`; default 64 (the paper's).
        margin: the mean margin m, in `[0, π)`; default 0.5.
        margin_std: σ ≥ 0; default 0.05 (ElasticFace-Arc+: 0.0175).
        sorted_margins: `True` for the "+" variant (margins assigned by
            rank); default `False`.
        fallback: `"continuous"` (default), `"insightface"`, `"easy"` or
            `"none"`, as in `ArcMarginHead`.
        seed: optional integer seed of the margin draws (and of the Partial
            FC sampling); default `None`.
        margin_warmup_steps: integer ≥ 0; the margin ramps linearly from 0
            to its value over this many training steps (0, the default: the
            full margin from the first step).
        **kwargs: the `ScaledCosineHead` arguments `sample_rate` (Partial FC),
            `num_subcenters`, `kernel_initializer`, `kernel_regularizer` and
            `kernel_constraint`, and the base `keras.layers.Layer` arguments
            (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`, not normalized.
        - `labels`: optional integer class ids `(batch,)`.
        - `training`: whether to draw margins.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32.

    Example:

    ```pycon
    >>> head = ElasticArcMarginHead(1000, sorted_margins=True, margin_std=0.0175, seed=0)
    >>> logits = head(embeddings, labels=labels, training=True)
    ```
    """

    def __init__(self, num_classes, scale=64.0, margin=0.5, margin_std=0.05, sorted_margins=False,
                 fallback="continuous", seed=None, **kwargs):
        super().__init__(num_classes, scale=scale, margin=margin, margin_std=margin_std,
                         sorted_margins=sorted_margins, seed=seed, **kwargs)
        self.fallback = check_choice("fallback", fallback, margins.ARC_FALLBACKS)

    @staticmethod
    def check_margin(margin):
        return check_number("margin", margin, low=0.0, high=math.pi, high_open=True)

    def apply_margin(self, cos_target, context):
        margin = ops.minimum(self.drawn_margins(cos_target, context), math.pi - 1e-6)  # a draw past π: kept at π
        return margins.additive_angular_margin(cos_target, margin, self.fallback)

    def get_config(self):
        config = super().get_config()
        config["fallback"] = self.fallback
        return config


@keras.saving.register_keras_serializable(package="keras_margin")
class ElasticCosMarginHead(ElasticMarginHead):
    """ElasticFace-Cos head (Boutros et al., CVPRW 2022): target `s · (cos θ_y − m_i)`, m_i ~ N(m, σ).

    Each training call draws one margin per sample from Normal(m, σ) (from
    `seed`); evaluation calls use m. With `sorted_margins=True` (ElasticFace+)
    the drawn margins are assigned by rank: the largest margin to the sample
    whose target cosine is smallest, the smallest to the one whose target
    cosine is largest. The official code indexes the sorted margins with the
    sort permutation of the cosines where its inverse (each sample's rank)
    is needed, which does not pair ranks; this head pairs them as the paper
    describes. The paper's σ for "+" is smaller: 0.0175 (arc), 0.02 (cos).
    Draws below 0 are raised to 0, so the margin never raises the target
    logit (at the paper's m and σ that is a 10σ event). Under
    `tf.distribute` each replica draws (and ranks) for its own part of
    the batch, so N replicas are not the same random run as one device.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        scale: `s`: a positive float, `"auto"` or `"adaptive"`, as in
            `CosMarginHead`; default 64 (the paper's).
        margin: the mean margin m, in `[0, 2]`; default 0.35.
        margin_std: σ ≥ 0; default 0.05 (ElasticFace-Cos+: 0.02).
        sorted_margins: `True` for the "+" variant (margins assigned by
            rank); default `False`.
        seed: optional integer seed of the margin draws (and of the Partial
            FC sampling); default `None`.
        margin_warmup_steps: integer ≥ 0; the margin ramps linearly from 0
            to its value over this many training steps (0, the default: the
            full margin from the first step).
        **kwargs: the `ScaledCosineHead` arguments `sample_rate` (Partial FC),
            `num_subcenters`, `kernel_initializer`, `kernel_regularizer` and
            `kernel_constraint`, and the base `keras.layers.Layer` arguments
            (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`, not normalized.
        - `labels`: optional integer class ids `(batch,)`.
        - `training`: whether to draw margins.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32.

    Example:

    ```pycon
    >>> head = ElasticCosMarginHead(1000, seed=0)
    >>> logits = head(embeddings, labels=labels, training=True)
    ```
    """

    def __init__(self, num_classes, scale=64.0, margin=0.35, margin_std=0.05, sorted_margins=False, seed=None,
                 **kwargs):
        super().__init__(num_classes, scale=scale, margin=margin, margin_std=margin_std,
                         sorted_margins=sorted_margins, seed=seed, **kwargs)

    @staticmethod
    def check_margin(margin):
        return check_number("margin", margin, low=0.0, high=2.0)

    def apply_margin(self, cos_target, context):
        return margins.additive_cosine_margin(cos_target, self.drawn_margins(cos_target, context))

