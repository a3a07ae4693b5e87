"""Limits and equivalences between heads that follow from the formulas."""

import numpy as np
import pytest
from keras.ops import convert_to_numpy

import reference as ref
from keras_margin import layers

NUM_CLASSES, DIM = 9, 12


@pytest.fixture
def case(rng):
    x = rng.normal(size=(40, DIM)).astype("float32")
    kernel = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=40)
    # include exactly aligned and exactly opposite embeddings
    x[0] = 2.0 * kernel[:, labels[0]]
    x[1] = -0.5 * kernel[:, labels[1]]
    return x, kernel, labels


def logits(head, x, kernel, labels=None):
    if not head.built:
        head.build((None, DIM))
    head.kernel.assign(kernel)
    return convert_to_numpy(head(x) if labels is None else head(x, labels=labels))


@pytest.mark.parametrize(
    "head",
    [
        lambda: layers.ArcMarginHead(NUM_CLASSES, margin=0.0),
        lambda: layers.ArcMarginHead(NUM_CLASSES, margin=0.0, gradient="detached"),
        lambda: layers.CosMarginHead(NUM_CLASSES, margin=0.0),
        lambda: layers.CombinedMarginHead(NUM_CLASSES, m1=1.0, m2=0.0, m3=0.0),
        lambda: layers.SphereMarginHead(NUM_CLASSES, margin=1, lambda_base=0.0, lambda_min=0.0),
        lambda: layers.LargeMarginHead(NUM_CLASSES, margin=1, lambda_base=0.0, lambda_min=0.0),
    ],
)
def test_zero_margin_gives_the_plain_logits(case, head):
    x, kernel, labels = case
    h = head()
    np.testing.assert_allclose(logits(h, x, kernel, labels), logits(h, x, kernel), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("head_cls", [layers.SphereMarginHead, layers.LargeMarginHead])
def test_huge_lambda_gives_the_plain_logits(case, head_cls):
    x, kernel, labels = case
    h = head_cls(NUM_CLASSES, margin=4, lambda_base=1e8, lambda_min=1e8)
    # |target − plain| = |ψ − cos θ| / (1 + λ) · r ≤ 8 r / 1e8
    np.testing.assert_allclose(logits(h, x, kernel, labels), logits(h, x, kernel), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fallback", ["continuous", "insightface", "easy", "none"])
@pytest.mark.parametrize("gradient", ["exact", "detached"])
def test_combined_at_1_m_0_is_arcface(case, fallback, gradient):
    x, kernel, labels = case
    arc = layers.ArcMarginHead(NUM_CLASSES, scale=32.0, margin=0.5, fallback=fallback, gradient=gradient)
    combined = layers.CombinedMarginHead(NUM_CLASSES, scale=32.0, m1=1.0, m2=0.5, m3=0.0, fallback=fallback, gradient=gradient)
    np.testing.assert_allclose(logits(combined, x, kernel, labels), logits(arc, x, kernel, labels), atol=1e-5)


def test_combined_at_1_0_m_is_cosface(case):
    x, kernel, labels = case
    cos = layers.CosMarginHead(NUM_CLASSES, scale=32.0, margin=0.35)
    combined = layers.CombinedMarginHead(NUM_CLASSES, scale=32.0, m1=1.0, m2=0.0, m3=0.35)
    np.testing.assert_allclose(logits(combined, x, kernel, labels), logits(cos, x, kernel, labels), atol=1e-5)


def test_plain_path_of_every_normalized_head_is_the_scaled_cosine(case):
    x, kernel, _ = case
    cos = ref.cosines(x, kernel)
    for head in (layers.ArcMarginHead(NUM_CLASSES, scale=10.0), layers.CosMarginHead(NUM_CLASSES, scale=10.0),
                 layers.CombinedMarginHead(NUM_CLASSES, scale=10.0)):
        np.testing.assert_allclose(logits(head, x, kernel), 10.0 * cos, atol=1e-5)


@pytest.mark.parametrize("fallback", ["continuous", "insightface", "easy"])
def test_arc_target_never_rises_with_the_angle_and_never_exceeds_plain(rng, fallback):
    thetas = np.linspace(0.0, np.pi, 2001)
    kernel = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
    x = np.stack([ref.rotate_towards(kernel[:, 0].astype(np.float64), t, rng) for t in thetas]).astype("float32")
    labels = np.zeros(len(thetas), "int32")
    head = layers.ArcMarginHead(NUM_CLASSES, scale=1.0, margin=0.5, fallback=fallback)
    target = logits(head, x, kernel, labels)[:, 0]
    assert np.all(target <= np.cos(thetas) + 1e-6)
    if fallback != "easy":  # easy margin jumps up at θ = π/2, by design
        assert np.all(np.diff(target) <= 1e-6)
    if fallback == "continuous":
        assert np.max(np.abs(np.diff(target))) < 5e-3  # steps of π/2000 rad: no jump
