"""Gradients stay finite where the margin math is singular: cos θ = ±1."""

import keras
import numpy as np
import pytest

from backend_utils import loss_gradients
from keras_margin import layers

NUM_CLASSES, DIM = 5, 8

HEADS = {
    "arc_exact": lambda: layers.ArcMarginHead(NUM_CLASSES, gradient="exact"),
    "arc_detached": lambda: layers.ArcMarginHead(NUM_CLASSES, gradient="detached"),
    "arc_insightface": lambda: layers.ArcMarginHead(NUM_CLASSES, fallback="insightface"),
    "cos": lambda: layers.CosMarginHead(NUM_CLASSES),
    "combined_exact": lambda: layers.CombinedMarginHead(NUM_CLASSES, m1=1.35, m2=0.3, m3=0.1),
    "combined_detached": lambda: layers.CombinedMarginHead(NUM_CLASSES, m1=1.35, m2=0.3, m3=0.1, gradient="detached"),
    "sphere": lambda: layers.SphereMarginHead(NUM_CLASSES, lambda_base=0.0, lambda_min=0.0),
    "large": lambda: layers.LargeMarginHead(NUM_CLASSES, lambda_base=0.0, lambda_min=0.0),
    "normalized_dense": lambda: layers.NormalizedDense(NUM_CLASSES, scale=64.0),
}


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(HEADS))
def test_gradients_are_finite_at_cos_plus_and_minus_one(rng, name, policy):
    keras.config.set_dtype_policy(policy)
    head = HEADS[name]()
    head.build((None, DIM))
    kernel = np.array(rng.normal(size=(DIM, NUM_CLASSES)), "float32")
    head.kernel.assign(kernel)
    labels = np.array([0, 1, 2, 3, 4, 0], "int32")
    # rows 0-2 exactly along their class weight (cos θ = 1), rows 3-5 exactly
    # opposite (cos θ = −1), row 5 also the zero vector's neighbour: tiny norm
    x = np.stack([kernel[:, 0], kernel[:, 1], 3 * kernel[:, 2], -kernel[:, 3], -kernel[:, 4], -1e-4 * kernel[:, 0]])
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    call_labels = None if isinstance(head, layers.NormalizedDense) else labels
    grad_x, grad_kernel = loss_gradients(head, x.astype("float32"), call_labels, _labels_for(loss_fn, labels))
    assert np.all(np.isfinite(grad_x)), grad_x
    assert np.all(np.isfinite(grad_kernel)), grad_kernel
    assert np.any(grad_kernel != 0)


def _labels_for(loss_fn, labels):
    return lambda _, logits: loss_fn(labels, logits)
