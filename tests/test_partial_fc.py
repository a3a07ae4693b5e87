"""Partial FC (`sample_rate` < 1): logits of the batch's classes plus sampled others.

The reference is written from the definition: a softmax cross-entropy over
the kept classes only, with the head's margin logits (tests/reference.py) on
those columns.
"""

import math

import keras
import numpy as np
import pytest

import keras_margin
import reference
from backend_utils import loss_gradients
from keras_margin import margins

NUM_CLASSES, DIM, BATCH = 40, 6, 8


def sample(rng, batch=BATCH, num_classes=NUM_CLASSES):
    x = rng.normal(size=(batch, DIM)).astype("float32")
    labels = rng.integers(0, num_classes, batch).astype("int32")
    return x, labels


def kept_columns(logits):
    return np.flatnonzero(np.all(logits > margins.MASKED_LOGIT / 2, axis=0))


def restricted_cross_entropy(logits, labels, kept):
    """Mean −log softmax over the kept columns only, in float64."""
    sub = logits[:, kept].astype(np.float64)
    target = logits[np.arange(len(labels)), labels].astype(np.float64)
    top = sub.max(axis=1)
    return float(np.mean(top + np.log(np.exp(sub - top[:, None]).sum(axis=1)) - target))


HEADS = {
    "arc": (lambda **kw: keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.4, **kw),
            lambda x, k, y: reference.arc_logits(x, k, y, 16.0, 0.4)),
    "cos": (lambda **kw: keras_margin.CosMarginHead(NUM_CLASSES, scale=16.0, margin=0.3, **kw),
            lambda x, k, y: reference.cos_logits(x, k, y, 16.0, 0.3)),
    "combined_subcenters": (
        lambda **kw: keras_margin.CombinedMarginHead(NUM_CLASSES, scale=16.0, m1=1.2, m2=0.2, m3=0.1,
                                                     num_subcenters=3, **kw),
        lambda x, k, y: reference.combined_logits(x, k, y, 16.0, 1.2, 0.2, 0.1, num_subcenters=3),
    ),
}


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_sampled_logits_are_the_full_logits_of_the_kept_classes(rng, kind):
    make, expected = HEADS[kind]
    head = make(sample_rate=0.3, seed=5)
    x, labels = sample(rng)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    assert out.shape == (BATCH, NUM_CLASSES)
    kept = kept_columns(out)
    assert len(kept) == math.ceil(0.3 * NUM_CLASSES)
    assert set(labels) <= set(kept), "every class of the batch is kept"
    full = expected(x, np.array(head.kernel), labels)
    np.testing.assert_allclose(out[:, kept], full[:, kept], rtol=1e-5, atol=1e-5)
    dropped = np.setdiff1d(np.arange(NUM_CLASSES), kept)
    assert np.all(out[:, dropped] == margins.MASKED_LOGIT)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(labels, out)
    assert float(loss) == pytest.approx(restricted_cross_entropy(full, labels, kept), rel=1e-5)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_rate_that_keeps_every_class_equals_the_full_head(rng, kind):
    make, expected = HEADS[kind]
    head = make(sample_rate=0.99, seed=1)  # ⌈0.99·40⌉ = 40: the sampled path with all classes
    x, labels = sample(rng)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    np.testing.assert_allclose(out, expected(x, np.array(head.kernel), labels), rtol=1e-5, atol=1e-5)


def test_inference_uses_all_classes(rng):
    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.4, sample_rate=0.2)
    x, labels = sample(rng)
    kernel_logits = lambda: reference.arc_logits(x, np.array(head.kernel), labels, 16.0, 0.4)  # noqa: E731
    evaluated = keras.ops.convert_to_numpy(head(x, labels=labels, training=False))
    np.testing.assert_allclose(evaluated, kernel_logits(), rtol=1e-5, atol=1e-5)
    plain = keras.ops.convert_to_numpy(head(x))
    np.testing.assert_allclose(plain, 16.0 * reference.cosines(x, np.array(head.kernel)), rtol=1e-5, atol=1e-5)


