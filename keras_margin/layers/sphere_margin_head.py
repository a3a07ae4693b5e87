"""`SphereMarginHead`: A-Softmax (SphereFace) with λ annealing."""

import keras

from keras_margin import margins
from keras_margin.layers.multiplicative_margin_head import MultiplicativeMarginHead


@keras.saving.register_keras_serializable(package="keras_margin")
class SphereMarginHead(MultiplicativeMarginHead):
    """A-Softmax head: target `‖x‖ · (λ·cos θ_y + ψ(θ_y)) / (1 + λ)`.

    Kernel columns are L2-normalized and there is no bias; the embedding keeps
    its norm, so the other logits are `‖x‖ · cos θ_j` (Liu et al., CVPR 2017).
    ψ(θ) = (−1)^k·cos(mθ) − 2k on [kπ/m, (k+1)π/m], computed from the
    Chebyshev polynomial of cos θ. λ starts at `lambda_base` and decays as
    `max(lambda_min, lambda_base · (1 + lambda_gamma · t)^(−lambda_power))`
    over training steps t (the SphereFace schedule: 1000, 0.12, 1, 5), so
    training starts near plain softmax and the margin takes over. Setting
    `lambda_base=lambda_min=0` gives the pure A-Softmax target ‖x‖·ψ(θ).

    The step counter is the non-trainable weight `annealing_step`; it
    advances once per call with `training=True` and labels, is saved with
    the model and is updated inside compiled functions. `current_lambda`
    reads the λ of the next training step. Logits are float32 under every
    dtype policy; out-of-range labels behave as in `ArcMarginHead`.

    Args:
        num_classes: integer ≥ 2, the number of identities.
        margin: integer m ≥ 1; default 4 (the paper's).
        lambda_base: λ at step 0, ≥ 0; default 1000.
        lambda_gamma: decay rate γ, ≥ 0; default 0.12.
        lambda_power: decay power, ≥ 0; default 1.
        lambda_min: floor of λ, ≥ 0; default 5.
        num_subcenters: integer K ≥ 1 kernel columns per class, the largest
            cosine among them used; default 1.
        kernel_initializer: initializer of the kernel, as in
            `keras.layers.Dense`; default `"glorot_uniform"`.
        kernel_regularizer: optional regularizer of the kernel.
        kernel_constraint: optional constraint of the kernel.
        **kwargs: base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`.
        - `labels`: optional integer class ids `(batch,)` or `(batch, 1)`.
        - `training`: the step counter advances only when this is true.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32.

    Weights:
        `kernel` `(dim, num_classes * num_subcenters)` and `annealing_step` ().

    Example:

    ```pycon
    >>> head = SphereMarginHead(10, margin=4)
    >>> logits = head(np.random.normal(size=(8, 2)), labels=np.arange(8) % 10, training=True)
    >>> round(head.current_lambda, 2)  # 1000 / (1 + 0.12) after one step
    892.86
    ```
    """

    def __init__(
        self,
        num_classes,
        margin=4,
        lambda_base=1000.0,
        lambda_gamma=0.12,
        lambda_power=1.0,
        lambda_min=5.0,
        **kwargs,
    ):
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
        # ‖x‖ · cos θ_j = xᵀ Ŵ_j, one product with the normalized kernel
        kernel = margins.l2_normalize(self.kernel, axis=0)
        return margins.max_over_subcenters(
            margins.linear_logits(embeddings, kernel, self.compute_dtype), self.num_subcenters
        )

    def target_radius(self, embeddings, labels):
        return self.embedding_norms(embeddings)[:, 0]
