"""Small learnable datasets for training tests."""

import numpy as np


def clustered_data(num_classes, dim, per_class, spread, seed=0):
    """Gaussian clusters: class centers ~ N(0, spread²), unit noise around them, shuffled."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim)) * spread
    labels = np.repeat(np.arange(num_classes), per_class)
    x = centers[labels] + rng.normal(size=(len(labels), dim))
    order = rng.permutation(len(labels))
    return x[order].astype("float32"), labels[order].astype("int32")