def test_sampling_is_seeded_and_varies_between_steps(rng):
    x, labels = sample(rng)

    def kept_sets(seed):
        head = keras_margin.CosMarginHead(NUM_CLASSES, sample_rate=0.3, seed=seed,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=0))
        return [tuple(kept_columns(keras.ops.convert_to_numpy(head(x, labels=labels, training=True))))
                for _ in range(3)]

    first, again, other = kept_sets(11), kept_sets(11), kept_sets(12)
    assert first == again
    assert first != other
    assert len(set(first)) > 1, "each step draws new classes"


def test_only_kept_columns_get_gradients(rng):
    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, sample_rate=0.25, seed=3)
    x, labels = sample(rng)
    head(x)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    _, gradient = loss_gradients(head, x, labels, lambda _, logits: loss_fn(labels, logits), training=True)
    touched = np.flatnonzero(np.any(gradient != 0, axis=0))
    assert len(touched) <= math.ceil(0.25 * NUM_CLASSES), "at most the kept columns get gradients"
    assert set(labels) <= set(touched)


def test_adaptive_scale_estimates_the_sum_over_all_classes(rng):
    head = keras_margin.CosMarginHead(NUM_CLASSES, scale="adaptive", margin=0.0, sample_rate=0.5, seed=2)
    x, labels = sample(rng)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    kept = kept_columns(out)
    cos = reference.cosines(x, np.array(head.kernel))
    previous = math.sqrt(2) * math.log(NUM_CLASSES - 1)
    total = sum(math.exp(previous * cos[i, k]) for i, y in enumerate(labels) for k in kept if k != y)
    b_avg = total / BATCH * (NUM_CLASSES - 1) / (len(kept) - 1)
    theta = np.arccos(cos[np.arange(BATCH), labels])
    expected = math.log(b_avg) / math.cos(min(math.pi / 4, float(np.median(theta))))
    assert head.current_scale == pytest.approx(max(1.0, expected), rel=1e-4)


def test_partial_fc_trains_under_xla_and_round_trips(tmp_path, rng):
    num_classes = 60
    centers = rng.normal(size=(num_classes, DIM)) * 3
    labels = rng.integers(0, num_classes, 1200).astype("int32")
    x = (centers[labels] + rng.normal(size=(1200, DIM))).astype("float32")
    inputs = keras.Input((DIM,))
    label_input = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(16)(keras.layers.Dense(64, activation="relu")(inputs))
    head = keras_margin.ArcMarginHead(num_classes, scale=16.0, margin=0.2, sample_rate=0.5, seed=0, name="head")
    model = keras.Model([inputs, label_input], head(embeddings, labels=label_input))
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    history = model.fit([x, labels], labels, batch_size=30, epochs=6, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    predict = keras.Model(inputs, head(embeddings))
    accuracy = np.mean(np.argmax(predict.predict(x, verbose=0), axis=1) == labels)
    assert accuracy > 0.9, accuracy
    model.save(tmp_path / "partial.keras")
    restored = keras.saving.load_model(tmp_path / "partial.keras", safe_mode=True)
    assert restored.get_layer("head").get_config() == head.get_config()
    np.testing.assert_allclose(restored.predict([x, labels], verbose=0), model.predict([x, labels], verbose=0),
                               rtol=1e-6)


def test_partial_fc_errors(rng):
    with pytest.raises(ValueError, match=r"`sample_rate` must be a number in \(0.0, 1.0\]"):
        keras_margin.ArcMarginHead(10, sample_rate=0.0)
    head = keras_margin.CosMarginHead(NUM_CLASSES, sample_rate=0.1)  # keeps 4 classes
    x, labels = sample(rng)
    with pytest.raises(ValueError, match=r"keeps 4 of 40 classes per step, fewer than the batch size 8"):
        head(x, labels=labels, training=True)
