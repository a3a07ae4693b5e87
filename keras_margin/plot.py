"""Matplotlib figures of embeddings and verification results (needs the optional `matplotlib`).

- `feature_scatter`: 2-D or 3-D features coloured by class, optionally
  projected onto the unit circle / sphere, with a head's class-weight directions;
- `roc_figure`: ROC curves with a log-scale false-accept axis;
- `pair_angle_histogram`: angles of same-identity and different-identity pairs.

Functions return the matplotlib `Figure`; `save_figure` writes a PNG.
"""

import numpy as np

__all__ = [
    "feature_scatter",
    "roc_figure",
    "pair_angle_histogram",
    "quality_filtered_figure",
    "save_figure",
]


def _pyplot():
    try:
        import matplotlib

        if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
            matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError("keras_margin.plot needs matplotlib: pip install matplotlib") from error
    return plt


def feature_scatter(embeddings, labels, class_weights=None, normalize=False, ax=None, title=None,
                    max_points=5000, seed=0):
    """Scatter of 2-D or 3-D features coloured by class.

    Args:
        embeddings: array `(num_examples, 2 or 3)`.
        labels: integer array `(num_examples,)`.
        class_weights: optional `(dim, num_classes)` kernel of a head; each
            class weight is drawn as a line from the origin in its class colour.
        normalize: project the features onto the unit circle / sphere (the
            space cosine-margin heads work in), with the circle drawn.
        ax: a matplotlib Axes (a 3-D one for 3-D features); a new figure when `None`.
        title: axes title.
        max_points: plot at most this many points (a seeded random subset).
        seed: seed of that subset.

    Returns:
        The matplotlib `Figure`.

    Example:

    ```pycon
    >>> figure = feature_scatter(embeddings_2d, labels, class_weights=head.kernel.numpy(), normalize=True)
    >>> save_figure(figure, "features.png")
    ```
    """
    plt = _pyplot()
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1).astype(int)
    if embeddings.ndim != 2 or embeddings.shape[1] not in (2, 3) or len(labels) != len(embeddings):
        raise ValueError(
            "`embeddings` must have shape (n, 2) or (n, 3) and `labels` shape (n,). "
            f"Received: {embeddings.shape} and {labels.shape}"
        )
    dim = embeddings.shape[1]
    if len(embeddings) > max_points:
        keep = np.random.default_rng(seed).choice(len(embeddings), max_points, replace=False)
        embeddings, labels = embeddings[keep], labels[keep]
    if normalize:
        embeddings = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    if ax is None:
        figure = plt.figure(figsize=(5, 5))
        ax = figure.add_subplot(projection="3d" if dim == 3 else None)
    num_classes = max(int(labels.max()) + 1 if labels.size else 0,
                      0 if class_weights is None else np.shape(class_weights)[1])
    colours = plt.get_cmap("tab10" if num_classes <= 10 else "tab20")(np.arange(num_classes) % 20)
    ax.scatter(*embeddings.T, c=colours[labels], s=2, alpha=0.5, linewidths=0)
    extent = 1.0 if normalize else float(np.percentile(np.linalg.norm(embeddings, axis=1), 99)) or 1.0
    if class_weights is not None:
        weights = np.asarray(class_weights, dtype=np.float64)
        weights = weights / np.maximum(np.linalg.norm(weights, axis=0, keepdims=True), 1e-12) * extent * 1.1
        for j in range(weights.shape[1]):
            ax.plot(*[[0.0, w] for w in weights[:, j]], color=colours[j], linewidth=1.5)
    if normalize and dim == 2:
        t = np.linspace(0, 2 * np.pi, 200)
        ax.plot(np.cos(t), np.sin(t), color="0.7", linewidth=0.5)
    if dim == 2:
        ax.set_aspect("equal")
    if title:
        ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=6)
    return ax.figure


