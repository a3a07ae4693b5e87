"""SavedModel export of the embedding network and of a closed-set classifier.

Each export is served in a separate process that never imports keras_margin
(tests/scripts/serve_savedmodel.py) and compared with the Keras model, with the
normalization and flip written out in NumPy here.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_margin
from keras_margin import export

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "serve_savedmodel.py"
IMAGE_SHAPE = (8, 6, 1)


def training_model(center_loss=True):
    images = keras.Input(IMAGE_SHAPE, name="images")
    labels = keras.Input((), dtype="int32", name="labels")
    x = keras.layers.Conv2D(3, 3, activation="relu")(images)
    embeddings = keras.layers.Dense(5, name="embedding")(keras.layers.Flatten()(x))
    if center_loss:
        embeddings = keras_margin.CenterLossLayer(4)(embeddings, labels=labels)
    head = keras_margin.CosMarginHead(4, scale=10.0)
    return keras.Model([images, labels], head(embeddings, labels=labels)), head


def serve(path, images, key, tmp_path):
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(path), str(tmp_path / "images.npy"), key, str(tmp_path / "out.npz")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    return served["saved_model"], served["tfsm_layer"]


def normalized(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("normalize, flip", [(True, False), (True, True), (False, False)])
def test_exported_embeddings_match_keras_without_keras_margin(tmp_path, rng, normalize, flip):
    model, _ = training_model()
    images = rng.normal(size=(7, *IMAGE_SHAPE)).astype("float32")
    embedder = export.export_embedding_model(model, tmp_path / "embedder", normalize=normalize, flip=flip)
    assert embedder.output.shape == (None, 5)

    # the Keras embedding, written out: the Dense layer named "embedding" is the embedding
    plain = keras.Model(model.inputs[0], model.get_layer("embedding").output)
    expected = plain.predict(images, verbose=0)
    if flip:
        expected = expected + plain.predict(images[:, :, ::-1], verbose=0)
    if normalize:
        expected = normalized(expected)
    for served in serve(tmp_path / "embedder", images, "embeddings", tmp_path):
        assert np.max(np.abs(served - expected)) <= 1e-5


def test_exported_classifier_gives_the_plain_logits(tmp_path, rng):
    model, head = training_model(center_loss=False)
    images = rng.normal(size=(6, *IMAGE_SHAPE)).astype("float32")
    export.export_classifier(model, tmp_path / "classifier")
    features = keras.Model(model.inputs[0], model.get_layer("embedding").output).predict(images, verbose=0)
    kernel = keras.ops.convert_to_numpy(head.kernel)
    expected = 10.0 * normalized(features) @ (kernel / np.linalg.norm(kernel, axis=0))  # s·cos θ_j, no margin
    for served in serve(tmp_path / "classifier", images, "logits", tmp_path):
        assert np.max(np.abs(served - expected)) <= 1e-5


def test_an_embedding_network_exports_as_is(tmp_path, rng):
    inputs = keras.Input((4,))
    embedder = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    assert export.embedding_model(embedder) is embedder
    export.export_embedding_model(embedder, tmp_path / "e", normalize=False)
    x = rng.normal(size=(3, 4)).astype("float32")
    served, _ = serve(tmp_path / "e", x, "embeddings", tmp_path)
    np.testing.assert_allclose(served, embedder.predict(x, verbose=0), atol=1e-6)


def test_embedding_search_errors_and_explicit_layer():
    images = keras.Input((4,))
    labels = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(3, name="features")(images)
    two_heads = keras.Model(
        [images, labels],
        [keras_margin.ArcMarginHead(2)(embeddings, labels=labels), keras_margin.CosMarginHead(2)(embeddings, labels=labels)],
    )
    with pytest.raises(ValueError, match="several heads"):
        export.embedding_model(two_heads)
    assert export.embedding_model(two_heads, embedding_layer="features").output.shape == (None, 3)
    no_head = keras.Model([images, labels], embeddings)
    with pytest.raises(ValueError, match="no margin head"):
        export.embedding_model(no_head)
    with pytest.raises(ValueError, match="no margin head"):
        export.classifier_model(keras.Model(images, embeddings))


def test_tflite_conversion_matches(tmp_path, rng):
    tf = pytest.importorskip("tensorflow")
    if not hasattr(tf, "lite"):
        pytest.skip("this TensorFlow has no tf.lite converter")
    model, _ = training_model()
    export.export_embedding_model(model, tmp_path / "embedder")
    converter = tf.lite.TFLiteConverter.from_saved_model(str(tmp_path / "embedder"), signature_keys=["serve"])
    interpreter = tf.lite.Interpreter(model_content=converter.convert())
    runner = interpreter.get_signature_runner("serve")
    images = rng.normal(size=(1, *IMAGE_SHAPE)).astype("float32")  # the converter fixes the batch at 1
    served = runner(images=images)["embeddings"]
    plain = keras.Model(model.inputs[0], model.get_layer("embedding").output)
    assert np.max(np.abs(served - normalized(plain.predict(images, verbose=0)))) <= 1e-5
