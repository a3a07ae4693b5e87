"""Base of the multiplicative-margin heads (L-Softmax, A-Softmax) with λ annealing."""

import keras
from keras import ops

from keras_margin import margins
from keras_margin._validation import check_number
from keras_margin.layers.labels import validated_labels
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

    Subclasses define `plain_logits(embeddings)`, the logits `r_j · cos θ_j`
    as one matrix product, and `target_radius(embeddings, labels)`, the
    radius `r_y` of each row's target.
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

    def plain_logits(self, embeddings):
        """float32 logits without margin, `(batch, classes)`: `r_j · cos θ_j`."""
        raise NotImplementedError(f"{type(self).__name__} must define plain_logits(embeddings)")

    def target_radius(self, embeddings, labels):
        """float32 radius `r_y` of each row's target logit, `(batch,)`."""
        raise NotImplementedError(f"{type(self).__name__} must define target_radius(embeddings, labels)")

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
        logits = self.plain_logits(embeddings)
        if labels is None:
            return logits
        labels = validated_labels(labels, embeddings, self.num_classes)
        lam = self.lambda_at(self.annealing_step)
        if training:
            self.annealing_step.assign_add(1)
        # The target cosine is read off the target logit, r_y · cos θ_y: the
        # logits are the plain product, so no (batch, classes) radius is formed.
        radius = self.target_radius(embeddings, labels)
        logit_target = margins.target_values(logits, labels)
        cos_target = logit_target / radius
        psi = margins.multiplicative_angular_psi(cos_target, self.margin)
        shift = radius * margins.blend_with_lambda(cos_target, psi, lam) - logit_target
        return margins.shift_target(logits, labels, shift)

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
