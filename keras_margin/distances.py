"""Pairwise distances between embeddings, in `keras.ops`, safe at zero.

Every function returns a float32 `(batch, batch)` matrix built from one
matrix product, so memory is O(batch²) and nothing of shape
`(batch, batch, dim)` is formed.
"""

from keras import ops

from keras_margin import margins

__all__ = [
    "safe_sqrt",
    "pairwise_squared_euclidean",
    "pairwise_euclidean",
    "pairwise_cosine_distance",
    "pairwise_distances",
]

DISTANCES = ("squared_euclidean", "euclidean", "cosine")


def safe_sqrt(x):
    """sqrt(x) for x ≥ 0 whose gradient at 0 is 0 instead of inf/NaN.

    Uses the double-`where` pattern: the square root never sees a zero, so
    neither branch's gradient is NaN.

    Args:
        x: float tensor of non-negative values (entries ≤ 0 give 0).

    Returns:
        tensor of the shape and dtype of `x`.

    Example:

    ```pycon
    >>> keras.ops.convert_to_numpy(safe_sqrt(np.array([0.0, 4.0])))
    array([0., 2.])
    ```
    """
    positive = x > 0.0
    return ops.where(positive, ops.sqrt(ops.where(positive, x, 1.0)), 0.0)


def pairwise_squared_euclidean(embeddings):
    """‖x_i − x_j‖² as ‖x_i‖² − 2·x_i·x_j + ‖x_j‖², clipped at 0, diagonal exactly 0.

    Args:
        embeddings: float tensor `(batch, dim)`, cast to float32.

    Returns:
        float32 `(batch, batch)`.
    """
    x = ops.cast(embeddings, "float32")
    squared_norms = ops.sum(ops.square(x), axis=-1)
    gram = ops.matmul(x, ops.transpose(x))
    distances = ops.expand_dims(squared_norms, 1) - 2.0 * gram + ops.expand_dims(squared_norms, 0)
    off_diagonal = 1.0 - ops.eye(ops.shape(x)[0], dtype="float32")
    return ops.maximum(distances, 0.0) * off_diagonal


def pairwise_euclidean(embeddings):
    """‖x_i − x_j‖ with a finite (zero) gradient where two embeddings coincide.

    Args:
        embeddings: float tensor `(batch, dim)`, cast to float32.

    Returns:
        float32 `(batch, batch)`, diagonal exactly 0.
    """
    return safe_sqrt(pairwise_squared_euclidean(embeddings))


def pairwise_cosine_distance(embeddings):
    """1 − cos(x_i, x_j), in `[0, 2]`; a zero embedding has distance 1 to all others.

    Args:
        embeddings: float tensor `(batch, dim)`; L2-normalized here.

    Returns:
        float32 `(batch, batch)`, diagonal exactly 0.

    Example:

    ```pycon
    >>> keras.ops.convert_to_numpy(pairwise_cosine_distance(np.array([[1.0, 0.0], [0.0, 2.0]])))
    array([[0., 1.],
           [1., 0.]], dtype=float32)
    ```
    """
    x = margins.l2_normalize(embeddings, axis=-1)
    distances = 1.0 - ops.matmul(x, ops.transpose(x))
    off_diagonal = 1.0 - ops.eye(ops.shape(x)[0], dtype="float32")
    return ops.maximum(distances, 0.0) * off_diagonal


def pairwise_distances(embeddings, distance="euclidean"):
    """Dispatches to the pairwise distance named by `distance` (one of `DISTANCES`).

    Args:
        embeddings: float tensor `(batch, dim)`.
        distance: `"euclidean"` (default), `"squared_euclidean"` or
            `"cosine"` (1 − cos θ); another name raises a ValueError.

    Returns:
        float32 `(batch, batch)`, diagonal exactly 0.

    Example:

    ```pycon
    >>> d = pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0]]), "euclidean")
    >>> float(d[0, 1])
    5.0
    ```
    """
    if distance == "squared_euclidean":
        return pairwise_squared_euclidean(embeddings)
    if distance == "euclidean":
        return pairwise_euclidean(embeddings)
    if distance == "cosine":
        return pairwise_cosine_distance(embeddings)
    raise ValueError(f"`distance` must be one of {DISTANCES}. Received: distance={distance!r}")
