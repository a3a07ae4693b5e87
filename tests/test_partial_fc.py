"""Partial FC (`sample_rate` < 1): the margin logits of the batch's classes plus sampled others.

The reference is written from the definition: a softmax cross-entropy over
the kept classes only, with the head's margin logits (tests/reference.py) on
those columns. A training step returns `(batch, C)` logits whose columns of
the classes not kept hold −1e30, so Keras' own cross-entropy over the row is
that reference. Which classes a step kept is read off the output, and checked
against the kernel gradient: exactly their columns get one.
"""

import json
import math
import os

import keras
import numpy as np
import pytest

import keras_margin
import reference
from backend_utils import loss_gradients
from keras_margin import margins

pytestmark = pytest.mark.jax_ci  # backend-neutral: CI runs it on JAX too

NUM_CLASSES, DIM, BATCH = 40, 6, 8


def sample(rng, batch=BATCH, num_classes=NUM_CLASSES):
    x = rng.normal(size=(batch, DIM)).astype("float32")
    labels = rng.integers(0, num_classes, batch).astype("int32")
    return x, labels


def restricted_cross_entropy(logits, labels, kept):
    """Per-example −log softmax over the kept columns only, in float64."""
    sub = logits[:, kept].astype(np.float64)
    target = logits[np.arange(len(labels)), labels].astype(np.float64)
    top = sub.max(axis=1)
    return top + np.log(np.exp(sub - top[:, None]).sum(axis=1)) - target


def kernel_columns(head):
    """The head's class weights, `(dim, C·K)` columns: the layout of every head and of tests/reference.py."""
    return keras.ops.convert_to_numpy(head.kernel)


