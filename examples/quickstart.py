"""Quickstart: train an ArcFace head on MNIST, predict, save, reload.

The whole life of a margin head in one page:

1. a small CNN maps images to 64-d embeddings;
2. `ArcMarginHead` turns embeddings + labels into margin logits, trained with
   plain `SparseCategoricalCrossentropy(from_logits=True)` under XLA;
3. the same head without labels gives plain cosine logits for prediction;
4. the model round-trips through `.keras`, and the embedding network alone
   is saved for verification by cosine similarity.

Run (downloads MNIST with tensorflow-datasets unless `--data-dir` already
holds it):

    python examples/quickstart.py --epochs 2 --output-dir /tmp/quickstart
"""

import argparse
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_margin  # noqa: E402
from keras_margin import data  # noqa: E402
from mnist_cnn import mnist_embedding_network  # noqa: E402  (examples/mnist_cnn.py)

NUM_CLASSES = 10


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir (default: tfds' own)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-examples", type=int, default=None, help="use only this many training images")
    parser.add_argument("--scale", type=float, default=16.0, help="ArcFace scale s (paper and package default: 64; 16 for these 10 classes)")
    parser.add_argument("--margin", type=float, default=0.3, help="ArcFace margin m in radians (paper: 0.5)")
    parser.add_argument("--output-dir", default="quickstart_output")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    output_dir = pathlib.Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    embedder = mnist_embedding_network(64)
    head = keras_margin.layers.ArcMarginHead(NUM_CLASSES, scale=args.scale, margin=args.margin, name="arcface")
    images = keras.Input((28, 28, 1), name="images")
    labels = keras.Input((), dtype="int32", name="labels")
    embeddings = embedder(images)
    train_model = keras.Model([images, labels], head(embeddings, labels=labels), name="train_model")
    classifier = keras.Model(images, head(embeddings), name="classifier")

    train_model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=True,
    )
    train = data.from_tfds("mnist", split="train", data_dir=args.data_dir)
    if args.max_examples:
        train = train.take(args.max_examples)
    train = train.batches(args.batch_size, preprocess=data.scale_to_unit_range, shuffle_buffer=10_000, seed=args.seed)
    test = data.from_tfds("mnist", split="test", data_dir=args.data_dir)
    test = test.batches(args.batch_size, preprocess=data.scale_to_unit_range)  # ((images, labels), labels)
    train_model.fit(train, epochs=args.epochs, verbose=2)

    test_images = test.map(lambda inputs, label: inputs[0])
    test_labels = np.concatenate([label.numpy() for _, label in test])
    plain_logits = classifier.predict(test_images, verbose=0)
    accuracy = float(np.mean(np.argmax(plain_logits, axis=1) == test_labels))
    print(f"test accuracy from the plain cosine logits: {accuracy:.4f}")

    model_path = output_dir / "train_model.keras"
    train_model.save(model_path)
    restored = keras.saving.load_model(model_path)  # no custom_objects needed
    batch = next(iter(test.take(1)))[0]
    same = np.allclose(train_model.predict(batch, verbose=0), restored.predict(batch, verbose=0))
    print(f"reloaded {model_path}: identical margin logits = {same}")

    embedder_path = output_dir / "embedder.keras"
    embedder.save(embedder_path)
    print(f"saved the embedding network alone to {embedder_path}")


if __name__ == "__main__":
    main()
