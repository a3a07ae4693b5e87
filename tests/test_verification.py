"""Verification protocol and angle statistics against scikit-learn and brute-force loops."""

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from keras_margin import evaluation


def tied_scores(rng, n=400):
    same = rng.random(n) < 0.4
    scores = np.round(rng.normal(size=n) + 1.2 * same, 1)  # rounding makes many ties
    return scores, same


def embeddings_for_scores(scores):
    """Unit 2-D embedding pairs whose cosine similarity is exactly `scores` (in [-1, 1])."""
    angles = np.arccos(np.clip(scores, -1, 1))
    first = np.stack([np.ones_like(scores), np.zeros_like(scores)], axis=1)
    second = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return first, second


def test_roc_matches_sklearn_with_ties(rng):
    scores, same = tied_scores(rng)
    fpr, tpr, thresholds = evaluation.roc(scores, same)
    ref_fpr, ref_tpr, ref_thresholds = roc_curve(same, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, ref_fpr)
    np.testing.assert_allclose(tpr, ref_tpr)
    np.testing.assert_allclose(thresholds[1:], ref_thresholds[1:])
    assert thresholds[0] == np.inf


def test_report_auc_and_tar_at_far_match_references(rng):
    scores, same = tied_scores(rng, n=2000)
    scores = np.clip(scores / 4, -1, 1)
    report = evaluation.verification_report(*embeddings_for_scores(scores), same, far_targets=(0.01, 0.1, 0.5))
    recovered = evaluation.pair_scores(*embeddings_for_scores(scores))
    assert report["auc"] == pytest.approx(roc_auc_score(same, recovered), abs=1e-12)
    # TAR@FAR by brute force: every threshold, accept scores >= it
    for far, tar in report["tar_at_far"].items():
        best = 0.0
        for t in np.unique(recovered):
            accepted = recovered >= t
            if accepted[~same].mean() <= far:
                best = max(best, accepted[same].mean())
        assert tar == pytest.approx(best), far


@pytest.mark.parametrize(
    "scores, same, expected",
    [
        ([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 0.5),
        ([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [1, 1, 0, 1, 0, 0], 1 / 3),
        ([0.9, 0.5, 0.5, 0.1], [1, 1, 0, 0], 0.25),  # the crossing lies inside a tied (diagonal) segment
        ([0.9, 0.8, 0.2, 0.1], [1, 1, 0, 0], 0.0),
    ],
)
def test_equal_error_rate_closed_forms(scores, same, expected):
    fpr, tpr, _ = evaluation.roc(np.array(scores), np.array(same, bool))
    assert evaluation.equal_error_rate(fpr, tpr) == pytest.approx(expected)


def brute_force_threshold(scores, same):
    values = np.unique(scores)
    candidates = np.r_[values[0] - 1, (values[1:] + values[:-1]) / 2, values[-1] + 1]
    accuracies = [np.mean((scores > t) == same) for t in candidates]
    best = int(np.argmax(accuracies))  # the first, i.e. smallest, of the best thresholds
    return candidates[best], accuracies[best]


def test_best_threshold_equals_brute_force(rng):
    for _ in range(20):
        scores, same = tied_scores(rng, n=int(rng.integers(5, 60)))
        threshold, accuracy = evaluation.best_threshold(scores, same)
        ref_threshold, ref_accuracy = brute_force_threshold(scores, same)
        assert accuracy == pytest.approx(ref_accuracy)
        assert threshold == pytest.approx(ref_threshold)


def test_kfold_accuracy_equals_a_brute_force_loop(rng):
    scores, same = tied_scores(rng, n=603)
    scores = np.clip(scores / 4, -1, 1)
    report = evaluation.verification_report(*embeddings_for_scores(scores), same, num_folds=10)
    recovered = evaluation.pair_scores(*embeddings_for_scores(scores))
    # contiguous folds as numpy.array_split would make them: the first 603 % 10 folds get one extra pair
    sizes = [61] * 3 + [60] * 7
    starts = np.cumsum([0] + sizes)
    accuracies, thresholds = [], []
    for k in range(10):
        test = np.zeros(603, bool)
        test[starts[k]:starts[k + 1]] = True
        threshold, _ = brute_force_threshold(recovered[~test], same[~test])
        accuracies.append(np.mean((recovered[test] > threshold) == same[test]))
        thresholds.append(threshold)
    assert report["accuracy"] == pytest.approx(np.mean(accuracies))
    assert report["accuracy_std"] == pytest.approx(np.std(accuracies))
    assert report["threshold"] == pytest.approx(np.mean(thresholds))


def test_separable_and_random_scores(rng):
    n = 4000
    same = rng.random(n) < 0.5
    separable = np.where(same, rng.uniform(0.5, 1, n), rng.uniform(-1, 0.3, n))
    report = evaluation.verification_report(*embeddings_for_scores(separable), same)
    assert report["accuracy"] == 1.0 and report["auc"] == 1.0 and report["eer"] == 0.0
    assert report["tar_at_far"][1e-3] == 1.0
    noise = rng.uniform(-1, 1, n)
    report = evaluation.verification_report(*embeddings_for_scores(noise), same)
    assert abs(report["accuracy"] - 0.5) < 0.05 and abs(report["auc"] - 0.5) < 0.05


def test_euclidean_metric_ranks_like_cosine(rng):
    a, b = rng.normal(size=(2, 300, 8))
    same = rng.random(300) < 0.5
    b[same] = a[same] + 0.8 * rng.normal(size=(same.sum(), 8))
    cosine = evaluation.verification_report(a, b, same, metric="cosine")
    euclidean = evaluation.verification_report(a, b, same, metric="euclidean")
    # ‖u − v‖² = 2 − 2 cos θ for unit vectors: the same ranking, so the same ROC and accuracy
    assert euclidean["auc"] == pytest.approx(cosine["auc"])
    assert euclidean["accuracy"] == pytest.approx(cosine["accuracy"])
    np.testing.assert_allclose(euclidean["roc"]["tpr"], cosine["roc"]["tpr"])
    np.testing.assert_allclose(euclidean["roc"]["thresholds"][1:] ** 2, 2 - 2 * cosine["roc"]["thresholds"][1:], atol=1e-9)
    assert 0 < euclidean["threshold"] < 2


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(same=np.ones(20, bool)), "both"),
        (dict(num_folds=30), "at least `num_folds`"),
        (dict(embeddings1=np.full((20, 3), np.nan)), "NaN"),
        (dict(embeddings2=np.ones((19, 3))), "same shape"),
        (dict(metric="manhattan"), "metric"),
        (dict(num_folds=1), "num_folds"),
        (dict(far_targets=(0.0,)), "far_targets"),
        (dict(same=np.arange(20)), "booleans"),
        (dict(embeddings1=np.ones(20)), r"\(num_pairs, dim\)"),
    ],
)
def test_report_errors(rng, change, match):
    kwargs = dict(embeddings1=rng.normal(size=(20, 3)), embeddings2=rng.normal(size=(20, 3)),
                  same=np.arange(20) % 2 == 0)
    kwargs.update(change)
    with pytest.raises(ValueError, match=match):
        evaluation.verification_report(**kwargs)


