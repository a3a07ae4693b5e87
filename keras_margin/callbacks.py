"""Training-time callbacks: face verification on held-out pairs at epoch end."""

import keras
import numpy as np

from keras_margin._validation import check_number
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
