"""Trains each part of training_parts.py on one JAX device and under Keras'
`keras.distribution` on 8 host CPU devices, and prints the comparison as JSON.

- `data_parallel`: every part under `DataParallel` over the 8 devices.
- `model_parallel`: every head under `ModelParallel` on a (batch 2, model 4)
  mesh, with a `LayoutMap` that shards the head's kernel along its class axis:
  `(None, "model")` for the (d, C) kernels, `("model", None)` for a Partial FC
  head's row-major (C, d) kernel. The report gives the kernel's partition spec
  and the share of its bytes that each device holds.

Run in its own process: the device count must be set before JAX starts.
Usage: python jax_distribution.py [data_parallel|model_parallel] [PART ...]
"""

import contextlib
import json
import os
import sys

os.environ["KERAS_BACKEND"] = "jax"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_margin import layers  # noqa: E402
from training_parts import DIM, HEADS, LOSSES, PARTS, build, x, y  # noqa: E402

# JAX draws the same random numbers however an array is sharded, so a Partial FC
# head that keeps half of its 64 classes (the labels' 4 and 28 drawn) matches one
# device too; under tf.distribute each replica keeps its own batch's classes.
SAMPLED_KERNEL = np.random.default_rng(1).normal(size=(DIM, 64)).astype("float32")
HEADS["arc_partial_fc_sampled"] = lambda: layers.ArcMarginHead(
    64, scale=8.0, sample_rate=0.5, seed=1, kernel_initializer=keras.initializers.Constant(SAMPLED_KERNEL))

BATCH, EPOCHS = 16, 5  # 4 steps per epoch: 20 steps
HEAD_PARTS = ["normalized_dense", *HEADS]


def train(part, distribution=None):
    """Fits `part` for 20 steps, under `distribution` when one is given."""
    scope = distribution.scope() if distribution is not None else contextlib.nullcontext()
    with scope:
        model, loss = build(part)
        model.compile(keras.optimizers.SGD(0.1), loss)  # XLA: the JAX trainer always jits
        inputs = x if part in LOSSES else [x, y]
        history = model.fit(inputs, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0)
    return model, history.history["loss"]


def model_parallel(part):
    """ModelParallel on a (batch 2, model 4) mesh, the class axis of the head's kernel over "model"."""
    mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), devices=jax.devices())
    layout_map = keras.distribution.LayoutMap(mesh)  # keys are full-match regexes of variable paths
    layout_map[r".*(head|normalized_dense).*/kernel"] = (None, "model")  # (dim, C): Partial FC heads too
    return keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch")


def kernel_placement(model):
    """The class kernel's partition spec, and the largest share of its bytes on one device."""
    value = model.layers[-1].kernel.value  # the head is the model's last layer
    shard_bytes = [shard.data.nbytes for shard in value.addressable_shards]
    return {
        "kernel_spec": [axis for axis in value.sharding.spec],
        "kernel_shape": list(value.shape),
        "kernel_devices": len({shard.device for shard in value.addressable_shards}),
        "kernel_largest_share": max(shard_bytes) / value.nbytes,
    }


def compare(part, mode):
    initial = [np.asarray(w) for w in build(part)[0].trainable_weights]
    one_model, one_loss = train(part)
    if mode == "data_parallel":
        distribution = keras.distribution.DataParallel(devices=jax.devices())
    else:
        distribution = model_parallel(part)
    many_model, many_loss = train(part, distribution)
    one_weights = [np.asarray(w) for w in one_model.weights]
    many_weights = [np.asarray(w) for w in many_model.weights]
    report = {
        "devices": len(jax.devices()),
        "weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one_weights, many_weights)),
        "weight_change": max(float(np.max(np.abs(np.asarray(a) - b)))
                             for a, b in zip(one_model.trainable_weights, initial)),
        "loss_one": one_loss,
        "loss_many": many_loss,
        "batch_layout": list(distribution.get_data_layout((BATCH, x.shape[1])).axes),
        "mesh_shape": list(distribution.device_mesh.shape),
    }
    if mode == "model_parallel":
        report.update(kernel_placement(many_model))
    return report


if __name__ == "__main__":
    mode = sys.argv[1]
    parts = sys.argv[2:] or ([*PARTS, "arc_partial_fc_sampled"] if mode == "data_parallel" else HEAD_PARTS)
    print(json.dumps({part: compare(part, mode) for part in parts}))
