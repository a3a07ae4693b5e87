"""Face quality (MagFace's norm) and the error-versus-reject curve, against brute-force loops."""

import math

import numpy as np
import pytest

from keras_margin import evaluation


def brute_force_curve(a, b, same, fractions, fmr):
    """Threshold by trying every candidate; then drop pairs one by one in order of quality."""
    def cosine(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    scores = [cosine(u, v) for u, v in zip(a, b)]
    impostors = [s for s, g in zip(scores, same) if not g]
    candidates = sorted(set(impostors) | {math.inf})
    allowed = [t for t in candidates if sum(s >= t for s in impostors) <= fmr * len(impostors)]
    lowest_allowed_impostor = max((s for s in impostors if s < min(allowed)), default=None)
    quality = [min(np.linalg.norm(u), np.linalg.norm(v)) for u, v in zip(a, b)]
    ranked = sorted(range(len(scores)), key=lambda i: quality[i])
    rates = []
    for fraction in fractions:
        kept = ranked[int(math.floor(fraction * len(scores))):]
        genuine = [scores[i] for i in kept if same[i]]
        # accepted: strictly above every rejected impostor score
        rates.append(sum(s <= lowest_allowed_impostor for s in genuine) / len(genuine))
    return rates


def test_embedding_quality_is_the_norm(rng):
    x = rng.normal(size=(7, 5))
    np.testing.assert_allclose(evaluation.embedding_quality(x), [math.sqrt(sum(v * v for v in row)) for row in x])
    with pytest.raises(ValueError, match="embeddings"):
        evaluation.embedding_quality(np.zeros(3))


@pytest.mark.parametrize("fmr", [1e-2, 0.05])
def test_quality_filtered_verification_equals_brute_force(rng, fmr):
    n = 400
    same = rng.random(n) < 0.5
    a = rng.normal(size=(n, 6))
    noise = rng.uniform(0.1, 2.0, size=(n, 1))  # noisier pairs get a lower quality (norm)
    b = np.where(same[:, None], a + noise * rng.normal(size=(n, 6)), rng.normal(size=(n, 6)))
    a *= 10 / noise
    fractions = [0.0, 0.25, 0.5, 0.75]
    curve = evaluation.quality_filtered_verification(a, b * 10 / noise, same, fractions=fractions, fmr=fmr)
    np.testing.assert_allclose(curve["fnmr"], brute_force_curve(a, b * 10 / noise, same, fractions, fmr))
    assert curve["fnmr"][-1] < curve["fnmr"][0]  # rejecting noisy pairs lowers the error
    assert list(curve["num_genuine"]) == [
        sum(same[i] for i in np.argsort(np.minimum(np.linalg.norm(a, axis=1), np.linalg.norm(b * 10 / noise, axis=1)),
                                        kind="stable")[int(f * n):]) for f in fractions]


def test_quality_filtered_verification_with_given_qualities_and_errors(rng):
    a, b = rng.normal(size=(2, 20, 4))
    same = np.arange(20) % 2 == 0
    curve = evaluation.quality_filtered_verification(a, b, same, np.ones(20), np.ones(20), fractions=[0.0])
    assert curve["fractions"].tolist() == [0.0]
    with pytest.raises(ValueError, match="both same-identity and different-identity"):
        evaluation.quality_filtered_verification(a, b, np.ones(20, bool))
    with pytest.raises(ValueError, match="fractions"):
        evaluation.quality_filtered_verification(a, b, same, fractions=[1.0])
    with pytest.raises(ValueError, match="fmr"):
        evaluation.quality_filtered_verification(a, b, same, fmr=0.0)
    with pytest.raises(ValueError, match="quality1"):
        evaluation.quality_filtered_verification(a, b, same, quality1=np.ones(3))
