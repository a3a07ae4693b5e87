"""The parts the distributed-training scripts train: every head, CenterLossLayer,
NormalizedDense and every metric loss, each on the same tiny model with fixed
initial weights and data, so that a run on several devices can be compared with
one device weight for weight.

`build(part)` returns `(model, loss)`; for the metric losses the model maps
features to embeddings, for the others it takes `[features, labels]`.
"""

import keras
import numpy as np

from keras_margin import layers, losses

NUM_CLASSES, FEATURES, DIM = 4, 6, 3
rng = np.random.default_rng(0)
W0 = rng.normal(size=(FEATURES, DIM)).astype("float32")
W1 = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
W1_SUBCENTERS = rng.normal(size=(DIM, NUM_CLASSES * 2)).astype("float32")
C0 = rng.normal(size=(NUM_CLASSES, DIM)).astype("float32")
x = rng.normal(size=(64, FEATURES)).astype("float32")
y = rng.integers(0, NUM_CLASSES, size=64).astype("int32")

kernel = keras.initializers.Constant(W1)
HEADS = {
    "arc": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=8.0, kernel_initializer=kernel),
    "cos": lambda: layers.CosMarginHead(NUM_CLASSES, scale=8.0, kernel_initializer=kernel),
    "combined": lambda: layers.CombinedMarginHead(NUM_CLASSES, scale=8.0, m1=1.2, m2=0.2, m3=0.1,
                                                  kernel_initializer=kernel),
    "sphere": lambda: layers.SphereMarginHead(NUM_CLASSES, lambda_base=10.0, kernel_initializer=kernel),
    "large": lambda: layers.LargeMarginHead(NUM_CLASSES, lambda_base=10.0, kernel_initializer=kernel),
    "arc_subcenters": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=8.0, num_subcenters=2,
                                                   kernel_initializer=keras.initializers.Constant(W1_SUBCENTERS)),
    "arc_partial_fc": lambda: layers.ArcMarginHead(NUM_CLASSES, scale=8.0, sample_rate=0.99, seed=1,
                                                   kernel_initializer=kernel),
    "arc_adaptive_warmup": lambda: layers.ArcMarginHead(NUM_CLASSES, scale="adaptive", margin_warmup_steps=6,
                                                        kernel_initializer=kernel),
    # running statistics from the global batch: t, and the norms' mean and unbiased std
    "curricular": lambda: layers.CurricularFaceHead(NUM_CLASSES, scale=8.0, momentum=0.5, kernel_initializer=kernel),
    "adaface": lambda: layers.AdaFaceHead(NUM_CLASSES, scale=8.0, momentum=0.5, kernel_initializer=kernel),
    "magface": lambda: layers.MagFaceHead(NUM_CLASSES, scale=8.0, lower_norm=0.5, upper_norm=5.0, lambda_g=1.0,
                                          kernel_initializer=kernel),
}
LOSSES = {
    "contrastive": lambda: losses.ContrastiveLoss(margin=2.0),
    "triplet_semi_hard": lambda: losses.TripletLoss(margin=0.5),
    "triplet_batch_hard": lambda: losses.TripletLoss(margin=0.5, mining="batch_hard", distance="euclidean"),
    "triplet_batch_all": lambda: losses.TripletLoss(margin=0.5, mining="batch_all"),
}
PARTS = ["center_loss", "normalized_dense", *HEADS, *LOSSES]


def build(part):
    features = keras.Input((FEATURES,))
    labels = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(DIM, kernel_initializer=keras.initializers.Constant(W0))(features)
    if part in LOSSES:
        return keras.Model(features, embeddings), LOSSES[part]()
    cross_entropy = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    if part == "center_loss":
        embeddings = layers.CenterLossLayer(
            NUM_CLASSES, alpha=0.5, weight=0.1, centers_initializer=keras.initializers.Constant(C0)
        )(embeddings, labels=labels)
        logits = keras.layers.Dense(NUM_CLASSES, kernel_initializer=kernel)(embeddings)
    elif part == "normalized_dense":
        logits = layers.NormalizedDense(NUM_CLASSES, scale=8.0, kernel_initializer=kernel)(embeddings)
    else:
        logits = HEADS[part]()(embeddings, labels=labels)
    return keras.Model([features, labels], logits), cross_entropy
