"""Each head's logits against the float64 NumPy reference in tests/reference.py."""

import math

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy

import reference as ref
from keras_margin import layers

pytestmark = pytest.mark.jax_ci  # backend-neutral: CI runs it on JAX too
NUM_CLASSES, DIM = 7, 16


def built_head(head, kernel):
    head.build((None, kernel.shape[0]))
    head.kernel.assign(kernel.astype("float32"))
    return head


def random_case(rng, batch=32, num_subcenters=1):
    x = rng.normal(size=(batch, DIM)).astype("float32") * rng.uniform(0.1, 10, size=(batch, 1))
    kernel = rng.normal(size=(DIM, NUM_CLASSES * num_subcenters)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=batch)
    return x.astype("float32"), kernel, labels


def angled_case(rng, thetas):
    """Embeddings at exactly the given angles θ from their target class weight."""
    kernel = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=len(thetas))
    x = np.stack([3.0 * ref.rotate_towards(kernel[:, y].astype(np.float64), t, rng) for t, y in zip(thetas, labels)])
    return x.astype("float32"), kernel, labels


def angles_near(m):
    eps = [0.0, 1e-3, 1e-2, 5e-2]
    near_zero = eps
    near_limit = [math.pi - m + d for d in (-1e-2, -1e-3, 1e-3, 1e-2)]
    near_pi = [math.pi - e for e in eps]
    return near_zero + near_limit + near_pi


# (constructor kwargs, the fallback the reference applies)
ARC_CASES = [
    (dict(scale=64.0, margin=0.5, fallback=fb), fb) for fb in ("continuous", "insightface", "easy", "none")
]


@pytest.mark.parametrize("kwargs,fallback", ARC_CASES)
@pytest.mark.parametrize("gradient", ["exact", "detached"])
def test_arc_margin_head_matches_reference(rng, kwargs, fallback, gradient):
    for x, kernel, labels in [random_case(rng), angled_case(rng, angles_near(kwargs["margin"]))]:
        head = built_head(layers.ArcMarginHead(NUM_CLASSES, gradient=gradient, **kwargs), kernel)
        got = convert_to_numpy(head(x, labels=labels))
        want = ref.arc_logits(x, kernel, labels, 64.0, 0.5, fallback)
        np.testing.assert_allclose(got / 64.0, want / 64.0, atol=1e-4)
        np.testing.assert_allclose(convert_to_numpy(head(x)), ref.arc_logits(x, kernel, None, 64.0, 0.5), atol=1e-4)


@pytest.mark.parametrize("margin", [0.2, 0.35, 0.7])
def test_cos_margin_head_matches_reference(rng, margin):
    for x, kernel, labels in [random_case(rng), angled_case(rng, angles_near(0.5))]:
        head = built_head(layers.CosMarginHead(NUM_CLASSES, scale=30.0, margin=margin), kernel)
        np.testing.assert_allclose(
            convert_to_numpy(head(x, labels=labels)) / 30, ref.cos_logits(x, kernel, labels, 30.0, margin) / 30, atol=1e-5
        )
        np.testing.assert_allclose(convert_to_numpy(head(x)) / 30, ref.cos_logits(x, kernel, None, 30.0, margin) / 30, atol=1e-5)


@pytest.mark.parametrize(
    "m1,m2,m3,fallback",
    [(1.0, 0.3, 0.2, "continuous"), (1.35, 0.0, 0.0, "continuous"), (1.2, 0.4, 0.1, "insightface"),
     (1.5, 0.2, 0.1, "easy"), (2.0, 0.5, 0.0, "none"), (1.0, 0.5, 0.0, "insightface")],
)
def test_combined_margin_head_matches_reference(rng, m1, m2, m3, fallback):
    limit = (math.pi - m2) / m1
    thetas = [0.0, 1e-3, 1e-2, limit - 1e-2, limit + 1e-2, 2.0, math.pi - 1e-2, math.pi]
    for x, kernel, labels in [random_case(rng), angled_case(rng, thetas)]:
        head = built_head(layers.CombinedMarginHead(NUM_CLASSES, scale=64.0, m1=m1, m2=m2, m3=m3, fallback=fallback), kernel)
        got = convert_to_numpy(head(x, labels=labels))
        want = ref.combined_logits(x, kernel, labels, 64.0, m1, m2, m3, fallback)
        # m1 ≠ 1 goes through arccos: at θ ≈ 0 a float32 cosine error of ~1e-7
        # moves θ by ~5e-4, hence the looser bound in cosine units.
        np.testing.assert_allclose(got / 64, want / 64, atol=1e-4 if m1 == 1.0 else 2e-3)


@pytest.mark.parametrize("margin", [1, 2, 3, 4])
@pytest.mark.parametrize("lam", [0.0, 5.0, 1000.0])
def test_sphere_margin_head_matches_reference(rng, margin, lam):
    thetas = [0.0, 1e-3, 1e-2] + [j * math.pi / margin + d for j in range(1, margin) for d in (-1e-3, 1e-3)]
    thetas += [math.pi - 1e-2, math.pi]
    for x, kernel, labels in [random_case(rng), angled_case(rng, thetas)]:
        head = built_head(
            layers.SphereMarginHead(NUM_CLASSES, margin=margin, lambda_base=lam, lambda_min=lam), kernel
        )
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        got = convert_to_numpy(head(x, labels=labels))
        np.testing.assert_allclose(got / norm, ref.sphere_logits(x, kernel, labels, margin, lam) / norm, atol=5e-5)
        np.testing.assert_allclose(
            convert_to_numpy(head(x)) / norm, ref.sphere_logits(x, kernel, None, margin, lam) / norm, atol=5e-6
        )


