"""Export the embedding network (or a closed-set classifier) of a trained model as a SavedModel.

The SavedModel is plain TensorFlow: serving it needs neither keras_margin nor
Keras (`tf.saved_model.load(path).serve(images)`), and Keras users can load it
with `keras.layers.TFSMLayer(path, call_endpoint="serve")`.
"""

import keras
import tensorflow as tf
from keras import ops

from keras_margin.layers.center_loss_layer import CenterLossLayer
from keras_margin.layers.margin_head import MarginHead
from keras_margin.layers.normalized_dense import NormalizedDense

HEAD_TYPES = (MarginHead, NormalizedDense)


def find_head(model):
    """The one margin head (or `NormalizedDense`) of `model`, or `None` when it has none.

    Raises a `ValueError` when there are several, since the embedding is then ambiguous.
    """
    heads = [layer for layer in model._flatten_layers(include_self=False) if isinstance(layer, HEAD_TYPES)]
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
    """
    if embedding_layer is not None:
        layer = model.get_layer(embedding_layer) if isinstance(embedding_layer, str) else embedding_layer
        if len(layer._inbound_nodes) != 1:
            raise ValueError(
                f"`embedding_layer` {layer.name!r} is called {len(layer._inbound_nodes)} times in the model; "
                "its output is ambiguous."
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
        tensor = head._inbound_nodes[0].arguments.args[0]
        while isinstance(tensor._keras_history.operation, CenterLossLayer):
            tensor = tensor._keras_history.operation._inbound_nodes[0].arguments.args[0]
    for images in model.inputs:
        try:
            return keras.Model(images, tensor, name="embedder")
        except ValueError:  # the embedding does not come from this input alone
            continue
    raise ValueError("The embedding depends on more than one input of `model`; pass an embedding network.")


def classifier_model(model, embedding_layer=None):
    """A closed-set classifier: images → the head's plain logits (no margin, no labels input)."""
    head = find_head(model)
    if head is None:
        raise ValueError("`model` has no margin head (or NormalizedDense) to classify with.")
    embedder = embedding_model(model, embedding_layer)
    images = keras.Input(embedder.inputs[0].shape[1:], dtype=embedder.inputs[0].dtype, name="images")
    return keras.Model(images, head(embedder(images)), name="classifier")


def export_embedding_model(model, path, normalize=True, flip=False, embedding_layer=None):
    """Writes a SavedModel of the embedding network of `model`, with a `serve` signature.

    `serve` takes a float32 batch of images `(batch, height, width, channels)`
    (the shape of the model's input) and returns `{"embeddings": ...}`,
    float32 `(batch, dim)`. How the embedding is found is described in
    `embedding_model`.

    Args:
        model: the training model or an embedding network.
        path: output folder.
        normalize: L2-normalize the embeddings (compare them by dot product).
        flip: bake in the flip test-time augmentation: the embedding of an
            image plus that of its mirror image (then normalized if asked).
        embedding_layer: optional layer name or layer whose output is the embedding.

    Returns:
        The Keras embedding model that was exported.

    Example:

    >>> export_embedding_model(train_model, "embedder", flip=True)
    >>> served = tf.saved_model.load("embedder")  # keep a reference while serving
    >>> embeddings = served.serve(images)["embeddings"]
    """
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

    _write(embedder, embed, path)
    return embedder


def export_classifier(model, path, embedding_layer=None):
    """Writes a SavedModel of `images → {"logits": plain logits of the head}` (closed-set prediction)."""
    classifier = classifier_model(model, embedding_layer)

    def classify(images):
        return {"logits": ops.cast(classifier(images, training=False), "float32")}

    _write(classifier, classify, path)
    return classifier


def _write(keras_model, fn, path):
    shape = (None, *keras_model.inputs[0].shape[1:])
    archive = keras.export.ExportArchive()
    archive.track(keras_model)
    archive.add_endpoint(name="serve", fn=fn, input_signature=[tf.TensorSpec(shape, tf.float32, name="images")])
    archive.write_out(str(path), verbose=False)
