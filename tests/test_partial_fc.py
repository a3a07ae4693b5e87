"""Partial FC (`sample_rate` < 1): the head's own loss over the batch's classes plus sampled others.

The reference is written from the definition: a softmax cross-entropy over
the kept classes only, with the head's margin logits (tests/reference.py) on
those columns. Which classes a step kept is read off the kernel gradient:
exactly their rows get one.
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


def restricted_cross_entropy(logits, labels, kept):
    """Per-example −log softmax over the kept columns only, in float64."""
    sub = logits[:, kept].astype(np.float64)
    target = logits[np.arange(len(labels)), labels].astype(np.float64)
    top = sub.max(axis=1)
    return top + np.log(np.exp(sub - top[:, None]).sum(axis=1)) - target


def kernel_columns(head):
    """The head's class weights as `(dim, C·K)` columns, the layout of tests/reference.py."""
    kernel = keras.ops.convert_to_numpy(head.kernel)
    return kernel.T if head.sample_rate < 1.0 else kernel


def mean_of_output(_, per_example):
    return keras.ops.mean(per_example)


def sampled_step(head, x, labels):
    """One training call: the per-example losses, and the classes whose kernel rows got a gradient."""
    out, _, grad_kernel = loss_gradients(head, x, labels, mean_of_output, training=True, return_output=True)
    touched_rows = np.any(grad_kernel != 0, axis=1)
    kept = np.flatnonzero(touched_rows.reshape(head.num_classes, head.num_subcenters).any(axis=1))
    return out, kept


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
    assert tuple(head.kernel.shape) == (NUM_CLASSES * head.num_subcenters, DIM), "one class weight per row"
    out, kept = sampled_step(head, x, labels)
    assert out.shape == (BATCH,)
    assert len(kept) == math.ceil(0.3 * NUM_CLASSES), "only the kept classes' rows get gradients"
    assert set(labels) <= set(kept), "every class of the batch is kept"
    full = expected(x, kernel_columns(head), labels)
    np.testing.assert_allclose(out, restricted_cross_entropy(full, labels, kept), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_rate_that_keeps_every_class_equals_the_full_head(rng, kind):
    make, expected = HEADS[kind]
    head = make(sample_rate=0.99, seed=1)  # ⌈0.99·40⌉ = 40: the sampled path with all classes
    x, labels = sample(rng)
    out = keras.ops.convert_to_numpy(head(x, labels=labels, training=True))
    full = expected(x, kernel_columns(head), labels)
    reference_loss = restricted_cross_entropy(full, labels, np.arange(NUM_CLASSES))
    np.testing.assert_allclose(out, reference_loss, rtol=1e-5, atol=1e-5)
    assert len(head.losses) == 1
    assert float(head.losses[0]) == pytest.approx(reference_loss.mean(), rel=1e-5)


def test_evaluation_and_prediction_use_all_classes(rng):
    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.4, sample_rate=0.2)
    x, labels = sample(rng)
    evaluated = keras.ops.convert_to_numpy(head(x, labels=labels, training=False))
    full = reference.arc_logits(x, kernel_columns(head), labels, 16.0, 0.4)
    np.testing.assert_allclose(evaluated, full, rtol=1e-5, atol=1e-5)
    assert float(head.losses[0]) == pytest.approx(
        restricted_cross_entropy(full, labels, np.arange(NUM_CLASSES)).mean(), rel=1e-5
    )
    plain = keras.ops.convert_to_numpy(head(x))
    np.testing.assert_allclose(plain, 16.0 * reference.cosines(x, kernel_columns(head)), rtol=1e-5, atol=1e-5)


def test_sampling_is_seeded_and_varies_between_steps(rng):
    x, labels = sample(rng)

    def step_losses(seed):
        head = keras_margin.CosMarginHead(NUM_CLASSES, sample_rate=0.3, seed=seed,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=0))
        return [keras.ops.convert_to_numpy(head(x, labels=labels, training=True)) for _ in range(3)]

    first, again, other = step_losses(11), step_losses(11), step_losses(12)
    np.testing.assert_array_equal(np.stack(first), np.stack(again))
    assert not np.array_equal(np.stack(first), np.stack(other))
    assert not np.array_equal(first[0], first[1]), "each step draws new classes"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="IndexedSlices are TensorFlow's")
def test_sgd_updates_only_the_kept_rows_on_tensorflow(rng):
    import tensorflow as tf

    head = keras_margin.ArcMarginHead(NUM_CLASSES, scale=16.0, sample_rate=0.25, seed=3)
    x, labels = sample(rng)
    head(x)
    before = np.array(head.kernel)
    with tf.GradientTape() as tape:
        loss = keras.ops.mean(head(x, labels=labels, training=True))
    gradient = tape.gradient(loss, head.trainable_variables)
    assert isinstance(gradient[0], tf.IndexedSlices)
    keras.optimizers.SGD(0.5).apply(gradient, head.trainable_variables)
    moved = np.flatnonzero(np.any(np.array(head.kernel) != before, axis=1))
    assert len(moved) <= math.ceil(0.25 * NUM_CLASSES)
    assert set(labels) <= set(moved)


def test_adaptive_scale_estimates_the_sum_over_all_classes(rng):
    def make():
        return keras_margin.CosMarginHead(NUM_CLASSES, scale="adaptive", margin=0.0, sample_rate=0.5, seed=2,
                                          kernel_initializer=keras.initializers.GlorotUniform(seed=0))

    head, twin = make(), make()  # the same draw: the twin's gradient shows which classes were kept
    head.build((None, 64))
    twin.build((None, 64))
    _, labels = sample(rng)
    # near their class weights, in 64-D: small θ_med and non-target cosines
    # near 0, where the formula stays below the scale's cap √2·ln(C − 1)
    x = (kernel_columns(head)[:, labels].T + 0.05 * rng.normal(size=(BATCH, 64))).astype("float32")
    head(x, labels=labels, training=True)
    _, kept = sampled_step(twin, x, labels)
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
    model.compile(keras.optimizers.Adam(1e-2), jit_compile=True)  # the head adds its own loss
    history = model.fit([x, labels], batch_size=30, epochs=6, verbose=0)
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
    assert restored.evaluate([x, labels], verbose=0) == pytest.approx(full_loss.mean(), rel=1e-4)


def test_partial_fc_errors(rng):
    with pytest.raises(ValueError, match=r"`sample_rate` must be a number in \(0.0, 1.0\]"):
        keras_margin.ArcMarginHead(10, sample_rate=0.0)
    head = keras_margin.CosMarginHead(NUM_CLASSES, sample_rate=0.1)  # keeps 4 classes
    x, labels = sample(rng)
    with pytest.raises(ValueError, match=r"keeps 4 of 40 classes per step, fewer than the batch size 8"):
        head(x, labels=labels, training=True)