@pytest.mark.parametrize("margin", [1, 2, 3, 4])
@pytest.mark.parametrize("lam", [0.0, 3.0])
def test_large_margin_head_matches_reference(rng, margin, lam):
    thetas = [0.0, 1e-3] + [j * math.pi / margin + 1e-3 for j in range(1, margin)] + [math.pi]
    for x, kernel, labels in [random_case(rng), angled_case(rng, thetas)]:
        head = built_head(
            layers.LargeMarginHead(NUM_CLASSES, margin=margin, lambda_base=lam, lambda_min=lam), kernel
        )
        radius = np.linalg.norm(x, axis=1, keepdims=True) * np.linalg.norm(kernel, axis=0, keepdims=True)
        got = convert_to_numpy(head(x, labels=labels))
        np.testing.assert_allclose(got / radius, ref.large_logits(x, kernel, labels, margin, lam) / radius, atol=5e-5)
        np.testing.assert_allclose(
            convert_to_numpy(head(x)) / radius, ref.large_logits(x, kernel, None, margin, lam) / radius, atol=5e-6
        )


@pytest.mark.parametrize("head_cls,ref_fn", [
    (layers.ArcMarginHead, lambda x, k, y, K: ref.arc_logits(x, k, y, 16.0, 0.5, num_subcenters=K)),
    (layers.CosMarginHead, lambda x, k, y, K: ref.cos_logits(x, k, y, 16.0, 0.35, num_subcenters=K)),
    (layers.CombinedMarginHead, lambda x, k, y, K: ref.combined_logits(x, k, y, 16.0, 1.0, 0.5, 0.0, num_subcenters=K)),
    (layers.SphereMarginHead, lambda x, k, y, K: ref.sphere_logits(x, k, y, 4, 5.0, num_subcenters=K)),
])
def test_subcenters_use_the_closest_subcenter(rng, head_cls, ref_fn):
    x, kernel, labels = random_case(rng, num_subcenters=3)
    kwargs = dict(lambda_base=5.0) if head_cls is layers.SphereMarginHead else dict(scale=16.0)  # the reference's s
    head = built_head(head_cls(NUM_CLASSES, num_subcenters=3, **kwargs), kernel)
    assert tuple(head.kernel.shape) == (DIM, NUM_CLASSES * 3)
    np.testing.assert_allclose(convert_to_numpy(head(x, labels=labels)), ref_fn(x, kernel, labels, 3), rtol=1e-4, atol=1e-3)


def test_normalized_dense_is_scaled_cosine(rng):
    x, kernel, _ = random_case(rng)
    layer = built_head(layers.NormalizedDense(NUM_CLASSES, scale=16.0), kernel)
    np.testing.assert_allclose(convert_to_numpy(layer(x)), 16.0 * ref.cosines(x, kernel), atol=1e-5)


def test_labels_of_every_accepted_form_give_the_same_logits(rng):
    x, kernel, labels = random_case(rng)
    head = built_head(layers.ArcMarginHead(NUM_CLASSES), kernel)
    want = convert_to_numpy(head(x, labels=labels.astype("int32")))
    for form in (labels.astype("int64"), labels.astype("uint8"), labels.astype("float32"),
                 labels.reshape(-1, 1).astype("int32"), labels.reshape(-1, 1).astype("float32")):
        np.testing.assert_array_equal(convert_to_numpy(head(x, labels=keras.ops.convert_to_tensor(form))), want)


@pytest.mark.parametrize("head_cls,ref_fn", [
    (layers.SphereMarginHead, lambda x, k, y: ref.sphere_logits(x, k, y, 4, 5.0)),
    (layers.LargeMarginHead, lambda x, k, y: ref.large_logits(x, k, y, 4, 5.0)),
])
def test_radius_heads_stay_finite_under_float16_when_logits_exceed_its_range(rng, head_cls, ref_fn):
    # entries of ±25,000 (float16 numbers) pointing near the target weight:
    # ‖x‖ ≈ 1e5, so ‖x‖·cos θ_y exceeds float16's 65,504 even with unit weights
    keras.config.set_dtype_policy("mixed_float16")
    _, kernel, labels = random_case(rng)
    x = np.sign(kernel[:, labels].T) * 25000.0 * rng.uniform(0.8, 1.2, size=(len(labels), 1))
    x = x.astype("float16").astype("float32")  # what a float16 layer before the head would pass
    kernel = 10.0 * kernel
    head = built_head(head_cls(NUM_CLASSES, margin=4, lambda_base=5.0, lambda_min=5.0), kernel)
    bound = np.linalg.norm(x, axis=1).max() * np.linalg.norm(kernel, axis=0).max()
    assert np.abs(ref_fn(x, kernel, None)).max() > 65504
    for labels_arg in (labels, None):
        got = convert_to_numpy(head(x, labels=labels_arg))
        assert got.dtype == np.float32 and np.all(np.isfinite(got))
        # float16 carries ~3 significant digits of the rescaled product
        np.testing.assert_allclose(got, ref_fn(x, kernel, labels_arg), atol=2e-3 * bound)


def test_insightface_fallback_never_raises_the_target_for_a_margin_just_below_pi(rng):
    # float32(π − 4e-16) is above π, where sin m < 0: m·sin m must not turn into a bonus
    margin = math.nextafter(math.pi, 0.0)
    x, kernel, labels = random_case(rng)
    x[-1] = 0.0  # the zero embedding: cos θ = 0 for every class
    head = built_head(layers.ArcMarginHead(NUM_CLASSES, scale=37.0, margin=margin, fallback="insightface"), kernel)
    rows = np.arange(len(labels))
    target = convert_to_numpy(head(x, labels=labels))[rows, labels]
    plain = convert_to_numpy(head(x))[rows, labels]
    assert np.all(target <= plain), target - plain
