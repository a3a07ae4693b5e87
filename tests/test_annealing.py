"""The λ schedule of SphereMarginHead / LargeMarginHead and its step counter."""

import numpy as np
import pytest
from keras.ops import convert_to_numpy

import reference as ref
from keras_margin import layers


@pytest.mark.parametrize("head_cls", [layers.SphereMarginHead, layers.LargeMarginHead])
@pytest.mark.parametrize(
    "base,gamma,power,minimum",
    [(1000.0, 0.12, 1.0, 5.0), (1000.0, 0.12, 1.0, 0.0), (100.0, 0.5, 2.0, 1.0), (0.0, 0.12, 1.0, 0.0)],
)
def test_lambda_at_chosen_steps(head_cls, base, gamma, power, minimum):
    head = head_cls(4, lambda_base=base, lambda_gamma=gamma, lambda_power=power, lambda_min=minimum)
    for step in (0, 1, 10, 100, 1000, 100_000):
        want = ref.annealed_lambda(step, base, gamma, power, minimum)
        assert float(head.lambda_at(step)) == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_default_sphereface_schedule_values():
    head = layers.SphereMarginHead(4)
    # λ = max(5, 1000 / (1 + 0.12 t)): 1000 at t=0, 1000/13 at t=100, floor 5 from t ≈ 1659
    assert float(head.lambda_at(0)) == pytest.approx(1000.0)
    assert float(head.lambda_at(100)) == pytest.approx(1000.0 / 13.0, rel=1e-6)
    assert float(head.lambda_at(10_000)) == pytest.approx(5.0)


def test_counter_advances_once_per_training_call_with_labels(rng):
    head = layers.SphereMarginHead(3)
    x = rng.normal(size=(6, 4)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2])
    head(x, labels=labels, training=True)
    head(x, labels=labels, training=True)
    assert int(head.annealing_step.numpy()) == 2
    head(x, labels=labels, training=False)
    head(x, labels=labels)
    head(x, training=True)
    assert int(head.annealing_step.numpy()) == 2
    assert head.current_lambda == pytest.approx(1000.0 / (1 + 0.12 * 2), rel=1e-6)


def test_logits_use_the_lambda_of_the_step_before_the_update(rng):
    kernel = rng.normal(size=(4, 3)).astype("float32")
    x = rng.normal(size=(6, 4)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2])
    head = layers.SphereMarginHead(3, lambda_base=10.0, lambda_gamma=1.0, lambda_min=0.0)
    head.build((None, 4))
    head.kernel.assign(kernel)
    for step in range(3):
        got = convert_to_numpy(head(x, labels=labels, training=True))
        want = ref.sphere_logits(x, kernel, labels, 4, ref.annealed_lambda(step, 10.0, 1.0, 1.0, 0.0))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
