"""The common base of the margin heads: kernel, label handling, validation."""

import keras
from keras import ops

from keras_margin import margins
from keras_margin._distribute import cross_replica_concat
from keras_margin._validation import check_choice, check_number, check_rank_2_shape
from keras_margin.layers import class_sampling
from keras_margin.layers.labels import check_label_shape, validated_labels
from keras_margin.layers.latest_value import LatestValue


class MarginHead(keras.layers.Layer):
    """Base class of the heads: owns `kernel` and validates labels.

    Subclasses implement `call(embeddings, labels=None, training=None)` with
    the helpers `cosines` and `embedding_norms`.

    The kernel holds one class weight per column, `(dim, classes · K)` as in
    `keras.layers.Dense`; a subclass that sets `kernel_layout = "rows"`
    before `build` gets `(classes · K, dim)`, one class weight per row.

    All heads compute in float32 and return float32 logits under every dtype
    policy: the layer never autocasts its inputs (so float labels are not
    rounded to float16) and only the matrix product runs in the policy's
    compute dtype.
    """

    kernel_layout = "columns"

    def __init__(
        self,
        num_classes,
        num_subcenters=1,
        kernel_initializer="glorot_uniform",
        kernel_regularizer=None,
        kernel_constraint=None,
        **kwargs,
    ):
        kwargs.pop("autocast", None)
        super().__init__(autocast=False, **kwargs)
        self.num_classes = check_number("num_classes", num_classes, low=2, integer=True)
        self.num_subcenters = check_number("num_subcenters", num_subcenters, low=1, integer=True)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)

    def build(self, embeddings_shape):
        dim = check_rank_2_shape(type(self).__name__, embeddings_shape)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(dim, self.num_classes * self.num_subcenters)
            if self.kernel_layout == "columns"
            else (self.num_classes * self.num_subcenters, dim),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.input_spec = keras.layers.InputSpec(ndim=2, axes={-1: dim})
        self.built = True

    def compute_output_shape(self, embeddings_shape, labels_shape=None):
        if labels_shape is not None:
            check_label_shape(labels_shape, embeddings_shape)
        return (embeddings_shape[0], self.num_classes)

    # Helpers for subclasses -------------------------------------------------

    def cosines(self, embeddings):
        """float32 cos θ_j between each embedding and each class, `(batch, classes)`."""
        cos = margins.cosine_similarity(embeddings, self.kernel, self.compute_dtype, self.kernel_layout)
        return margins.max_over_subcenters(cos, self.num_subcenters)

    @staticmethod
    def embedding_norms(embeddings):
        """float32 ‖x‖ of each embedding, shape `(batch, 1)`."""
        return margins.l2_norm(embeddings, axis=-1, keepdims=True)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "num_subcenters": self.num_subcenters,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
            }
        )
        return config


SCALE_MODES = ("auto", "adaptive")


def check_scale(scale, num_classes):
    """Validates `scale`: a positive number, `"auto"` or `"adaptive"` (then C ≥ 3)."""
    if isinstance(scale, str):
        check_choice("scale", scale, SCALE_MODES)
        if num_classes < 3:
            raise ValueError(
                f"`scale={scale!r}` uses the AdaCos scale √2·ln(C − 1), which needs num_classes ≥ 3. "
                f"Received: num_classes={num_classes}; pass a number as `scale`"
            )
        return scale
    return check_number("scale", scale, low=0.0, low_open=True)


def check_fixed_scale(scale, num_classes, head_name):
    """Validates the scale of a head whose margin math assumes a fixed s: a positive number or `"auto"`."""
    if scale == "adaptive":
        raise ValueError(
            f"{head_name} takes a fixed scale: a positive number or \"auto\" (√2·ln(C − 1)). "
            "Received: scale='adaptive'"
        )
    return check_scale(scale, num_classes)


