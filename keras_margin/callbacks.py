"""Training-time callbacks: margin schedules, and face verification on held-out pairs or `.bin` sets."""

import math
import os

import keras
import numpy as np

from keras_margin._validation import check_choice, check_number
from keras_margin.evaluation.embeddings import flip_embeddings
from keras_margin.evaluation.verification import verification_report
from keras_margin.layers.margin_head import ScaledCosineHead

__all__ = [
    "VerificationCallback",
    "MarginScheduler",
    "AngleStatistics",
]


class VerificationCallback(keras.callbacks.Callback):
    """Runs the verification protocol on pairs during training: every few epochs or steps.

    Embeds both images of every pair with `embedding_model`, calls
    `keras_margin.evaluation.verification_report` (k-fold accuracy: no
    threshold is tuned on the pairs it scores) and writes into the epoch's
    logs, so History, TensorBoard, `EarlyStopping` and `ModelCheckpoint` see them.
    One set of pairs (a dataset) gives

    - `{prefix}verification_accuracy` (k-fold accuracy),
    - `{prefix}auc`,
    - `{prefix}tar@far=<far>` for each of `far_targets` (e.g. `val_tar@far=1e-3`).

    Named sets (insightface `.bin` files, or a dict of name → pairs) give
    one set of keys each: `{prefix}{name}_accuracy`, `{prefix}{name}_auc`,
    `{prefix}{name}_tar@far=<far>` (e.g. `val_lfw_accuracy`, `val_cfp_fp_auc`),
    and, with `verbose=1`, print the line insightface users know:
    `[lfw][2000] Accuracy-Flip: 0.99817+-0.00229` (step, then the k-fold
    accuracy and its std over folds).

    With `every_steps`, the evaluation runs after every `every_steps`
    training steps (the optimizer's iteration count, as insightface's
    `CallBackVerification` every 2,000 steps); the epoch logs then hold the
    latest results, and `history` every evaluation.

    Keras runs callbacks in list order, so put this one before the callbacks
    that read its keys. The epoch's progress line is printed before
    callbacks run and does not show them; `verbose=1` prints them.

    Args:
        pairs_dataset: the pairs: a `tf.data.Dataset` (or iterable) of
            `(image1, image2, same)`, batched or not (unbatched elements are
            batched by 256), e.g. from `IdentityDataset.verification_pairs`;
            or a `.bin` path, or a list of them (named by file, `lfw.bin` →
            `lfw`); or a dict of name → dataset or `.bin` path.
        embedding_model: the model mapping images to embeddings (the
            backbone inside the training model, sharing its weights).
        every: evaluate every this many epochs (default 1, or never at epoch
            ends when `every_steps` is given).
        every_steps: evaluate every this many training steps instead.
        num_folds: k of the k-fold accuracy.
        far_targets: false-accept rates for TAR@FAR.
        metric: `"cosine"` or `"euclidean"`.
        flip: add the embeddings of mirrored images (test-time augmentation);
            default: on for `.bin` files (insightface's Accuracy-Flip), off
            for datasets.
        prefix: prefix of the log keys.
        verbose: 1 prints the results after each evaluation.
        preprocess: per-image function for the `.bin` images (default:
            `face_preprocessing` to the embedding model's input size and
            channels, values in [-1, 1]).

    Example:

    ```pycon
    >>> verification = VerificationCallback(["lfw.bin", "cfp_fp.bin", "agedb_30.bin"], embedder,
    ...                                     every_steps=2000, verbose=1)
    >>> model.fit(batches, epochs=20, callbacks=[verification])   # val_lfw_accuracy, ...
    ```
    """

    def __init__(self, pairs_dataset, embedding_model, every=None, every_steps=None, num_folds=10,
                 far_targets=(1e-3,), metric="cosine", flip=None, prefix="val_", verbose=0, preprocess=None):
        super().__init__()
        self.embedding_model = embedding_model
        self.every_steps = None if every_steps is None else check_number("every_steps", every_steps, low=1, integer=True)
        if every is None:
            every = 1 if every_steps is None else None
        self.every = None if every is None else check_number("every", every, low=1, integer=True)
        self.num_folds = num_folds
        self.far_targets = tuple(far_targets)
        self.metric = check_choice("metric", metric, ("cosine", "euclidean"))
        self.prefix = prefix
        self.verbose = verbose
        self._sets = self._named_sets(pairs_dataset, flip, preprocess)
        self.last_report = None
        self.reports = {}
        self.history = []
        self._latest = {}

    def _named_sets(self, pairs, flip, preprocess):
        """[(name or None, pairs dataset, flip)]; `None` is the unnamed single set."""
        if isinstance(pairs, (str, os.PathLike)):
            pairs = [pairs]
        if isinstance(pairs, (list, tuple)) and pairs and all(isinstance(p, (str, os.PathLike)) for p in pairs):
            pairs = {os.path.splitext(os.path.basename(os.fspath(p)))[0]: p for p in pairs}
        named = isinstance(pairs, dict)
        sets = []
        for name, value in (pairs.items() if named else [(None, pairs)]):
            is_bin = isinstance(value, (str, os.PathLike))
            if is_bin:
                value = self._bin_pairs(value, preprocess)
            sets.append((name, value, is_bin if flip is None else bool(flip)))
        if not sets:
            raise ValueError("`pairs_dataset` names no pairs.")
        return sets

    def _bin_pairs(self, path, preprocess):
        from keras_margin.data.insightface_bin import pairs_from_bin
        from keras_margin.data.preprocessing import face_preprocessing

        if preprocess is None:
            shape = tuple(self.embedding_model.input_shape[1:])
            size = shape[:2] if len(shape) == 3 and None not in shape[:2] else None
            channels = shape[2] if len(shape) == 3 and shape[2] in (1, 3) else None
            preprocess = face_preprocessing(size, channels)
        return pairs_from_bin(path, preprocess)

    def _embed_pairs(self, dataset, flip):
        spec = getattr(dataset, "element_spec", None)
        if spec is not None and len(spec[2].shape) == 0:  # unbatched: `same` is a scalar
            dataset = dataset.batch(256)
        first, second, same = [], [], []
        for a, b, s in dataset:
            first.append(flip_embeddings(self.embedding_model, [a], flip=flip))
            second.append(flip_embeddings(self.embedding_model, [b], flip=flip))
            same.append(np.asarray(s).astype(bool).reshape(-1))
        return np.concatenate(first), np.concatenate(second), np.concatenate(same)

    def evaluate(self, step=None):
        """Runs the protocol on every set now; returns the log keys and values."""
        results = {}
        for name, dataset, flip in self._sets:
            report = verification_report(
                *self._embed_pairs(dataset, flip), num_folds=self.num_folds, far_targets=self.far_targets,
                metric=self.metric,
            )
            self.reports[name] = report
            key = f"{self.prefix}{name}_" if name is not None else self.prefix
            results[f"{key}{'accuracy' if name is not None else 'verification_accuracy'}"] = report["accuracy"]
            results[f"{key}auc"] = report["auc"]
            results.update({f"{key}tar@far={far_name(far)}": tar for far, tar in report["tar_at_far"].items()})
            if name is not None and self.verbose:
                print(f"[{name}][{step}] Accuracy{'-Flip' if flip else ''}: "
                      f"{report['accuracy']:1.5f}+-{report['accuracy_std']:1.5f}")
        self.last_report = self.reports[self._sets[0][0]]
        self.history.append((step, results))
        self._latest = results
        if self.verbose:
            print(" - ".join(f"{key}: {value:.4f}" for key, value in results.items()))
        return results

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_end(self, batch, logs=None):
        if self.every_steps is not None:
            step = self._step()
            if step % self.every_steps == 0:
                sync = getattr(self.model, "jax_state_sync", None)
                if sync is not None:  # the JAX trainer holds the variables' values outside them during fit
                    sync()
                self.evaluate(step)

    def on_epoch_end(self, epoch, logs=None):
        evaluated = self.every is not None and (epoch + 1) % self.every == 0
        if evaluated:
            self.evaluate(self._step())
        if logs is not None and (evaluated or self.every_steps is not None):
            logs.update(self._latest)


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

    ```pycon
    >>> cosine_ramp = lambda step: 0.5 - 0.5 * math.cos(math.pi * min(step, 2000) / 2000)
    >>> model.fit(dataset, epochs=20, callbacks=[MarginScheduler(cosine_ramp)])
    ```
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
            from keras_margin._walk import nested_layers

            heads = [layer for layer in nested_layers(self.model) if isinstance(layer, ScaledCosineHead)]
        if not heads:
            raise ValueError(
                "MarginScheduler found no scaled-cosine margin head (ArcMarginHead, CosMarginHead, CombinedMarginHead, "
                "CurricularFaceHead, MagFaceHead, AdaFaceHead, ElasticArcMarginHead, ElasticCosMarginHead) in the model."
            )
        for head in heads:
            if not isinstance(head, ScaledCosineHead):
                raise ValueError(
                    "`heads` must be scaled-cosine margin heads (ArcMarginHead, CosMarginHead, CombinedMarginHead and the "
                    "adaptive heads). "
                    f"Received: {type(head).__name__}"
                )
            if head.margin_warmup_steps:
                raise ValueError(
                    f"Head {head.name!r} has margin_warmup_steps={head.margin_warmup_steps}, which sets the same "
                    "weight as MarginScheduler; use one of them (margin_warmup_steps=0 with a scheduler)."
                )
        self._heads = heads

    def _set_factor(self, position):
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
            self._set_factor(int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)))

    def on_epoch_begin(self, epoch, logs=None):
        if self.unit == "epoch":
            self._set_factor(epoch)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["margin_factor"] = self._heads[0].current_margin_factor


