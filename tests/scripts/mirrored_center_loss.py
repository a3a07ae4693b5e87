"""Trains the same model with CenterLossLayer on one device and on two mirrored
logical CPUs, and prints the largest center and kernel differences as JSON.

Run in its own process: logical devices must be set before TF starts.
Usage: python mirrored_center_loss.py [--jit]
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_margin import layers  # noqa: E402

NUM_CLASSES, DIM = 4, 3
rng = np.random.default_rng(0)
W0 = rng.normal(size=(6, DIM)).astype("float32")
W1 = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
C0 = rng.normal(size=(NUM_CLASSES, DIM)).astype("float32")
x = rng.normal(size=(64, 6)).astype("float32")
y = rng.integers(0, NUM_CLASSES, size=64).astype("int32")


def train(strategy, jit):
    with strategy.scope():
        features = keras.Input((6,))
        labels = keras.Input((), dtype="int32")
        embeddings = keras.layers.Dense(DIM, kernel_initializer=keras.initializers.Constant(W0))(features)
        center = layers.CenterLossLayer(
            NUM_CLASSES, alpha=0.5, weight=0.1, centers_initializer=keras.initializers.Constant(C0)
        )
        embeddings = center(embeddings, labels=labels)
        logits = keras.layers.Dense(NUM_CLASSES, kernel_initializer=keras.initializers.Constant(W1))(embeddings)
        model = keras.Model([features, labels], logits)
        model.compile(
            keras.optimizers.SGD(0.1),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
    history = model.fit([x, y], y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return np.asarray(center.centers), np.asarray(model.layers[1].kernel), history.history


jit = "--jit" in sys.argv
one_centers, one_kernel, one_history = train(tf.distribute.OneDeviceStrategy("/cpu:0"), jit)
two = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
two_centers, two_kernel, two_history = train(two, jit)
print(json.dumps({
    "replicas": two.num_replicas_in_sync,
    "center_difference": float(np.max(np.abs(one_centers - two_centers))),
    "center_change": float(np.max(np.abs(one_centers - C0))),
    "kernel_difference": float(np.max(np.abs(one_kernel - two_kernel))),
    "loss_one": one_history["loss"],
    "loss_two": two_history["loss"],
}))
