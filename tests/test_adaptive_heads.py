"""CurricularFace, MagFace, AdaFace and ElasticFace heads against float64 NumPy references.

The references (tests/reference.py) are written from the papers' formulas and
the issue's statement of the official rules; the running statistics are
carried across several training calls in the reference as in the head.
Gradients are compared with central differences of the float64 reference in
which the quantities the heads detach (CurricularFace's t and hard-negative
mask, AdaFace's ẑ) are held at their values.
"""

import math

import keras
import numpy as np
import pytest
from keras.ops import convert_to_numpy
from scipy import stats

import data_utils
from backend_utils import gradients
import reference as ref
from keras_margin import layers, margins

NUM_CLASSES, DIM = 6, 8


def built(head, kernel):
    head.build((None, kernel.shape[0]))
    head.kernel.assign(kernel.astype("float32"))
    return head


def batch_with_hard_cases(rng, kernel, norms=None, batch=12):
    """Random rows plus rows at θ = 0, near 0, near π and at π from their class weight."""
    labels = rng.integers(0, kernel.shape[1], size=batch)
    x = rng.normal(size=(batch, kernel.shape[0]))
    for i, theta in enumerate([0.0, 1e-3, math.pi - 1e-3, math.pi]):
        x[i] = ref.rotate_towards(kernel[:, labels[i]].astype(np.float64), theta, rng)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x *= (rng.uniform(1.0, 20.0, size=(batch, 1)) if norms is None else np.resize(norms, batch)[:, None])
    return x.astype("float32"), labels


def cosine_of_targets(x, kernel, labels):
    return ref.cosines(x, kernel)[np.arange(len(labels)), labels]


# --- CurricularFace -----------------------------------------------------------


@pytest.mark.parametrize("momentum", [0.99, 0.5])
def test_curricular_face_matches_reference_over_training_calls(rng, momentum):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    head = built(layers.CurricularFaceHead(NUM_CLASSES, scale=64.0, margin=0.5, momentum=momentum), kernel)
    t = 0.0
    for call in range(4):
        x, labels = batch_with_hard_cases(rng, kernel)
        training = call < 3
        if training:
            t = momentum * t + (1 - momentum) * cosine_of_targets(x, kernel, labels).mean()
        got = convert_to_numpy(head(x, labels=labels, training=training))
        want = ref.curricular_logits(x, kernel, labels, 64.0, 0.5, t)
        np.testing.assert_allclose(got / 64.0, want / 64.0, atol=2e-5)
        assert float(head.t) == pytest.approx(t, abs=1e-6)
    np.testing.assert_allclose(convert_to_numpy(head(x)), 64.0 * ref.cosines(x, kernel), atol=1e-3)


def test_curricular_face_subcenters_and_hard_negatives_counted(rng):
    kernel = rng.normal(size=(DIM, NUM_CLASSES * 2))
    head = built(layers.CurricularFaceHead(NUM_CLASSES, scale=10.0, momentum=0.0, num_subcenters=2), kernel)
    x, labels = batch_with_hard_cases(rng, kernel[:, ::2], batch=64)
    labels = labels % NUM_CLASSES
    got = convert_to_numpy(head(x, labels=labels, training=True))
    cos = ref.cosines(x, kernel, 2)
    t = cos[np.arange(64), labels].mean()  # momentum 0: t is this batch's mean
    want = ref.curricular_logits(x, kernel, labels, 10.0, 0.5, t, num_subcenters=2)
    np.testing.assert_allclose(got, want, atol=2e-4)
    plain = 10.0 * cos
    changed = ~np.isclose(got, plain, atol=1e-4)
    changed[np.arange(64), labels] = False
    assert changed.sum() > 10  # hard negatives were really modulated


# --- MagFace ------------------------------------------------------------------

MAGFACE = dict(lower_norm=10.0, upper_norm=110.0, lower_margin=0.45, upper_margin=0.8, lambda_g=35.0)


