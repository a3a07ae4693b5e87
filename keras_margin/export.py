"""Export the embedding network (or a closed-set classifier) of a trained model.

`export_embedding_model` writes one embedding function (normalization and the
flip augmentation baked in) as a TensorFlow SavedModel, an ONNX file or a
LiteRT (`.tflite`) file. None of them needs keras_margin or Keras to serve:
`tf.saved_model.load(path).serve(images)` (Keras users can also load it with
`keras.layers.TFSMLayer(path, call_endpoint="serve")`), `onnxruntime`, or the
LiteRT / TFLite interpreter.
"""

import json
import pathlib

import keras
import numpy as np
from keras import ops

from keras_margin._validation import check_choice
from keras_margin._walk import nested_layers
from keras_margin.layers.center_loss_layer import CenterLossLayer
from keras_margin.layers.margin_head import MarginHead
from keras_margin.layers.normalized_dense import NormalizedDense

__all__ = [
    "embedding_model",
    "classifier_model",
    "export_embedding_model",
    "export_classifier",
    "read_metadata",
]

HEAD_TYPES = (MarginHead, NormalizedDense)


def find_head(model):
    """The one margin head (or `NormalizedDense`) of `model`, or `None` when it has none.

    Raises a `ValueError` when there are several, since the embedding is then ambiguous.
    """
    heads = [layer for layer in nested_layers(model) if isinstance(layer, HEAD_TYPES)]
    if len(heads) > 1:
        names = [layer.name for layer in heads]
        raise ValueError(
            f"`model` has several heads {names}, so the embedding is ambiguous; pass `embedding_layer`."
        )
    return heads[0] if heads else None


def embedding_model(model, embedding_layer=None):
    """A Keras model from the images input of `model` to its embedding.

    How the embedding is found:

    1. `embedding_layer` given (a layer name or a layer of `model`): its
       output. The layer must be called once in `model`.
    2. Otherwise, if `model` contains a margin head (or `NormalizedDense`):
       the embeddings passed to it, looking through a `CenterLossLayer`
       (which returns its input unchanged).
    3. Otherwise `model` itself, which must have one input and a
       `(batch, dim)` output.

    Args:
        model: a functional Keras model: the training model (images and labels
            in, margin logits out) or an embedding network.
        embedding_layer: optional layer name or layer.

    Returns:
        A `keras.Model` sharing the weights of `model`.

    Example:

    ```pycon
    >>> embedder = keras_margin.export.embedding_model(train_model)
    >>> embeddings = embedder.predict(images)
    ```
    """
    if embedding_layer is not None:
        layer = model.get_layer(embedding_layer) if isinstance(embedding_layer, str) else embedding_layer
        calls = _calls_in_model(model, layer)
        if calls != 1:
            raise ValueError(
                f"`embedding_layer` {layer.name!r} is called {calls} times in the model; its output is ambiguous."
            )
        tensor = layer.output
    else:
        head = find_head(model)
        if head is None:
            if len(model.inputs) != 1 or len(model.outputs) != 1 or len(model.outputs[0].shape) != 2:
                raise ValueError(
                    "`model` has no margin head, so it must be an embedding network with one input and one "
                    f"(batch, dim) output; pass `embedding_layer` otherwise. Received inputs "
                    f"{[tuple(t.shape) for t in model.inputs]}, outputs {[tuple(t.shape) for t in model.outputs]}"
                )
            return model
        tensor = _through_center_loss(model, _first_input(head))
    for images in model.inputs:
        try:
            return keras.Model(images, tensor, name="embedder")
        except ValueError:  # the embedding does not come from this input alone
            continue
    raise ValueError("The embedding depends on more than one input of `model`; pass an embedding network.")


def _first_input(layer):
    """The first tensor `layer` was called on in a functional graph (the embeddings, for a head)."""
    try:
        inputs = layer.input
    except AttributeError:  # never called on symbolic tensors
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r} is not called in a functional model, so its input is not "
            "known; pass `embedding_layer`."
        ) from None
    return keras.tree.flatten(inputs)[0]


