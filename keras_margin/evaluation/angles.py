"""Angle statistics of the ArcFace paper, in degrees: features to class weights, and between weights."""

import numpy as np


def _unit_columns(matrix):
    matrix = np.asarray(matrix, dtype=np.float64)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=0, keepdims=True), 1e-12)


def _check_kernel(kernel):
    kernel = np.asarray(kernel)
    if kernel.ndim != 2:
        raise ValueError(f"`kernel` must have shape (dim, num_classes). Received: kernel.shape={kernel.shape}")
    return kernel


def intra_class_angle(embeddings, labels, kernel, num_subcenters=1):
    """Mean angle, in degrees, between each embedding and the weight of its class.

    ArcFace's L_intra is this angle in radians divided by π.

    Args:
        embeddings: array `(num_examples, dim)`.
        labels: integer array `(num_examples,)`.
        kernel: a head's `kernel`, `(dim, num_classes · num_subcenters)`,
            class-major when there are sub-centers.
        num_subcenters: sub-centers per class; the closest one counts;
            default 1.

    Returns:
        A float, in degrees.

    Example:

    ```pycon
    >>> round(intra_class_angle(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([0, 0]), np.eye(2)), 6)
    22.5
    ```
    """
    kernel = _check_kernel(kernel)
    embeddings = np.asarray(embeddings, dtype=np.float64)
    labels = np.asarray(labels).reshape(-1).astype(int)
    num_classes = kernel.shape[1] // num_subcenters
    if embeddings.ndim != 2 or embeddings.shape[1] != kernel.shape[0] or len(labels) != len(embeddings):
        raise ValueError(
            "Expected embeddings (n, dim), labels (n,) and kernel (dim, classes). "
            f"Received: {embeddings.shape}, {labels.shape}, {kernel.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"`labels` must lie in [0, {num_classes}).")
    units = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    weights = _unit_columns(kernel).reshape(kernel.shape[0], num_classes, num_subcenters)
    cosines = np.einsum("nd,ndk->nk", units, weights[:, labels, :].transpose(1, 0, 2)).max(axis=1)
    return float(np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0))).mean())


def inter_class_angle(kernel):
    """Mean angle, in degrees, between the weights of two different classes (over distinct pairs).

    Args:
        kernel: a head's `kernel`, `(dim, num_classes)`, one class weight per
            column; at least two columns.

    Returns:
        A float, in degrees.

    Example:

    ```pycon
    >>> inter_class_angle(np.eye(3))
    90.0
    ```
    """
    kernel = _check_kernel(kernel)
    if kernel.shape[1] < 2:
        raise ValueError("`kernel` needs at least two classes.")
    weights = _unit_columns(kernel)
    cosines = np.clip(weights.T @ weights, -1.0, 1.0)
    upper = np.triu_indices(kernel.shape[1], k=1)
    return float(np.degrees(np.arccos(cosines[upper])).mean())
