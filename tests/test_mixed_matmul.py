"""`matmul_float32`: low-precision products with float32 results, compiled and not, against NumPy."""

import keras
import ml_dtypes
import numpy as np
import pytest

from backend_utils import gradients
from keras_margin._mixed_matmul import matmul_float32

pytestmark = pytest.mark.jax_ci

NUMPY_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


def rounded(array, dtype):
    """`array` rounded to `dtype` as the product's operands are, then widened to float64."""
    return np.asarray(array).astype(NUMPY_DTYPES[dtype]).astype(np.float64)


def compiled(function):
    """`function` compiled by the backend's XLA (TensorFlow, JAX); PyTorch runs it eagerly."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, jit_compile=True)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


def float32_results_expected(dtype, jit):
    """Routes whose result is accumulated and returned in float32 rather than rounded to `dtype`."""
    backend = keras.backend.backend()
    return dtype == "float32" or backend == "jax" or (backend == "tensorflow" and jit)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("transpose_b", [False, True], ids=["b", "b_transposed"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_product_and_gradients_match_numpy_on_rounded_operands(rng, dtype, transpose_b, jit):
    n, k, m = 48, 96, 200
    a = rng.normal(size=(n, k)).astype("float32")
    b = rng.normal(size=(m, k) if transpose_b else (k, m)).astype("float32")
    weights = rng.normal(size=(n, m)).astype("float32")  # the loss Σ weights ∘ (a·b) gives upstream = weights

    def forward(a, b):
        return matmul_float32(a, b, dtype, transpose_b=transpose_b)

    def loss(a, b):
        return keras.ops.sum(keras.ops.multiply(forward(a, b), weights))

    product = keras.ops.convert_to_numpy((compiled(forward) if jit else forward)(a, b))
    grad_a, grad_b = gradients(compiled(loss) if jit else loss, [a, b])

    b_matrix = rounded(b, dtype).T if transpose_b else rounded(b, dtype)
    expected = rounded(a, dtype) @ b_matrix
    upstream = rounded(weights, dtype)  # the gradient products run in the compute dtype too
    expected_grad_a = upstream @ b_matrix.T
    expected_grad_b = rounded(a, dtype).T @ upstream
    if transpose_b:
        expected_grad_b = expected_grad_b.T

    assert product.dtype == np.float32 and product.shape == (n, m)
    # float32 accumulation of exact products of rounded operands: ~1e-6 relative; a result rounded to
    # bfloat16 / float16 is off by up to 2⁻⁸ / 2⁻¹¹ of its size
    relative = 1e-5 if float32_results_expected(dtype, jit) else 2e-2
    for got, want in ((product, expected), (grad_a, expected_grad_a), (grad_b, expected_grad_b)):
        scale = np.abs(want).max()
        np.testing.assert_allclose(got, want, atol=relative * scale, rtol=0)


def test_float32_results_are_not_rounded_to_bfloat16_where_the_backend_has_the_route(rng):
    if not float32_results_expected("bfloat16", jit=True):
        pytest.skip(f"{keras.backend.backend()} has no bfloat16 → float32 product; its result is rounded")
    a = rng.normal(size=(16, 64)).astype("float32")
    b = rng.normal(size=(64, 32)).astype("float32")
    product = keras.ops.convert_to_numpy(compiled(lambda a, b: matmul_float32(a, b, "bfloat16"))(a, b))
    # a bfloat16 result holds 8 significant bits: at least one of 512 values would lie off that grid
    as_bfloat16 = product.astype(ml_dtypes.bfloat16).astype(np.float32)
    assert np.any(product != as_bfloat16)


def test_unknown_compute_dtype_is_refused():
    with pytest.raises(ValueError, match="compute_dtype"):
        matmul_float32(np.ones((2, 3), "float32"), np.ones((3, 4), "float32"), "int8")
