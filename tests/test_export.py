"""Export of the embedding network (SavedModel, ONNX, LiteRT) and of a closed-set classifier.

Each export is served in a separate process that never imports keras_margin
(tests/scripts/serve_savedmodel.py: tf.saved_model.load and TFSMLayer) or
neither keras_margin nor Keras (tests/scripts/serve_exported.py: onnxruntime,
the LiteRT interpreter), and compared with the Keras model, with the
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
# The serving processes are TensorFlow (or ONNX / LiteRT) runtimes, whatever backend exported the model.
SERVING_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
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
        capture_output=True, text=True, timeout=300, env=SERVING_ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served = np.load(tmp_path / "out.npz")
    return served["saved_model"], served["tfsm_layer"]


def normalized(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


writes_saved_models = pytest.mark.skipif(
    "tf_saved_model" not in export.FORMATS_BY_BACKEND[keras.backend.backend()],
    reason=f"Keras cannot export a SavedModel from the {keras.backend.backend()} backend "
           "(test_formats_this_backend_cannot_export)",
)


@writes_saved_models
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


@writes_saved_models
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
    file_format = export.FORMATS_BY_BACKEND[keras.backend.backend()][0]  # a SavedModel where the backend can
    path = tmp_path / ("e.onnx" if file_format == "onnx" else "e")
    export.export_embedding_model(embedder, path, normalize=False, format=file_format)
    x = rng.normal(size=(3, 4)).astype("float32")
    if file_format == "tf_saved_model":
        served, _ = serve(path, x, "embeddings", tmp_path)
    else:
        served = run_in_runtime(file_format, path, x, tmp_path)
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


RUNTIME_SCRIPT = pathlib.Path(__file__).parent / "scripts" / "serve_exported.py"


def run_in_runtime(kind, path, images, tmp_path):
    """Embeddings from the exported file in its own runtime, in a process without Keras."""
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run(
        [sys.executable, str(RUNTIME_SCRIPT), kind, str(path), str(tmp_path / "images.npy"), str(tmp_path / "out.npy")],
        capture_output=True, text=True, timeout=300, env=SERVING_ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return np.load(tmp_path / "out.npy")


def with_random_statistics(model, rng):
    """Random BatchNormalization statistics, so inference differs from training-mode BN."""
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(size=layer.moving_mean.shape) * 0.1)
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, size=layer.moving_variance.shape))
    return model


EXPORTED_NETWORKS = {
    "small_cnn": lambda: training_model()[0],
    "iresnet18": lambda: keras_margin.backbones.iresnet(18, embedding_dim=32, input_shape=(32, 32, 3)),
    "mobilefacenet": lambda: keras_margin.backbones.mobilefacenet(embedding_dim=32, input_shape=(32, 32, 3)),
}


def keras_embeddings(model, images, flip=True):
    embedder = export.embedding_model(model)
    expected = embedder.predict(images, verbose=0)
    if flip:
        expected = expected + embedder.predict(images[:, :, ::-1], verbose=0)
    return normalized(expected.astype(np.float64))


def on_this_backend(*formats):
    """The formats as parameters, those this Keras backend cannot export skipped (their error is tested below)."""
    backend = keras.backend.backend()
    reason = f"Keras cannot export this format from the {backend} backend (test_formats_this_backend_cannot_export)"
    return [pytest.param(f, marks=() if f in export.FORMATS_BY_BACKEND[backend] else pytest.mark.skip(reason=reason))
            for f in formats]


UNEXPORTABLE_HERE = [f for f in export.FORMATS if f not in export.FORMATS_BY_BACKEND[keras.backend.backend()]]


@pytest.mark.parametrize("file_format", UNEXPORTABLE_HERE)
def test_formats_this_backend_cannot_export_raise_a_clear_error(tmp_path, file_format):
    with pytest.raises(ValueError, match=rf"format='{file_format}' cannot be exported from the .* backend.*TensorFlow"):
        export.export_embedding_model(training_model()[0], tmp_path / "out", format=file_format)
    if file_format == "tf_saved_model":  # the classifier is a SavedModel too
        with pytest.raises(ValueError, match=r"format='tf_saved_model' cannot be exported from the .* backend"):
            export.export_classifier(training_model(center_loss=False)[0], tmp_path / "classifier")


# The backbones' exports take ~2.5 minutes together: marked slow, so the default run exports the small CNN.
EXPORTED_NETWORK_PARAMS = [pytest.param(n, marks=() if n == "small_cnn" else pytest.mark.slow) for n in sorted(EXPORTED_NETWORKS)]


@pytest.mark.parametrize("network", EXPORTED_NETWORK_PARAMS)
@pytest.mark.parametrize("file_format", on_this_backend("onnx", "litert", "tf_saved_model"))
def test_every_format_equals_keras_in_its_runtime(tmp_path, rng, network, file_format):
    if file_format != "tf_saved_model":
        pytest.importorskip("tf2onnx" if file_format == "onnx" else "ai_edge_litert",
                            reason=f"the [{file_format}] extra is not installed")
    model = with_random_statistics(EXPORTED_NETWORKS[network](), rng)
    shape = export.embedding_model(model).inputs[0].shape[1:]
    images = rng.uniform(-1, 1, size=(3, *shape)).astype("float32")
    path = tmp_path / {"onnx": "embedder.onnx", "litert": "embedder.tflite", "tf_saved_model": "embedder"}[file_format]
    export.export_embedding_model(model, path, flip=True, format=file_format)
    if file_format == "tf_saved_model":  # TensorFlow imports Keras itself; the process never imports keras_margin
        served, _ = serve(path, images, "embeddings", tmp_path)
    else:
        served = run_in_runtime(file_format, path, images, tmp_path)
    assert served.shape == (3, export.embedding_model(model).output.shape[-1])
    assert np.max(np.abs(served - keras_embeddings(model, images))) <= 1e-5


@pytest.mark.parametrize("file_format", on_this_backend("onnx", "litert", "tf_saved_model"))
def test_a_mixed_float16_model_exports_from_a_float32_copy(tmp_path, rng, file_format):
    if file_format != "tf_saved_model":
        pytest.importorskip("tf2onnx" if file_format == "onnx" else "ai_edge_litert",
                            reason=f"the [{file_format}] extra is not installed")
    keras.config.set_dtype_policy("mixed_float16")
    model, _ = training_model()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = rng.normal(size=(32, *IMAGE_SHAPE)).astype("float32")
    y = rng.integers(0, 4, size=32)
    model.fit([x, y], y, epochs=2, batch_size=8, verbose=0)
    mixed = keras_embeddings(model, x[:5])
    path = tmp_path / {"onnx": "embedder.onnx", "litert": "embedder.tflite", "tf_saved_model": "embedder"}[file_format]
    export.export_embedding_model(model, path, flip=True, format=file_format)
    keras.config.set_dtype_policy("float32")
    twin, _ = training_model()  # the same network in float32, with the trained weights
    twin.set_weights(model.get_weights())
    if file_format == "tf_saved_model":
        served, _ = serve(path, x[:5], "embeddings", tmp_path)
    else:
        served = run_in_runtime(file_format, path, x[:5], tmp_path)
    assert np.max(np.abs(served - keras_embeddings(twin, x[:5]))) <= 1e-5
    assert np.max(np.abs(served - mixed)) <= 5e-3  # the mixed model's own output, to float16 precision


def test_unknown_export_format():
    with pytest.raises(ValueError, match="format"):
        export.export_embedding_model(training_model()[0], "out", format="coreml")


@pytest.mark.skipif("litert" not in export.FORMATS_BY_BACKEND[keras.backend.backend()],
                    reason="Keras exports LiteRT from the TensorFlow backend (test_formats_this_backend_cannot_export)")
def test_int8_litert_stays_close_to_float(tmp_path, rng):
    pytest.importorskip("ai_edge_litert", reason="the [litert] extra is not installed")
    inputs = keras.Input(IMAGE_SHAPE, name="images")
    x = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(64)(keras.layers.Flatten()(x)))  # 25k weights: the file shrinks
    images = rng.uniform(-1, 1, size=(64, *IMAGE_SHAPE)).astype("float32")
    export.export_embedding_model(model, tmp_path / "int8.tflite", format="litert", quantize="int8",
                                  representative_images=images[:48])
    export.export_embedding_model(model, tmp_path / "float.tflite", format="litert")
    quantized = run_in_runtime("litert", tmp_path / "int8.tflite", images[48:], tmp_path)
    assert (tmp_path / "int8.tflite").stat().st_size < 0.5 * (tmp_path / "float.tflite").stat().st_size
    cosine = np.sum(quantized * keras_embeddings(model, images[48:], flip=False), axis=1)
    assert cosine.min() > 0.95, cosine  # close to the float embedding, but not equal
    assert np.abs(quantized - keras_embeddings(model, images[48:], flip=False)).max() > 1e-4
    assert export.read_metadata(tmp_path / "int8.tflite")["quantize"] == "int8"
    with pytest.raises(ValueError, match="representative_images"):
        export.export_embedding_model(model, tmp_path / "x.tflite", format="litert", quantize="int8")
    with pytest.raises(ValueError, match="for format='litert'"):
        export.export_embedding_model(model, tmp_path / "x.onnx", format="onnx", quantize="int8",
                                      representative_images=images)


def convolution_dtypes(saved_model_dir):
    """The element types of every Conv2D / DepthwiseConv2dNative node in a SavedModel's graph and functions."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tensorflow.dtypes import as_dtype

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((pathlib.Path(saved_model_dir) / "saved_model.pb").read_bytes())
    graph = saved.meta_graphs[0].graph_def
    nodes = [*graph.node, *(node for function in graph.library.function for node in function.node_def)]
    return {as_dtype(node.attr["T"].type).name for node in nodes if node.op in ("Conv2D", "DepthwiseConv2dNative")}


