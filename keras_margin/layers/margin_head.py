"""The common base of the margin heads: kernel, label handling, validation; and the scaled-cosine contract."""

import dataclasses
import warnings
from typing import Any

import keras
from keras import ops

from keras_margin import margins
from keras_margin._distribute import cross_replica_concat
from keras_margin._validation import check_choice, check_number, check_rank_2_shape
from keras_margin.layers import class_sampling
from keras_margin.layers.labels import check_label_shape, validated_labels
from keras_margin.metrics.latest_value import LatestValue


class MarginHead(keras.layers.Layer):
    """Base class of the heads: owns `kernel` and validates labels.

    Subclasses implement `call(embeddings, labels=None, training=None)` with
    the helpers `cosines` and `embedding_norms`.

    The kernel holds one class weight per column, `(dim, classes · K)` as in
    `keras.layers.Dense`, K sub-centers per class, class-major.

    All heads compute in float32 and return float32 logits under every dtype
    policy: the layer never autocasts its inputs (so float labels are not
    rounded to float16) and only the matrix product runs in the policy's
    compute dtype.
    """

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
            shape=(dim, self.num_classes * self.num_subcenters),
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
        cos = margins.cosine_similarity(embeddings, self.kernel, self.compute_dtype)
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


@dataclasses.dataclass(frozen=True)
class MarginContext:
    """What a head's margin may depend on besides the target cosine, for one call.

    `ScaledCosineHead` builds one per call with labels and passes it to the
    hooks `apply_margin`, `non_target_cosines` and `regularization`; a head
    never builds it itself. To evaluate a margin outside a call (a plot, a
    test), build one by hand.

    Args:
        norms: float32 `(batch,)`, the norm ‖x‖ of each embedding (with
            gradient), or `None` outside a call.
        step: int32 scalar, the warm-up's step counter before this call
            (it stops at `margin_warmup_steps`), or `None` for a head
            without a warm-up.
        training: Python bool, whether this is a training call: only then
            may a hook update the head's state or draw random numbers.
        factor: float32 scalar in `[0, 1]`, the fraction of the margin in
            effect (the warm-up's or a `MarginScheduler`'s): a head
            multiplies its margins by it, so that 0 is no margin and 1 the
            full margin.

    Example:

    ```pycon
    >>> head = keras_margin.layers.ArcMarginHead(10, margin=0.5)
    >>> context = MarginContext(norms=None, step=None, training=False, factor=1.0)
    >>> head.apply_margin(keras.ops.convert_to_tensor([0.9, 0.0]), context)   # cos(θ + 0.5)
    ```
    """

    norms: Any
    step: Any
    training: bool
    factor: Any