@pytest.mark.parametrize("easy_margin", [True, False])
def test_mag_face_matches_reference_with_norms_at_and_beyond_the_clip(rng, easy_margin):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    fallback = "easy" if easy_margin else "insightface"
    head = built(layers.MagFaceHead(NUM_CLASSES, scale=64.0, fallback=fallback, **MAGFACE), kernel)
    x, labels = batch_with_hard_cases(rng, kernel, norms=[1.0, 10.0, 10.5, 60.0, 110.0, 250.0], batch=24)
    got = convert_to_numpy(head(x, labels=labels, training=True))
    parameters = {k: MAGFACE[k] for k in ("lower_norm", "upper_norm", "lower_margin", "upper_margin")}
    want = ref.magface_logits(x, kernel, labels, 64.0, easy_margin=easy_margin, **parameters)
    np.testing.assert_allclose(got / 64.0, want / 64.0, atol=2e-5)
    [regularizer] = head.losses
    assert float(regularizer) == pytest.approx(
        ref.magface_regularizer(x, MAGFACE["lower_norm"], MAGFACE["upper_norm"], MAGFACE["lambda_g"]), rel=1e-5)
    head(x)  # prediction: plain logits, no loss
    assert not head.losses


def test_mag_face_rejects_lambda_below_its_bound():
    k = 0.35 / 100
    bound = 64 * k * 110**2 * 10**2 / (110**2 - 10**2)  # 22.59
    layers.MagFaceHead(10, lambda_g=bound * 1.001)
    with pytest.raises(ValueError, match=r"lambda_g=22.*below MagFace's bound.*22\.5"):
        layers.MagFaceHead(10, lambda_g=22.0)


def test_mag_face_regularizer_gradient_is_its_closed_form(rng):
    x = rng.normal(size=(5, DIM))
    x *= np.array([5.0, 20.0, 50.0, 100.0, 150.0])[:, None] / np.linalg.norm(x, axis=1, keepdims=True)
    head = layers.MagFaceHead(NUM_CLASSES, **MAGFACE)

    def regularizer(x):
        head(x, labels=np.zeros(5, "int32"))
        [value] = head.losses
        return value

    [got] = gradients(regularizer, [x.astype("float32")], state_of=head)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    inside = (norms > MAGFACE["lower_norm"]) & (norms < MAGFACE["upper_norm"])
    want = MAGFACE["lambda_g"] / 5 * (-1 / norms**2 + 1 / MAGFACE["upper_norm"] ** 2) * x / norms * inside
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-9)


# --- AdaFace ------------------------------------------------------------------


def test_ada_face_matches_reference_over_training_calls(rng):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    head = built(layers.AdaFaceHead(NUM_CLASSES, scale=64.0, margin=0.4, h=0.333, momentum=0.9), kernel)
    reference = ref.AdaFaceReference(64.0, 0.4, 0.333, 0.9)
    for call, norms in enumerate([[0.0005, 0.001, 5.0, 20.0, 50.0, 100.0, 150.0], [15.0, 25.0, 35.0],
                                  [0.5, 1.0, 99.0, 101.0], [10.0, 30.0, 300.0]]):
        x, labels = batch_with_hard_cases(rng, kernel, norms=norms)
        training = call < 3
        got = convert_to_numpy(head(x, labels=labels, training=training))
        want = reference.logits(x, kernel, labels, training)
        np.testing.assert_allclose(got / 64.0, want / 64.0, atol=2e-5)
        assert float(head.norm_mean) == pytest.approx(reference.mean, rel=1e-6)
        assert float(head.norm_std) == pytest.approx(reference.std, rel=1e-6)


def test_ada_face_statistics_start_at_the_official_values_and_need_two_examples(rng):
    head = layers.AdaFaceHead(NUM_CLASSES)
    head.build((None, DIM))
    assert (float(head.norm_mean), float(head.norm_std)) == (20.0, 100.0)
    with pytest.raises(ValueError, match="at least 2 examples"):
        head(rng.normal(size=(1, DIM)).astype("float32"), labels=[0], training=True)


# --- ElasticFace --------------------------------------------------------------


