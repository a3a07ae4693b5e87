"""The margin-head contract: a head is `ScaledCosineHead` plus `apply_margin(cos_target, context)`.

A head written here, with that one method and nothing else, must get the
margin warm-up, the adaptive scale, sub-centers and Partial FC from the base,
checked against a NumPy reference written from the definitions (AdaCos eq. 15,
min(1, t/n), the closest sub-center). The other hooks (`non_target_cosines`,
`regularization`) and the single `fallback` option are checked too.
"""

import math
import warnings

import keras
import numpy as np
import pytest
import reference

from keras_margin import layers, margins

pytestmark = pytest.mark.jax_ci  # backend-neutral: CI runs it on JAX too

NUM_CLASSES, DIM, BATCH, MARGIN = 12, 64, 8, 0.3


@keras.saving.register_keras_serializable(package="keras_margin_tests")
class QuadraticMarginHead(layers.ScaledCosineHead):
    """Target cosine c − m·(1 − c)²/2 (0 at c = 1, m·2 at c = −1): only `apply_margin` is defined."""

    def __init__(self, num_classes, margin=MARGIN, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.margin = margin

    def apply_margin(self, cos_target, context):
        return cos_target - self.margin * context.factor * (1.0 - cos_target) ** 2 / 2.0

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


def reference_target(c, factor):
    return c - MARGIN * factor * (1.0 - c) ** 2 / 2.0


def reference_logits(x, kernel, labels, scale, factor, num_subcenters):
    cos = reference.cosines(x, kernel, num_subcenters)
    out = np.array(cos)
    rows = np.arange(len(labels))
    out[rows, labels] = reference_target(cos[rows, labels], factor)
    return scale * out


def adacos_scale(x, kernel, labels, previous, num_subcenters):
    """AdaCos eq. 15 with the closest sub-center's cosines, between 1 and √2·ln(C − 1)."""
    cos = reference.cosines(x, kernel, num_subcenters)
    total = sum(math.exp(previous * cos[i, k]) for i, y in enumerate(labels) for k in range(cos.shape[1]) if k != y)
    theta = np.arccos(np.clip(cos[np.arange(len(labels)), labels], -1 + 1e-6, 1 - 1e-6))
    value = math.log(total / len(labels)) / math.cos(min(math.pi / 4, float(np.median(theta))))
    return max(1.0, min(value, math.sqrt(2.0) * math.log(cos.shape[1] - 1)))


def test_a_head_with_only_apply_margin_gets_warmup_adaptive_scale_and_subcenters(rng):
    warmup, num_subcenters = 4, 3
    head = QuadraticMarginHead(NUM_CLASSES, scale="adaptive", margin_warmup_steps=warmup,
                               num_subcenters=num_subcenters)
    head.build((None, DIM))
    kernel = np.array(head.kernel)
    assert kernel.shape == (DIM, NUM_CLASSES * num_subcenters)
    scale = math.sqrt(2.0) * math.log(NUM_CLASSES - 1)
    for step in range(6):
        labels = rng.integers(0, NUM_CLASSES, BATCH)
        columns = labels * num_subcenters + rng.integers(0, num_subcenters, BATCH)  # near one of their sub-centers
        x = (kernel[:, columns].T + 0.05 * rng.normal(size=(BATCH, DIM))).astype("float32")
        out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
        factor = min(1.0, step / warmup)
        scale = adacos_scale(x, kernel, labels, scale, num_subcenters)
        assert head.current_margin_factor == pytest.approx(factor)
        assert head.current_scale == pytest.approx(scale, rel=1e-4)
        np.testing.assert_allclose(out, reference_logits(x, kernel, labels, scale, factor, num_subcenters),
                                   rtol=1e-4, atol=1e-4)
    # evaluation: the stored scale and the full margin, nothing advances
    x = rng.normal(size=(BATCH, DIM)).astype("float32")
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=False))
    np.testing.assert_allclose(out, reference_logits(x, kernel, labels, scale, 1.0, num_subcenters),
                               rtol=1e-4, atol=1e-4)
    assert head.current_scale == pytest.approx(scale, rel=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(head(x)), scale * reference.cosines(x, kernel, 3),
                               rtol=1e-4, atol=1e-4)


def test_the_context_carries_norms_step_training_and_factor(rng):
    seen = []

    class Recording(QuadraticMarginHead):
        def apply_margin(self, cos_target, context):
            seen.append(context)
            return super().apply_margin(cos_target, context)

    head = Recording(NUM_CLASSES, scale=8.0, margin_warmup_steps=2)
    x = rng.normal(size=(BATCH, DIM)).astype("float32") * 3
    labels = rng.integers(0, NUM_CLASSES, BATCH)
    for _ in range(3):
        head(x, labels=labels, training=True)
    head(x, labels=labels, training=False)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(seen[0].norms), np.linalg.norm(x, axis=1), rtol=1e-5)
    assert [int(keras.ops.convert_to_numpy(c.step)) for c in seen] == [0, 1, 2, 2]
    assert [c.training for c in seen] == [True, True, True, False]
    assert [float(keras.ops.convert_to_numpy(c.factor)) for c in seen] == [0.0, 0.5, 1.0, 1.0]
    no_warmup = Recording(NUM_CLASSES, scale=8.0)
    no_warmup(x, labels=labels, training=True)
    assert seen[-1].step is None


