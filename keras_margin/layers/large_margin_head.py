"""`LargeMarginHead`: L-Softmax with λ annealing."""

import keras
from keras import ops

from keras_margin import margins
from keras_margin.layers.multiplicative_margin_head import MultiplicativeMarginHead


@keras.saving.register_keras_serializable(package="keras_margin")
class LargeMarginHead(MultiplicativeMarginHead):
    """L-Softmax head: target `‖W_y‖‖x‖ · (λ·cos θ_y + ψ(θ_y)) / (1 + λ)`.

    Nothing is normalized and there is no bias: the other logits are the
    plain `W_jᵀx` (Liu et al., ICML 2016). ψ and the λ schedule are those of
    `SphereMarginHead`; the default `lambda_min=0` lets the pure L-Softmax
    target ‖W_y‖‖x‖ψ(θ) take over at the end of the schedule.

    Under float16 compute the product is rescaled so that it stays finite
    however large the norms grow (`keras_margin.margins.linear_logits`).
    Logits are float32 under every dtype policy; out-of-range labels behave
    as in `ArcMarginHead`.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        margin: integer m ≥ 1; default 2 (paper: 2, 3 or 4).
        lambda_base: λ at step 0, ≥ 0; default 1000.
        lambda_gamma: decay rate γ, ≥ 0; default 0.12.
        lambda_power: decay power, ≥ 0; default 1.
        lambda_min: floor of λ, ≥ 0; default 0.
        kernel_initializer: initializer of the kernel, as in
            `keras.layers.Dense`; default `"glorot_uniform"`.
        kernel_regularizer: optional regularizer of the kernel.
        kernel_constraint: optional constraint of the kernel.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...);
            `num_subcenters` other than 1 raises a ValueError (the kernel
            is not normalized).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`.
        - `labels`: optional integer class ids `(batch,)` or `(batch, 1)`.
        - `training`: the step counter advances only when this is true.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32.

    Weights:
        `kernel` `(dim, num_classes)` and `annealing_step` ().

    Example:

    ```pycon
    >>> head = LargeMarginHead(10, margin=2)
    >>> head(np.random.normal(size=(8, 32))).shape  # plain W^T x
    (8, 10)
    ```
    """

    def __init__(
        self,
        num_classes,
        margin=2,
        lambda_base=1000.0,
        lambda_gamma=0.12,
        lambda_power=1.0,
        lambda_min=0.0,
        **kwargs,
    ):
        if kwargs.pop("num_subcenters", 1) != 1:
            raise ValueError("LargeMarginHead does not support `num_subcenters` (its kernel is not normalized).")
        super().__init__(
            num_classes,
            margin=margin,
            lambda_base=lambda_base,
            lambda_gamma=lambda_gamma,
            lambda_power=lambda_power,
            lambda_min=lambda_min,
            **kwargs,
        )

    def plain_logits(self, embeddings):
        return margins.linear_logits(embeddings, self.kernel, self.compute_dtype)

    def target_radius(self, embeddings, labels):
        kernel_norms = margins.l2_norm(self.kernel, axis=0, keepdims=False)
        return self.embedding_norms(embeddings)[:, 0] * ops.take(kernel_norms, labels)

    def get_config(self):
        config = super().get_config()
        config.pop("num_subcenters")
        return config