def recovered_margins(head, x, kernel, labels, scale):
    """The per-sample margin read back from the target logit (cos: c − t; arc: arccos t − θ)."""
    logits = convert_to_numpy(head(x, labels=labels, training=True)).astype(np.float64)
    cos = ref.cosines(x, kernel)
    rows = np.arange(len(labels))
    others = np.ones_like(cos, dtype=bool)
    others[rows, labels] = False
    np.testing.assert_allclose(logits[others], scale * cos[others], atol=1e-4)  # non-targets untouched
    target = logits[rows, labels] / scale
    if isinstance(head, layers.ElasticCosMarginHead):
        return cos[rows, labels] - target
    return np.arccos(np.clip(target, -1, 1)) - np.arccos(cos[rows, labels])


def elastic_case(rng, batch):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    labels = rng.integers(0, NUM_CLASSES, size=batch)
    thetas = rng.uniform(0.3, 1.5, size=batch)  # θ + m stays below π
    x = np.stack([5.0 * ref.rotate_towards(kernel[:, y], t, rng) for t, y in zip(thetas, labels)])
    return x.astype("float32"), kernel, labels


@pytest.mark.parametrize("head_class,margin,std", [(layers.ElasticArcMarginHead, 0.5, 0.05),
                                                   (layers.ElasticCosMarginHead, 0.35, 0.05)])
def test_elastic_margins_are_normal_draws_per_sample_and_step(rng, head_class, margin, std):
    x, kernel, labels = elastic_case(rng, 2000)
    head = built(head_class(NUM_CLASSES, scale=16.0, margin=margin, margin_std=std, seed=3), kernel)
    first = recovered_margins(head, x, kernel, labels, 16.0)
    second = recovered_margins(head, x, kernel, labels, 16.0)
    for draws in (first, second):
        assert stats.kstest(draws, stats.norm(margin, std).cdf).pvalue > 1e-3
    assert np.abs(first - second).mean() > std / 2  # a new draw every step
    same_seed = built(head_class(NUM_CLASSES, scale=16.0, margin=margin, margin_std=std, seed=3), kernel)
    np.testing.assert_allclose(recovered_margins(same_seed, x, kernel, labels, 16.0), first, atol=1e-5)
    evaluation = convert_to_numpy(head(x, labels=labels, training=False)) / 16.0
    cos_y = cosine_of_targets(x, kernel, labels)
    want = np.cos(np.arccos(cos_y) + margin) if head_class is layers.ElasticArcMarginHead else cos_y - margin
    np.testing.assert_allclose(evaluation[np.arange(len(labels)), labels], want, atol=1e-5)


@pytest.mark.parametrize("head_class", [layers.ElasticArcMarginHead, layers.ElasticCosMarginHead])
def test_elastic_plus_gives_the_largest_margin_to_the_smallest_target_cosine(rng, head_class):
    x, kernel, labels = elastic_case(rng, 64)
    plain = built(head_class(NUM_CLASSES, scale=16.0, margin_std=0.1, seed=7), kernel)
    ranked = built(head_class(NUM_CLASSES, scale=16.0, margin_std=0.1, sorted_margins=True, seed=7), kernel)
    drawn = recovered_margins(plain, x, kernel, labels, 16.0)
    assigned = recovered_margins(ranked, x, kernel, labels, 16.0)
    np.testing.assert_allclose(np.sort(assigned), np.sort(drawn), atol=1e-4)  # the same draws, reordered
    cos_y = cosine_of_targets(x, kernel, labels)
    for i in range(64):
        for j in range(64):
            if cos_y[i] < cos_y[j] - 1e-6:
                assert assigned[i] >= assigned[j] - 1e-4


def test_elastic_arc_fallback_past_pi_minus_the_margin(rng):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    labels = np.array([0, 1, 2])
    x = np.stack([3.0 * ref.rotate_towards(kernel[:, y], t, rng) for y, t in zip(labels, [2.9, 3.0, 3.1])])
    head = built(layers.ElasticArcMarginHead(NUM_CLASSES, scale=1.0, margin=0.5, margin_std=0.0), kernel)
    got = convert_to_numpy(head(x.astype("float32"), labels=labels, training=True))[np.arange(3), labels]
    cos_y = cosine_of_targets(x, kernel, labels)
    np.testing.assert_allclose(got, ref.combined_target(cos_y, 1.0, 0.5, 0.0, "continuous"), atol=1e-5)


