"""The defaults and argument names users rely on: the papers' scales, `num_classes`, Keras' reductions, one
center-loss weight, one `labels_as_input` default; and the old spellings that keep working for a release.
"""

import importlib.util
import inspect
import json
import pathlib
import warnings
import zipfile

import keras
import numpy as np
import pytest

from keras_margin import data, layers, losses

pytestmark = pytest.mark.jax_ci  # backend-neutral (the train_faces checks import TensorFlow, as the data does)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def load_script(relative_path):
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- the papers' defaults ------------------------------------------------------------------


@pytest.mark.parametrize("head, margins", [
    (layers.ArcMarginHead, {"margin": 0.5}),
    (layers.CosMarginHead, {"margin": 0.35}),
    (layers.CombinedMarginHead, {"m1": 1.0, "m2": 0.5, "m3": 0.0}),
    (layers.CurricularFaceHead, {"margin": 0.5}),
    (layers.MagFaceHead, {}),
    (layers.AdaFaceHead, {"margin": 0.4}),
    (layers.ElasticArcMarginHead, {"margin": 0.5}),
    (layers.ElasticCosMarginHead, {"margin": 0.35}),
])
def test_every_normalized_head_defaults_to_the_papers_scale(head, margins):
    config = head(10).get_config()
    assert config["scale"] == 64.0
    assert {name: config[name] for name in margins} == margins
    assert head(10).current_scale == 64.0


def test_auto_scale_stays_the_adacos_scale():
    assert layers.ArcMarginHead(211, scale="auto").current_scale == pytest.approx(np.sqrt(2) * np.log(210))


# --- NormalizedDense(num_classes) ------------------------------------------------------------


def test_normalized_dense_takes_num_classes_and_writes_it(tmp_path):
    layer = layers.NormalizedDense(num_classes=4, scale=8.0)
    config = layer.get_config()
    assert config["num_classes"] == 4 and "units" not in config
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    model.save(tmp_path / "m.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a new file loads without the old name
        reloaded = keras.saving.load_model(tmp_path / "m.keras")
    assert reloaded.layers[-1].num_classes == 4
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_normalized_dense_still_takes_units_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="`units` argument is now `num_classes`") as record:
        layer = layers.NormalizedDense(units=5, scale="auto")
    assert record[0].filename == __file__  # attributed to the caller
    assert layer.num_classes == 5 and layer.get_config()["num_classes"] == 5
    with pytest.warns(DeprecationWarning, match="now `num_classes`"):
        assert layer.units == 5
    config = layer.get_config()
    config["units"] = config.pop("num_classes")  # a config written before the rename
    with pytest.warns(DeprecationWarning):
        assert layers.NormalizedDense.from_config(config).num_classes == 5
    with pytest.raises(TypeError, match="not both"):
        layers.NormalizedDense(5, units=5)
    with pytest.raises(TypeError, match="num_classes"):
        layers.NormalizedDense()


def test_a_keras_file_saved_with_units_loads(tmp_path):
    layer = layers.NormalizedDense(4, scale=8.0, name="cosines")
    inputs = keras.Input((3,))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(1).normal(size=(5, 3)).astype("float32")
    model.save(tmp_path / "new.keras")
    # the same file as the old version wrote it: "units" in the layer's config
    with zipfile.ZipFile(tmp_path / "new.keras") as new, zipfile.ZipFile(tmp_path / "old.keras", "w") as old:
        for item in new.infolist():
            content = new.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(content)
                (entry,) = [e for e in config["config"]["layers"] if e["config"]["name"] == "cosines"]
                entry["config"]["units"] = entry["config"].pop("num_classes")
                content = json.dumps(config).encode()
            old.writestr(item, content)
    with pytest.warns(DeprecationWarning, match="`units` argument is now `num_classes`"):
        reloaded = keras.saving.load_model(tmp_path / "old.keras")
    assert reloaded.get_layer("cosines").num_classes == 4
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# --- Keras' reduction names --------------------------------------------------------------------


def test_loss_functions_default_to_the_classes_reduction():
    for function, cls in ((losses.triplet_loss, losses.TripletLoss),
                          (losses.batch_contrastive_loss, losses.ContrastiveLoss)):
        function_default = inspect.signature(function).parameters["reduction"].default
        assert function_default == inspect.signature(cls).parameters["reduction"].default == "sum_over_batch_size"
        assert cls().reduction == "sum_over_batch_size"