@writes_saved_models
@pytest.mark.parametrize("network", ["iresnet18", "mobilefacenet"])
def test_bfloat16_export_runs_the_trunk_in_bfloat16_and_serves_float32_embeddings(tmp_path, rng, network):
    model = with_random_statistics(EXPORTED_NETWORKS[network](), rng)
    images = rng.uniform(-1, 1, size=(4, 32, 32, 3)).astype("float32")
    export.export_embedding_model(model, tmp_path / "f32", flip=True)
    export.export_embedding_model(model, tmp_path / "bf16", flip=True, precision="bfloat16")
    if keras.backend.backend() == "tensorflow":  # JAX's export holds one XlaCallModule op, not TF convolutions
        assert convolution_dtypes(tmp_path / "f32") == {"float32"}
        assert convolution_dtypes(tmp_path / "bf16") == {"bfloat16"}
    assert export.read_metadata(tmp_path / "bf16")["precision"] == "bfloat16"
    full, _ = serve(tmp_path / "f32", images, "embeddings", tmp_path)
    low, _ = serve(tmp_path / "bf16", images, "embeddings", tmp_path)
    assert low.dtype == np.float32 and low.shape == full.shape
    np.testing.assert_allclose(np.linalg.norm(low, axis=1), 1.0, rtol=1e-5)  # normalized in float32
    cosines = np.sum(low * full, axis=1)
    # feature maps rounded to 8 significant bits move the unit embeddings a little, not apart
    assert np.all(cosines > 0.99) and np.any(cosines < 1 - 1e-7), cosines
    assert np.max(np.abs(full - keras_embeddings(model, images))) <= 1e-5


def test_bfloat16_precision_is_for_saved_models_only():
    with pytest.raises(ValueError, match="precision"):
        export.export_embedding_model(training_model()[0], "out", precision="float16")
    formats = [f for f in export.FORMATS_BY_BACKEND[keras.backend.backend()] if f != "tf_saved_model"]
    for file_format in formats:
        with pytest.raises(ValueError, match="precision='bfloat16'.*tf_saved_model"):
            export.export_embedding_model(training_model()[0], "out.onnx", format=file_format, precision="bfloat16")
