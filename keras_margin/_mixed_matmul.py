"""Matrix products in a low-precision compute dtype with float32 results, on each backend's fast route.

Under `mixed_bfloat16` the heads' three products (the logits and the two
gradients) are where the step's time goes. XLA on CPU runs a bfloat16 dot
whose *output* is bfloat16 no faster than a float32 dot, but hands a
bfloat16 × bfloat16 → float32 dot to its faster bfloat16 kernels (see
Results → Mixed precision in the documentation). Keras' `ops.matmul` has
no output-dtype argument, so this module asks for that dot directly where
the backend has it: `jax.lax.dot_general(preferred_element_type=float32)`,
and TensorFlow's `MatMul` with `output_type=float32` inside an XLA cluster
(TensorFlow has no such kernel outside XLA; there oneDNN's bfloat16 product
is already fast and the result is cast). The gradient is written out so that
the backward products take the same route instead of the ones autodiff
would pick (float32 cotangents against bfloat16 operands).
"""

import keras
from keras import ops

from keras_margin._validation import check_choice

LOW_PRECISION = ("bfloat16", "float16")
COMPUTE_DTYPES = ("float16", "bfloat16", "float32", "float64")


def matmul_float32(a, b, compute_dtype="float32", transpose_b=False):
    """`a · b` (or `a · bᵀ`) in float32, with the products computed in `compute_dtype`.

    Args:
        a: float tensor `(n, k)`.
        b: float tensor `(k, m)`, or `(m, k)` with `transpose_b=True`.
        compute_dtype: dtype the operands are cast to for the product
            (`"float16"`, `"bfloat16"`, `"float32"` or `"float64"`); the
            result is float32, and so are the gradients of float32 `a`, `b`.
        transpose_b: whether to contract with the rows of `b`.

    Returns:
        float32 tensor `(n, m)`.
    """
    compute_dtype = check_choice("compute_dtype", keras.backend.standardize_dtype(compute_dtype), COMPUTE_DTYPES)
    route = _route(compute_dtype)
    if route is None:
        a, b = ops.cast(a, compute_dtype), ops.cast(b, compute_dtype)
        product = ops.matmul(a, ops.transpose(b) if transpose_b else b)
        return ops.cast(product, "float32")
    return _with_written_gradient(route, ops.cast(a, "float32"), ops.cast(b, "float32"), compute_dtype, transpose_b)


def _route(compute_dtype):
    """The backend's dot with float32 output for `compute_dtype` operands, or None for `ops.matmul`."""
    if compute_dtype not in LOW_PRECISION:
        return None
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_dot
    if backend == "tensorflow" and _inside_xla_cluster():
        return _tensorflow_xla_dot
    return None


def _inside_xla_cluster():
    """Whether TensorFlow is tracing a function that XLA compiles (`jit_compile=True`)."""
    import tensorflow as tf

    if tf.executing_eagerly():
        return False
    # TensorFlow's public API has no query for this. `get_enclosing_xla_context` is the one it exports,
    # in `tf.__internal__` (the namespace it keeps for Keras), for the context tf.function(jit_compile=True)
    # traces in; where it is missing the answer is "no", and the product takes the route outside XLA.
    try:
        enclosing_xla_context = tf.__internal__.get_enclosing_xla_context
    except AttributeError:
        return False
    return enclosing_xla_context() is not None


def _jax_dot(a, b, contract_a, contract_b):
    from jax import lax

    return lax.dot_general(a, b, (((contract_a,), (contract_b,)), ((), ())), preferred_element_type="float32")


def _tensorflow_xla_dot(a, b, contract_a, contract_b):
    import tensorflow as tf

    # With a transposed left operand (the kernel's gradient, aᵀ · upstream) TensorFlow 2.21's XLA has no
    # bfloat16 kernel and runs the dot in float32 on upcast operands, as it would for a bfloat16 output
    return tf.linalg.matmul(a, b, transpose_a=contract_a == 0, transpose_b=contract_b == 1, output_type=tf.float32)


def _with_written_gradient(dot, a, b, compute_dtype, transpose_b):
    contract_b = 1 if transpose_b else 0

    @ops.custom_gradient
    def product(a, b):
        a_low, b_low = ops.cast(a, compute_dtype), ops.cast(b, compute_dtype)

        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            upstream_low = ops.cast(upstream, compute_dtype)
            d_a = dot(upstream_low, b_low, 1, 1 - contract_b)  # upstream · bᵀ (b: (k, m)) or upstream · b
            if transpose_b:
                d_b = dot(upstream_low, a_low, 0, 0)  # upstreamᵀ · a, shape (m, k)
            else:
                d_b = dot(a_low, upstream_low, 0, 0)  # aᵀ · upstream, shape (k, m)
            return d_a, d_b

        return dot(a_low, b_low, 1, contract_b), gradient

    return product(a, b)
