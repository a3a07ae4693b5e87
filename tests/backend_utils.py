"""Backend-neutral helpers for tests: gradients on TensorFlow or JAX."""

import keras
import numpy as np


def gradients(fn, *args):
    """Gradients of the scalar `fn(*args)` with respect to each arg, as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.Variable(a) for a in args]
        with tf.GradientTape() as tape:
            value = fn(*args)
        return [np.asarray(g) for g in tape.gradient(value, args)]
    if backend == "jax":
        import jax

        grads = jax.grad(lambda *a: fn(*a), argnums=tuple(range(len(args))))(*args)
        return [np.asarray(g) for g in grads]
    raise NotImplementedError(f"gradients() does not support the {backend} backend")
