"""Backend-neutral helpers for tests: gradients on TensorFlow or JAX."""

import keras
import numpy as np


def loss_gradients(layer, x, labels, loss_fn, training=None, return_output=False):
    """Gradients of `loss_fn(labels, layer(x, labels=labels, training=training))` w.r.t. x and the kernel.

    `labels=None` calls the layer on `x` alone. Returns two NumPy arrays (a
    sparse kernel gradient made dense), preceded by the layer's output when
    `return_output` is true.
    """
    call_kwargs = {} if labels is None else {"labels": labels}
    if training is not None:
        call_kwargs["training"] = training
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, **call_kwargs)
            value = loss_fn(labels, keras.ops.cast(out, "float32"))
        grad_x, grad_kernel = tape.gradient(value, [x, layer.kernel.value])
        grads = (np.asarray(grad_x), np.asarray(tf.convert_to_tensor(grad_kernel)))
        return (np.asarray(out), *grads) if return_output else grads
    if backend == "jax":
        import jax

        non_trainable = [v.value for v in layer.non_trainable_variables]

        def value(x_value, kernel_value):
            out, _ = layer.stateless_call([kernel_value], non_trainable, x_value, **call_kwargs)
            return loss_fn(labels, keras.ops.cast(out, "float32")), out

        (_, out), grads = jax.value_and_grad(value, argnums=(0, 1), has_aux=True)(x, layer.kernel.value)
        grads = (np.asarray(grads[0]), np.asarray(grads[1]))
        return (np.asarray(out), *grads) if return_output else grads
    raise NotImplementedError(f"loss_gradients() supports tensorflow and jax, not {backend}")


def input_gradient(loss, labels, x):
    """Gradient of the scalar `loss(labels, x)` with respect to `x`, as NumPy."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = loss(labels, x)
        return np.asarray(tape.gradient(value, x))
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda e: loss(labels, e))(x))
    raise NotImplementedError(f"input_gradient() supports tensorflow and jax, not {backend}")
