"""Global gradient norm of the first training batches, per head, on the CelebA recipe.

    python benchmarks/gradient_norms.py                     # softmax, ArcFace s = 64 / 16 / auto, CosFace s = 64
    python benchmarks/gradient_norms.py --batches 10

The recipe (`examples/train_faces.py --optimizer sgd`, arcface_torch's) clips the
global gradient norm at 5, so a head whose gradients are k times larger takes
steps k times smaller than unclipped SGD would: this prints that norm for the
small CNN at 64×64 at initialization, on the training identities of folds 0–6.
"""

import argparse
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = pathlib.Path(__file__).resolve().parent.parent
CELEBA = ROOT.parent / "shared" / "data" / "faces" / "celeba_subset"
HEADS = {
    "softmax": ["--head", "softmax"],
    "arcface-s64": ["--head", "arcface", "--scale", "64", "--margin", "0.5"],
    "arcface-s16": ["--head", "arcface", "--scale", "16", "--margin", "0.5"],
    "arcface-auto": ["--head", "arcface", "--scale", "auto", "--margin", "0.5"],
    "cosface-s64": ["--head", "cosface", "--scale", "64", "--margin", "0.35"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", nargs="+", choices=sorted(HEADS), default=list(HEADS))
    parser.add_argument("--batches", type=int, default=5)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "examples"))
    import keras
    import numpy as np
    import tensorflow as tf
    import train_faces

    from keras_margin import data

    print("| head | global gradient norm, first batches (median) | clip 5 scales steps by |")
    print("|---|---|---|")
    for name in args.heads:
        options = train_faces.parse_args(["--data", str(CELEBA / "aligned_112"), "--pairs-csv", str(CELEBA / "pairs.csv"),
                                          "--image-size", "64", "--batch-size", "64", "--optimizer", "sgd", *HEADS[name]])
        keras.utils.set_random_seed(0)
        identities = data.from_folder(options.data)
        names, _ = train_faces.read_pairs_csv(options)
        index = {n: i for i, n in enumerate(identities.class_names)}
        train_set = identities.select_identities([index[n] for n in names])
        embedder = train_faces.make_backbone(options)
        images, labels = keras.Input(embedder.input_shape[1:]), keras.Input((), dtype="int32")
        head = train_faces.make_head(options.head, train_set.num_classes, options)
        embeddings = embedder(images)
        model = keras.Model([images, labels], head(embeddings) if options.head == "softmax"
                            else head(embeddings, labels=labels))
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        preprocess = data.face_preprocessing(64, 3, flip=True, seed=0)
        norms = []
        for (x, y), _ in train_set.batches(64, preprocess, shuffle_buffer=10_000, seed=0,
                                            drop_remainder=True).take(args.batches):
            with tf.GradientTape() as tape:
                value = loss(y, model([x, y], training=True))
            norms.append(float(tf.linalg.global_norm(tape.gradient(value, model.trainable_variables))))
        median = float(np.median(norms))
        print(f"| {name} | {', '.join(f'{n:.1f}' for n in norms)} ({median:.1f}) | {min(1.0, 5.0 / median):.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