class AngleStatistics(keras.callbacks.Callback):
    """Distributions of angles during training, as the ArcFace paper plots them.

    At the end of every `every`-th epoch it embeds a fixed set of training
    images and, optionally, the images of held-out verification pairs
    (no augmentation, no flip), and writes quantiles, in degrees, into the
    epoch's logs (so History and TensorBoard record them):

    - `{prefix}target_p<q>`: θ_y, between each training embedding and the
      weight of its class (the closest sub-center);
    - `{prefix}nontarget_p<q>`: min over j ≠ y of θ_j, the nearest wrong
      class weight;
    - `{prefix}genuine_p<q>` / `{prefix}impostor_p<q>`: between the two
      embeddings of same-identity / different-identity held-out pairs.

    A margin head shows its effect as a gap between the target and the
    non-target quantiles; what it buys on unseen people shows in the gap
    between the genuine and the impostor ones. The angles of every
    evaluation are also kept in `angles`, a list of `(epoch, dict of
    arrays)`, for histograms.

    Args:
        embedding_model: the model mapping images to embeddings.
        head: the classifier whose weights the training embeddings are
            compared with: a margin head (its `cosines`), a
            `NormalizedDense` or a `keras.layers.Dense` (its kernel columns;
            the bias is ignored).
        images: training images, an array `(n, height, width, channels)`.
        labels: their classes, integers `(n,)`.
        pairs: optional `(first_images, second_images, same)` arrays of
            held-out pairs.
        quantiles: the quantiles to log, in (0, 1).
        every: evaluate every this many epochs.
        batch_size: images per model call.
        prefix: prefix of the log keys.

    Example:

    ```pycon
    >>> angles = AngleStatistics(embedder, head, train_images[:1024], train_labels[:1024])
    >>> history = model.fit(batches, epochs=20, callbacks=[angles])
    >>> history.history["angle_target_p50"], history.history["angle_nontarget_p50"]
    ```
    """

    def __init__(self, embedding_model, head, images, labels, pairs=None, quantiles=(0.1, 0.5, 0.9), every=1,
                 batch_size=256, prefix="angle_"):
        super().__init__()
        self.embedding_model = embedding_model
        self.head = head
        self.images = np.asarray(images)
        self.labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if self.images.ndim != 4 or len(self.images) != len(self.labels) or not len(self.labels):
            raise ValueError(
                "`images` must be a non-empty array (n, height, width, channels) and `labels` (n,). "
                f"Received: images.shape={self.images.shape}, labels.shape={self.labels.shape}"
            )
        if pairs is not None:
            first, second, same = (np.asarray(part) for part in pairs)
            same = same.reshape(-1).astype(bool)
            if first.shape != second.shape or first.ndim != 4 or len(first) != len(same):
                raise ValueError(
                    "`pairs` must be (first_images, second_images, same) with images (n, height, width, "
                    f"channels) and same (n,). Received shapes: {first.shape}, {second.shape}, {same.shape}"
                )
            if same.all() or not same.any():
                raise ValueError("`pairs` needs both same-identity and different-identity pairs.")
            pairs = (first, second, same)
        self.pairs = pairs
        self.quantiles = tuple(check_number("quantiles", q, low=0.0, high=1.0, low_open=True, high_open=True)
                               for q in quantiles)
        self.every = check_number("every", every, low=1, integer=True)
        self.batch_size = check_number("batch_size", batch_size, low=1, integer=True)
        self.prefix = prefix
        self.angles = []

    def _embed(self, images):
        return np.concatenate([
            keras.ops.convert_to_numpy(keras.ops.cast(
                self.embedding_model(images[i:i + self.batch_size], training=False), "float32"))
            for i in range(0, len(images), self.batch_size)
        ]).astype(np.float64)

    def _class_cosines(self, embeddings):
        """cos θ_j, `(n, classes)`, in float64."""
        from keras_margin.layers.margin_head import MarginHead

        if isinstance(self.head, MarginHead):
            cos = self.head.cosines(keras.ops.convert_to_tensor(embeddings.astype(np.float32)))
            return keras.ops.convert_to_numpy(cos).astype(np.float64)
        kernel = getattr(self.head, "kernel", None)
        if kernel is None:
            raise ValueError(f"`head` must be a margin head or a layer with a `kernel`. Received: {self.head!r}")
        kernel = np.asarray(keras.ops.convert_to_numpy(kernel), dtype=np.float64)
        kernel = kernel / np.maximum(np.linalg.norm(kernel, axis=0, keepdims=True), 1e-12)
        units = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
        return units @ kernel

    def compute(self):
        """The angles now, in degrees: a dict of arrays `target`, `nontarget` (and `genuine`, `impostor`)."""
        cos = self._class_cosines(self._embed(self.images))
        if self.labels.min() < 0 or self.labels.max() >= cos.shape[1]:
            raise ValueError(f"`labels` must lie in [0, {cos.shape[1]}).")
        rows = np.arange(len(self.labels))
        target = cos[rows, self.labels]
        others = cos.copy()
        others[rows, self.labels] = -np.inf
        angles = {"target": _degrees(target), "nontarget": _degrees(others.max(axis=1))}
        if self.pairs is not None:
            first, second, same = self.pairs
            a, b = self._embed(first), self._embed(second)
            cosine = np.sum(a * b, axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-24)
            angles["genuine"] = _degrees(cosine[same])
            angles["impostor"] = _degrees(cosine[~same])
        return angles

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:  # the JAX trainer holds the variables' values outside them during fit
            sync()
        angles = self.compute()
        self.angles.append((epoch, angles))
        if logs is not None:
            for kind, values in angles.items():
                for q in self.quantiles:
                    logs[f"{self.prefix}{kind}_p{q * 100:g}"] = float(np.quantile(values, q))


def _degrees(cosines):
    return np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
