"""Models saved by keras_margin 0.1 (tests/legacy_models, made by make_legacy_models.py with that release) still load.

They were saved before the heads shared one margin contract: MagFace's
`easy_margin`, CurricularFace without `fallback`, a Partial FC kernel stored
`(C·K, dim)`. Each must load with its weights and give the logits it gave.
"""

import json
import os

import keras
import numpy as np
import pytest

import keras_margin  # noqa: F401  (registers the heads)

pytestmark = pytest.mark.jax_ci  # backend-neutral: CI runs it on JAX too

LEGACY = os.path.join(os.path.dirname(__file__), "legacy_models")
with open(os.path.join(LEGACY, "expected.json")) as _file:
    EXPECTED = json.load(_file)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_model_saved_by_0_1_loads_and_gives_the_same_logits(name):
    expected = EXPECTED[name]
    inputs = np.load(os.path.join(LEGACY, "inputs.npz"))
    model = keras.saving.load_model(os.path.join(LEGACY, f"{name}.keras"))
    head = model.layers[-1]
    stored_kernel = np.asarray(expected["kernel"])
    kernel = stored_kernel.T if name == "arc_partial_fc" else stored_kernel  # 0.1 stored Partial FC kernels as rows
    np.testing.assert_array_equal(np.asarray(head.kernel), kernel)
    for weight in head.non_trainable_weights:  # the warm-up, the adaptive scale, the running statistics
        np.testing.assert_array_equal(np.asarray(weight), np.asarray(expected["weights"][weight.path]))
    x, y = inputs["x"], inputs["y"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model([x, y], training=False)), expected["eval_logits"], rtol=1e-5, atol=1e-5)
    plain = keras.Model(model.inputs[0], head(model.get_layer("embed")(model.inputs[0])))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(plain(x)), expected["plain"], rtol=1e-5, atol=1e-5)


def test_mag_face_easy_margin_maps_to_fallback():
    model = keras.saving.load_model(os.path.join(LEGACY, "magface_not_easy.keras"), compile=False)
    assert model.layers[-1].fallback == "insightface"
    model = keras.saving.load_model(os.path.join(LEGACY, "magface_easy.keras"), compile=False)
    assert model.layers[-1].fallback == "easy"
    assert "easy_margin" not in model.layers[-1].get_config()
    curricular = keras.saving.load_model(os.path.join(LEGACY, "curricular.keras"), compile=False)
    assert curricular.layers[-1].fallback == "insightface"