def test_angle_statistics_equal_loops(rng):
    embeddings = rng.normal(size=(30, 5))
    labels = rng.integers(0, 4, size=30)
    kernel = rng.normal(size=(5, 4))

    def angle(u, v):
        return math.degrees(math.acos(max(-1.0, min(1.0, float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))))))

    intra = np.mean([angle(embeddings[i], kernel[:, labels[i]]) for i in range(30)])
    inter = np.mean([angle(kernel[:, i], kernel[:, j]) for i in range(4) for j in range(i + 1, 4)])
    assert evaluation.intra_class_angle(embeddings, labels, kernel) == pytest.approx(intra)
    assert evaluation.inter_class_angle(kernel) == pytest.approx(inter)
    # sub-centers (class-major): the closest of a class's columns counts
    kernel3 = rng.normal(size=(5, 4 * 3))
    intra3 = np.mean([min(angle(embeddings[i], kernel3[:, 3 * labels[i] + k]) for k in range(3)) for i in range(30)])
    assert evaluation.intra_class_angle(embeddings, labels, kernel3, num_subcenters=3) == pytest.approx(intra3)


def test_angle_statistics_closed_forms():
    # orthogonal class weights are 90° apart; features on their class weight have angle 0
    assert evaluation.inter_class_angle(np.eye(3)) == pytest.approx(90.0)
    assert evaluation.intra_class_angle(2 * np.eye(3), [0, 1, 2], np.eye(3)) == pytest.approx(0.0, abs=1e-6)
    # the 3 vertices of a triangle on the circle: 120° apart
    angles = np.radians([0, 120, 240])
    assert evaluation.inter_class_angle(np.stack([np.cos(angles), np.sin(angles)])) == pytest.approx(120.0)
    with pytest.raises(ValueError, match="labels"):
        evaluation.intra_class_angle(np.eye(3), [0, 1, 3], np.eye(3))
    with pytest.raises(ValueError, match="two classes"):
        evaluation.inter_class_angle(np.ones((3, 1)))
