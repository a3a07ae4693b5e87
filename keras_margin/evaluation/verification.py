"""The face-verification protocol: k-fold accuracy, ROC, AUC, EER and TAR@FAR on pairs."""

import numpy as np

from keras_margin._validation import check_choice, check_number

METRICS = ("cosine", "euclidean")


def pair_scores(embeddings1, embeddings2, metric="cosine"):
    """Similarity of each pair of L2-normalized embeddings (higher means more alike).

    Args:
        embeddings1: array `(num_pairs, dim)`, the first image of each pair.
        embeddings2: array `(num_pairs, dim)`, the second image of each pair.
        metric: `"cosine"` (cosine similarity, in [-1, 1]) or `"euclidean"`
            (minus the distance between the normalized embeddings, in [-2, 0]).

    Returns:
        float64 array `(num_pairs,)`.

    Example:

    ```pycon
    >>> pair_scores(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 1.0]]))
    array([1., 0.])
    ```
    """
    check_choice("metric", metric, METRICS)
    a = _as_embeddings("embeddings1", embeddings1)
    b = _as_embeddings("embeddings2", embeddings2)
    if a.shape != b.shape:
        raise ValueError(
            f"`embeddings1` and `embeddings2` must have the same shape. Received: {a.shape} and {b.shape}"
        )
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    if metric == "cosine":
        return np.sum(a * b, axis=1)
    return -np.linalg.norm(a - b, axis=1)


def roc(scores, same):
    """The ROC of scores against pair labels, one point per distinct score.

    Args:
        scores: float array `(num_pairs,)`, higher meaning more alike (e.g.
            from `pair_scores`).
        same: bool array `(num_pairs,)`, whether a pair shows one identity;
            it needs pairs of both kinds.

    Returns:
        `(fpr, tpr, thresholds)`: thresholds decreasing, starting at +inf
        (the point (0, 0)); a pair is accepted when its score is ≥ the threshold.

    Example:

    ```pycon
    >>> fpr, tpr, thresholds = roc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]))
    >>> tpr
    array([0. , 0.5, 0.5, 1. , 1. ])
    ```
    """
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    scores, same = scores[order], same[order]
    # the last index of each run of equal scores
    last_of_run = np.r_[np.nonzero(np.diff(scores))[0], len(scores) - 1]
    true_accepts = np.cumsum(same)[last_of_run]
    false_accepts = np.cumsum(~same)[last_of_run]
    tpr = np.r_[0.0, true_accepts / same.sum()]
    fpr = np.r_[0.0, false_accepts / (~same).sum()]
    thresholds = np.r_[np.inf, scores[last_of_run]]
    return fpr, tpr, thresholds


def tar_at_far(fpr, tpr, far):
    """The best true-accept rate among ROC points whose false-accept rate is at most `far`.

    Args:
        fpr: false-accept rates of the ROC points, an array (from `roc`).
        tpr: true-accept rates of the same points, an array (from `roc`).
        far: the false-accept rate allowed, in `[0, 1]`.

    Returns:
        A float in `[0, 1]`.

    Example:

    ```pycon
    >>> fpr, tpr, _ = roc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]))
    >>> tar_at_far(fpr, tpr, far=0.0)
    0.5
    ```
    """
    return float(np.max(tpr[fpr <= far]))


def equal_error_rate(fpr, tpr):
    """Where the false-accept rate equals the false-reject rate, linear between ROC points.

    Args:
        fpr: false-accept rates of the ROC points, an array (from `roc`).
        tpr: true-accept rates of the same points, an array (from `roc`).

    Returns:
        The equal error rate, a float in `[0, 1]`.

    Example:

    ```pycon
    >>> fpr, tpr, _ = roc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False]))
    >>> equal_error_rate(fpr, tpr)
    0.5
    ```
    """
    fnr = 1.0 - tpr
    gap = fnr - fpr  # decreases from 1 to -1 along the ROC
    i = int(np.nonzero(gap <= 0)[0][0])
    if i == 0 or gap[i] == 0:
        return float(fpr[i])
    t = gap[i - 1] / (gap[i - 1] - gap[i])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def best_threshold(scores, same):
    """The threshold maximizing accuracy, searched over the midpoints of the sorted scores.

    Candidates are the midpoints between consecutive distinct scores, and one
    point below the smallest and above the largest score (accept all / none).
    Pairs with a score above the threshold are predicted "same". Among equally
    accurate thresholds the smallest is taken.

    Args:
        scores: float NumPy array `(num_pairs,)`, higher meaning more alike.
        same: bool NumPy array `(num_pairs,)`, whether a pair shows one
            identity.

    Returns:
        `(threshold, accuracy)`.

    Example:

    ```pycon
    >>> threshold, accuracy = best_threshold(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, True, False, False]))
    >>> float(threshold), float(accuracy)
    (0.55, 1.0)
    ```
    """
    order = np.argsort(scores, kind="stable")
    scores, same = scores[order], same[order]
    distinct = np.r_[True, np.diff(scores) > 0]  # first of each run of equal scores
    cut = np.r_[np.nonzero(distinct)[0], len(scores)]  # predict "same" for scores[cut:]
    negatives_below = np.r_[0, np.cumsum(~same)][cut]
    positives_above = same.sum() - np.r_[0, np.cumsum(same)][cut]
    correct = negatives_below + positives_above
    best = int(np.argmax(correct))
    lower = scores[cut[best] - 1] if cut[best] > 0 else scores[0] - 1.0
    upper = scores[cut[best]] if cut[best] < len(scores) else scores[-1] + 1.0
    return (lower + upper) / 2.0, correct[best] / len(scores)


