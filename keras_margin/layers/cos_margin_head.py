"""`CosMarginHead`: additive cosine margin (AM-Softmax / CosFace)."""

import keras

from keras_margin import margins
from keras_margin._validation import check_number
from keras_margin.layers.margin_head import ScaledCosineHead


@keras.saving.register_keras_serializable(package="keras_margin")
class CosMarginHead(ScaledCosineHead):
    """CosFace / AM-Softmax head: target logit `s · (cos θ_y − m)`.

    Embeddings and kernel columns are L2-normalized; the other logits are
    `s · cos θ_j` (Wang et al., CVPR 2018; Wang et al., SPL 2018). Called
    without labels it returns the plain scaled cosines. Logits are float32
    under every dtype policy. The margin is a constant shift, so there is no
    invalid angle and no gradient option. Out-of-range labels behave as in
    `ArcMarginHead`.

    The defaults are CosFace's, s = 64 and m = 0.35, with no margin warm-up.
    On a few hundred classes and a short schedule pass `scale="auto"`, with
    a handful of classes a number such as `scale=16.0`, as in
    `ArcMarginHead`.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        scale: `s`: a positive float, `"auto"` (√2·ln(C − 1)) or
            `"adaptive"` (dynamic AdaCos), as in `ArcMarginHead`
            (default 64, CosFace's; AM-Softmax used 30).
        margin: cosine margin `m` in [0, 2] (CosFace: 0.35).
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
        - `labels`: optional integer class ids `(batch,)` or `(batch, 1)`.
        - `training`: whether this is a training call: it advances the margin
            warm-up, the `"adaptive"` scale and Partial FC sampling.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32, in every mode.

    Example:

    ```pycon
    >>> head = CosMarginHead(100, scale=30.0, margin=0.35)
    >>> logits = head(np.random.normal(size=(8, 16)), labels=np.arange(8))
    >>> logits.shape
    (8, 100)
    ```
    """

    def __init__(self, num_classes, scale=64.0, margin=0.35, margin_warmup_steps=0, **kwargs):
        super().__init__(num_classes, scale=scale, margin_warmup_steps=margin_warmup_steps, **kwargs)
        self.margin = check_number("margin", margin, low=0.0, high=2.0)

    def apply_margin(self, cos_target, context):
        return margins.additive_cosine_margin(cos_target, self.margin * context.factor)

    def get_config(self):
        config = super().get_config()
        config["margin"] = self.margin
        return config