def test_a_head_with_only_apply_margin_round_trips_and_trains_with_partial_fc(tmp_path, rng):
    inputs, label_input = keras.Input((DIM,)), keras.Input((), dtype="int32")
    head = QuadraticMarginHead(NUM_CLASSES, scale=8.0, sample_rate=0.75, seed=0, margin_warmup_steps=2)
    model = keras.Model([inputs, label_input], head(inputs, labels=label_input))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"],
                  jit_compile=True)
    x = rng.normal(size=(32, DIM)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, 32)
    model.fit([x, labels], labels, batch_size=BATCH, epochs=1, verbose=0)
    model.save(tmp_path / "custom.keras")
    restored = keras.saving.load_model(tmp_path / "custom.keras")
    np.testing.assert_allclose(restored.predict([x, labels], verbose=0), model.predict([x, labels], verbose=0),
                               rtol=1e-6)


def test_hooks_non_target_cosines_and_regularization(rng):
    class Hooks(QuadraticMarginHead):
        def non_target_cosines(self, cos, cos_target, context):
            return 0.5 * cos

        def regularization(self, context):
            return keras.ops.mean(context.norms)

    head = Hooks(NUM_CLASSES, scale=8.0)
    x = rng.normal(size=(BATCH, DIM)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, BATCH)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    kernel = np.array(head.kernel)
    cos = reference.cosines(x, kernel)
    want = 0.5 * cos
    want[np.arange(BATCH), labels] = reference_target(cos[np.arange(BATCH), labels], 1.0)
    np.testing.assert_allclose(out, 8.0 * want, rtol=1e-5, atol=1e-5)
    [loss] = head.losses
    assert float(loss) == pytest.approx(np.linalg.norm(x, axis=1).mean(), rel=1e-5)
    head(x)
    assert not head.losses, "no labels, no loss"


def test_a_head_written_for_margin_target_still_works_with_a_warning(rng):
    class Old(layers.ScaledCosineHead):
        def margin_target(self, cos_target, factor=None):
            return cos_target - 0.2 * factor

    head = Old(NUM_CLASSES, scale=8.0)
    x = rng.normal(size=(BATCH, DIM)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, BATCH)
    with pytest.warns(DeprecationWarning, match="apply_margin"):
        out = keras.ops.convert_to_numpy(head(x, labels=labels))
    np.testing.assert_allclose(out, reference.cos_logits(x, np.array(head.kernel), labels, 8.0, 0.2),
                               rtol=1e-5, atol=1e-5)


ANGULAR_HEADS = {
    "arc": lambda **kw: layers.ArcMarginHead(NUM_CLASSES, scale=8.0, margin=0.5, **kw),
    "combined": lambda **kw: layers.CombinedMarginHead(NUM_CLASSES, scale=8.0, m2=0.5, **kw),
    "elastic_arc": lambda **kw: layers.ElasticArcMarginHead(NUM_CLASSES, scale=8.0, margin=0.5, margin_std=0.0,
                                                            **kw),
    "curricular": lambda **kw: layers.CurricularFaceHead(NUM_CLASSES, scale=8.0, margin=0.5, **kw),
}


@pytest.mark.parametrize("name", sorted(ANGULAR_HEADS))
@pytest.mark.parametrize("fallback", margins.ARC_FALLBACKS)
def test_every_angular_head_takes_the_same_fallback_values(rng, name, fallback):
    head = ANGULAR_HEADS[name](fallback=fallback)
    assert head.fallback == fallback and head.get_config()["fallback"] == fallback
    head.build((None, DIM))
    kernel = np.array(head.kernel)
    labels = np.arange(BATCH) % NUM_CLASSES
    x = -kernel[:, labels].T + 0.3 * rng.normal(size=(BATCH, DIM))  # far from their classes: past π − m
    out = keras.ops.convert_to_numpy(head(x.astype("float32"), labels=labels, training=False))
    want = reference.arc_logits(x, kernel, labels, 8.0, 0.5, fallback=fallback)
    rows = np.arange(BATCH)
    np.testing.assert_allclose(out[rows, labels], want[rows, labels], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"`fallback` must be one of \('continuous', 'insightface', 'easy', 'none'\)"):
        ANGULAR_HEADS[name](fallback="clip")


def test_mag_face_takes_fallback_and_maps_the_deprecated_easy_margin(rng):
    options = {"scale": 8.0, "lower_norm": 1.0, "upper_norm": 10.0, "lambda_g": 5.0}
    assert layers.MagFaceHead(NUM_CLASSES, **options).fallback == "easy"
    with pytest.warns(DeprecationWarning, match="fallback='insightface' instead of easy_margin=False"):
        old = layers.MagFaceHead(NUM_CLASSES, easy_margin=False, **options)
    assert old.fallback == "insightface" and "easy_margin" not in old.get_config()
    with pytest.warns(DeprecationWarning):
        assert layers.MagFaceHead(NUM_CLASSES, easy_margin=True, **options).fallback == "easy"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="easy_margin=False` means fallback='insightface'"):
            layers.MagFaceHead(NUM_CLASSES, easy_margin=False, fallback="continuous", **options)
    new = layers.MagFaceHead(NUM_CLASSES, fallback="continuous", **options)
    assert layers.MagFaceHead.from_config(new.get_config()).fallback == "continuous"
    assert layers.CurricularFaceHead(NUM_CLASSES).fallback == "insightface"
