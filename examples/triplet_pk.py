"""Triplet loss on P×K batches, end to end: MNIST digits as identities, open-set evaluation.

FaceNet's recipe without a classifier: every batch holds P identities × K
images (`keras_margin.data.pk_batches`), `TripletLoss(mining="semi_hard")`
forms its triplets inside the batch, and the embeddings are judged on
verification pairs of identities never seen in training. With MNIST, the
"identities" are digits: training uses 8 of them, pairs come from the other 2.

Run (downloads MNIST with tensorflow-datasets unless `--data-dir` holds it):

    python examples/triplet_pk.py --data-dir ../shared/data/tfds --epochs 3
"""

import argparse
import contextlib
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

import keras_margin  # noqa: E402
from mnist_cnn import mnist_embedding_network  # noqa: E402  (examples/mnist_cnn.py)
from keras_margin import data, evaluation  # noqa: E402


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--data-dir", default=None, help="tensorflow-datasets data_dir (default: tfds' own)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--identities-per-batch", type=int, default=8, help="P")
    parser.add_argument("--images-per-identity", type=int, default=16, help="K")
    parser.add_argument("--margin", type=float, default=0.2, help="triplet margin α (FaceNet: 0.2)")
    parser.add_argument("--mining", choices=("semi_hard", "batch_hard", "batch_all"), default="semi_hard")
    parser.add_argument("--embedding-dim", type=int, default=32)
    parser.add_argument("--held-out-digits", type=int, default=2, help="identities kept for verification")
    parser.add_argument("--num-pairs", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a few steps, for tests")
    parser.add_argument("--mock-data", action="store_true", help="random tfds data (tfds.testing.mock_data)")
    args = parser.parse_args()
    if args.smoke:
        args.epochs, args.images_per_identity, args.num_pairs = 1, 4, 40
    return args



def main():
    args = parse_args()
    keras.utils.set_random_seed(args.seed)
    with tfds.testing.mock_data(num_examples=400) if args.mock_data else contextlib.nullcontext():
        digits = data.from_tfds("mnist", split="train", data_dir=args.data_dir)
        if args.smoke:
            digits = digits.take(400)
        train_set, held_out = digits.split_identities(num_test_identities=args.held_out_digits, seed=args.seed)
        print(f"training digits {train_set.class_names}, held-out digits {held_out.class_names}")
        batches = data.pk_batches(
            train_set, args.identities_per_batch, args.images_per_identity,
            preprocess=data.scale_to_unit_range, seed=args.seed, labels_as_input=False,  # (images, labels)
        )
        embedder = mnist_embedding_network(args.embedding_dim)
        embedder.compile(
            optimizer=keras.optimizers.Adam(1e-3),
            loss=keras_margin.losses.TripletLoss(margin=args.margin, mining=args.mining),
            jit_compile=True,
        )
        embedder.fit(batches, epochs=args.epochs, verbose=2)

        pairs = held_out.verification_pairs(args.num_pairs, seed=args.seed, preprocess=data.scale_to_unit_range)
        first, second, same = [], [], []
        for a, b, s in pairs.batch(500).as_numpy_iterator():
            # copies: torch.compile (jit_compile=True on PyTorch) rejects NumPy views of TensorFlow's memory
            first.append(embedder.predict_on_batch(np.array(a)))
            second.append(embedder.predict_on_batch(np.array(b)))
            same.append(s)
    report = evaluation.verification_report(
        np.concatenate(first), np.concatenate(second), np.concatenate(same), num_folds=min(10, args.num_pairs // 2)
    )
    print(f"held-out digits, {report['num_pairs']} pairs: accuracy {report['accuracy']:.4f} "
          f"± {report['accuracy_std']:.4f}, AUC {report['auc']:.4f}, EER {report['eer']:.4f}")


if __name__ == "__main__":
    main()