class ScaledCosineHead(MarginHead):
    """Base of the heads whose logits are `s · cos θ_j` with a target margin.

    Subclasses implement `margin_target(cos_target, factor)`, the target
    cosine after the margin as a function of the true class's cosine, shape
    `(batch,)`, with the margins multiplied by `factor` (0 = no margin,
    1 = the full margin). The margin is applied to the target column only,
    so its cost is O(batch), not O(batch × classes).

    Scale: a number, `"auto"` (the fixed AdaCos scale √2·ln(C − 1)) or
    `"adaptive"` (the dynamic AdaCos scale, recomputed from every training
    batch and kept in the non-trainable weight `adaptive_scale`; it starts
    at the fixed AdaCos scale and stays between 1 and it, see
    `keras_margin.margins.adacos_scale_from_statistics`).

    Margin warm-up: the non-trainable weight `margin_factor` multiplies the
    margins. With `margin_warmup_steps = n > 0` it is set to `min(1, t / n)`
    at training step t (t counted in the int32 weight `warmup_step`);
    otherwise it stays 1 unless a `keras_margin.callbacks.MarginScheduler`
    sets it. All of these weights are saved with the model and read inside
    compiled functions.

    Partial FC: with `sample_rate = r < 1` the head computes its own loss,
    the softmax cross-entropy of the margin logits, and adds it with
    `add_loss`; compile the model without a loss for this output. A training
    call with labels computes the logits of ⌈r·C⌉ classes only: every class
    of the batch plus uniformly drawn others (a new draw each step, from
    `seed`), with the labels remapped to them, and returns the per-example
    loss `(batch,)`. The kernel is stored one class per row, `(C·K, dim)`,
    and read by a row gather, so its gradient covers the kept rows only (on
    TensorFlow as `IndexedSlices`, which plain SGD applies to those rows
    alone). An evaluation call with labels returns the `(batch, C)` margin
    logits and adds their loss over all classes; prediction (no labels)
    returns the scaled cosines of all classes. ⌈r·C⌉ must be at least the
    batch size. Sample weights do not reach a loss added this way.

    Subclasses that set `self.gradient = "detached"` get the shift
    `margin_target(c) − c` without gradient: the target logit has the
    margin's value and the gradient of the plain cosine (as in insightface's
    current training code).
    """

    gradient = "exact"
    uses_norms = False  # True: the margin depends on ‖x‖ (`target_with_margin` gets the norms)
    fixed_target_margin = True  # False: training logits are not margin_target(cos θ_y) (drawn or norm-set margins)

    def __init__(self, num_classes, scale=16.0, margin_warmup_steps=0, sample_rate=1.0, seed=None, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.scale = check_scale(scale, self.num_classes)
        self.margin_warmup_steps = check_number("margin_warmup_steps", margin_warmup_steps, low=0, integer=True)
        self.sample_rate = check_number("sample_rate", sample_rate, low=0.0, high=1.0, low_open=True)
        self.seed = seed
        if self.sample_rate < 1.0:
            self.num_sampled_classes = class_sampling.num_sampled_classes(self.num_classes, self.sample_rate)
            self.seed_generator = keras.random.SeedGenerator(seed)
            self.kernel_layout = "rows"  # so a step's gradient is a row gather's
        # Layer-owned metrics reach History on the TensorFlow trainer only (as in
        # CenterLossLayer); on other backends the weights hold the values.
        self._trackers = {}
        if keras.backend.backend() == "tensorflow":
            if self.margin_warmup_steps:
                self._trackers["margin_factor"] = LatestValue(name="margin_factor")
            if self.scale == "adaptive":
                self._trackers["scale"] = LatestValue(name="scale")

    def build(self, embeddings_shape):
        super().build(embeddings_shape)
        self.margin_factor = self.add_weight(
            name="margin_factor",
            shape=(),
            initializer=keras.initializers.Constant(0.0 if self.margin_warmup_steps else 1.0),
            trainable=False,
            autocast=False,  # stays float32 under mixed precision
            aggregation="only_first_replica",
        )
        if self.margin_warmup_steps:
            self.warmup_step = self.add_weight(
                name="warmup_step", shape=(), dtype="int32", initializer="zeros", trainable=False,
                aggregation="only_first_replica",
            )
        if self.scale == "adaptive":
            self.adaptive_scale = self.add_weight(
                name="adaptive_scale",
                shape=(),
                initializer=keras.initializers.Constant(margins.adacos_scale(self.num_classes)),
                trainable=False,
                autocast=False,
                aggregation="mean",
            )

    @property
    def scale_value(self):
        """The scale s in effect: a Python float, or the `adaptive_scale` weight."""
        if self.scale == "adaptive":
            return self.adaptive_scale
        if self.scale == "auto":
            return margins.adacos_scale(self.num_classes)
        return self.scale

    @property
    def current_scale(self):
        """The scale the next step will start from, as a Python float."""
        return float(ops.convert_to_numpy(self.scale_value))

    @property
    def current_margin_factor(self):
        """The fraction of the margin in effect, as a Python float."""
        return float(ops.convert_to_numpy(self.margin_factor))

    def margin_target(self, cos_target, factor=None):
        raise NotImplementedError(f"{type(self).__name__} must define margin_target(cos_target, factor)")

    def _factor_for_step(self, training):
        """The margin factor of this call; advances the warm-up in training."""
        if not (self.margin_warmup_steps and training):
            return ops.convert_to_tensor(self.margin_factor)
        step = ops.convert_to_tensor(self.warmup_step)
        factor = margins.linear_warmup(step, self.margin_warmup_steps)
        self.margin_factor.assign(factor)
        self.warmup_step.assign(ops.minimum(step + 1, self.margin_warmup_steps))
        return factor

    def _scale_for_step(self, cos, labels, training, non_target_weight=1.0):
        """The scale of this call; the adaptive scale is updated from a training batch first."""
        if self.scale != "adaptive":
            return self.scale_value
        scale = ops.convert_to_tensor(self.adaptive_scale)
        if training:
            log_sum, theta = margins.adacos_batch_statistics(cos, labels, scale)
            # under tf.distribute: the statistics of the global batch
            log_sum, theta = cross_replica_concat([log_sum, theta])
            scale = margins.adacos_scale_from_statistics(
                log_sum, theta, non_target_weight, maximum=margins.adacos_scale(self.num_classes)
            )
            self.adaptive_scale.assign(scale)
        return scale

    def call(self, embeddings, labels=None, training=None):
        if labels is None:
            return ops.convert_to_tensor(self.scale_value, "float32") * self.cosines(embeddings)
        labels = validated_labels(labels, embeddings, self.num_classes)
        partial_fc = self.sample_rate < 1.0
        if partial_fc and training:
            return self._add_cross_entropy(*self._sampled_call(embeddings, labels))
        logits = self._margin_logits(self.cosines(embeddings), labels, training, norms=self._norms(embeddings))
        if partial_fc:
            self._add_cross_entropy(logits, labels)
        return logits

    def _norms(self, embeddings):
        """‖x‖ `(batch,)` for heads whose margin depends on it (`uses_norms`), else None."""
        return self.embedding_norms(embeddings)[:, 0] if self.uses_norms else None

    def target_with_margin(self, cos_target, factor, training, norms=None):
        """The target cosine after the margin in this call, `(batch,)`.

        `margin_target(cos_target, factor)` here; heads whose margin depends
        on the call (a random draw, the embedding norms, running statistics)
        override this. `norms` is `‖x‖` per row when `uses_norms` is set.
        """
        return self.margin_target(cos_target, factor)

    def _margin_logits(self, cos, labels, training, non_target_weight=1.0, norms=None):
        """`s · cos θ_j` with the margin on each row's target column (`labels` index the columns of `cos`)."""
        scale = self._scale_for_step(cos, labels, training, non_target_weight)
        factor = self._factor_for_step(training)
        self._track(scale, factor)
        cos_target = margins.target_values(cos, labels)
        shift = self.target_with_margin(cos_target, factor, training, norms) - cos_target
        if self.gradient == "detached":
            shift = ops.stop_gradient(shift)
        return margins.shift_target(cos, labels, shift, scale)

    def _sampled_call(self, embeddings, labels):
        """A Partial FC training step: the margin logits of the sampled classes `(batch, k)` and the remapped labels."""
        k = self.num_sampled_classes
        batch = embeddings.shape[0]
        if batch is not None and batch > k and k < self.num_classes:
            raise ValueError(
                f"`sample_rate={self.sample_rate}` keeps {k} of {self.num_classes} classes per step, fewer than "
                f"the batch size {batch}, so a batch's classes might not all be kept. Raise `sample_rate` to at "
                f"least {min(1.0, batch / self.num_classes):.3g}."
            )
        classes, positions = class_sampling.sample_classes(labels, self.num_classes, k, self.seed_generator)
        rows = class_sampling.take_class_rows(self.kernel, classes, self.num_subcenters)
        cos = margins.cosine_similarity(embeddings, rows, self.compute_dtype, kernel_layout="rows")
        cos = margins.max_over_subcenters(cos, self.num_subcenters)
        sampled_labels = ops.take(positions, labels)
        logits = self._margin_logits(cos, sampled_labels, True, (self.num_classes - 1) / (k - 1),
                                     norms=self._norms(embeddings))
        return logits, sampled_labels

    def _add_cross_entropy(self, logits, labels):
        """Adds the mean softmax cross-entropy with `add_loss`; returns the per-example values."""
        per_example = ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        self.add_loss(ops.mean(per_example))
        return per_example

    def _track(self, scale, factor):
        for name, value in (("margin_factor", factor), ("scale", scale)):
            if name in self._trackers:
                self._trackers[name].update_state(value)

    def _current_factor(self, factor):
        return ops.convert_to_tensor(self.margin_factor) if factor is None else factor

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "scale": self.scale,
                "margin_warmup_steps": self.margin_warmup_steps,
                "sample_rate": self.sample_rate,
                "seed": self.seed,
            }
        )
        return config
