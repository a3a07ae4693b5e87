"""Base of the multiplicative-margin heads (L-Softmax, A-Softmax) with λ annealing."""

import keras
from keras import ops

from keras_margin import margins
from keras_margin._validation import check_number
from keras_margin.layers.margin_head import MarginHead


class MultiplicativeMarginHead(MarginHead):
    """Target `r · (λ·cos θ_y + ψ(θ_y)) / (1 + λ)`, others `r · cos θ_j`.

    ψ is the multiplicative angular margin of integer `margin`
    (`keras_margin.margins.multiplicative_angular_psi`). λ follows
    `λ_t = max(lambda_min, lambda_base · (1 + lambda_gamma · t)^(−lambda_power))`
    where t, the number of training steps taken so far, lives in the
    non-trainable int32 weight `annealing_step`. The step advances by one on
    every call with `training=True` and labels, i.e. once per training step
    when the head is called once per step; it is saved with the model.

    Subclasses define the radius `r` through `logit_radius(embeddings)`.
    """

    def __init__(
        self,
        num_classes,
        margin,
        lambda_base,
        lambda_gamma,
        lambda_power,
        lambda_min,
        **kwargs,
    ):
        super().__init__(num_classes, **kwargs)
        self.margin = check_number("margin", margin, low=1, integer=True)
        self.lambda_base = check_number("lambda_base", lambda_base, low=0.0)
        self.lambda_gamma = check_number("lambda_gamma", lambda_gamma, low=0.0)
        self.lambda_power = check_number("lambda_power", lambda_power, low=0.0)
        self.lambda_min = check_number("lambda_min", lambda_min, low=0.0)

    def build(self, embeddings_shape):
        super().build(embeddings_shape)
        self.annealing_step = self.add_weight(
            name="annealing_step",
            shape=(),
            dtype="int32",
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",  # replicas count the same steps
        )

    def logit_radius(self, embeddings):
        raise NotImplementedError(f"{type(self).__name__} must define logit_radius(embeddings)")

    def lambda_at(self, step):
        """λ after `step` training steps, as a float32 tensor."""
        return margins.annealed_lambda(
            step, self.lambda_base, self.lambda_gamma, self.lambda_power, self.lambda_min
        )

    @property
    def current_lambda(self):
        """λ the next training step will use (a Python float; log it with a callback)."""
        return float(ops.convert_to_numpy(self.lambda_at(self.annealing_step)))

    def call(self, embeddings, labels=None, training=None):
        cos = self.cosines(embeddings)
        radius = self.logit_radius(embeddings)
        if labels is None:
            return radius * cos
        one_hot = self.target_one_hot(labels, embeddings)
        lam = self.lambda_at(self.annealing_step)
        if training:
            self.annealing_step.assign_add(1)
        cos_target = margins.target_cosine(cos, one_hot)
        psi = margins.multiplicative_angular_psi(cos_target, self.margin)
        shift = margins.blend_with_lambda(cos_target, psi, lam) - cos_target
        return radius * margins.shift_target(cos, one_hot, shift)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "margin": self.margin,
                "lambda_base": self.lambda_base,
                "lambda_gamma": self.lambda_gamma,
                "lambda_power": self.lambda_power,
                "lambda_min": self.lambda_min,
            }
        )
        return config
