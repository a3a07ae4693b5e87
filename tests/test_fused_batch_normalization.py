"""`FusedBatchNormalization` against batch normalization written from its formula (Ioffe & Szegedy 2015)."""

import keras
import ml_dtypes
import numpy as np
import pytest

from backend_utils import gradients
from keras_margin.layers import FusedBatchNormalization

pytestmark = pytest.mark.jax_ci

EPSILON, MOMENTUM = 1e-5, 0.9


def reference_training(x, gamma, beta):
    """y = γ·(x − μ)/√(σ² + ε) + β over the batch and spatial axes; μ and the biased σ² per channel."""
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=(0, 1, 2))
    variance = x.var(axis=(0, 1, 2))
    normalized = (x - mean) / np.sqrt(variance + EPSILON)
    return gamma * normalized + beta, mean, variance, normalized


def reference_input_gradient(upstream, normalized, gamma, variance):
    """dL/dx of training-mode batch normalization: γ/σ · (g − mean(g) − x̂ · mean(g · x̂))."""
    axes = (0, 1, 2)
    return gamma / np.sqrt(variance + EPSILON) * (
        upstream - upstream.mean(axis=axes) - normalized * (upstream * normalized).mean(axis=axes)
    )


def built_layer(rng, channels, **kwargs):
    layer = FusedBatchNormalization(epsilon=EPSILON, momentum=MOMENTUM, **kwargs)
    layer.build((None, 5, 6, channels))
    gamma = rng.uniform(0.5, 2.0, channels).astype("float32")
    beta = rng.normal(size=channels).astype("float32")
    moving_mean = rng.normal(size=channels).astype("float32")
    moving_variance = rng.uniform(0.5, 2.0, channels).astype("float32")
    layer.set_weights([gamma, beta, moving_mean, moving_variance])
    return layer, gamma, beta, moving_mean, moving_variance


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_training_output_moving_statistics_and_gradients_follow_the_formula(rng, policy):
    keras.config.set_dtype_policy(policy)
    channels = 7
    layer, gamma, beta, moving_mean, moving_variance = built_layer(rng, channels)
    x = (3.0 + 2.0 * rng.normal(size=(4, 5, 6, channels))).astype("float32")
    upstream = rng.normal(size=x.shape).astype("float32")

    def loss(x):
        out = layer(x, training=True)
        return keras.ops.sum(keras.ops.multiply(keras.ops.cast(out, "float32"), upstream))

    low = policy != "float32"
    out = keras.ops.convert_to_numpy(keras.ops.cast(layer(x, training=True), "float32"))
    # under mixed_bfloat16 the layer receives the feature map rounded to bfloat16; its statistics are float32
    x_seen = x.astype(ml_dtypes.bfloat16).astype(np.float64) if low else x
    expected, mean, variance, normalized = reference_training(x_seen, gamma, beta)
    # the moving statistics after the one call above (the gradient pass below makes a second, same update)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean),
                               MOMENTUM * moving_mean + (1 - MOMENTUM) * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_variance),
                               MOMENTUM * moving_variance + (1 - MOMENTUM) * variance, rtol=1e-5, atol=1e-6)
    grad_x, grad_gamma, grad_beta = gradients(loss, [x], [layer.gamma, layer.beta], state_of=layer)

    assert keras.backend.standardize_dtype(layer(x, training=True).dtype) == ("bfloat16" if low else "float32")
    # bfloat16 feature maps carry 8 significant bits, in and out
    tolerance = dict(rtol=0, atol=0.05 * np.abs(expected).max()) if low else dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out, expected, **tolerance)
    # the upstream gradient reaches the layer through its bfloat16 output, rounded as that output is
    upstream_seen = upstream.astype(ml_dtypes.bfloat16).astype(np.float64) if low else upstream
    expected_grad_x = reference_input_gradient(upstream_seen, normalized, gamma, variance)
    gradient_tolerance = dict(rtol=0, atol=0.05 * np.abs(expected_grad_x).max()) if low else dict(rtol=1e-3,
                                                                                                   atol=1e-4)
    np.testing.assert_allclose(grad_x, expected_grad_x, **gradient_tolerance)
    sum_scale = np.abs(upstream).sum(axis=(0, 1, 2))  # float32 sums of products: well within 1e-3 of it
    np.testing.assert_allclose(grad_beta, upstream_seen.sum(axis=(0, 1, 2)), rtol=0, atol=1e-3 * sum_scale.max())
    expected_grad_gamma = (upstream_seen * normalized).sum(axis=(0, 1, 2))
    gamma_atol = (2e-2 if low else 1e-3) * (np.abs(upstream * normalized).sum(axis=(0, 1, 2))).max()
    np.testing.assert_allclose(grad_gamma, expected_grad_gamma, rtol=0, atol=gamma_atol)


def test_inference_uses_the_moving_statistics(rng):
    layer, gamma, beta, moving_mean, moving_variance = built_layer(rng, 3)
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x, training=False))
    expected = gamma * (x - moving_mean) / np.sqrt(moving_variance + EPSILON) + beta
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer.moving_mean), moving_mean)  # unchanged


def test_frozen_layer_normalizes_with_the_moving_statistics_even_in_training(rng):
    layer, gamma, beta, moving_mean, moving_variance = built_layer(rng, 3)
    layer.trainable = False
    x = rng.normal(size=(2, 5, 6, 3)).astype("float32")
    out = keras.ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(out, gamma * (x - moving_mean) / np.sqrt(moving_variance + EPSILON) + beta,
                               rtol=1e-5, atol=1e-5)


def test_without_scale_and_center_and_on_2d_inputs_it_is_batch_normalization(rng):
    x4 = rng.normal(size=(3, 5, 6, 4)).astype("float32")
    layer = FusedBatchNormalization(epsilon=EPSILON, scale=False, center=False)
    expected, *_ = reference_training(x4, 1.0, 0.0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(x4, training=True)), expected, rtol=1e-4,
                               atol=1e-4)
    x2 = rng.normal(size=(16, 4)).astype("float32")
    dense_case = FusedBatchNormalization(epsilon=EPSILON)
    mean, variance = x2.mean(axis=0), x2.var(axis=0)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(dense_case(x2, training=True)),
                               (x2 - mean) / np.sqrt(variance + EPSILON), rtol=1e-4, atol=1e-4)


def test_compiled_training_matches_uncompiled_and_the_model_round_trips(rng, tmp_path):
    x = rng.normal(size=(8, 6, 6, 3)).astype("float32")
    y = rng.normal(size=(8, 6, 6, 4)).astype("float32")

    def trained(jit):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 6, 3))
        hidden = keras.layers.Conv2D(4, 3, padding="same")(inputs)
        model = keras.Model(inputs, FusedBatchNormalization(epsilon=EPSILON, name="bn")(hidden))
        model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit)
        model.fit(x, y, batch_size=4, epochs=2, verbose=0, shuffle=False)
        return model

    eager, compiled = trained(False), trained(True)
    for a, b in zip(eager.get_weights(), compiled.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    path = tmp_path / "m.keras"
    compiled.save(path)
    reloaded = keras.saving.load_model(path)
    assert type(reloaded.get_layer("bn")) is FusedBatchNormalization
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), compiled.predict(x, verbose=0), rtol=1e-6,
                               atol=1e-6)
