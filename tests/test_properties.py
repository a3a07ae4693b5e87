"""Property tests (hypothesis): every head stays finite and never raises the target logit.

Embeddings mix ordinary rows with the hard cases: zero rows, huge and tiny
norms, duplicated rows and rows exactly aligned with (or opposite to) their
class weight. Margins are drawn from each head's valid range. Checked:

- all logits finite;
- the margin never increases the target logit above the plain one (for every
  ArcFace / combined fallback that promises it: all but `"none"`);
- the non-target logits equal the plain logits (AdaFace: clamped to
  ±s·(1 − 1e-3); CurricularFace: or the hard-negative value s·c·(t + c)),
  and the plain logits equal s·cos θ (or ‖x‖·cos θ, Wᵀx) from a float64
  NumPy reference.
"""

import math

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import keras_margin
import reference

NUM_CLASSES, DIM, BATCH = 5, 4, 8
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

fallbacks = st.sampled_from(["continuous", "insightface", "easy"])
scales = st.floats(1.0, 64.0)
angular_margins = st.floats(0.0, math.pi, exclude_max=True)
lambdas = st.floats(0.0, 1000.0)
# (head class, strategy of its keyword arguments within the valid ranges)
HEADS = {
    "arc": (keras_margin.ArcMarginHead,
            st.fixed_dictionaries({"scale": scales, "margin": angular_margins, "fallback": fallbacks})),
    "cos": (keras_margin.CosMarginHead, st.fixed_dictionaries({"scale": scales, "margin": st.floats(0.0, 2.0)})),
    "combined": (keras_margin.CombinedMarginHead, st.fixed_dictionaries({
        "scale": scales, "m1": st.floats(1.0, 4.0), "m2": angular_margins, "m3": st.floats(0.0, 2.0),
        "fallback": fallbacks})),
    "sphere": (keras_margin.SphereMarginHead,
               st.fixed_dictionaries({"margin": st.integers(1, 6), "lambda_base": lambdas, "lambda_min": st.just(0.0)})),
    "large": (keras_margin.LargeMarginHead,
              st.fixed_dictionaries({"margin": st.integers(1, 6), "lambda_base": lambdas, "lambda_min": st.just(0.0)})),
    "curricular": (keras_margin.CurricularFaceHead, st.fixed_dictionaries({
        "scale": scales, "margin": angular_margins, "momentum": st.floats(0.0, 0.99)})),
    "magface": (keras_margin.MagFaceHead, st.fixed_dictionaries({
        "scale": st.floats(1.0, 8.0), "lower_margin": st.floats(0.0, 1.0), "upper_margin": st.floats(1.0, 3.0),
        "lambda_g": st.just(100.0), "fallback": st.sampled_from(("easy", "insightface"))})),
    "adaface": (keras_margin.AdaFaceHead, st.fixed_dictionaries({
        "scale": scales, "margin": st.floats(0.0, 1.0), "h": st.floats(0.01, 3.0), "momentum": st.floats(0.0, 0.99)})),
    "elastic_arc": (keras_margin.ElasticArcMarginHead, st.fixed_dictionaries({
        "scale": scales, "margin": angular_margins, "margin_std": st.floats(0.0, 1.0), "sorted_margins": st.booleans(),
        "fallback": fallbacks, "seed": st.integers(0, 100)})),
    "elastic_cos": (keras_margin.ElasticCosMarginHead, st.fixed_dictionaries({
        "scale": scales, "margin": st.floats(0.0, 2.0), "margin_std": st.floats(0.0, 1.0),
        "sorted_margins": st.booleans(), "seed": st.integers(0, 100)})),
}

row_kinds = st.sampled_from(["normal", "zero", "huge", "tiny", "duplicate", "aligned", "opposite"])


@st.composite
def embeddings_and_labels(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    kinds = draw(st.lists(row_kinds, min_size=BATCH, max_size=BATCH))
    labels = np.array(draw(st.lists(st.integers(0, NUM_CLASSES - 1), min_size=BATCH, max_size=BATCH)), "int32")
    return seed, kinds, labels


def make_rows(seed, kinds, labels, kernel):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, DIM))
    for i, kind in enumerate(kinds):
        if kind == "zero":
            x[i] = 0.0
        elif kind == "huge":
            x[i] *= 1e18
        elif kind == "tiny":
            x[i] *= 1e-30
        elif kind == "duplicate" and i > 0:
            x[i] = x[i - 1]
        elif kind in ("aligned", "opposite"):
            x[i] = (1 if kind == "aligned" else -1) * kernel[:, labels[i]] * rng.uniform(0.1, 10)
    return x.astype("float32")


def plain_reference(head, x, kernel):
    """Plain logits from float64 NumPy, for the rows with a well-defined direction."""
    with np.errstate(invalid="ignore", divide="ignore"):  # zero rows have no direction
        cos = reference.cosines(x, kernel, head.num_subcenters if hasattr(head, "num_subcenters") else 1)
    if isinstance(head, keras_margin.LargeMarginHead):
        return (x.astype(np.float64) @ kernel.astype(np.float64))
    if isinstance(head, keras_margin.SphereMarginHead):
        return np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True) * cos
    return head.scale * cos


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_properties(name):
    head_class, arguments = HEADS[name]

    @SETTINGS
    @given(kwargs=arguments, data=embeddings_and_labels())
    def check(kwargs, data):
        seed, kinds, labels = data
        keras.utils.set_random_seed(seed % 2**31)  # the kernel's initial values, reproducibly
        head = head_class(NUM_CLASSES, **kwargs)
        head.build((None, DIM))
        kernel = keras.ops.convert_to_numpy(head.kernel)
        x = make_rows(seed, kinds, labels, kernel)
        margin_logits = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
        plain = keras.ops.convert_to_numpy(head(x))
        assert np.isfinite(margin_logits).all() and np.isfinite(plain).all(), (kinds, margin_logits)

        rows = np.arange(BATCH)
        target_margin, target_plain = margin_logits[rows, labels], plain[rows, labels]
        if isinstance(head, keras_margin.AdaFaceHead):  # its clamp lifts cos = −1 to −(1 − 1e-3), as officially
            target_plain = head.scale * np.clip(target_plain / head.scale, -1 + 1e-3, 1 - 1e-3)
        slack = 1e-5 * np.maximum(1.0, np.abs(target_plain))
        assert (target_margin <= target_plain + slack).all(), (kinds, target_margin, target_plain)

        others = np.ones_like(plain, dtype=bool)
        others[rows, labels] = False
        expected_others = plain
        if isinstance(head, keras_margin.AdaFaceHead):  # every cosine clamped to ±(1 − 1e-3)
            expected_others = head.scale * np.clip(plain / head.scale, -1 + 1e-3, 1 - 1e-3)
        if isinstance(head, keras_margin.CurricularFaceHead):  # hard negatives c·(t + c), the others c
            c, t = plain / head.scale, float(head.t)
            modulated = head.scale * c * (t + c)
            hard = ~np.isclose(margin_logits, plain, rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(margin_logits[others & hard], modulated[others & hard], rtol=1e-5, atol=1e-5)
            others &= ~hard
        np.testing.assert_allclose(margin_logits[others], expected_others[others], rtol=1e-6, atol=1e-6)

        well_defined = np.linalg.norm(x.astype(np.float64), axis=1) > 1e-20  # not zero, not tiny
        expected = plain_reference(head, x, kernel)
        np.testing.assert_allclose(plain[well_defined], expected[well_defined], rtol=2e-4,
                                   atol=2e-4 * np.abs(expected[well_defined]).max(initial=1.0))

    check()