def _through_center_loss(model, tensor):
    """The embeddings a `CenterLossLayer` of `model` passes through as `tensor` (repeatedly), else `tensor`."""
    center_layers = [layer for layer in nested_layers(model) if isinstance(layer, CenterLossLayer)]
    while True:
        producer = next((layer for layer in center_layers if _output_or_none(layer) is tensor), None)
        if producer is None:
            return tensor
        tensor = _first_input(producer)


def _output_or_none(layer):
    try:
        return layer.output
    except AttributeError:  # never called
        return None


def _calls_in_model(model, layer):
    """How many times `layer` is called in the graph of `model` (nested models included).

    Read from the functional config, which lists each layer's calls; when
    `model` has no such config (a Sequential or subclassed model), a layer
    that has an output is taken as called once.
    """
    if _output_or_none(layer) is None:
        return 0
    try:
        config = model.get_config()
    except (NotImplementedError, TypeError, ValueError):
        config = None
    counts = []

    def visit(node):
        if isinstance(node, dict):
            if node.get("name") == layer.name and isinstance(node.get("inbound_nodes"), list):
                counts.append(len(node["inbound_nodes"]))
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(config)
    return sum(counts) if counts else 1


def classifier_model(model, embedding_layer=None):
    """A closed-set classifier: images → the head's plain logits (no margin, no labels input).

    Args:
        model: a functional Keras model containing a margin head (or
            `NormalizedDense`); without one a ValueError is raised.
        embedding_layer: optional layer name or layer whose output is the
            embedding (see `embedding_model`); default `None`: the embeddings
            passed to the head.

    Returns:
        A `keras.Model` from images to `(batch, num_classes)` logits, sharing
        the weights of `model`.

    Example:

    ```pycon
    >>> classifier = keras_margin.export.classifier_model(train_model)
    >>> predicted = classifier.predict(images).argmax(axis=-1)
    ```
    """
    head = find_head(model)
    if head is None:
        raise ValueError("`model` has no margin head (or NormalizedDense) to classify with.")
    embedder = embedding_model(model, embedding_layer)
    images = keras.Input(embedder.inputs[0].shape[1:], dtype=embedder.inputs[0].dtype, name="images")
    return keras.Model(images, head(embedder(images)), name="classifier")


FORMATS = ("tf_saved_model", "onnx", "litert")
PRECISIONS = ("float32", "bfloat16")

# What Keras can export from each backend: JAX reaches a SavedModel through
# jax2tf; its ONNX route needs jax2onnx and LiteRT needs TensorFlow's converter.
FORMATS_BY_BACKEND = {"tensorflow": FORMATS, "jax": ("tf_saved_model",), "torch": ("onnx",)}


def check_format_on_backend(format):
    """Raises unless the current Keras backend can export `format`."""
    backend = keras.backend.backend()
    allowed = FORMATS_BY_BACKEND.get(backend, ())
    if format not in allowed:
        raise ValueError(
            f"format={format!r} cannot be exported from the {backend!r} Keras backend; it exports "
            f"{', '.join(repr(f) for f in allowed) or 'none of them'}. Every format is exported "
            "from the TensorFlow backend (KERAS_BACKEND=tensorflow): save the model as .keras here and export it there."
        )


METADATA_NAME = "keras_margin.json"


def metadata_path(path):
    """Where the export's metadata lives: `keras_margin.json` in a SavedModel folder, `<file>.json` beside a file."""
    path = pathlib.Path(path)
    return path / METADATA_NAME if path.is_dir() else path.with_name(path.name + ".json")


