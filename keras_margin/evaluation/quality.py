"""Face quality from the embedding norm (MagFace), and verification with low-quality pairs rejected."""

import numpy as np

from keras_margin._validation import check_number
from keras_margin.evaluation.verification import pair_scores


def embedding_quality(embeddings):
    """The quality score of MagFace: the L2 norm of each raw (un-normalized) embedding.

    Args:
        embeddings: array `(num_images, dim)`, the embedding network's output
            before any normalization (e.g. a backbone trained with
            `MagFaceHead`, whose final BatchNormalization sets the norm).

    Returns:
        float64 array `(num_images,)`.

    Example:

    ```pycon
    >>> embedding_quality(np.array([[3.0, 4.0], [0.0, 2.0]]))
    array([5., 2.])
    ```
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    if embeddings.ndim != 2:
        raise ValueError(f"`embeddings` must have shape (num_images, dim). Received: {embeddings.shape}")
    return np.linalg.norm(embeddings, axis=1)


def quality_filtered_verification(embeddings1, embeddings2, same, quality1=None, quality2=None,
                                  fractions=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8), fmr=1e-3,
                                  metric="cosine"):
    """The error-versus-reject curve: FNMR at a fixed FMR as the lowest-quality pairs are dropped.

    A pair's quality is the smaller of its two images' qualities. The
    threshold is set once, on all pairs: the smallest score at which at most
    `fmr` of the different-identity pairs are accepted (a pair is accepted
    when its score is ≥ the threshold). Then, for each fraction f, the
    ⌊f·n⌋ pairs of lowest quality are dropped and the false non-match rate
    of the remaining same-identity pairs is reported at that threshold.
    A quality score that tracks recognizability makes the curve fall.

    Args:
        embeddings1: array `(num_pairs, dim)`, raw embeddings of each pair's
            first image (normalized here for the scores).
        embeddings2: array `(num_pairs, dim)`, raw embeddings of each pair's
            second image.
        same: bool array `(num_pairs,)`.
        quality1: quality of each pair's first image `(num_pairs,)`;
            default: `embedding_quality(embeddings1)`.
        quality2: quality of each pair's second image `(num_pairs,)`;
            default: `embedding_quality(embeddings2)`.
        fractions: the rejected fractions, each in [0, 1).
        fmr: the false-match rate that fixes the threshold, in (0, 1).
        metric: `"cosine"` or `"euclidean"`, as in `verification_report`.

    Returns:
        A dict with `fractions`, `fnmr` (one per fraction), `num_genuine`
        (same-identity pairs kept per fraction), `threshold` and `fmr`.

    Example:

    ```pycon
    >>> curve = quality_filtered_verification(embedder(images1), embedder(images2), same)
    >>> keras_margin.plot.quality_filtered_figure({"MagFace": curve})
    ```
    """
    scores = pair_scores(embeddings1, embeddings2, metric)
    same = np.asarray(same)
    if same.shape != scores.shape or not np.isin(same, (0, 1)).all():
        raise ValueError(f"`same` must be booleans of shape ({len(scores)},). Received: shape {same.shape}")
    same = same.astype(bool)
    if same.all() or not same.any():
        raise ValueError("`same` needs both same-identity and different-identity pairs.")
    fmr = check_number("fmr", fmr, low=0.0, high=1.0, low_open=True, high_open=True)
    fractions = np.asarray([check_number("fractions", f, low=0.0, high=1.0, high_open=True) for f in fractions])
    quality1 = embedding_quality(embeddings1) if quality1 is None else np.asarray(quality1, np.float64)
    quality2 = embedding_quality(embeddings2) if quality2 is None else np.asarray(quality2, np.float64)
    if quality1.shape != scores.shape or quality2.shape != scores.shape:
        raise ValueError(
            f"`quality1` and `quality2` must have shape ({len(scores)},). "
            f"Received: {quality1.shape} and {quality2.shape}"
        )
    threshold = _threshold_at_fmr(scores[~same], fmr)
    order = np.argsort(np.minimum(quality1, quality2), kind="stable")  # lowest quality first
    fnmr, kept = [], []
    for fraction in fractions:
        keep = order[int(np.floor(fraction * len(scores))):]
        genuine = scores[keep][same[keep]]
        kept.append(len(genuine))
        fnmr.append(float(np.mean(genuine < threshold)) if len(genuine) else float("nan"))
    return {"fractions": fractions, "fnmr": np.asarray(fnmr), "num_genuine": np.asarray(kept),
            "threshold": threshold, "fmr": fmr}


def _threshold_at_fmr(impostor_scores, fmr):
    """The smallest threshold at which at most `fmr` of the impostor scores are ≥ it.

    With K = ⌊fmr·n⌋ impostors allowed, that is just above the (K+1)-th
    largest impostor score: every impostor at or below it is rejected.
    """
    descending = np.sort(impostor_scores)[::-1]
    allowed = int(np.floor(fmr * len(descending)))
    return float(np.nextafter(descending[allowed], np.inf))
