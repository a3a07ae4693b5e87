"""Trains each head, CenterLossLayer and each metric loss on one device and on two
mirrored logical CPUs, and prints, per part, the largest weight difference and
both loss histories as JSON.

Run in its own process: logical devices must be set before TF starts.
Usage: python mirrored_training.py [PART ...]   (default: every part)
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

from training_parts import LOSSES, PARTS, build, x, y  # noqa: E402


def train(part, strategy):
    with strategy.scope():
        model, loss = build(part)
        model.compile(keras.optimizers.SGD(0.1), loss, jit_compile=False)
    inputs = x if part in LOSSES else [x, y]
    history = model.fit(inputs, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    return [np.asarray(w) for w in model.weights], history.history["loss"]


# One strategy for all parts: strategies made one after another in a process
# can reuse collective-op keys and mix up their all-reduces.
ONE = tf.distribute.OneDeviceStrategy("/cpu:0")
TWO = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def compare(part):
    initial = [np.asarray(w) for w in build(part)[0].weights]
    one_weights, one_loss = train(part, ONE)
    two_weights, two_loss = train(part, TWO)
    return {
        "replicas": TWO.num_replicas_in_sync,
        "weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one_weights, two_weights)),
        "weight_change": max(float(np.max(np.abs(a - b))) for a, b in zip(one_weights, initial)),
        "loss_one": one_loss,
        "loss_two": two_loss,
    }


print(json.dumps({part: compare(part) for part in (sys.argv[1:] or PARTS)}))
