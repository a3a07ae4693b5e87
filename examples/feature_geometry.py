"""Feature geometry of the margin losses on MNIST: the article's pictures, trained for real.

A small CNN maps each digit to a 2-D feature and is trained once per loss:
softmax, softmax + center loss, L-Softmax, A-Softmax (SphereFace),
AM-Softmax (CosFace) and ArcFace. The figure shows, per loss, the test
features coloured by class with the class-weight directions; for the angular
heads the same features on the unit circle; and, from a second training with
3-D features, the hypersphere view. A table gives the test accuracy and the
ArcFace paper's intra-class angle (feature to its class weight) and
inter-class angle (between class weights) per loss.

10 classes in 2-D leave 36° per class, so the margins are smaller than the
papers' (which are for 512-D features); they are printed with the table.

Run (downloads MNIST with tensorflow-datasets unless `--data-dir` holds it):

    python examples/feature_geometry.py --data-dir ../shared/data/tfds --output-dir geometry
"""

import argparse
import contextlib
import os
import pathlib
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import keras_margin  # noqa: E402
from mnist_cnn import mnist_embedding_network  # noqa: E402  (examples/mnist_cnn.py)
from keras_margin import data, evaluation, plot  # noqa: E402

NUM_CLASSES = 10

# name → (description, head factory or None for a Dense softmax, center loss?)
LOSSES = {
    "softmax": ("Softmax", None, False),
    "center": ("Softmax + center loss", None, True),
    "lsoftmax": ("L-Softmax (m=2)", lambda: keras_margin.LargeMarginHead(NUM_CLASSES, margin=2), False),
    "sphereface": ("A-Softmax (m=4)", lambda: keras_margin.SphereMarginHead(NUM_CLASSES, margin=4), False),
    "cosface": ("AM-Softmax (s=16, m=0.1)", lambda: keras_margin.CosMarginHead(NUM_CLASSES, scale=16, margin=0.1), False),
    "arcface": ("ArcFace (s=16, m=0.2)", lambda: keras_margin.ArcMarginHead(NUM_CLASSES, scale=16, margin=0.2), False),
}
ANGULAR = ("lsoftmax", "sphereface", "cosface", "arcface")
SPHERE_VIEW = ("sphereface", "cosface", "arcface")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir (default: tfds' own)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-examples", type=int, default=30_000, help="training images used (MNIST has 60,000)")
    parser.add_argument("--losses", default=",".join(LOSSES), help=f"comma-separated subset of {', '.join(LOSSES)}")
    parser.add_argument("--no-sphere", action="store_true", help="skip the 3-D trainings")
    parser.add_argument("--center-loss-weight", type=float, default=0.05)
    parser.add_argument("--output-dir", default="feature_geometry_output")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the training step with XLA (default: only with a GPU; on 2 CPU cores this "
                             "CNN's step took 62 ms with XLA and 36 ms without)")
    parser.add_argument("--smoke", action="store_true", help="a few steps of everything (for tests)")
    parser.add_argument("--mock-data", action="store_true", help="random images from tfds.testing.mock_data")
    args = parser.parse_args()
    unknown = set(args.losses.split(",")) - set(LOSSES)
    if unknown:
        parser.error(f"--losses: unknown {sorted(unknown)}; choose from {list(LOSSES)}")
    if args.smoke:
        args.epochs, args.max_examples = 1, 512
    if args.jit_compile is None:
        args.jit_compile = bool(tf.config.list_physical_devices("GPU"))
    return args



def build_models(loss, dim, center_loss_weight):
    """(train model with a labels input, classifier, embedder, the layer whose kernel holds class weights)."""
    _, make_head, with_center = LOSSES[loss]
    images = keras.Input((28, 28, 1), name="images")
    labels = keras.Input((), dtype="int32", name="labels")
    embedder = mnist_embedding_network(dim, filters=(16, 32), hidden=64)
    features = embedder(images)
    train_features = features
    if with_center:
        center = keras_margin.CenterLossLayer(NUM_CLASSES, alpha=0.5, weight=center_loss_weight)
        train_features = center(features, labels=labels)
    if make_head is None:
        head = keras.layers.Dense(NUM_CLASSES, name="softmax")
        train_logits, logits = head(train_features), head(features)
    else:
        head = make_head()
        train_logits, logits = head(train_features, labels=labels), head(features)
    return keras.Model([images, labels], train_logits), keras.Model(images, logits), embedder, head


def train_and_measure(loss, dim, train, test_images, test_labels, args):
    keras.utils.set_random_seed(args.seed)
    train_model, classifier, embedder, head = build_models(loss, dim, args.center_loss_weight)
    train_model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        jit_compile=args.jit_compile,
    )
    start = time.perf_counter()
    train_model.fit(train, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    logits = classifier.predict(test_images, verbose=0, batch_size=1024)
    features = embedder.predict(test_images, verbose=0, batch_size=1024)
    kernel = keras.ops.convert_to_numpy(head.kernel)
    return {
        "loss": loss,
        "dim": dim,
        "accuracy": float(np.mean(np.argmax(logits, axis=1) == test_labels)),
        "intra_angle": evaluation.intra_class_angle(features, test_labels, kernel),
        "inter_angle": evaluation.inter_class_angle(kernel),
        "seconds": seconds,
        "features": features,
        "kernel": kernel,
    }


def draw(results_2d, results_3d, test_labels, path):
    plt = plot._pyplot()
    columns = len(results_2d)
    rows = 1 + any(r["loss"] in ANGULAR for r in results_2d) + bool(results_3d)
    figure = plt.figure(figsize=(2.6 * columns, 2.6 * rows))
    for i, result in enumerate(results_2d):
        title = LOSSES[result["loss"]][0]
        ax = figure.add_subplot(rows, columns, i + 1)
        plot.feature_scatter(result["features"], test_labels, result["kernel"], ax=ax, title=title)
        if result["loss"] in ANGULAR and rows > 1:
            ax = figure.add_subplot(rows, columns, columns + i + 1)
            plot.feature_scatter(result["features"], test_labels, result["kernel"], normalize=True, ax=ax,
                                 title=f"{title}\non the unit circle")
    for i, result in enumerate(results_3d):
        ax = figure.add_subplot(rows, columns, (rows - 1) * columns + i + 1, projection="3d")
        plot.feature_scatter(result["features"], test_labels, result["kernel"], normalize=True, ax=ax,
                             title=f"{LOSSES[result['loss']][0]}\n3-D, on the sphere", max_points=3000)
    figure.tight_layout()
    return plot.save_figure(figure, path)


def main():
    args = parse_args()
    output_dir = pathlib.Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    losses = args.losses.split(",")
    context = tfds.testing.mock_data(num_examples=max(args.max_examples, 256)) if args.mock_data else contextlib.nullcontext()
    with context:
        preprocess = data.scale_to_unit_range
        train_set = data.from_tfds("mnist", split="train", data_dir=args.data_dir).take(args.max_examples)
        test_set = data.from_tfds("mnist", split="test", data_dir=args.data_dir)
        train = train_set.batches(args.batch_size, preprocess=preprocess, shuffle_buffer=10_000, seed=args.seed)
        test_images, test_labels = [], []
        for x, y in test_set.batches(1024, preprocess=preprocess, labels_as_input=False):
            test_images.append(x.numpy())
            test_labels.append(y.numpy())
        test_images, test_labels = np.concatenate(test_images), np.concatenate(test_labels)
        if args.smoke:
            test_images, test_labels = test_images[:512], test_labels[:512]

        results_2d, results_3d = [], []
        for loss in losses:
            print(f"\n== {LOSSES[loss][0]}: 2-D features", flush=True)
            results_2d.append(train_and_measure(loss, 2, train, test_images, test_labels, args))
        if not args.no_sphere:
            for loss in [name for name in SPHERE_VIEW if name in losses]:
                print(f"\n== {LOSSES[loss][0]}: 3-D features", flush=True)
                results_3d.append(train_and_measure(loss, 3, train, test_images, test_labels, args))

    print(f"\n{'loss':<28}{'dim':>4}{'test acc':>10}{'intra °':>9}{'inter °':>9}{'train s':>9}")
    for result in results_2d + results_3d:
        print(f"{LOSSES[result['loss']][0]:<28}{result['dim']:>4}{result['accuracy']:>10.4f}"
              f"{result['intra_angle']:>9.1f}{result['inter_angle']:>9.1f}{result['seconds']:>9.1f}")
    figure_path = draw(results_2d, results_3d, test_labels, output_dir / "feature_geometry.png")
    print(f"\nwrote {figure_path}")


if __name__ == "__main__":
    main()