def cross_entropy(labels, logits):
    return keras.ops.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def sampled_step(head, x, labels):
    """One training call: the logits, the classes kept (not masked) and those whose kernel columns got a gradient."""
    out, _, grad_kernel = loss_gradients(head, x, labels, lambda y, logits: keras.ops.mean(cross_entropy(y, logits)),
                                         training=True, return_output=True)
    kept = np.flatnonzero(out[0] > margins.MASKED_LOGIT / 2)
    touched = np.any(grad_kernel != 0, axis=0).reshape(head.num_classes, head.num_subcenters).any(axis=1)
    return out, kept, np.flatnonzero(touched)


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
def test_sampled_loss_is_the_softmax_cross_entropy_over_the_kept_classes(rng, kind):
    make, expected = HEADS[kind]
    head = make(sample_rate=0.3, seed=5)
    x, labels = sample(rng)
    head(x)
    assert tuple(head.kernel.shape) == (DIM, NUM_CLASSES * head.num_subcenters), "the full head's layout"
    out, kept, touched = sampled_step(head, x, labels)
    assert out.shape == (BATCH, NUM_CLASSES)
    assert len(kept) == math.ceil(0.3 * NUM_CLASSES)
    np.testing.assert_array_equal(touched, kept), "only the kept classes' columns get gradients"
    assert set(labels) <= set(kept), "every class of the batch is kept"
    full = expected(x, kernel_columns(head), labels)
    np.testing.assert_allclose(out[:, kept], full[:, kept], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(cross_entropy(labels, out)),
                               restricted_cross_entropy(full, labels, kept), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_rate_that_keeps_every_class_equals_the_full_head(rng, kind):
    make, expected = HEADS[kind]
    head = make(sample_rate=0.99, seed=1)  # ⌈0.99·40⌉ = 40: the sampled path with all classes
    x, labels = sample(rng)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    full = expected(x, kernel_columns(head), labels)
    np.testing.assert_allclose(out, full, rtol=1e-5, atol=1e-4)
    assert not head.losses, "the head adds no loss of its own: compile with the usual one"


def test_evaluation_and_prediction_use_all_classes(rng):
    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.4, sample_rate=0.2)
    x, labels = sample(rng)
    evaluated = keras.ops.convert_to_numpy(head(x, labels=labels, training=False))
    full = reference.arc_logits(x, kernel_columns(head), labels, 16.0, 0.4)
    np.testing.assert_allclose(evaluated, full, rtol=1e-5, atol=1e-5)
    plain = keras.ops.convert_to_numpy(head(x))
    np.testing.assert_allclose(plain, 16.0 * reference.cosines(x, kernel_columns(head)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sample_rate", [1.0, 0.5])
def test_compute_output_shape_is_what_call_returns_in_every_mode(rng, sample_rate):
    head = keras_margin.CosMarginHead(NUM_CLASSES, scale=16.0, sample_rate=sample_rate, seed=0)
    x, labels = sample(rng)
    for call_labels in (labels, labels[:, None], None):
        for training in (True, False):
            kwargs = {} if call_labels is None else {"labels": call_labels}
            out = head(x, training=training, **kwargs)
            labels_shape = None if call_labels is None else call_labels.shape
            assert tuple(out.shape) == head.compute_output_shape(x.shape, labels_shape)
    symbolic = head(keras.Input((DIM,), batch_size=BATCH), labels=keras.Input((), batch_size=BATCH, dtype="int32"))
    assert tuple(symbolic.shape) == (BATCH, NUM_CLASSES)


def _model(head, compile_loss=True):
    features = keras.Input((DIM,), name="features")
    labels = keras.Input((), dtype="int32", name="labels")
    model = keras.Model([features, labels], head(features, labels=labels))
    if compile_loss:
        model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


def test_set_weights_moves_between_a_sampled_and_a_full_head(rng):
    def make(rate, seed):
        return keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.3, num_subcenters=2, sample_rate=rate,
                                          margin_warmup_steps=4,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=seed))

    x, labels = sample(rng)
    sampled, full = _model(make(0.5, 1)), _model(make(1.0, 2))
    sampled.fit([x, labels], labels, batch_size=BATCH, epochs=2, verbose=0)  # moves the kernel and the warm-up
    full.set_weights(sampled.get_weights())
    for a, b in zip(full.weights, sampled.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_allclose(full.predict([x, labels], verbose=0), sampled.predict([x, labels], verbose=0),
                               rtol=1e-6)
    full.fit([x, labels], labels, batch_size=BATCH, epochs=2, verbose=0)
    sampled.set_weights(full.get_weights())  # and back
    np.testing.assert_allclose(sampled.predict([x, labels], verbose=0), full.predict([x, labels], verbose=0),
                               rtol=1e-6)
    # the layer's own weights too
    full.layers[-1].set_weights(sampled.layers[-1].get_weights())


def test_accuracy_and_sample_weights_work_like_any_head(rng):
    x, labels = sample(rng, batch=32)
    head = keras_margin.CosMarginHead(NUM_CLASSES, scale=16.0, sample_rate=0.9, seed=0)
    model = _model(head, compile_loss=False)
    model.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    history = model.fit([x, labels], labels, sample_weight=np.ones(32), batch_size=BATCH, epochs=1, verbose=0)
    assert 0.0 <= history.history["accuracy"][0] <= 1.0
    loss, accuracy = model.evaluate([x, labels], labels, verbose=0)
    logits = model.predict([x, labels], verbose=0)
    assert accuracy == pytest.approx(np.mean(np.argmax(logits, axis=1) == labels))
    assert loss == pytest.approx(restricted_cross_entropy(logits, labels, np.arange(NUM_CLASSES)).mean(), rel=1e-4)


def test_sampling_is_seeded_and_varies_between_steps(rng):
    x, labels = sample(rng)

    def step_logits(seed):
        head = keras_margin.CosMarginHead(NUM_CLASSES, sample_rate=0.3, seed=seed,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=0))
        return [keras.ops.convert_to_numpy(head(x, labels=labels, training=True)) for _ in range(3)]

    first, again, other = step_logits(11), step_logits(11), step_logits(12)
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))
    assert not np.array_equal(first[0], first[1]), "each step draws new classes"


