"""Without TensorFlow installed: import keras_margin, train one step on JAX, evaluate.

`.ci/run` runs this in a fresh virtual environment holding `pip install ".[jax]"` only,
to show that the heads, losses, backbones and evaluation need Keras and NumPy alone.
Exits non-zero (an assertion) if TensorFlow is importable or gets imported.
"""

import importlib.util
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "jax")

assert importlib.util.find_spec("tensorflow") is None, "this check needs an environment without TensorFlow"

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_margin  # noqa: E402
from keras_margin import backbones, evaluation, losses  # noqa: E402

rng = np.random.default_rng(0)
images = rng.uniform(-1, 1, (8, 32, 32, 3)).astype("float32")
labels = (np.arange(8) % 4).astype("int32")

# a backbone, a margin head and a center-loss layer, one training step
image_input, label_input = keras.Input((32, 32, 3)), keras.Input((), dtype="int32")
embedder = backbones.iresnet18(input_shape=(32, 32, 3), embedding_dim=16)
features = keras_margin.CenterLossLayer(4)(embedder(image_input), labels=label_input)
model = keras.Model([image_input, label_input], keras_margin.ArcMarginHead(4)(features, labels=label_input))
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
loss = float(np.ravel(model.train_on_batch([images, labels], labels))[0])
assert np.isfinite(loss), loss

# a metric loss, one step
embedder.compile("sgd", losses.TripletLoss(mining="batch_hard"))
triplet = float(np.ravel(embedder.train_on_batch(images, labels))[0])
assert np.isfinite(triplet), triplet

# the verification protocol on the embeddings
embeddings = np.asarray(embedder.predict(images, verbose=0))
first, second = np.repeat(embeddings, 4, axis=0)[:20], np.tile(embeddings, (4, 1))[:20]
same = np.repeat(labels, 4)[:20] == np.tile(labels, 4)[:20]
report = evaluation.verification_report(first, second, same, num_folds=2)
assert 0.0 <= report["accuracy"] <= 1.0, report

# the tf.data pipelines say which extra brings them
try:
    import keras_margin.data  # noqa: F401
except ImportError as error:
    assert "keras-margin[tensorflow]" in str(error), error
else:
    raise AssertionError("keras_margin.data imported without TensorFlow")

assert "tensorflow" not in sys.modules, "something imported TensorFlow"
print(f"without TensorFlow on {keras.backend.backend()}: margin-head loss {loss:.3f}, triplet loss {triplet:.3f}, "
      f"verification accuracy {report['accuracy']:.2f}")