def read_metadata(path):
    """The metadata written with an export (a dict; empty when there is none).

    Args:
        path: the exported SavedModel folder, or the ONNX / LiteRT file.

    Returns:
        A dict: the threshold, `normalize`, `flip`, the input shape, the format
        and the user's `metadata`, as written by `export_embedding_model`.

    Example:

    ```pycon
    >>> threshold = keras_margin.export.read_metadata("embedder.onnx").get("threshold")
    ```
    """
    location = metadata_path(path)
    return json.loads(location.read_text()) if location.exists() else {}


def export_embedding_model(model, path, normalize=True, flip=False, embedding_layer=None, format="tf_saved_model",
                           threshold=None, metadata=None, quantize=None, representative_images=None,
                           precision="float32"):
    """Writes the embedding network of `model` as a SavedModel, an ONNX file or a LiteRT file.

    Every format holds the same function: a float32 batch of images
    `(batch, height, width, channels)` (the model's input shape, any batch
    size) named `images`, to float32 embeddings `(batch, dim)` named
    `embeddings`:

    - `"tf_saved_model"`: a folder with a `serve` signature returning
      `{"embeddings": ...}`;
    - `"onnx"`: an ONNX file, through Keras' ONNX export (tf2onnx on the
      TensorFlow backend: the `[onnx]` extra), input `images`, output
      `embeddings`;
    - `"litert"`: a `.tflite` flatbuffer with the signature
      `serving_default` (input `images`, output `embeddings`).

    The TensorFlow backend exports all three; JAX exports
    `"tf_saved_model"` (through jax2tf) and PyTorch `"onnx"`
    (`FORMATS_BY_BACKEND`); another format there raises a `ValueError`.

    How the embedding is found is described in `embedding_model`. A model
    trained under a mixed-precision policy is exported from a float32 copy
    with the same weights (Keras' ONNX export requires the float32 policy,
    and the float32 function is the one every runtime runs exactly), so the
    exported embedding equals the float32 evaluation of the trained weights,
    and the mixed-precision model's own output to its precision.
    `precision="bfloat16"` instead serves the convolutional trunk in
    bfloat16: see `precision` below.

    Args:
        model: the training model or an embedding network.
        path: output folder (SavedModel) or file (ONNX, LiteRT).
        normalize: L2-normalize the embeddings (compare them by dot product).
        flip: bake in the flip test-time augmentation: the embedding of an
            image plus that of its mirror image (then normalized if asked).
        embedding_layer: optional layer name or layer whose output is the embedding.
        format: `"tf_saved_model"`, `"onnx"` or `"litert"`.
        threshold: optional cosine-similarity threshold for same / different,
            stored with the export for `python -m keras_margin compare` /
            `identify`: a number, a `verification_report` (its `threshold`)
            or a `VerificationCallback` (its last report's). Measure it with
            the same `flip` as the export.
        metadata: optional JSON-serializable dict stored with it too.
        quantize: `None`, or `"int8"` (LiteRT only): post-training
            quantization of weights and activations to int8, calibrated on
            `representative_images`; input and output stay float32, and ops
            without an int8 kernel stay float.
        representative_images: with `quantize="int8"`, a float32 array of
            model inputs `(n, height, width, channels)` (preprocessed as in
            training; a few hundred typical faces), used to calibrate the
            activation ranges.
        precision: `"float32"` (the default) or `"bfloat16"` (SavedModel
            only): every layer whose output is a feature map (rank ≥ 3: the
            convolutional trunk) computes under `mixed_bfloat16`, the layers
            after it (pooling or flatten, the embedding Dense and BN) in
            float32, so the function still takes and returns float32. On a
            CPU with bfloat16 units (AVX512-BF16, AMX) or a GPU / TPU the
            trunk runs on them; the embeddings differ from the float32
            export by the bfloat16 rounding of the feature maps.

    The metadata (the threshold, `normalize`, `flip`, the input shape and
    the format, plus `metadata`) is written to `keras_margin.json` inside a
    SavedModel folder, or to `<file>.json` beside an ONNX / LiteRT file;
    `read_metadata(path)` reads it.

    Returns:
        The Keras embedding model that was exported.

    Example:

    ```pycon
    >>> export_embedding_model(train_model, "embedder", flip=True)
    >>> served = tf.saved_model.load("embedder")  # keep a reference while serving
    >>> embeddings = served.serve(images)["embeddings"]
    >>> export_embedding_model(train_model, "embedder.onnx", format="onnx")
    >>> session = onnxruntime.InferenceSession("embedder.onnx")
    >>> embeddings = session.run(["embeddings"], {"images": images})[0]
    ```
    """
    check_choice("format", format, FORMATS)
    check_choice("precision", precision, PRECISIONS)
    check_format_on_backend(format)
    if precision != "float32" and format != "tf_saved_model":
        raise ValueError(
            f"`precision={precision!r}` is for format='tf_saved_model' (Keras' ONNX and LiteRT export take "
            f"float32 models). Received: format={format!r}"
        )
    converter_options = {}
    if quantize is not None:
        check_choice("quantize", quantize, ("int8",))
        if format != "litert":
            raise ValueError(f"`quantize='int8'` is for format='litert'. Received: format={format!r}")
        if representative_images is None or len(representative_images) == 0:
            raise ValueError("`quantize='int8'` needs `representative_images` to calibrate the activations.")
        samples = np.asarray(representative_images, dtype=np.float32)
        import tensorflow as tf  # LiteRT's converter options are TensorFlow's

        converter_options = {
            "optimizations": [tf.lite.Optimize.DEFAULT],
            "representative_dataset": lambda: ([sample[None]] for sample in samples),
        }
    embedder = embedding_model(model, embedding_layer)

    def embed(images):
        embeddings = ops.cast(embedder(images, training=False), "float32")
        if flip:
            embeddings = embeddings + ops.cast(embedder(ops.flip(images, axis=2), training=False), "float32")
        if normalize:
            embeddings = embeddings / ops.sqrt(
                ops.maximum(ops.sum(embeddings * embeddings, axis=-1, keepdims=True), 1e-24)
            )
        return {"embeddings": embeddings}

    threshold = _threshold_value(threshold)
    record = {**(metadata or {}), "format": format, "normalize": bool(normalize), "flip": bool(flip),
              "input_shape": list(embedder.inputs[0].shape[1:]),
              "threshold": None if threshold is None else float(threshold), "quantize": quantize,
              "precision": precision}
    json.dumps(record)  # fails here, before writing, if `metadata` is not JSON-serializable
    # `embed` reads this name when it is traced
    embedder = float32_copy(embedder) if precision == "float32" else bfloat16_trunk_copy(embedder)
    if format == "tf_saved_model":
        _write(embedder, embed, path)
        metadata_path(path).write_text(json.dumps(record, indent=2))
        return embedder
    images = keras.Input(embedder.inputs[0].shape[1:], name="images")
    serving = keras.Model(images, embed(images), name="serving")
    serving(np.zeros((1, *images.shape[1:]), "float32"))  # Keras exports only models that have been called
    if format == "onnx":
        # the TensorFlow backend converts through tf2onnx; every backend names the output with onnx
        for module in ("tf2onnx", "onnx") if keras.backend.backend() == "tensorflow" else ("onnx",):
            try:
                __import__(module)
            except ImportError as error:
                raise ImportError(f'ONNX export needs {module}: pip install "keras_margin[onnx]"') from error
    serving.export(str(path), format=format, verbose=False, **converter_options)
    if format == "onnx":
        _name_onnx_output(path, "embeddings")
    metadata_path(path).write_text(json.dumps(record, indent=2))
    return embedder