# --- gradients ------------------------------------------------------------------

HEADS = {
    "curricular": lambda: layers.CurricularFaceHead(NUM_CLASSES, scale=8.0, momentum=0.5),
    "magface": lambda: layers.MagFaceHead(NUM_CLASSES, scale=8.0, lower_norm=1.0, upper_norm=10.0,
                                          lambda_g=5.0),
    "magface_hard": lambda: layers.MagFaceHead(NUM_CLASSES, scale=8.0, lower_norm=1.0, upper_norm=10.0,
                                               lambda_g=5.0, fallback="insightface"),
    "adaface": lambda: layers.AdaFaceHead(NUM_CLASSES, scale=8.0, momentum=0.5),
    "elastic_arc": lambda: layers.ElasticArcMarginHead(NUM_CLASSES, scale=8.0, seed=0),
    "elastic_arc_plus": lambda: layers.ElasticArcMarginHead(NUM_CLASSES, scale=8.0, sorted_margins=True,
                                                            margin_std=0.0175, seed=0),
    "elastic_cos": lambda: layers.ElasticCosMarginHead(NUM_CLASSES, scale=8.0, seed=0),
}


@pytest.mark.parametrize("policy", ["float32", "mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", sorted(HEADS))
def test_gradients_finite_at_cos_plus_and_minus_one(rng, name, policy):
    keras.config.set_dtype_policy(policy)
    kernel = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
    labels = np.array([0, 1, 2, 3])
    x = np.stack([kernel[:, 0] * 3, -kernel[:, 1] * 3, kernel[:, 2] * 0.5, -kernel[:, 3] * 12])
    head = built(HEADS[name](), kernel)
    dtypes = []

    def loss(x):
        logits = head(x, labels=labels, training=True)
        dtypes.append(keras.backend.standardize_dtype(logits.dtype))
        cross_entropy = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return keras.ops.mean(cross_entropy) + sum(head.losses)

    for gradient in gradients(loss, [x.astype("float32")], [head.kernel], state_of=head):
        assert np.isfinite(np.asarray(gradient, np.float32)).all(), name
    assert dtypes == ["float32"]


def tape_gradient(head, x, labels, weights, training=True):
    def value(x):
        return keras.ops.sum(keras.ops.multiply(weights, head(x, labels=labels, training=training))) + sum(head.losses)

    return gradients(value, [x.astype("float32")], state_of=head)[0]


def test_curricular_gradient_holds_t_and_the_hard_mask_constant(rng):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    x, labels = batch_with_hard_cases(rng, kernel, batch=6)
    x, labels = x[4:], labels[4:]  # away from θ = 0, π, where the clamp sets the slope
    x = x.astype(np.float64)
    weights = rng.normal(size=(len(x), NUM_CLASSES))
    head = built(layers.CurricularFaceHead(NUM_CLASSES, scale=8.0, margin=0.5, momentum=0.5), kernel)
    t = 0.5 * cosine_of_targets(x, kernel, labels).mean()  # the value of this training call
    got = tape_gradient(head, x, labels, weights.astype("float32"))
    want = ref.numerical_gradient(lambda z: np.sum(weights * ref.curricular_logits(z, kernel, labels, 8.0, 0.5, t)), x)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)


