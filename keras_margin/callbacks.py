"""Training-time callbacks: margin schedules, and face verification on held-out pairs at epoch end."""

import math

import keras
import numpy as np

from keras_margin._validation import check_choice, check_number
from keras_margin.layers.margin_head import ScaledCosineHead
from keras_margin.metrics.embeddings import flip_embeddings
from keras_margin.metrics.verification import verification_report


class VerificationCallback(keras.callbacks.Callback):
    """Runs the verification protocol on a pairs dataset at the end of an epoch.

    Embeds both images of every pair with `embedding_model`, calls
    `keras_margin.metrics.verification_report` (k-fold accuracy: no
    threshold is tuned on the pairs it scores) and writes into the epoch's
    logs, so History, TensorBoard, `EarlyStopping` and `ModelCheckpoint` see them:

    - `{prefix}verification_accuracy` (k-fold accuracy),
    - `{prefix}auc`,
    - `{prefix}tar@far=<far>` for each of `far_targets` (e.g. `val_tar@far=1e-3`).

    Keras runs callbacks in list order, so put this one before the callbacks
    that read its keys. The epoch's progress line is printed before
    callbacks run and does not show them; `verbose=1` prints them.

    Args:
        pairs_dataset: a `tf.data.Dataset` (or iterable) of `(image1, image2,
            same)`, batched or not (unbatched elements are batched by 256),
            e.g. from `IdentityDataset.verification_pairs`.
        embedding_model: the model mapping images to embeddings (the
            backbone inside the training model, sharing its weights).
        every: evaluate every this many epochs (and never in between).
        num_folds: k of the k-fold accuracy.
        far_targets: false-accept rates for TAR@FAR.
        metric: `"cosine"` or `"euclidean"`.
        flip: add the embeddings of mirrored images (test-time augmentation).
        prefix: prefix of the log keys.
        verbose: 1 prints the results after each evaluation.
    """

    def __init__(self, pairs_dataset, embedding_model, every=1, num_folds=10, far_targets=(1e-3,),
                 metric="cosine", flip=False, prefix="val_", verbose=0):
        super().__init__()
        self.pairs_dataset = pairs_dataset
        self.embedding_model = embedding_model
        self.every = check_number("every", every, low=1, integer=True)
        self.num_folds = num_folds
        self.far_targets = tuple(far_targets)
        self.metric = metric
        self.flip = flip
        self.prefix = prefix
        self.verbose = verbose
        self.last_report = None

    def _pairs(self):
        dataset = self.pairs_dataset
        spec = getattr(dataset, "element_spec", None)
        if spec is not None and len(spec[2].shape) == 0:  # unbatched: `same` is a scalar
            dataset = dataset.batch(256)
        first, second, same = [], [], []
        for a, b, s in dataset:
            first.append(flip_embeddings(self.embedding_model, [a], flip=self.flip))
            second.append(flip_embeddings(self.embedding_model, [b], flip=self.flip))
            same.append(np.asarray(s).astype(bool).reshape(-1))
        return np.concatenate(first), np.concatenate(second), np.concatenate(same)

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        report = verification_report(
            *self._pairs(), num_folds=self.num_folds, far_targets=self.far_targets, metric=self.metric
        )
        self.last_report = report
        results = {
            f"{self.prefix}verification_accuracy": report["accuracy"],
            f"{self.prefix}auc": report["auc"],
            **{f"{self.prefix}tar@far={far_name(far)}": tar for far, tar in report["tar_at_far"].items()},
        }
        if logs is not None:
            logs.update(results)
        if self.verbose:
            print(" - ".join(f"{key}: {value:.4f}" for key, value in results.items()))


def far_name(far):
    """1e-3 → "1e-3", 0.0015 → "1.5e-3": the FAR as written in papers, for log keys."""
    return np.format_float_scientific(far, trim="-", exp_digits=1)


class MarginScheduler(keras.callbacks.Callback):
    """Sets the margin of the normalized heads from a schedule, like `LearningRateScheduler`.

    `schedule(step)` (or `schedule(epoch)` with `unit="epoch"`) returns the
    margin factor: the fraction of each head's configured margin in effect,
    in [0, 1] (for `CombinedMarginHead` it scales m2, m3 and m1 − 1). It is
    written into the heads' `margin_factor` weight before each training
    step (or epoch), so it works with `jit_compile=True`, is saved with the
    model, and a resumed run continues the schedule: `step` is the
    optimizer's iteration count. The value is written into the epoch logs as
    `margin_factor`, so History and TensorBoard record it.

    For a linear ramp the heads' own `margin_warmup_steps` needs no
    callback; a head that has one is rejected here, since both would set the
    same weight.

    Args:
        schedule: a function of the step (or epoch) returning a number in [0, 1].
        heads: the heads to drive (default: every `ArcMarginHead`,
            `CosMarginHead` and `CombinedMarginHead` in the model).
        unit: `"step"` or `"epoch"`.

    Example:

    >>> cosine_ramp = lambda step: 0.5 - 0.5 * math.cos(math.pi * min(step, 2000) / 2000)
    >>> model.fit(dataset, epochs=20, callbacks=[MarginScheduler(cosine_ramp)])
    """

    UNITS = ("step", "epoch")

    def __init__(self, schedule, heads=None, unit="step"):
        super().__init__()
        if not callable(schedule):
            raise ValueError(f"`schedule` must be a function of the step or epoch. Received: {schedule!r}")
        self.schedule = schedule
        self.heads = None if heads is None else list(heads)
        self.unit = check_choice("unit", unit, self.UNITS)

    def on_train_begin(self, logs=None):
        heads = self.heads
        if heads is None:
            heads = [layer for layer in self.model._flatten_layers(include_self=False)
                     if isinstance(layer, ScaledCosineHead)]
        if not heads:
            raise ValueError(
                "MarginScheduler found no ArcMarginHead, CosMarginHead or CombinedMarginHead in the model."
            )
        for head in heads:
            if not isinstance(head, ScaledCosineHead):
                raise ValueError(
                    "`heads` must be ArcMarginHead, CosMarginHead or CombinedMarginHead layers. "
                    f"Received: {type(head).__name__}"
                )
            if head.margin_warmup_steps:
                raise ValueError(
                    f"Head {head.name!r} has margin_warmup_steps={head.margin_warmup_steps}, which sets the same "
                    "weight as MarginScheduler; use one of them (margin_warmup_steps=0 with a scheduler)."
                )
        self._heads = heads

    def _apply(self, position):
        factor = self.schedule(position)
        if not isinstance(factor, (int, float, np.number)) or not math.isfinite(factor) or not 0 <= factor <= 1:
            raise ValueError(
                f"`schedule` must return a margin factor in [0, 1]. Received: {factor!r} at {self.unit} {position}"
            )
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:  # the JAX trainer holds the variables' values outside them during fit
            sync()
        for head in self._heads:
            head.margin_factor.assign(float(factor))

    def on_train_batch_begin(self, batch, logs=None):
        if self.unit == "step":
            self._apply(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._apply(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["margin_factor"] = self._heads[0].current_margin_factor
