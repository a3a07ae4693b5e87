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


def in_multi_replica_context():
    """True inside a replica function of a strategy with more than one replica."""
    return _replica_context() is not None


def cross_replica_sum(values):
    """Sums each tensor in the list `values` over the replicas in sync."""
    context = _replica_context()
    if context is None:
        return values
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