def roc_figure(reports, ax=None, min_far=None):
    """ROC curves (TAR against FAR, FAR on a log axis) of one or more verification reports.

    Args:
        reports: a `verification_report` dict, or a dict name → report for
            several curves.
        ax: a matplotlib Axes; a new figure when `None`.
        min_far: left end of the FAR axis (default: 1 / number of
            different-identity pairs, the smallest FAR that can be measured).

    Returns:
        The matplotlib `Figure`.

    Example:

    ```pycon
    >>> figure = roc_figure({"ArcFace": arcface_report, "CosFace": cosface_report})
    ```
    """
    plt = _pyplot()
    if "roc" in reports:
        reports = {"": reports}
    if ax is None:
        figure = plt.figure(figsize=(5, 4))
        ax = figure.add_subplot()
    smallest = 1.0
    for name, report in reports.items():
        fpr, tpr = np.asarray(report["roc"]["fpr"]), np.asarray(report["roc"]["tpr"])
        positive = fpr > 0
        smallest = min(smallest, float(fpr[positive].min()) if positive.any() else 1.0)
        label = f"{name} (AUC {report['auc']:.4f})" if name else f"AUC {report['auc']:.4f}"
        ax.step(fpr[positive], tpr[positive], where="post", label=label)
    ax.set_xscale("log")
    ax.set_xlim(min_far or smallest, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (FAR)")
    ax.set_ylabel("true accept rate (TAR)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return ax.figure


def pair_angle_histogram(embeddings1, embeddings2, same, bins=60, ax=None, threshold=None):
    """Histograms of the angle (degrees) between the embeddings of same and of different pairs.

    Args:
        embeddings1: array `(num_pairs, dim)`, the first image of each pair.
        embeddings2: array `(num_pairs, dim)`, the second image of each pair.
        same: bool array `(num_pairs,)`.
        bins: histogram bins over [0°, 180°].
        ax: a matplotlib Axes; a new figure when `None`.
        threshold: optional cosine-similarity threshold (e.g. a report's
            `threshold`), drawn as a vertical line at its angle.

    Returns:
        The matplotlib `Figure`.

    Example:

    ```pycon
    >>> figure = pair_angle_histogram(embeddings1, embeddings2, same, threshold=report["threshold"])
    ```
    """
    from keras_margin.evaluation.verification import pair_scores

    plt = _pyplot()
    same = np.asarray(same, dtype=bool)
    angles = np.degrees(np.arccos(np.clip(pair_scores(embeddings1, embeddings2), -1.0, 1.0)))
    if ax is None:
        figure = plt.figure(figsize=(5, 3.5))
        ax = figure.add_subplot()
    edges = np.linspace(0.0, 180.0, bins + 1)
    ax.hist(angles[same], bins=edges, alpha=0.6, label=f"same identity ({same.sum()})", density=True)
    ax.hist(angles[~same], bins=edges, alpha=0.6, label=f"different identities ({(~same).sum()})", density=True)
    if threshold is not None:
        ax.axvline(np.degrees(np.arccos(np.clip(threshold, -1.0, 1.0))), color="k", linestyle="--",
                   linewidth=1, label="threshold")
    ax.set_xlabel("angle between the pair's embeddings (degrees)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    return ax.figure


def quality_filtered_figure(curves, ax=None):
    """Error-versus-reject curves: FNMR against the fraction of lowest-quality pairs dropped.

    Args:
        curves: a `keras_margin.evaluation.quality_filtered_verification` dict, or a dict
            name → such dict for several curves.
        ax: a matplotlib Axes; a new figure when `None`.

    Returns:
        The matplotlib `Figure`.

    Example:

    ```pycon
    >>> curve = keras_margin.evaluation.quality_filtered_verification(embeddings1, embeddings2, same)
    >>> figure = quality_filtered_figure({"MagFace": curve})
    ```
    """
    plt = _pyplot()
    if "fnmr" in curves:
        curves = {"": curves}
    if ax is None:
        figure = plt.figure(figsize=(5, 3.5))
        ax = figure.add_subplot()
    fmr = None
    for name, curve in curves.items():
        ax.plot(curve["fractions"], curve["fnmr"], marker="o", markersize=3, label=name or None)
        fmr = curve["fmr"]
    ax.set_xlabel("fraction of lowest-quality pairs dropped")
    ax.set_ylabel(f"FNMR at FMR = {fmr:g}")
    ax.grid(True, alpha=0.3)
    if any(curves):
        ax.legend(fontsize=8)
    return ax.figure


def save_figure(figure, path, dpi=120):
    """Writes `figure` to `path` (PNG by its extension) and closes it.

    Args:
        figure: a matplotlib `Figure`, e.g. from `roc_figure`.
        path: output file; its extension sets the format (`.png`, `.pdf`,
            `.svg`, ...).
        dpi: resolution in dots per inch; default 120.

    Returns:
        `path`.

    Example:

    ```pycon
    >>> save_figure(roc_figure(report), "roc.png")
    ```
    """
    plt = _pyplot()
    figure.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(figure)
    return path