def test_ada_face_gradient_holds_the_norm_scaler_constant(rng):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    labels = np.array([0, 1, 2, 3])
    # near their class, where the target depends on ẑ (d/dẑ = m·(sin(θ − m·ẑ) − 1))
    x = np.stack([n * ref.rotate_towards(kernel[:, y], theta, rng)
                  for y, theta, n in zip(labels, [0.3, 0.5, 0.7, 0.9], [5.0, 18.0, 30.0, 60.0])])
    weights = rng.normal(size=(len(x), NUM_CLASSES))
    head = built(layers.AdaFaceHead(NUM_CLASSES, scale=8.0, momentum=0.5), kernel)
    got = tape_gradient(head, x, labels, weights.astype("float32"))
    frozen = ref.AdaFaceReference(8.0, 0.4, 0.333, 0.5)
    frozen.logits(x, kernel, labels, training=True)  # the statistics after this call's update
    norms = np.linalg.norm(x, axis=1)
    z = np.clip(0.333 * (norms - frozen.mean) / (frozen.std + 1e-3), -1, 1)

    def with_fixed_scaler(points):
        cos = np.clip(ref.cosines(points, kernel), -1 + 1e-3, 1 - 1e-3)
        rows = np.arange(len(labels))
        angle = np.clip(np.arccos(cos[rows, labels]) - 0.4 * z, 1e-3, np.pi - 1e-3)
        out = cos.copy()
        out[rows, labels] = np.cos(angle) - (0.4 + 0.4 * z)
        return np.sum(weights * 8.0 * out)

    np.testing.assert_allclose(got, ref.numerical_gradient(with_fixed_scaler, x), rtol=2e-3, atol=2e-4)
    assert np.abs(got).max() > 1e-3


def test_mag_face_gradient_is_the_full_derivative(rng):
    kernel = rng.normal(size=(DIM, NUM_CLASSES))
    parameters = dict(lower_norm=1.0, upper_norm=10.0, lower_margin=0.45, upper_margin=0.8)
    x, labels = batch_with_hard_cases(rng, kernel, norms=[2.0, 4.0, 7.0, 9.0], batch=8)
    x, labels = x[4:].astype(np.float64), labels[4:]
    weights = rng.normal(size=(len(x), NUM_CLASSES))
    head = built(layers.MagFaceHead(NUM_CLASSES, scale=8.0, lambda_g=5.0, **parameters), kernel)
    got = tape_gradient(head, x, labels, weights.astype("float32"))

    def full(points):  # the norm reaches both the margin and the regularizer
        logits = ref.magface_logits(points, kernel, labels, 8.0, easy_margin=True, **parameters)
        return np.sum(weights * logits) + ref.magface_regularizer(points, 1.0, 10.0, 5.0)

    np.testing.assert_allclose(got, ref.numerical_gradient(full, x), rtol=2e-3, atol=2e-4)


# --- training, saving, Partial FC ------------------------------------------------


FITTED = ["curricular", "magface", "adaface", "elastic_arc_plus", "elastic_cos"]


