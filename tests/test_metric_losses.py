"""Contrastive and triplet losses against brute-force loops over pairs and triplets."""

import numpy as np
import pytest
from keras.ops import convert_to_numpy

import reference as ref
from backend_utils import input_gradient
from keras_margin import losses

pytestmark = pytest.mark.jax_ci  # backend-neutral: CI runs it on JAX too
DISTANCES = ["squared_euclidean", "euclidean", "cosine"]
MINING = ["semi_hard", "batch_hard", "batch_all"]


def batches(seed):
    """Random small batches with repeated labels, plus the degenerate ones."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(12, 5)).astype("float32")
    yield "random", rng.integers(0, 4, size=12), x
    yield "pairs", np.repeat(np.arange(5), 2), rng.normal(size=(10, 3)).astype("float32")
    yield "one_class", np.zeros(8, int), rng.normal(size=(8, 4)).astype("float32")
    yield "all_distinct", np.arange(8), rng.normal(size=(8, 4)).astype("float32")
    dup = rng.normal(size=(9, 4)).astype("float32")
    dup[1] = dup[0]  # same class duplicate: d(a, p) = 0
    dup[5] = dup[2]  # duplicate across classes: d(a, n) = 0
    yield "duplicates", np.array([0, 0, 1, 1, 2, 2, 0, 1, 2]), dup
    # quantized embeddings make exact distance ties between positives and negatives
    grid = rng.integers(-1, 2, size=(12, 2)).astype("float32")
    yield "ties", rng.integers(0, 3, size=12), grid


@pytest.mark.parametrize("distance", DISTANCES)
def test_contrastive_matches_loops(distance):
    for seed in range(3):
        for name, labels, x in batches(seed):
            got = float(losses.ContrastiveLoss(margin=1.5, distance=distance)(labels.astype("float32"), x))
            want = ref.contrastive(labels, x, 1.5, distance)
            assert got == pytest.approx(want, rel=1e-4, abs=1e-5), name


@pytest.mark.parametrize("soft", [False, True])
@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MINING)
def test_triplet_matches_loops(mining, distance, normalize, soft):
    for seed in range(3):
        for name, labels, x in batches(seed):
            loss = losses.TripletLoss(margin=0.3, mining=mining, distance=distance, normalize=normalize, soft=soft)
            got = float(loss(labels.astype("float32"), x))
            want = ref.triplet(labels, x, 0.3, mining, distance, normalize, soft)
            assert got == pytest.approx(want, rel=1e-4, abs=1e-5), name


@pytest.mark.parametrize("make,reference", [
    (lambda r: losses.ContrastiveLoss(margin=1.0, reduction=r),
     lambda y, x, w, r: ref.contrastive(y, x, 1.0, "euclidean", w, r)),
    *[(lambda r, m=m: losses.TripletLoss(mining=m, reduction=r),
       lambda y, x, w, r, m=m: ref.triplet(y, x, 0.2, m, "squared_euclidean", True, False, w, r)) for m in MINING],
])
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
def test_sample_weight_and_reduction(make, reference, reduction):
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, size=10)
    x = rng.normal(size=(10, 4)).astype("float32")
    weights = rng.uniform(0.0, 2.0, size=10)
    weights[3] = 0.0
    got = float(make(reduction)(labels, x, sample_weight=weights.astype("float32")))
    want = reference(labels, x, weights, "sum" if reduction == "sum" else "mean")
    assert got == pytest.approx(want, rel=1e-4, abs=1e-5)


def test_pair_form_contrastive_loss():
    same = np.array([1, 0, 0, 1, 0], "float32")
    d = np.array([0.3, 0.2, 1.4, 0.0, 0.99], "float32")
    want = [0.5 * 0.09, 0.5 * 0.64, 0.0, 0.0, 0.5 * 0.01**2]
    np.testing.assert_allclose(convert_to_numpy(losses.contrastive_loss(same, d, margin=1.0)), want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("loss", [
    losses.ContrastiveLoss(distance="euclidean"), losses.ContrastiveLoss(distance="cosine"),
    *[losses.TripletLoss(mining=m, distance=d, normalize=n) for m in MINING for d in DISTANCES for n in (True, False)],
])
def test_gradients_finite_at_zero_distance(loss):
    # every embedding duplicated, one zero vector: distances of exactly 0 everywhere
    base = np.array([[1.0, 2.0, 0.5], [0.0, 0.0, 0.0], [-1.0, 0.5, 2.0]], "float32")
    x = np.concatenate([base, base])
    labels = np.array([0, 1, 2, 0, 1, 2])
    grad_x = input_gradient(loss, labels, x)
    assert np.all(np.isfinite(grad_x))


@pytest.mark.parametrize("mining", MINING)
@pytest.mark.parametrize("labels", [np.zeros(6, int), np.arange(6)])
def test_no_valid_triplet_gives_zero_loss_and_zero_gradient(mining, labels):
    x = np.random.default_rng(1).normal(size=(6, 3)).astype("float32")
    loss = losses.TripletLoss(mining=mining)
    assert float(loss(labels, x)) == 0.0
    assert np.all(input_gradient(loss, labels, x) == 0.0)


def test_single_example_batch_gives_zero_contrastive_loss():
    assert float(losses.ContrastiveLoss()(np.array([3]), np.ones((1, 4), "float32"))) == 0.0


def test_large_batch_fits_in_quadratic_memory():
    # B = 1024: a B³ float32 tensor would need 4 GiB; these run in O(B²).
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 100, size=1024)
    x = rng.normal(size=(1024, 64)).astype("float32")
    for mining in MINING:
        value = float(losses.TripletLoss(mining=mining)(labels, x))
        assert np.isfinite(value) and value > 0

