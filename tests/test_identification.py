"""1:N identification against brute-force loops over probes and gallery identities."""

import numpy as np
import pytest

from keras_margin import evaluation
from keras_margin.evaluation import identification


def brute_force(gallery, gallery_labels, probes, probe_labels, ranks, fpir_targets):
    def cosine(u, v):
        return float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)))

    identities = sorted(set(gallery_labels))
    results = []  # (mated, rank, true score, top score)
    for probe, label in zip(probes, probe_labels):
        best = {c: max(cosine(probe, g) for g, l in zip(gallery, gallery_labels) if l == c) for c in identities}
        top = max(best.values())
        if label in best:
            rank = 1 + sum(score > best[label] for c, score in best.items() if c != label)
            results.append((True, rank, best[label], top))
        else:
            results.append((False, None, None, top))
    mated = [r for r in results if r[0]]
    non_mated_tops = [r[3] for r in results if not r[0]]
    rank_k = {k: sum(r[1] <= k for r in mated) / len(mated) for k in ranks}
    tpir = {}
    for target in fpir_targets:
        # the smallest threshold among candidates (the non-mated scores, nudged up, or -inf) with FPIR ≤ target
        candidates = sorted({np.nextafter(s, np.inf) for s in non_mated_tops} | {-np.inf})
        threshold = min(t for t in candidates if sum(s >= t for s in non_mated_tops) <= target * len(non_mated_tops))
        tpir[target] = sum(r[1] == 1 and r[2] >= threshold for r in mated) / len(mated)
    return rank_k, tpir


@pytest.mark.parametrize("small_blocks", [False, True])
def test_identification_equals_brute_force(rng, monkeypatch, small_blocks):
    if small_blocks:  # several probe blocks and gallery chunks, split at identity boundaries
        monkeypatch.setattr(identification, "_BLOCK_VALUES", 40)
    centers = rng.normal(size=(30, 8))
    gallery_labels = rng.integers(0, 20, size=70)  # 20 enrolled identities, several images each
    gallery = centers[gallery_labels] + 0.8 * rng.normal(size=(70, 8))
    probe_labels = rng.integers(0, 30, size=90)  # identities 20-29 are unknown
    probes = centers[probe_labels] + 0.8 * rng.normal(size=(90, 8))
    ranks, targets = (1, 2, 5), (0.05, 0.2)
    report = evaluation.identification_report(gallery, gallery_labels, probes, probe_labels, ranks, targets)
    if small_blocks:
        identities, blocks = identification.identity_scores(gallery, gallery_labels, probes, gallery_chunk=7)
        assert len(list(blocks)) > 1
    rank_k, tpir = brute_force(gallery, gallery_labels, probes, probe_labels, ranks, targets)
    for k in ranks:
        assert report["rank_k"][k] == pytest.approx(rank_k[k])
    for target in targets:
        assert report["tpir_at_fpir"][target] == pytest.approx(tpir[target])
    assert report["num_mated"] == int(np.sum(probe_labels < 20))
    assert np.all(np.diff(report["cmc"]) >= 0) and len(report["cmc"]) == 5


def test_gallery_chunks_split_at_identity_boundaries(rng):
    gallery_labels = np.repeat(np.arange(6), [1, 5, 2, 7, 1, 3])
    gallery = rng.normal(size=(len(gallery_labels), 4))
    probes = rng.normal(size=(5, 4))
    identities, blocks = identification.identity_scores(gallery, gallery_labels, probes, gallery_chunk=3)
    [(rows, scores)] = list(blocks)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(probes) @ unit(gallery).T
    for c in identities:
        np.testing.assert_allclose(scores[:, c], similarity[:, gallery_labels == c].max(axis=1), rtol=1e-5)


def test_closed_set_only_and_errors(rng):
    gallery = rng.normal(size=(10, 3))
    labels = np.arange(10)
    report = evaluation.identification_report(gallery, labels, gallery, labels)
    assert report["rank_k"][1] == 1.0 and "tpir_at_fpir" not in report  # every probe is its own gallery image
    with pytest.raises(ValueError, match="No probe label is in the gallery"):
        evaluation.identification_report(gallery, labels, gallery, labels + 100)
    with pytest.raises(ValueError, match="NaN"):
        evaluation.identification_report(np.full((2, 3), np.nan), [0, 1], gallery, labels)
    with pytest.raises(ValueError, match="fpir_targets"):
        evaluation.identification_report(gallery, labels, gallery, labels, fpir_targets=(1.0,))
    with pytest.raises(ValueError, match="differ in dim"):
        evaluation.identification_report(gallery, labels, rng.normal(size=(2, 4)), [0, 1])