def glorot_uniform_from_numpy(model, seed=0):
    """Redraws the kernels of `model` with NumPy, so every backend trains from the same weights.

    Keras' initializers draw from the backend's own generator: the same seed
    gives other weights on each backend, and MagFace's easy margin makes its
    first epochs depend on where the embeddings start.
    """
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        if len(weight.shape) == 2:
            limit = math.sqrt(6.0 / sum(weight.shape))
            weight.assign(rng.uniform(-limit, limit, size=weight.shape).astype("float32"))


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fit_under_xla_learns_and_round_trips(tmp_path, policy):
    """Every adaptive head on its own small network, side by side in one model (one XLA compile)."""
    keras.config.set_dtype_policy(policy)
    x, y = data_utils.clustered_data(NUM_CLASSES, 10, per_class=40, spread=1.0, seed=0)
    features = keras.Input((10,))
    labels = keras.Input((), dtype="int32")
    heads, outputs, plain = {}, [], []
    for name in FITTED:
        hidden = keras.layers.Dense(32, activation="relu", name=f"{name}_hidden")(features)
        embeddings = keras.layers.Dense(DIM, name=f"{name}_embedding")(hidden)
        heads[name] = HEADS[name]()
        outputs.append(heads[name](embeddings, labels=labels))
        plain.append(heads[name](embeddings))
    model = keras.Model([features, labels], outputs)
    glorot_uniform_from_numpy(model)
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.Adam(0.01), [cross_entropy] * len(FITTED), jit_compile=True)
    history = model.fit([x, y], tuple([y] * len(FITTED)), epochs=8, batch_size=32, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    for index, name in enumerate(FITTED):
        key = next(k for k in history if k.startswith(heads[name].name) and k.endswith("loss"))
        losses = history[key]
        assert losses[-1] < 0.6 * losses[0], (name, losses)
    predictions = keras.Model(features, plain).predict(x, verbose=0)
    for name, logits in zip(FITTED, predictions):
        assert np.mean(np.argmax(logits, axis=1) == y) > 0.8, name
    assert "magface_regularizer" in history
    path = tmp_path / "heads.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    for name, head in heads.items():
        loaded_head = loaded.get_layer(head.name)
        assert type(loaded_head) is type(head)
        for weight, loaded_weight in zip(head.weights, loaded_head.weights):  # the statistics too
            assert weight.path == loaded_weight.path
            np.testing.assert_array_equal(np.asarray(weight), np.asarray(loaded_weight))
    for got, want in zip(loaded.predict([x, y], verbose=0), model.predict([x, y], verbose=0)):
        np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("name", ["curricular", "magface", "adaface", "elastic_cos"])
def test_partial_fc_keeping_every_class_equals_the_full_head(rng, name):
    kernel = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
    x, labels = batch_with_hard_cases(rng, kernel, norms=[3.0, 6.0, 9.0], batch=6)
    head_class = type(HEADS[name]())
    config = {**HEADS[name]().get_config(), **({"margin_std": 0.0} if name == "elastic_cos" else {})}  # no draws
    full = built(head_class.from_config(config), kernel)
    partial = head_class.from_config({**config, "sample_rate": 0.999, "seed": 0})
    partial.build((None, DIM))
    partial.kernel.assign(kernel)  # the full head's layout
    want = keras.ops.convert_to_numpy(keras.ops.sparse_categorical_crossentropy(
        labels, full(x, labels=labels, training=True), from_logits=True))
    got = convert_to_numpy(keras.ops.sparse_categorical_crossentropy(
        labels, partial(x, labels=labels, training=True), from_logits=True))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("make,match", [
    (lambda: layers.CurricularFaceHead(5, scale="adaptive"), "fixed scale"),
    (lambda: layers.CurricularFaceHead(5, momentum=1.0), "momentum"),
    (lambda: layers.AdaFaceHead(5, h=0.0), "`h`"),
    (lambda: layers.AdaFaceHead(5, margin=-0.1), "margin"),
    (lambda: layers.MagFaceHead(5, lower_norm=20.0, upper_norm=10.0), "upper_norm"),
    (lambda: layers.MagFaceHead(5, lower_margin=0.9, upper_margin=0.5), "upper_margin"),
    (lambda: layers.ElasticArcMarginHead(5, margin_std=-1.0), "margin_std"),
    (lambda: layers.ElasticArcMarginHead(5, margin=4.0), "margin"),
    (lambda: layers.ElasticCosMarginHead(5, margin=2.5), "margin"),
])
def test_invalid_settings_are_rejected(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_target_angle_rejects_heads_whose_margin_is_drawn_or_norm_dependent():
    from keras_margin.metrics import TargetAngle

    TargetAngle(layers.CurricularFaceHead(5))
    for head in (layers.MagFaceHead(5), layers.AdaFaceHead(5), layers.ElasticArcMarginHead(5)):
        with pytest.raises(ValueError, match="cannot be inverted"):
            TargetAngle(head)


def test_rank_matching_pairs_ranks():
    values = np.array([0.1, 0.5, 0.3, 0.2], "float32")
    keys = np.array([0.9, 0.1, 0.5, 0.7], "float32")
    # smallest key (index 1) gets the largest value, and so on
    np.testing.assert_allclose(np.asarray(margins.rank_matched(values, keys)), [0.1, 0.5, 0.3, 0.2])
    keys = np.array([0.2, 0.4, 0.1, 0.3], "float32")
    np.testing.assert_allclose(np.asarray(margins.rank_matched(values, keys)), [0.3, 0.1, 0.5, 0.2])
