"""1:N identification: closed-set rank-k rates (the CMC curve) and open-set TPIR at FPIR, computed in blocks."""

import numpy as np

from keras_margin._validation import check_number

#: Probe-by-identity scores held at once (float32): 2^25 values, 128 MB.
_BLOCK_VALUES = 2**25


def _unit_rows(name, embeddings, order=None):
    """float32 unit rows of `embeddings` (reordered by `order` first): one copy, normalized in place."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 2 or not len(embeddings):
        raise ValueError(f"`{name}` must be a non-empty array (n, dim). Received shape {embeddings.shape}")
    rows = (embeddings[order] if order is not None else embeddings).astype(np.float32, copy=order is None)
    if not np.isfinite(rows).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    rows /= np.maximum(np.sqrt(np.einsum("ij,ij->i", rows, rows)), 1e-12)[:, None]  # no (n, dim) temporary
    return rows


def identity_scores(gallery_embeddings, gallery_labels, probe_embeddings, gallery_chunk=65536):
    """Per probe, the best cosine similarity to each gallery identity, in blocks of probes.

    The score of identity c is the maximum over its gallery images. Blocks of
    probes are sized so that a block's `(probes, identities)` float32 scores
    stay within 128 MB; the gallery is multiplied `gallery_chunk` images (or
    one identity's, if more) at a time.

    Returns:
        `(identities, blocks)`: the sorted distinct gallery labels, and a
        generator of `(probe rows, scores)`, `rows` a slice of the probes and
        `scores` float32 `(probes in the block, identities)`.
    """
    labels = np.asarray(gallery_labels).reshape(-1)
    if len(labels) != len(gallery_embeddings):
        raise ValueError(f"`gallery_labels` must have shape ({len(gallery_embeddings)},). Received: {labels.shape}")
    order = np.argsort(labels, kind="stable")  # identities contiguous
    gallery, labels = _unit_rows("gallery_embeddings", gallery_embeddings, order), labels[order]
    probes = _unit_rows("probe_embeddings", probe_embeddings)
    if gallery.shape[1] != probes.shape[1]:
        raise ValueError(f"Gallery and probe embeddings differ in dim: {gallery.shape[1]} and {probes.shape[1]}")
    identities, starts = np.unique(labels, return_index=True)
    ends = np.r_[starts[1:], len(labels)]
    probe_block = max(1, min(len(probes), _BLOCK_VALUES // len(identities)))

    def blocks():
        for first in range(0, len(probes), probe_block):
            rows = slice(first, min(first + probe_block, len(probes)))
            scores = np.empty((rows.stop - rows.start, len(identities)), np.float32)
            identity = 0
            while identity < len(identities):
                # as many whole identities as fit in one gallery chunk (at least one)
                last = max(identity + 1, np.searchsorted(ends, starts[identity] + gallery_chunk, side="right"))
                chunk = slice(starts[identity], ends[last - 1])
                similarity = probes[rows] @ gallery[chunk].T
                scores[:, identity:last] = np.maximum.reduceat(similarity, starts[identity:last] - chunk.start, axis=1)
                identity = last
            yield rows, scores

    return identities, blocks()


def identification_report(gallery_embeddings, gallery_labels, probe_embeddings, probe_labels, ranks=(1, 5, 10),
                          fpir_targets=(1e-2, 1e-1)):
    """The 1:N counterparts of the verification report.

    Each probe is compared with every gallery identity (its best-matching
    image, cosine similarity). Probes whose label is in the gallery are
    *mated*; the others are *non-mated* (unknown people).

    - Closed set (mated probes): the rank of the true identity is 1 + the
      number of other identities scoring strictly higher; `cmc[k − 1]` is
      the fraction of mated probes with rank ≤ k, `rank_k[k]` its value at
      each of `ranks`.
    - Open set: a search returns its top identity when its score is at
      least a threshold t. FPIR(t) is the fraction of non-mated probes
      whose top score is ≥ t; TPIR(t) the fraction of mated probes whose
      true identity is at rank 1 with a score ≥ t. For each FPIR target,
      t is the smallest threshold with FPIR ≤ target (just above the
      (K+1)-th highest non-mated top score, K = ⌊target·n⌋), and
      `tpir_at_fpir[target]` is TPIR there (with `thresholds[target]`).
      Needs non-mated probes.

    Memory stays bounded for galleries of 10^6 images: scores are computed
    for blocks of probes (see `identity_scores`).

    Args:
        gallery_embeddings: array `(n_gallery, dim)`, the enrolled images.
        gallery_labels: integer array `(n_gallery,)`, their identities.
        probe_embeddings: array `(n_probes, dim)`, the searched images.
        probe_labels: integer array `(n_probes,)`, their identities (labels
            absent from the gallery mark non-mated probes).
        ranks: the k of the reported rank-k rates (the CMC runs to their
            maximum); default `(1, 5, 10)`.
        fpir_targets: false-positive identification rates, each in `(0, 1)`;
            default `(1e-2, 1e-1)`.

    Returns:
        A dict with `rank_k`, `cmc`, `num_mated`, `num_non_mated`, and,
        with non-mated probes, `tpir_at_fpir` and `thresholds`.

    Example:

    ```pycon
    >>> report = identification_report(gallery, gallery_ids, probes, probe_ids)
    >>> report["rank_k"][1], report["tpir_at_fpir"][0.01]
    ```
    """
    ranks = [check_number("ranks", k, low=1, integer=True) for k in ranks]
    fpir_targets = [check_number("fpir_targets", f, low=0.0, high=1.0, low_open=True, high_open=True)
                    for f in fpir_targets]
    probe_labels = np.asarray(probe_labels).reshape(-1)
    if len(probe_labels) != len(np.asarray(probe_embeddings)):
        raise ValueError(f"`probe_labels` must have shape ({len(probe_embeddings)},). Received: {probe_labels.shape}")
    identities, blocks = identity_scores(gallery_embeddings, gallery_labels, probe_embeddings)
    position = np.searchsorted(identities, probe_labels)
    mated = (position < len(identities)) & (identities[np.minimum(position, len(identities) - 1)] == probe_labels)
    if not mated.any():
        raise ValueError("No probe label is in the gallery, so no rank can be measured.")
    max_rank = max(ranks)
    true_rank = np.zeros(len(probe_labels), np.int64)
    true_score = np.full(len(probe_labels), -np.inf)
    top_score = np.empty(len(probe_labels))
    for rows, scores in blocks:
        top_score[rows] = scores.max(axis=1)
        block_mated = np.nonzero(mated[rows])[0]
        own = scores[block_mated, position[rows][block_mated]]
        true_score[rows.start + block_mated] = own
        true_rank[rows.start + block_mated] = 1 + np.sum(scores[block_mated] > own[:, None], axis=1)
    mated_ranks = true_rank[mated]
    cmc = np.array([np.mean(mated_ranks <= k) for k in range(1, max_rank + 1)])
    report = {"rank_k": {k: float(cmc[k - 1]) for k in ranks}, "cmc": cmc,
              "num_mated": int(mated.sum()), "num_non_mated": int((~mated).sum())}
    if (~mated).any():
        non_mated = np.sort(top_score[~mated])[::-1]
        report["tpir_at_fpir"], report["thresholds"] = {}, {}
        for target in fpir_targets:
            allowed = int(np.floor(target * len(non_mated)))
            threshold = float(np.nextafter(non_mated[allowed], np.inf)) if allowed < len(non_mated) else -np.inf
            hits = (true_rank[mated] == 1) & (true_score[mated] >= threshold)
            report["tpir_at_fpir"][target] = float(np.mean(hits))
            report["thresholds"][target] = threshold
    return report