def test_sgd_updates_only_the_kept_columns(rng):
    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, sample_rate=0.25, seed=3)
    x, labels = sample(rng)
    model = _model(head)
    before = np.array(head.kernel)
    model.fit([x, labels], labels, batch_size=BATCH, epochs=1, verbose=0)
    moved = np.flatnonzero(np.any(np.array(head.kernel) != before, axis=0))
    assert len(moved) <= math.ceil(0.25 * NUM_CLASSES)
    assert set(labels) <= set(moved)


def test_adaptive_scale_estimates_the_sum_over_all_classes(rng):
    def make():
        return keras_margin.CosMarginHead(NUM_CLASSES, scale="adaptive", margin=0.0, sample_rate=0.5, seed=2,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=0))

    head, twin = make(), make()  # the same draw: the twin's output shows which classes were kept
    head.build((None, 64))
    twin.build((None, 64))
    _, labels = sample(rng)
    # near their class weights, in 64-D: small θ_med and non-target cosines
    # near 0, where the formula stays below the scale's cap √2·ln(C − 1)
    x = (kernel_columns(head)[:, labels].T + 0.05 * rng.normal(size=(BATCH, 64))).astype("float32")
    head(x, labels=labels, training=True)
    _, kept, _ = sampled_step(twin, x, labels)
    cos = reference.cosines(x, kernel_columns(head))
    previous = math.sqrt(2) * math.log(NUM_CLASSES - 1)
    total = sum(math.exp(previous * cos[i, k]) for i, y in enumerate(labels) for k in kept if k != y)
    b_avg = total / BATCH * (NUM_CLASSES - 1) / (len(kept) - 1)
    theta = np.arccos(cos[np.arange(BATCH), labels])
    expected = math.log(b_avg) / math.cos(min(math.pi / 4, float(np.median(theta))))
    cap = math.sqrt(2) * math.log(NUM_CLASSES - 1)
    assert expected < cap, "the case must be one the cap leaves alone"
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
                  metrics=["accuracy"], jit_compile=True)
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
    full_loss = restricted_cross_entropy(model.predict([x, labels], verbose=0), labels, np.arange(num_classes))
    assert restored.evaluate([x, labels], labels, verbose=0)[0] == pytest.approx(full_loss.mean(), rel=1e-4)


def test_partial_fc_errors(rng):
    with pytest.raises(ValueError, match=r"`sample_rate` must be a number in \(0.0, 1.0\]"):
        keras_margin.ArcMarginHead(10, sample_rate=0.0)
    head = keras_margin.CosMarginHead(NUM_CLASSES, sample_rate=0.1)  # keeps 4 classes
    x, labels = sample(rng)
    with pytest.raises(ValueError, match=r"keeps 4 of 40 classes per step, fewer than the batch size 8"):
        head(x, labels=labels, training=True)


LEGACY = os.path.join(os.path.dirname(__file__), "legacy_models")


def test_a_partial_fc_model_saved_by_0_1_loads_with_its_kernel_transposed():
    """0.1 stored a Partial FC kernel one class per row, `(C·K, dim)`; it loads into the `(dim, C·K)` layout."""
    with open(os.path.join(LEGACY, "expected.json")) as file:
        expected = json.load(file)["arc_partial_fc"]
    inputs = np.load(os.path.join(LEGACY, "inputs.npz"))
    model = keras.saving.load_model(os.path.join(LEGACY, "arc_partial_fc.keras"), compile=False)
    head = model.layers[-1]
    np.testing.assert_array_equal(np.asarray(head.kernel), np.asarray(expected["kernel"]).T)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model([inputs["x"], inputs["y"]], training=False)), expected["eval_logits"],
                               rtol=1e-5, atol=1e-5)