@pytest.mark.parametrize("function", [losses.triplet_loss, losses.batch_contrastive_loss])
@pytest.mark.parametrize("weighted", [False, True])
def test_mean_is_sum_over_batch_size_with_and_without_sample_weights(function, weighted):
    rng = np.random.default_rng(2)
    labels = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    embeddings = rng.normal(size=(8, 5)).astype("float32")
    weights = rng.uniform(0.2, 2.0, size=8).astype("float32") if weighted else None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "mean" is a Keras name: no warning
        values = {reduction: float(function(labels, embeddings, sample_weight=weights, reduction=reduction))
                  for reduction in ("sum_over_batch_size", "mean", "mean_with_sample_weight")}
    default = float(function(labels, embeddings, sample_weight=weights))
    assert values["mean"] == values["mean_with_sample_weight"] == values["sum_over_batch_size"] == default
    assert float(function(labels, embeddings, sample_weight=weights, reduction="sum")) > default > 0


@pytest.mark.parametrize("bad", ["none", None, "avg"])
def test_a_bad_reduction_names_the_allowed_values(bad):
    allowed = "('sum_over_batch_size', 'mean', 'mean_with_sample_weight', 'sum')"
    for make in (lambda: losses.triplet_loss(np.array([0, 0, 1]), np.ones((3, 2)), reduction=bad),
                 lambda: losses.batch_contrastive_loss(np.array([0, 0, 1]), np.ones((3, 2)), reduction=bad),
                 lambda: losses.TripletLoss(reduction=bad),
                 lambda: losses.ContrastiveLoss(reduction=bad)):
        with pytest.raises(ValueError) as info:
            make()
        assert f"`reduction` must be one of {allowed}. Received: reduction={bad!r}" in str(info.value)
        assert ("no per-example value" in str(info.value)) == (bad in ("none", None))


# --- one center-loss weight, one labels_as_input default ------------------------------------------


def test_center_loss_weight_has_one_default():
    train_faces = load_script("examples/train_faces.py")
    layer_default = inspect.signature(layers.CenterLossLayer).parameters["weight"].default
    assert layer_default == 0.01 == layers.CenterLossLayer(4).weight
    assert train_faces.parse_args(["--data", "unused"]).center_loss_weight == layer_default


def test_batches_and_pk_batches_share_the_labels_as_input_default():
    defaults = {
        inspect.signature(function).parameters["labels_as_input"].default
        for function in (data.IdentityDataset.batches, data.IdentityDataset.pk_batches, data.pk_batches)
    }
    assert defaults == {True}
    images = np.arange(8 * 4, dtype="uint8").reshape(8, 2, 2, 1)
    dataset = data.IdentityDataset.from_arrays(images, np.repeat(np.arange(4), 2))
    for batches in (dataset.batches(4), data.pk_batches(dataset, 2, 2, seed=0), dataset.pk_batches(2, 2, seed=0)):
        (x, labels_in), labels = next(iter(batches))  # ((images, labels), labels) for a margin head
        np.testing.assert_array_equal(labels_in, labels)
    x, labels = next(iter(data.pk_batches(dataset, 2, 2, seed=0, labels_as_input=False)))  # metric losses
    assert x.shape == (4, 2, 2, 1) and labels.shape == (4,)


# --- the examples and benchmarks keep measuring what they measured -------------------------------------


def test_train_faces_keeps_its_documented_scale():
    train_faces = load_script("examples/train_faces.py")
    args = train_faces.parse_args(["--data", "unused"])
    for name in ("arcface", "cosface", "combined"):
        assert train_faces.make_head(name, 20, args).get_config()["scale"] == 16.0, name
    for name in ("curricularface", "magface", "adaface", "elasticface-arc", "elasticface-cos"):
        assert train_faces.make_head(name, 20, args).get_config()["scale"] == 64.0, name
    auto = train_faces.parse_args(["--data", "unused", "--scale", "auto"])
    assert train_faces.make_head("arcface", 20, auto).get_config()["scale"] == "auto"


def test_recipe_rows_named_default_measure_the_old_defaults():
    recipes = load_script("benchmarks/recipes.py")
    for row in ("arcface-default", "cosface-default", "arcface-default-sgd", "cosface-default-sgd",
                "arcface-default-lr0.05", "combined-insightface"):
        options = recipes.RECIPES[row]
        assert options[options.index("--scale") + 1] == "16", row