def verification_report(
    embeddings1,
    embeddings2,
    same,
    num_folds=10,
    far_targets=(1e-3, 1e-4),
    metric="cosine",
):
    """Evaluates embeddings on verification pairs, as in the LFW protocol.

    Accuracy is k-fold: the pairs are split, in order and without shuffling,
    into `num_folds` contiguous blocks; for each block the threshold that
    maximizes accuracy on the other blocks (`best_threshold`) is applied to
    it. So no threshold is tuned on the pairs it is scored on. The ROC, AUC,
    EER and TAR@FAR use all pairs (they involve no threshold choice).

    Args:
        embeddings1: array `(num_pairs, dim)`, the first image of each
            pair; L2-normalized here.
        embeddings2: array `(num_pairs, dim)`, the second image of each
            pair; L2-normalized here.
        same: bool array `(num_pairs,)`, whether a pair shows one identity.
        num_folds: k of the k-fold accuracy (LFW: 10).
        far_targets: false-accept rates at which to report the true-accept rate.
        metric: `"cosine"` (similarity) or `"euclidean"` (distance).

    Returns:
        A dict with `accuracy`, `accuracy_std` (over folds), `threshold` (mean
        of the fold thresholds: a similarity for cosine, a distance for
        euclidean), `auc`, `eer`, `tar_at_far` (dict far → TAR), `roc` (dict of
        `fpr`, `tpr`, `thresholds` arrays, thresholds in the metric's units),
        `num_pairs`, `num_folds` and `metric`.

    Example:

    ```pycon
    >>> report = verification_report(embedder(images1), embedder(images2), same)
    >>> print(f"{report['accuracy']:.4f} ± {report['accuracy_std']:.4f}")
    ```
    """
    scores = pair_scores(embeddings1, embeddings2, metric)
    same = np.asarray(same)
    if same.shape != scores.shape:
        raise ValueError(f"`same` must have shape ({len(scores)},). Received: same.shape={same.shape}")
    if same.dtype != bool:
        if not np.isin(same, (0, 1)).all():
            raise ValueError("`same` must hold booleans (or 0 / 1).")
        same = same.astype(bool)
    num_folds = check_number("num_folds", num_folds, low=2, integer=True)
    far_targets = tuple(check_number("far_targets", f, low=0, high=1, low_open=True) for f in far_targets)
    if len(scores) < num_folds:
        raise ValueError(f"Need at least `num_folds`={num_folds} pairs. Received: {len(scores)} pairs")
    if same.all() or not same.any():
        raise ValueError("`same` must contain both same-identity and different-identity pairs.")

    fold_accuracies, fold_thresholds = [], []
    for held_out in np.array_split(np.arange(len(scores)), num_folds):
        train = np.ones(len(scores), dtype=bool)
        train[held_out] = False
        threshold, _ = best_threshold(scores[train], same[train])
        fold_accuracies.append(np.mean((scores[held_out] > threshold) == same[held_out]))
        fold_thresholds.append(threshold)

    fpr, tpr, thresholds = roc(scores, same)
    sign = 1.0 if metric == "cosine" else -1.0  # euclidean scores are minus distances
    return {
        "accuracy": float(np.mean(fold_accuracies)),
        "accuracy_std": float(np.std(fold_accuracies)),
        "threshold": float(sign * np.mean(fold_thresholds)),
        "auc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2.0),  # trapezoids
        "eer": equal_error_rate(fpr, tpr),
        "tar_at_far": {far: tar_at_far(fpr, tpr, far) for far in far_targets},
        "roc": {"fpr": fpr, "tpr": tpr, "thresholds": sign * thresholds},
        "num_pairs": int(len(scores)),
        "num_folds": num_folds,
        "metric": metric,
    }


def _as_embeddings(name, value):
    value = np.asarray(value, dtype=np.float64)
    if value.ndim != 2:
        raise ValueError(f"`{name}` must have shape (num_pairs, dim). Received: {name}.shape={value.shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    return value
