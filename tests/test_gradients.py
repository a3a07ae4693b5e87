"""Gradients stay finite where the margin math is singular: cos θ = ±1."""

import keras
import numpy as np
import pytest

import reference
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


def reference_loss(x, kernel, labels, logits_fn):
    logits = logits_fn(x, kernel, labels)
    top = logits.max(axis=1, keepdims=True)
    log_z = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
    return float(np.mean(log_z - logits[np.arange(len(labels)), labels]))


EXACT_GRADIENT_HEADS = {
    "arc": (lambda: layers.ArcMarginHead(NUM_CLASSES, scale=4.0, margin=0.3),
            lambda x, k, y: reference.arc_logits(x, k, y, 4.0, 0.3)),
    "cos": (lambda: layers.CosMarginHead(NUM_CLASSES, scale=4.0, margin=0.25),
            lambda x, k, y: reference.cos_logits(x, k, y, 4.0, 0.25)),
    "combined_subcenters": (
        lambda: layers.CombinedMarginHead(NUM_CLASSES, scale=4.0, m1=1.3, m2=0.2, m3=0.1, num_subcenters=2),
        lambda x, k, y: reference.combined_logits(x, k, y, 4.0, 1.3, 0.2, 0.1, num_subcenters=2),
    ),
    "sphere_subcenters": (
        lambda: layers.SphereMarginHead(NUM_CLASSES, margin=3, lambda_base=2.0, lambda_gamma=0.0, lambda_min=2.0,
                                        num_subcenters=2),
        lambda x, k, y: reference.sphere_logits(x, k, y, 3, 2.0, num_subcenters=2),
    ),
    "large": (
        lambda: layers.LargeMarginHead(NUM_CLASSES, margin=2, lambda_base=0.5, lambda_gamma=0.0, lambda_min=0.5),
        lambda x, k, y: reference.large_logits(x, k, y, 2, 0.5),
    ),
    "arc_partial_fc_all_classes": (
        lambda: layers.ArcMarginHead(NUM_CLASSES, scale=4.0, margin=0.3, sample_rate=0.99),
        lambda x, k, y: reference.arc_logits(x, k, y, 4.0, 0.3),
    ),
}


@pytest.mark.parametrize("name", sorted(EXACT_GRADIENT_HEADS))
def test_gradients_equal_finite_differences_of_the_reference(rng, name):
    make, logits_fn = EXACT_GRADIENT_HEADS[name]
    head = make()
    x = rng.normal(size=(6, DIM))
    labels = np.array([0, 1, 2, 3, 4, 0], "int32")
    head(x.astype("float32"))
    kernel = np.array(head.kernel, np.float64)  # (dim, C·K) for every head, Partial FC included
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    grad_x, grad_kernel = loss_gradients(
        head, x.astype("float32"), labels, lambda _, logits: loss_fn(labels, logits), training=True
    )
    expected_x = reference.numerical_gradient(lambda v: reference_loss(v, kernel, labels, logits_fn), x)
    expected_kernel = reference.numerical_gradient(lambda v: reference_loss(x, v, labels, logits_fn), kernel)
    np.testing.assert_allclose(grad_x, expected_x, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grad_kernel, expected_kernel, rtol=1e-3, atol=1e-4)
