"""`.keras` round trips and `get_config` completeness of every layer."""

import keras
import numpy as np
import pytest

import keras_margin
from keras_margin import layers

NUM_CLASSES, DIM = 5, 6

LAYERS = {
    "normalized_dense": lambda: layers.NormalizedDense(NUM_CLASSES, scale=7.0, kernel_regularizer="l2"),
    "arc": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=30.0, margin=0.4, fallback="insightface", gradient="detached", num_subcenters=2),
    "cos": lambda: layers.CosMarginHead(NUM_CLASSES, scale=20.0, margin=0.25, kernel_initializer="he_normal"),
    "combined": lambda: layers.CombinedMarginHead(NUM_CLASSES, scale=32.0, m1=1.2, m2=0.3, m3=0.1, fallback="easy"),
    "sphere": lambda: layers.SphereMarginHead(NUM_CLASSES, margin=3, lambda_base=500.0, lambda_gamma=0.2, lambda_power=0.5, lambda_min=2.0),
    "large": lambda: layers.LargeMarginHead(NUM_CLASSES, margin=2, lambda_min=1.0, kernel_constraint="max_norm"),
}


def model_with(layer):
    embeddings = keras.Input((DIM,), name="embeddings")
    if isinstance(layer, layers.NormalizedDense):
        return keras.Model(embeddings, layer(embeddings))
    labels = keras.Input((), dtype="int32", name="labels")
    return keras.Model([embeddings, labels], [layer(embeddings, labels=labels), layer(embeddings)])


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_keras_round_trip_gives_identical_outputs(tmp_path, rng, name):
    layer = LAYERS[name]()
    model = model_with(layer)
    x = rng.normal(size=(8, DIM)).astype("float32")
    labels = rng.integers(0, NUM_CLASSES, size=8).astype("int32")
    inputs = x if isinstance(layer, layers.NormalizedDense) else [x, labels]
    if hasattr(layer, "annealing_step"):
        layer.annealing_step.assign(37)
    before = model.predict(inputs, verbose=0)

    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)  # no custom_objects
    after = restored.predict(inputs, verbose=0)
    for a, b in zip(keras.tree.flatten(before), keras.tree.flatten(after)):
        np.testing.assert_array_equal(a, b)

    restored_layer = restored.layers[-1]
    assert type(restored_layer) is type(layer)
    assert restored_layer.get_config() == layer.get_config()
    for v0, v1 in zip(layer.weights, restored_layer.weights):
        assert v0.name == v1.name
        np.testing.assert_array_equal(np.asarray(v0), np.asarray(v1))
    if hasattr(layer, "annealing_step"):
        assert int(restored_layer.annealing_step.numpy()) == 37


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_from_config_rebuilds_the_same_layer(name):
    layer = LAYERS[name]()
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == f"keras_margin>{type(layer).__name__}"
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config


def test_public_import_paths():
    for name in ("NormalizedDense", "ArcMarginHead", "CosMarginHead", "SphereMarginHead", "LargeMarginHead", "CombinedMarginHead"):
        assert getattr(keras_margin.layers, name) is getattr(keras_margin, name)
        assert keras.saving.get_registered_name(getattr(keras_margin, name)) == f"keras_margin>{name}"