def _name_onnx_output(path, name):
    """Renames the one output of the ONNX file at `path` to `name`.

    Keras names it after the model's output dict on TensorFlow, but the torch
    exporter numbers it.
    """
    import onnx

    model = onnx.load(str(path))
    [output] = model.graph.output
    if output.name == name:
        return
    old = output.name
    for node in model.graph.node:
        node.output[:] = [name if value == old else value for value in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    output.name = name
    onnx.save(model, str(path))


def _threshold_value(threshold):
    """A number from a number, a verification report or a VerificationCallback (None stays None)."""
    if threshold is None or isinstance(threshold, (int, float, np.number)):
        return threshold
    report = getattr(threshold, "last_report", threshold)
    if isinstance(report, dict) and "threshold" in report:
        return float(report["threshold"])
    raise ValueError(
        "`threshold` must be a number, a verification report or a VerificationCallback that has evaluated. "
        f"Received: {threshold!r}"
    )


def float32_copy(model):
    """`model` itself when every layer computes in float32, else a float32 copy with its weights."""
    layers = [model, *nested_layers(model)]
    if all(layer.dtype_policy.name == "float32" for layer in layers):
        return model
    config = _float32_policies(keras.saving.serialize_keras_object(model))
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def bfloat16_trunk_copy(model):
    """A copy of `model` whose feature-map layers compute under `mixed_bfloat16`, the others in float32.

    A layer is in the trunk when one of its outputs has rank ≥ 3 (a feature
    map); the layers that reduce it to vectors and everything after them
    stay float32. Weights are float32 in both, and copied.
    """
    trunk = set()
    for layer in [model, *nested_layers(model)]:
        try:
            outputs = keras.tree.flatten(layer.output)
        except (AttributeError, ValueError):  # a layer called several times, or never
            continue
        if layer is not model and any(len(output.shape) >= 3 for output in outputs):
            trunk.add(layer.name)
    config = _policies_by_layer(_float32_policies(keras.saving.serialize_keras_object(model)), trunk)
    copy = keras.saving.deserialize_keras_object(config)
    copy.set_weights(model.get_weights())
    return copy


def _policies_by_layer(config, trunk):
    """The serialized `config` with the layers named in `trunk` set to the mixed_bfloat16 policy."""
    if isinstance(config, list):
        return [_policies_by_layer(value, trunk) for value in config]
    if not isinstance(config, dict):
        return config
    config = {key: _policies_by_layer(value, trunk) for key, value in config.items()}
    inner = config.get("config")
    if (config.get("class_name") not in ("DTypePolicy", "FloatDTypePolicy") and isinstance(inner, dict)
            and inner.get("name") in trunk and isinstance(inner.get("dtype"), dict)):
        dtype = inner["dtype"]
        config["config"] = {**inner, "dtype": {**dtype, "config": {**dtype["config"], "name": "mixed_bfloat16"}}}
    return config


def _float32_policies(config):
    """The serialized `config` with every dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy") and "config" in config:
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def export_classifier(model, path, embedding_layer=None):
    """Writes a SavedModel of `images → {"logits": plain logits of the head}` (closed-set prediction).

    As for `export_embedding_model`, a mixed-precision model is exported from a float32 copy.
    Raises a `ValueError` on a Keras backend that cannot export a SavedModel
    (`FORMATS_BY_BACKEND`).

    Args:
        model: a functional Keras model containing a margin head (or
            `NormalizedDense`).
        path: output folder of the SavedModel.
        embedding_layer: optional layer name or layer whose output is the
            embedding (see `embedding_model`); default `None`.

    Returns:
        The Keras classifier model that was exported.

    Example:

    ```pycon
    >>> export_classifier(train_model, "classifier")
    >>> served = tf.saved_model.load("classifier")  # keep a reference while serving
    >>> logits = served.serve(images)["logits"]
    ```
    """
    check_format_on_backend("tf_saved_model")
    classifier = float32_copy(classifier_model(model, embedding_layer))

    def classify(images):
        return {"logits": ops.cast(classifier(images, training=False), "float32")}

    _write(classifier, classify, path)
    return classifier


def _write(keras_model, fn, path):
    import tensorflow as tf  # a SavedModel is TensorFlow's format

    shape = (None, *keras_model.inputs[0].shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(name="serve", fn=fn, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    archive.write_out(str(path), verbose=False)
