"""Why a handful of classes needs a small scale, and what margin warm-up does: ArcFace at s = 64 stalls there.

Four MNIST digits (the raw files in ../shared/data), the examples' small CNN
(no batch normalization) with a 16-D embedding, SGD with momentum, 256 steps.
With the paper's s = 64 and m = 0.5 from the first step the loss flattens
out high and the features separate the four classes only about half the time
(measured: 52% and 51% training accuracy for seeds 0 and 1 on TensorFlow, 50%
on JAX and 67% on PyTorch, whose initial weights differ). Warming the margin
up over the first half does not rescue it: about 70% on TensorFlow and JAX,
51% on PyTorch. With s = 16 (the package's default in 0.1; the default is now
the paper's 64) and the same warm-up, or with the AdaCos scale √2·ln(C − 1),
the loss keeps falling and the classes separate (over 95%): the scale is the
cause.
Plain-logit accuracy is checked against the labels; the loss values are
Keras' own history.
"""

import gzip
import pathlib
import sys

import keras
import numpy as np
import pytest

import keras_margin

ROOT = pathlib.Path(__file__).resolve().parents[1]
MNIST = ROOT.parent / "shared" / "data" / "raw" / "mnist"
sys.path.insert(0, str(ROOT / "examples"))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def four_digits():
    images_path = MNIST / "train-images-idx3-ubyte.gz"
    if not images_path.exists():
        pytest.skip(f"raw MNIST not found at {MNIST}")
    images = np.frombuffer(gzip.open(images_path).read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
    labels = np.frombuffer(gzip.open(MNIST / "train-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
    keep = labels < 4
    return (images[keep][:4096] / 255.0).astype("float32"), labels[keep][:4096].astype("int32")


def train(data, **head_options):
    from mnist_cnn import mnist_embedding_network

    images, labels = data
    keras.utils.set_random_seed(0)
    embedder = mnist_embedding_network(16)
    label_input = keras.Input((), dtype="int32")
    head = keras_margin.ArcMarginHead(4, margin=0.5, **head_options)
    model = keras.Model([embedder.input, label_input], head(embedder.output, labels=label_input))
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    losses = model.fit([images, labels], labels, batch_size=64, epochs=4, verbose=0).history["loss"]
    plain = keras.Model(embedder.input, head(embedder.output)).predict(images, batch_size=512, verbose=0)
    return losses, float(np.mean(np.argmax(plain, axis=1) == labels))


def test_arcface_at_scale_64_stalls_and_scale_16_and_auto_train(four_digits):
    paper_losses, paper_accuracy = train(four_digits, scale=64.0)
    assert paper_losses[-1] > 5.0, paper_losses  # still high after 4 epochs
    assert paper_accuracy < 0.75, paper_accuracy

    _, warm_accuracy = train(four_digits, scale=64.0, margin_warmup_steps=128)
    assert warm_accuracy < 0.75, warm_accuracy  # warm-up alone does not fix s = 64 here

    for options in ({"scale": 16.0, "margin_warmup_steps": 128}, {"scale": "auto", "margin_warmup_steps": 128}):
        losses, accuracy = train(four_digits, **options)
        assert losses[-1] < 0.8 * losses[0], (options, losses)
        assert accuracy > 0.95, (options, accuracy)
