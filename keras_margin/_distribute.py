"""Cross-replica reductions for layers with their own state updates.

Inherently TensorFlow: under `tf.distribute` (e.g. MirroredStrategy) values
computed from one replica's batch are summed over all replicas. On other
backends, or with no strategy, the values are returned unchanged.
"""

import keras


def _replica_context():
    """The tf.distribute replica context when more than one replica runs, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy() or tf.distribute.in_cross_replica_context():
        return None
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def _on_replica_device(context, values):
    """`values` placed on this worker's device when it has only one.

    With one device per worker (MultiWorkerMirroredStrategy), TensorFlow sends
    an all-reduced or all-gathered tensor to the tensor's own device, and fails
    ("destinations can not be empty") on a tensor with none set, as a Keras
    model's output inside the train step can be.
    """
    devices = context.strategy.extended.worker_devices
    if len(devices) != 1:
        return values
    import tensorflow as tf

    with tf.device(devices[0]):
        return [tf.identity(value) for value in values]


def in_multi_replica_context():
    """True inside a replica function of a strategy with more than one replica."""
    return _replica_context() is not None


def cross_replica_sum(values):
    """Sums each tensor in the list `values` over the replicas in sync."""
    context = _replica_context()
    if context is None:
        return values
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, _on_replica_device(context, values))


def cross_replica_concat(values):
    """Concatenates each tensor in the list `values` along axis 0 over the replicas in sync.

    Replica i's rows come i-th, so every replica sees the global batch in the
    order a single device would. Gradients flow back to each replica's own
    rows (TensorFlow's all-gather gradient sums them over the replicas).
    """
    context = _replica_context()
    if context is None:
        return values
    return [context.all_gather(value, axis=0) for value in _on_replica_device(context, values)]


def share_between_replicas(value):
    """`value / num_replicas` under a multi-replica strategy, else `value`.

    Keras sums the replicas' gradients (and reports the replicas' losses times
    their number), so a loss that every replica computes in full over the
    gathered global batch is divided by the replica count here.
    """
    context = _replica_context()
    if context is None:
        return value
    return value / context.num_replicas_in_sync
