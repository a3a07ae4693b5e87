"""Streaming target angle, flip embeddings, retrieval metrics and the verification callback.

References: NumPy angle loops, brute-force nearest-neighbour loops written from
pytorch-metric-learning's definitions, and the verification report itself for
the callback (whose job is only to feed it and log its numbers).
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_margin
from keras_margin import evaluation, metrics
from keras_margin.callbacks import AngleStatistics, VerificationCallback, far_name


def numpy_target_angles(embeddings, labels, kernel):
    angles = []
    for x, y in zip(embeddings, labels):
        x, w = x.astype(np.float64), kernel[:, y].astype(np.float64)
        angles.append(math.degrees(math.acos(np.clip(x @ w / (np.linalg.norm(x) * np.linalg.norm(w)), -1, 1))))
    return np.array(angles)


@pytest.mark.parametrize(
    "make_head",
    [
        lambda: keras_margin.ArcMarginHead(6, scale=30.0, margin=0.5),
        lambda: keras_margin.CosMarginHead(6, scale=20.0, margin=0.35),
        lambda: keras_margin.CombinedMarginHead(6, scale=16.0, m1=1.2, m2=0.3, m3=0.1),
    ],
)
def test_target_angle_inverts_margin_logits_over_batches(rng, make_head):
    head = make_head()
    head.build((None, 5))
    kernel = keras.ops.convert_to_numpy(head.kernel)
    metric = metrics.TargetAngle(head)
    all_embeddings, all_labels = [], []
    for batch in range(3):
        labels = rng.integers(0, 6, size=16)
        embeddings = rng.normal(size=(16, 5)).astype("float32")
        if batch == 2:  # beyond θ = π − m, where ArcFace's fallback applies
            embeddings[:4] = -kernel[:, labels[:4]].T * rng.uniform(0.5, 2, size=(4, 1))
        metric.update_state(labels, head(embeddings, labels=labels))
        all_embeddings.append(embeddings)
        all_labels.append(labels)
    embeddings, labels = np.concatenate(all_embeddings), np.concatenate(all_labels)
    expected = numpy_target_angles(embeddings, labels, kernel).mean()
    assert float(metric.result()) == pytest.approx(expected, abs=0.05)
    assert evaluation.intra_class_angle(embeddings, labels, kernel) == pytest.approx(expected)
    metric.reset_state()
    assert float(metric.result()) == 0.0


def test_target_angle_on_plain_logits_with_weights(rng):
    layer = keras_margin.NormalizedDense(4, scale=8.0)
    embeddings = rng.normal(size=(10, 3)).astype("float32")
    labels = rng.integers(0, 4, size=10)
    weights = rng.uniform(0, 1, size=10)
    metric = metrics.TargetAngle(scale=8.0)
    metric.update_state(labels, layer(embeddings), sample_weight=weights)
    angles = numpy_target_angles(embeddings, labels, keras.ops.convert_to_numpy(layer.kernel))
    assert float(metric.result()) == pytest.approx(np.sum(angles * weights) / weights.sum(), abs=0.02)
    assert float(metrics.TargetAngle(layer).result()) == 0.0


def test_target_angle_in_compile_and_config():
    head = keras_margin.CosMarginHead(3, scale=10.0)
    images = keras.Input((4,))
    labels = keras.Input((), dtype="int32")
    model = keras.Model([images, labels], head(keras.layers.Dense(5)(images), labels=labels))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[metrics.TargetAngle(head)], jit_compile=True)
    x = np.random.default_rng(0).normal(size=(32, 4)).astype("float32")
    y = np.arange(32) % 3
    history = model.fit([x, y], y, epochs=2, batch_size=8, verbose=0)
    assert all(0 < v < 180 for v in history.history["target_angle"])
    clone = metrics.TargetAngle.from_config(metrics.TargetAngle(head).get_config())
    assert clone.scale == 10.0 and clone.head.margin == head.margin


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(head=keras_margin.SphereMarginHead(3)), "cannot be\n?.*inverted|fixed scale"), (dict(), "Pass `head`"),
     (dict(scale=-1.0), "scale")],
)
def test_target_angle_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        metrics.TargetAngle(**kwargs)


def test_flip_embeddings_equal_the_formula(rng):
    images = rng.normal(size=(10, 4, 5, 2)).astype("float32")
    dense = keras.layers.Dense(3)
    model = keras.Sequential([keras.Input((4, 5, 2)), keras.layers.Flatten(), dense])
    w, b = (keras.ops.convert_to_numpy(v) for v in dense.weights)
    f = lambda x: x.reshape(len(x), -1) @ w + b  # noqa: E731
    expected = f(images) + f(images[:, :, ::-1])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(evaluation.flip_embeddings(model, images, batch_size=3), expected, rtol=1e-5, atol=1e-6)
    batches = tf.data.Dataset.from_tensor_slices(images).batch(4)
    np.testing.assert_allclose(evaluation.flip_embeddings(model, batches), expected, rtol=1e-5, atol=1e-6)
    plain = f(images) / np.linalg.norm(f(images), axis=1, keepdims=True)
    np.testing.assert_allclose(evaluation.flip_embeddings(model, images, flip=False), plain, rtol=1e-5, atol=1e-6)


def brute_force_retrieval(embeddings, labels):
    units = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    hits, average_precisions = [], []
    for q in range(len(labels)):
        r = int(np.sum(labels == labels[q])) - 1
        if r == 0:
            continue
        others = [j for j in range(len(labels)) if j != q]
        others.sort(key=lambda j: (-float(units[q] @ units[j]), j))
        relevant = [labels[j] == labels[q] for j in others[:r]]
        hits.append(relevant[0])
        precision_sum, found = 0.0, 0
        for i, rel in enumerate(relevant, start=1):
            if rel:
                found += 1
                precision_sum += found / i
        average_precisions.append(precision_sum / r)
    return np.mean(hits), np.mean(average_precisions), len(hits)


@pytest.mark.parametrize("chunk_size", [1, 7, 1000])
def test_retrieval_equals_brute_force(rng, chunk_size):
    labels = rng.integers(0, 6, size=60)
    labels[0] = 99  # a lone label: not a query, but still a (wrong) neighbour of others
    embeddings = rng.normal(size=(60, 4)) + 1.5 * np.eye(4)[labels % 4]
    embeddings[10] = embeddings[11]  # exact ties
    embeddings[12] = embeddings[11]
    report = evaluation.retrieval_report(embeddings, labels, chunk_size=chunk_size)
    p1, map_r, n = brute_force_retrieval(embeddings, labels)
    assert report["num_queries"] == n == 59
    assert report["precision_at_1"] == pytest.approx(p1)
    assert report["map_at_r"] == pytest.approx(map_r)


def test_retrieval_closed_forms(rng):
    # two tight, far-apart clusters: everything is retrieved perfectly
    labels = np.repeat([0, 1], 20)
    embeddings = np.where(labels[:, None] == 0, [1.0, 0.0], [0.0, 1.0]) + 0.01 * rng.normal(size=(40, 2))
    assert evaluation.retrieval_report(embeddings, labels) == {"precision_at_1": 1.0, "map_at_r": 1.0, "num_queries": 40}
    euclidean = evaluation.retrieval_report(embeddings * 5, labels, metric="euclidean")
    assert euclidean["map_at_r"] == 1.0
    with pytest.raises(ValueError, match="No label occurs twice"):
        evaluation.retrieval_report(rng.normal(size=(3, 2)), [0, 1, 2])
    with pytest.raises(ValueError, match="metric"):
        evaluation.retrieval_report(embeddings, labels, metric="dot")


def test_verification_callback_writes_history_keys(rng):
    images = keras.Input((6,))
    labels = keras.Input((), dtype="int32")
    embedder = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4)])
    head = keras_margin.ArcMarginHead(3, scale=8.0, margin=0.2)
    model = keras.Model([images, labels], head(embedder(images), labels=labels))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(30, 6)).astype("float32")
    y = np.arange(30) % 3
    a, b = rng.normal(size=(2, 40, 6)).astype("float32")
    same = np.arange(40) % 2 == 0
    b[same] = a[same] + 0.1 * rng.normal(size=(20, 6)).astype("float32")
    pairs = tf.data.Dataset.from_tensor_slices((a, b, same))  # unbatched: the callback batches it
    callback = VerificationCallback(pairs, embedder, num_folds=4, far_targets=(1e-3, 0.05), every=2)
    history = model.fit([x, y], y, epochs=4, batch_size=10, verbose=0, callbacks=[callback])
    for key in ("val_verification_accuracy", "val_auc", "val_tar@far=1e-3", "val_tar@far=5e-2"):
        assert len(history.history[key]) == 2, history.history.keys()  # epochs 2 and 4 only
    expected = evaluation.verification_report(
        embedder.predict(a, verbose=0), embedder.predict(b, verbose=0), same, num_folds=4)
    assert history.history["val_verification_accuracy"][-1] == pytest.approx(expected["accuracy"])
    assert history.history["val_auc"][-1] == pytest.approx(expected["auc"])
    assert far_name(0.0015) == "1.5e-3"


def loop_angle(u, v):
    return math.degrees(math.acos(np.clip(u @ v / (np.linalg.norm(u) * np.linalg.norm(v)), -1.0, 1.0)))


@pytest.mark.parametrize("head_kind", ["arcface_subcenters", "dense"])
def test_angle_statistics_equal_loops_and_reach_history(rng, head_kind):
    num_classes, subcenters = 4, 2 if head_kind == "arcface_subcenters" else 1
    images = keras.Input((2, 2, 1))
    labels = keras.Input((), dtype="int32")
    embedder = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
    if head_kind == "dense":
        head = keras.layers.Dense(num_classes)
        logits = head(embedder(images))
    else:
        head = keras_margin.ArcMarginHead(num_classes, num_subcenters=subcenters, scale=8.0, margin=0.2)
        logits = head(embedder(images), labels=labels)
    model = keras.Model([images, labels], logits)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(24, 2, 2, 1)).astype("float32")
    y = np.arange(24) % num_classes
    a, b = rng.normal(size=(2, 10, 2, 2, 1)).astype("float32")
    same = np.arange(10) < 4
    callback = AngleStatistics(embedder, head, x, y, pairs=(a, b, same), quantiles=(0.25, 0.5))
    history = model.fit([x, y], y, epochs=2, batch_size=8, verbose=0, callbacks=[callback])

    features = embedder.predict(x, verbose=0).astype(np.float64)
    kernel = np.asarray(head.kernel, dtype=np.float64)  # (dim, classes · K), class-major
    target, nearest = [], []
    for feature, label in zip(features, y):
        per_class = [min(loop_angle(feature, kernel[:, c * subcenters + k]) for k in range(subcenters))
                     for c in range(num_classes)]
        target.append(per_class[label])
        nearest.append(min(angle for c, angle in enumerate(per_class) if c != label))
    fa, fb = embedder.predict(a, verbose=0), embedder.predict(b, verbose=0)
    pair_angles = np.array([loop_angle(u.astype(np.float64), v.astype(np.float64)) for u, v in zip(fa, fb)])
    expected = {"target": target, "nontarget": nearest, "genuine": pair_angles[same],
                "impostor": pair_angles[~same]}
    for kind, values in expected.items():
        for q in (0.25, 0.5):
            key = f"angle_{kind}_p{q * 100:g}"
            assert len(history.history[key]) == 2
            assert history.history[key][-1] == pytest.approx(np.quantile(values, q), abs=1e-3), key
    epoch, arrays = callback.angles[-1]
    assert epoch == 1
    np.testing.assert_allclose(np.sort(arrays["target"]), np.sort(target), atol=1e-3)


def test_angle_statistics_errors(rng):
    embedder = keras.Sequential([keras.Input((2, 2, 1)), keras.layers.Flatten(), keras.layers.Dense(3)])
    x = rng.normal(size=(4, 2, 2, 1))
    head = keras.layers.Dense(2)
    with pytest.raises(ValueError, match="labels"):
        AngleStatistics(embedder, head, x, [0, 1])
    with pytest.raises(ValueError, match="both same-identity and different-identity"):
        AngleStatistics(embedder, head, x, [0, 1, 0, 1], pairs=(x, x, [True] * 4))
    with pytest.raises(ValueError, match="quantiles"):
        AngleStatistics(embedder, head, x, [0, 1, 0, 1], quantiles=(1.5,))
    with pytest.raises(ValueError, match="kernel"):
        AngleStatistics(embedder, keras.layers.ReLU(), x, [0, 1, 0, 1]).compute()


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="the JAX trainer alone updates metrics without the model's variables")
def test_target_angle_on_jax_rejects_a_moving_scale_or_margin():
    with pytest.raises(ValueError, match="JAX backend.*scale='adaptive'"):
        metrics.TargetAngle(keras_margin.ArcMarginHead(6, scale="adaptive"))
    with pytest.raises(ValueError, match="margin_warmup_steps=10"):
        metrics.TargetAngle(keras_margin.CosMarginHead(6, margin_warmup_steps=10))
