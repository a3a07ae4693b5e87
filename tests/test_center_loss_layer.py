"""CenterLossLayer: the loss term, the center update rule, saving, training."""

import keras
import numpy as np
import pytest

from backend_utils import gradients
from keras_margin import layers

pytestmark = pytest.mark.jax_ci  # backend-neutral: CI runs it on JAX too
NUM_CLASSES, DIM = 4, 3


def numpy_center_update(centers, x, labels, alpha):
    """Wen et al. eq. 4, written as a loop over classes."""
    new = centers.astype(np.float64).copy()
    for j in range(len(centers)):
        members = x[labels == j]
        step = np.sum(centers[j] - members, axis=0) / (1 + len(members))
        new[j] = centers[j] - alpha * step
    return new


def built_layer(rng, **kwargs):
    layer = layers.CenterLossLayer(NUM_CLASSES, **kwargs)
    layer.build((None, DIM))
    layer.centers.assign(rng.normal(size=(NUM_CLASSES, DIM)).astype("float32"))
    return layer


def test_added_loss_and_center_update_follow_the_formulas(rng):
    layer = built_layer(rng, alpha=0.3, weight=0.01)
    centers = np.asarray(layer.centers).copy()
    x = rng.normal(size=(10, DIM)).astype("float32")
    labels = np.array([0, 0, 1, 2, 2, 2, 0, 1, 2, 0])  # class 3 absent: its center must stay
    out = layer(x, labels=labels, training=True)
    np.testing.assert_array_equal(np.asarray(out), x)

    want_loss = 0.01 * np.mean([0.5 * np.sum((x[i] - centers[labels[i]]) ** 2) for i in range(10)])
    assert float(layer.losses[0]) == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(np.asarray(layer.centers), numpy_center_update(centers, x, labels, 0.3), rtol=1e-5, atol=1e-6)


def test_centers_do_not_move_outside_training(rng):
    layer = built_layer(rng)
    centers = np.asarray(layer.centers).copy()
    x = rng.normal(size=(6, DIM)).astype("float32")
    layer(x, labels=np.arange(6) % NUM_CLASSES, training=False)
    layer(x, training=True)
    np.testing.assert_array_equal(np.asarray(layer.centers), centers)
    np.testing.assert_array_equal(np.asarray(layer(x)), x)


def test_gradient_reaches_the_embeddings_only(rng):
    layer = built_layer(rng, weight=1.0)
    centers = np.asarray(layer.centers).copy()
    x = rng.normal(size=(5, DIM)).astype("float32")
    labels = np.array([0, 1, 1, 3, 0])

    def loss(x):
        layer(x, labels=labels, training=False)
        return layer.losses[0]

    grad_x, grad_centers = gradients(loss, [x], [layer.centers], state_of=layer)
    # d/dx [½ mean ‖x − c_y‖²] = (x − c_y) / batch
    np.testing.assert_allclose(grad_x, (x - centers[labels]) / 5, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(grad_centers, 0.0)
    assert layer.trainable_weights == []


def model_with_center_loss(alpha=0.5, weight=0.01):
    features = keras.Input((6,), name="features")
    labels = keras.Input((), dtype="int32", name="labels")
    embeddings = keras.layers.Dense(DIM, name="embedding")(features)
    center = layers.CenterLossLayer(NUM_CLASSES, alpha=alpha, weight=weight, name="center")
    embeddings = center(embeddings, labels=labels)
    logits = layers.ArcMarginHead(NUM_CLASSES, scale=16.0, margin=0.2)(embeddings, labels=labels)
    return keras.Model([features, labels], logits), center


def test_optimizer_does_not_change_the_centers_only_the_rule_does(rng):
    model, center = model_with_center_loss(alpha=0.5)
    center.centers.assign(rng.normal(size=(NUM_CLASSES, DIM)).astype("float32"))
    model.compile(keras.optimizers.SGD(1.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    x = rng.normal(size=(16, 6)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=16).astype("int32")
    embedder = keras.Model(model.inputs[0], model.get_layer("embedding").output)
    embeddings_before = embedder.predict(x, verbose=0)
    centers_before = np.asarray(center.centers).copy()
    model.fit([x, y], y, batch_size=16, epochs=1, verbose=0)  # one step on the whole batch
    want = numpy_center_update(centers_before, embeddings_before, y, 0.5)
    np.testing.assert_allclose(np.asarray(center.centers), want, rtol=1e-5, atol=1e-6)


def test_joint_margin_head_and_center_loss_train_and_log_both_terms(rng):
    model, center = model_with_center_loss(weight=0.05)
    centers_per_class = rng.normal(size=(NUM_CLASSES, 6)) * 3
    y = rng.integers(0, NUM_CLASSES, size=256).astype("int32")
    x = (centers_per_class[y] + rng.normal(size=(256, 6))).astype("float32")
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
    history = model.fit([x, y], y, batch_size=32, epochs=8, verbose=0).history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    if keras.backend.backend() == "tensorflow":  # Keras' JAX trainer cannot log layer metrics
        assert "center_loss" in history
        assert all(np.isfinite(history["center_loss"]))
        assert 0 < history["center_loss"][-1] < history["loss"][-1]


def test_centers_survive_keras_round_trip(tmp_path, rng):
    model, center = model_with_center_loss()
    center.centers.assign(rng.normal(size=(NUM_CLASSES, DIM)).astype("float32"))
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    restored_center = restored.get_layer("center")
    assert isinstance(restored_center, layers.CenterLossLayer)
    assert restored_center.get_config() == center.get_config()
    np.testing.assert_array_equal(np.asarray(restored_center.centers), np.asarray(center.centers))


@pytest.mark.parametrize("kwargs,argument", [
    (dict(alpha=0.0), "alpha"), (dict(alpha=1.5), "alpha"), (dict(weight=-1.0), "weight"),
])
def test_bad_arguments(kwargs, argument):
    with pytest.raises(ValueError, match=argument):
        layers.CenterLossLayer(4, **kwargs)


def test_bad_num_classes_and_label_batch():
    with pytest.raises(ValueError, match="num_classes"):
        layers.CenterLossLayer(1)
    with pytest.raises(ValueError, match="same batch size"):
        layers.CenterLossLayer(4)(np.ones((4, 3), "float32"), labels=np.array([0, 1, 2]))
    embeddings = keras.Input((3,), batch_size=8)
    labels = keras.Input((), batch_size=4, dtype="int32")
    with pytest.raises(ValueError, match="same batch size"):
        layers.CenterLossLayer(4)(embeddings, labels=labels)
