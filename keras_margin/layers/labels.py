"""Label handling shared by the layers that take `labels=`."""

import keras
import numpy as np
from keras import ops


def concrete_values(x):
    """The values of `x` as a NumPy array when it holds values now (eager), None while tracing a graph."""
    if keras.backend.is_keras_tensor(x):
        return None
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return ops.convert_to_numpy(x) if tf.executing_eagerly() else None
    if backend == "jax":
        import jax

        try:  # a tracer (jit, grad, vmap, eval_shape) refuses to become an array
            return ops.convert_to_numpy(x)
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            return None
    return ops.convert_to_numpy(x)


def is_concrete(x):
    """True when `x` holds values now (eager), False while tracing a graph."""
    return concrete_values(x) is not None


def check_label_shape(labels_shape, embeddings_shape):
    """Raises unless labels are `(batch,)` or `(batch, 1)` with the embeddings' batch."""
    labels_shape, embeddings_shape = tuple(labels_shape), tuple(embeddings_shape)
    if not (len(labels_shape) == 1 or (len(labels_shape) == 2 and labels_shape[-1] == 1)):
        raise ValueError(f"`labels` must have shape (batch,) or (batch, 1). Received: labels.shape={labels_shape}")
    batch, label_batch = embeddings_shape[0], labels_shape[0]
    if batch is not None and label_batch is not None and batch != label_batch:
        raise ValueError(
            "`labels` and `embeddings` must have the same batch size. Received: "
            f"labels.shape={labels_shape}, embeddings.shape={embeddings_shape}"
        )


def validated_labels(labels, embeddings, num_classes):
    """Checks `labels` and returns them as an int32 vector `(batch,)`.

    Accepts shape `(batch,)` or `(batch, 1)`, any integer dtype, or a float
    tensor holding whole numbers. Out-of-range or fractional labels raise
    when the values are known (eager); inside a compiled function they cannot
    be checked.
    """
    labels = ops.convert_to_tensor(labels)
    check_label_shape(labels.shape, embeddings.shape)
    labels = ops.reshape(labels, (-1,))
    dtype = keras.backend.standardize_dtype(labels.dtype)
    if "int" not in dtype and "float" not in dtype:
        raise ValueError(f"`labels` must hold integer class ids. Received dtype {dtype}")
    values = concrete_values(labels)
    if values is not None:
        check_label_values(values, num_classes)
    return ops.cast(labels, "int32")


def labels_to_one_hot(labels, embeddings, num_classes):
    """Validates `labels` (see `validated_labels`) and returns their float32 one-hot, `(batch, num_classes)`.

    Inside a compiled function an out-of-range label gives an all-zero row.
    """
    return ops.one_hot(validated_labels(labels, embeddings, num_classes), num_classes, dtype="float32")


def check_label_values(labels, num_classes):
    labels = np.asarray(labels)
    if labels.dtype.kind == "f" and not np.all(labels == np.round(labels)):
        raise ValueError(
            "`labels` must hold integer class ids; a float tensor is accepted only when its "
            f"values are whole numbers. Received: {labels[labels != np.round(labels)][:10].tolist()}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)]
        raise ValueError(
            f"`labels` must be class ids in [0, {num_classes}) (num_classes={num_classes}). "
            f"Received out-of-range values: {bad[:10].tolist()}"
        )
