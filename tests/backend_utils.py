"""Backend-neutral helpers for tests: gradients on TensorFlow, JAX or PyTorch."""

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

    def value(x):
        out = layer(x, **call_kwargs)
        return loss_fn(labels, keras.ops.cast(out, "float32")), keras.ops.stop_gradient(out)

    (grad_x, grad_kernel), out = gradients(value, [x], [layer.kernel], state_of=layer, has_aux=True)
    return (out, grad_x, grad_kernel) if return_output else (grad_x, grad_kernel)


def input_gradient(loss, labels, x):
    """Gradient of the scalar `loss(labels, x)` with respect to `x`, as NumPy."""
    return gradients(lambda e: loss(labels, e), [x])[0]


def gradients(fn, arrays=(), variables=(), state_of=None, has_aux=False):
    """Gradients of the scalar `fn(*tensors)` w.r.t. `arrays` (NumPy) and `variables` (Keras).

    `fn` runs eagerly and may call layers in training mode. On JAX it runs
    inside a `keras.StatelessScope` that maps the `variables` to traced
    values; the non-trainable variables of `state_of` (a layer or model) that
    `fn` assigned are written back afterwards, so state advances as it would
    on TensorFlow. On PyTorch, autograd differentiates the eager call, whose
    state updates already happened in place. Returns a list of NumPy arrays,
    one per array then one per variable (a variable `fn` does not use gets
    zeros). With `has_aux`, `fn`
    returns `(value, aux)` and the result is `(gradients, aux as NumPy)`.
    """
    arrays, variables = [np.asarray(a) for a in arrays], list(variables)
    call = fn if has_aux else (lambda *tensors: (fn(*tensors), ()))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(a) for a in arrays]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            value, aux = call(*tensors)
        grads = tape.gradient(value, tensors + [v.value for v in variables])
        grads = [np.zeros(s.shape) if g is None else np.asarray(tf.convert_to_tensor(g))
                 for s, g in zip(arrays + variables, grads)]
    elif backend == "jax":
        import jax

        state = [] if state_of is None else list(state_of.non_trainable_variables)

        def traced(array_values, variable_values):
            with keras.StatelessScope(state_mapping=list(zip(variables, variable_values)), collect_losses=True) as scope:
                value, aux = call(*array_values)
            return value, (aux, [scope.get_current_value(v) for v in state])

        (array_grads, variable_grads), (aux, updates) = jax.grad(traced, argnums=(0, 1), has_aux=True)(
            [jax.numpy.asarray(a) for a in arrays], [v.value for v in variables])
        for variable, update in zip(state, updates):
            if update is not None:
                variable.assign(update)
        grads = [np.asarray(g) for g in array_grads + variable_grads]
    elif backend == "torch":
        import torch

        tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
        sources = tensors + [v.value for v in variables]
        value, aux = call(*tensors)
        # like a tape, which watches trainable variables only: a non-trainable one gets zeros
        watched = [s for s in sources if s.requires_grad]
        found = dict(zip(map(id, watched), torch.autograd.grad(value, watched, allow_unused=True)))
        grads = [found.get(id(s)) for s in sources]
        grads = [np.zeros(s.shape) if g is None else g.detach().cpu().numpy() for s, g in zip(sources, grads)]
    else:
        raise NotImplementedError(f"gradients() supports tensorflow, jax and torch, not {backend}")
    if not has_aux:
        return grads
    return grads, keras.tree.map_structure(keras.ops.convert_to_numpy, aux)
