"""The small CNN the MNIST examples share: 28×28×1 digits → a `dim`-dimensional embedding."""

import keras


def mnist_embedding_network(dim, filters=(32, 64), hidden=128, name="embedder"):
    """Two conv + max-pool stages, a ReLU dense layer, then a linear embedding layer."""
    images = keras.Input((28, 28, 1), name="images")
    x = images
    for count in filters:
        x = keras.layers.Conv2D(count, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(hidden, activation="relu")(x)
    embeddings = keras.layers.Dense(dim, name="embedding")(x)
    return keras.Model(images, embeddings, name=name)