@keras.saving.register_keras_serializable(package="keras_margin")
class ScaledCosineHead(MarginHead):
    """Base of the heads whose logits are `s · cos θ_j` with a margin on the target.

    A head is this layer plus one method, `apply_margin(cos_target,
    context)`: the target cosine after the margin, from the true class's
    cosine `(batch,)` and a `MarginContext` (the embedding norms, the
    warm-up step, the training flag and the margin factor). The base owns
    everything else, the same way for every head: the kernel and the
    sub-centers (each class scores with its closest of `num_subcenters`
    columns), the scale, the margin warm-up, Partial FC, the logging, and
    `gradient="detached"` where a head offers it. The margin touches the
    target column only, so its cost is O(batch), not O(batch × classes).

    Two further hooks exist for heads that need them, each with one
    signature: `non_target_cosines(cos, cos_target, context)` returns the
    cosines the other logits are made of (default: `cos` unchanged;
    CurricularFace re-weights hard negatives, AdaFace clamps), and
    `regularization(context)` returns a scalar the base adds to the model's
    losses on every call with labels (default: `None`; MagFace's norm
    regularizer). A subclass overrides these methods, never `call`.

    Scale: a number, `"auto"` (the fixed AdaCos scale √2·ln(C − 1)) or
    `"adaptive"` (the dynamic AdaCos scale, recomputed from every training
    batch and kept in the non-trainable weight `adaptive_scale`; it starts
    at the fixed AdaCos scale and stays between 1 and it, see
    `keras_margin.margins.adacos_scale_from_statistics`).

    Margin warm-up: the non-trainable weight `margin_factor` is the
    `context.factor` the margin is multiplied by. With
    `margin_warmup_steps = n > 0` it is set to `min(1, t / n)` at training
    step t (t counted in the int32 weight `warmup_step`); otherwise it stays
    1 unless a `keras_margin.callbacks.MarginScheduler` sets it. All of
    these weights are saved with the model and read inside compiled
    functions.

    Partial FC (An et al., 2021): with `sample_rate = r < 1` a training call
    with labels computes the logits of ⌈r·C⌉ classes only, every class of
    the batch plus uniformly drawn others (a new draw each step, from
    `seed`), and returns them in their columns of the usual
    `(batch, num_classes)` logits; the classes not drawn get the logit
    −1e30, so softmax cross-entropy over the row is the cross-entropy over
    the kept classes and `argmax` picks a kept class. Compile with the same
    loss and metrics as any head. The kernel keeps the full head's layout,
    `(dim, C·K)`, so weights move between a sampled and a full head with
    `set_weights`; a step reads only its ⌈r·C⌉·K columns, and its kernel
    gradient is written in one pass over the kernel (the same pass plain
    SGD then makes). ⌈r·C⌉ must be at least the batch size. Evaluation
    and prediction use all classes.

    Args:
        num_classes: integer ≥ 2, the number of identities C.
        scale: `s`: a positive float, `"auto"` or `"adaptive"`; default 64.
        margin_warmup_steps: integer ≥ 0; the margin factor ramps linearly
            from 0 to 1 over this many training steps (0: none).
        sample_rate: Partial FC rate r in `(0, 1]`; default 1 (all classes).
        seed: optional integer seed of the Partial FC class sampling.
        **kwargs: `num_subcenters`, `kernel_initializer`,
            `kernel_regularizer`, `kernel_constraint` and the base
            `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        - `embeddings`: float tensor `(batch, dim)`.
        - `labels`: optional integer class ids `(batch,)` or `(batch, 1)`;
            without them the head returns the plain scaled cosines.
        - `training`: whether this is a training call: it advances the margin
            warm-up, the `"adaptive"` scale, Partial FC sampling and a head's
            own state.

    Input shape:
        `embeddings`: `(batch, dim)`.

    Output shape:
        `(batch, num_classes)`, float32, in every mode.

    Example:

    ```pycon
    >>> class HalfCosFace(ScaledCosineHead):   # s·(cos θ_y − 0.2), warm-up and all for free
    ...     def apply_margin(self, cos_target, context):
    ...         return cos_target - 0.2 * context.factor
    >>> head = HalfCosFace(10, scale=30.0, margin_warmup_steps=100, num_subcenters=2)
    >>> head(np.random.normal(size=(4, 8)), labels=[0, 1, 2, 3], training=True).shape
    (4, 10)
    ```
    """

    gradient = "exact"
    # Read by metrics.TargetAngle only: False when the target logit is not a function of cos θ_y alone
    # (drawn or norm-dependent margins), so that logits cannot be inverted to angles.
    fixed_target_margin = True

    def __init__(self, num_classes, scale=64.0, margin_warmup_steps=0, sample_rate=1.0, seed=None, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.scale = check_scale(scale, self.num_classes)
        self.margin_warmup_steps = check_number("margin_warmup_steps", margin_warmup_steps, low=0, integer=True)
        self.sample_rate = check_number("sample_rate", sample_rate, low=0.0, high=1.0, low_open=True)
        self.seed = seed
        if self.sample_rate < 1.0:
            self.num_sampled_classes = class_sampling.num_sampled_classes(self.num_classes, self.sample_rate)
            self.seed_generator = keras.random.SeedGenerator(seed)
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

    # The hooks a head overrides ---------------------------------------------

    def apply_margin(self, cos_target, context):
        """The target cosine after the margin: the one method every head defines.

        Args:
            cos_target: float32 cos θ_y of each row's true class, `(batch,)`
                in a call (any shape elsewhere: the margin is elementwise).
            context: a `MarginContext`; multiply the margins by
                `context.factor`.

        Returns:
            float32 tensor of the shape of `cos_target`. Called once per
            call with labels, so a head may update its state here when
            `context.training` (AdaFace's running statistics).
        """
        if "margin_target" in dir(type(self)):  # a head written for 0.1
            warnings.warn(
                f"{type(self).__name__} defines margin_target(cos_target, factor); heads now define "
                "apply_margin(cos_target, context) and read the factor as context.factor. margin_target is "
                "called for one more release", DeprecationWarning, stacklevel=2)
            return self.margin_target(cos_target, context.factor)
        raise NotImplementedError(f"{type(self).__name__} must define apply_margin(cos_target, context)")

    def non_target_cosines(self, cos, cos_target, context):
        """The cosines the logits are made of, before the margin's target is put in, `(batch, classes)`.

        The default returns `cos` unchanged; override it for a head that
        modulates the other logits as well.

        Args:
            cos: float32 cos θ_j, `(batch, classes)`.
            cos_target: float32 cos θ_y of each row, `(batch,)`, before the
                margin.
            context: the call's `MarginContext`.

        Returns:
            float32 `(batch, classes)`; its target column is replaced by
            the margin's target cosine.
        """
        del cos_target, context
        return cos

    def regularization(self, context):
        """A scalar added to the model's losses on every call with labels, or `None` (the default).

        Args:
            context: the call's `MarginContext`.

        Returns:
            a float32 scalar tensor, or `None` for no loss.
        """
        del context

    # The pipeline, the same for every head ----------------------------------

    def call(self, embeddings, labels=None, training=None):
        if labels is None:
            return ops.convert_to_tensor(self.scale_value, "float32") * self.cosines(embeddings)
        labels = validated_labels(labels, embeddings, self.num_classes)
        training = bool(training)
        context = self._context(embeddings, training)
        if self.sample_rate < 1.0 and training:
            logits = self._sampled_logits(embeddings, labels, context)
        else:
            logits = self._margin_logits(self.cosines(embeddings), labels, context)
        loss = self.regularization(context)
        if loss is not None:
            self.add_loss(loss)
        return logits

    def _context(self, embeddings, training):
        """The call's `MarginContext`; advances the warm-up in training."""
        norms = self.embedding_norms(embeddings)[:, 0]
        if not self.margin_warmup_steps:
            return MarginContext(norms, None, training, ops.convert_to_tensor(self.margin_factor))
        step = ops.copy(ops.convert_to_tensor(self.warmup_step))  # the value before this call
        if not training:
            return MarginContext(norms, step, training, ops.convert_to_tensor(self.margin_factor))
        factor = margins.linear_warmup(step, self.margin_warmup_steps)
        self.margin_factor.assign(factor)
        self.warmup_step.assign(ops.minimum(step + 1, self.margin_warmup_steps))
        return MarginContext(norms, step, training, factor)

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

    def _margin_logits(self, cos, labels, context, non_target_weight=1.0):
        """`s · cos θ_j` with the margin in each row's target column (`labels` index the columns of `cos`)."""
        scale = self._scale_for_step(cos, labels, context.training, non_target_weight)
        self._track(scale, context.factor)
        cos_target = margins.target_values(cos, labels)
        target = self.apply_margin(cos_target, context)
        others = self.non_target_cosines(cos, cos_target, context)
        shift = target - (cos_target if others is cos else margins.target_values(others, labels))
        if self.gradient == "detached":
            shift = ops.stop_gradient(shift)
        return margins.shift_target(others, labels, shift, scale)

    def _sampled_logits(self, embeddings, labels, context):
        """A Partial FC training step: the margin logits of the drawn classes, in their columns of `(batch, C)`."""
        k = self.num_sampled_classes
        batch = embeddings.shape[0]
        if batch is not None and batch > k and k < self.num_classes:
            raise ValueError(
                f"`sample_rate={self.sample_rate}` keeps {k} of {self.num_classes} classes per step, fewer than "
                f"the batch size {batch}, so a batch's classes might not all be kept. Raise `sample_rate` to at "
                f"least {min(1.0, batch / self.num_classes):.3g}."
            )
        classes, positions = class_sampling.sample_classes(labels, self.num_classes, k, self.seed_generator)
        kernel = class_sampling.take_class_columns(self.kernel, classes, positions, self.num_subcenters)
        cos = margins.max_over_subcenters(
            margins.cosine_similarity(embeddings, kernel, self.compute_dtype), self.num_subcenters)
        logits = self._margin_logits(cos, ops.take(positions, labels), context,
                                     non_target_weight=(self.num_classes - 1) / (k - 1))
        return class_sampling.spread_to_classes(logits, classes, positions, margins.MASKED_LOGIT)

    def _track(self, scale, factor):
        for name, value in (("margin_factor", factor), ("scale", scale)):
            if name in self._trackers:
                self._trackers[name].update_state(value)

    def load_own_variables(self, store):
        # A Partial FC head saved by keras_margin 0.1 stored its kernel transposed, (C·K, dim).
        stored = store["0"]
        if tuple(stored.shape) != tuple(self.kernel.shape) and tuple(stored.shape) == tuple(self.kernel.shape)[::-1]:
            store = {key: store[key] for key in store.keys()}  # noqa: SIM118 - an H5 entry has keys(), not iteration
            store["0"] = ops.convert_to_numpy(stored).T
        super().load_own_variables(store)

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
