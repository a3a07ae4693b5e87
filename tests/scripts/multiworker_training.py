"""One worker of a two-process MultiWorkerMirroredStrategy run on 127.0.0.1.

Each worker reads its own shard of the global data and trains a margin head,
CenterLossLayer and a mining metric loss under the strategy; the chief (task
0) then trains the same model on one device (no strategy) on the global batches and prints,
per part, the largest weight difference and both loss histories as JSON.

Sharding: the global data are batched by the per-replica batch and worker i
reads every second of those batches, starting at the i-th, so each global
batch is worker 0's rows then worker 1's, the same rows in the same order as
one device's batch (all_gather puts replica i's rows i-th, so the metric
losses mine over exactly the single-device batch). Each worker reports the
indices of the examples its pipeline yields, to check that the shards are
disjoint and cover the data.

Keras 3 fit needs a small patch of the strategy's reduce to run under this
strategy (see below); the model is built and compiled in its scope and the
step is not XLA-compiled (jit_compile=False).

Run by tests/test_multiworker.py with TF_CONFIG set. Usage:
python multiworker_training.py [PART ...]   (default: arc center_loss triplet_batch_hard)
"""

import contextlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

# The strategy must exist before any other TF op runs in the process.
STRATEGY = tf.distribute.MultiWorkerMirroredStrategy(
    communication_options=tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING
    )
)

# Keras 3 fit does not run under this strategy as it is (keras-team/keras#20585):
# it reduces a whole nested data batch in one strategy.reduce call (to build the
# model), which MultiWorkerMirroredStrategy, unlike MirroredStrategy, does not
# map over a nest, and it averages the scalar logs over the replicas with
# axis=0. Reduce each tensor on its own, a scalar over the replicas only (as
# Keras does under MirroredStrategy).
_reduce = STRATEGY.reduce


def _reduce_each(op, value, axis=None):
    def reduce(v):
        return _reduce(op, v, axis if STRATEGY.experimental_local_results(v)[0].shape.rank else None)

    return tf.nest.map_structure(reduce, value)


STRATEGY.reduce = _reduce_each

import keras  # noqa: E402
import numpy as np  # noqa: E402

from training_parts import LOSSES, build, x, y  # noqa: E402

GLOBAL_BATCH, EPOCHS = 16, 3
STEPS = len(x) // GLOBAL_BATCH
TASK_ID = STRATEGY.cluster_resolver.task_id  # worker 0 is the chief


def indices(batch_size, num_pipelines=1, pipeline_id=0):
    """Example indices in batches of `batch_size`, every `num_pipelines`-th batch from `pipeline_id`."""
    return tf.data.Dataset.range(len(x)).batch(batch_size).shard(num_pipelines, pipeline_id)


def examples(part, index_batches):
    """The (inputs, targets) batches for the index batches; shuffle off, repeated for every epoch."""
    def lookup(i):
        features, labels = tf.gather(x, i), tf.gather(y, i)
        return (features if part in LOSSES else (features, labels)), labels

    return index_batches.map(lookup).repeat()


CONTEXTS = []  # the input contexts the strategy passed to the dataset function


def shard_indices(input_context):
    CONTEXTS.append(input_context)
    return indices(input_context.get_per_replica_batch_size(GLOBAL_BATCH),
                   input_context.num_input_pipelines, input_context.input_pipeline_id)


def train(part, strategy=None):
    """Weights and loss history, on this worker's shard under `strategy`, or on the global batch without one."""
    with strategy.scope() if strategy else contextlib.nullcontext():
        model, loss = build(part)
        model.compile(keras.optimizers.SGD(0.1), loss, jit_compile=False)
    if strategy is None:
        data = examples(part, indices(GLOBAL_BATCH))
    else:
        data = strategy.distribute_datasets_from_function(lambda context: examples(part, shard_indices(context)))
    history = model.fit(data, epochs=EPOCHS, steps_per_epoch=STEPS, verbose=0)
    return [np.asarray(w) for w in model.weights], history.history["loss"]


def seen_examples():
    """The indices this worker's input pipeline yields in one epoch, under the contexts the strategy passed."""
    (num_pipelines, pipeline_id, batch_size), = {(c.num_input_pipelines, c.input_pipeline_id,
                                                  c.get_per_replica_batch_size(GLOBAL_BATCH)) for c in CONTEXTS}
    seen = np.concatenate([batch.numpy() for batch in indices(batch_size, num_pipelines, pipeline_id)])
    return {"task": TASK_ID, "pipeline": pipeline_id, "pipelines": num_pipelines, "batch_size": batch_size,
            "indices": seen.tolist()}


parts = sys.argv[1:] or ["arc", "center_loss", "triplet_batch_hard"]
distributed = {part: train(part, STRATEGY) for part in parts}
report = {"shard": seen_examples(), "replicas": STRATEGY.num_replicas_in_sync}
if TASK_ID == 0:
    for part, (two_weights, two_loss) in distributed.items():
        initial = [np.asarray(w) for w in build(part)[0].weights]
        one_weights, one_loss = train(part)
        report[part] = {
            "replicas": STRATEGY.num_replicas_in_sync,
            "weight_difference": max(float(np.max(np.abs(a - b))) for a, b in zip(one_weights, two_weights)),
            "weight_change": max(float(np.max(np.abs(a - b))) for a, b in zip(one_weights, initial)),
            "loss_one": one_loss,
            "loss_two": two_loss,
        }
print(json.dumps(report))
