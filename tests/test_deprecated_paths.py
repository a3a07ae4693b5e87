"""The paths that moved keep working for one release: same objects, and a DeprecationWarning naming the new path.

`keras_margin.metrics.<protocol>` moved to `keras_margin.evaluation.<protocol>` (the package-level names are
aliased; the old submodules `keras_margin.metrics.verification` etc. are gone), `keras_margin.verify` split
into `keras_margin.serving` and `keras_margin.cli`.
"""

import importlib
import subprocess
import sys
import warnings

import keras
import pytest

import keras_margin
from keras_margin import evaluation, metrics

MOVED_TO_EVALUATION = [
    "best_threshold",
    "embedding_quality",
    "equal_error_rate",
    "flip_embeddings",
    "identification_report",
    "inter_class_angle",
    "intra_class_angle",
    "pair_scores",
    "quality_filtered_verification",
    "retrieval_report",
    "roc",
    "tar_at_far",
    "verification_report",
]
SERVING_NAMES = ["Embedder", "compare", "identify", "gallery_embeddings", "load_images"]


def moved_warnings(caught):
    return [w for w in caught if issubclass(w.category, DeprecationWarning) and "moved to" in str(w.message)]


@pytest.mark.jax_ci
@pytest.mark.parametrize("name", MOVED_TO_EVALUATION)
def test_old_metrics_name_is_the_evaluation_object_and_warns(name):
    new_path = f"keras_margin.evaluation.{name}"
    with pytest.warns(DeprecationWarning, match=rf"keras_margin\.metrics\.{name} moved to {new_path}\b") as caught:
        old = getattr(keras_margin.metrics, name)
    assert old is getattr(evaluation, name)
    assert "the old path goes in the next release" in str(caught[0].message)
    # reported at the line that used the old name, so Python's default filter shows it in a user's script
    assert caught[0].filename == __file__


@pytest.mark.jax_ci
def test_from_import_of_an_old_name_warns():
    with pytest.warns(DeprecationWarning, match="keras_margin.evaluation.verification_report"):
        from keras_margin.metrics import verification_report
    assert verification_report is evaluation.verification_report


@pytest.mark.jax_ci
def test_every_evaluation_name_is_aliased_and_nothing_else():
    assert sorted(evaluation.__all__) == MOVED_TO_EVALUATION
    with pytest.raises(AttributeError, match="no attribute 'not_a_metric'"):
        metrics.not_a_metric  # noqa: B018
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics.TargetAngle, metrics.LatestValue  # noqa: B018
    assert not moved_warnings(caught)


@pytest.mark.jax_ci
def test_metrics_exports_only_keras_metrics():
    assert metrics.__all__, "keras_margin.metrics exports its Keras metrics"
    for name in metrics.__all__:
        value = getattr(metrics, name)
        assert isinstance(value, type) and issubclass(value, keras.metrics.Metric), name
    assert not set(metrics.__all__) & set(MOVED_TO_EVALUATION)


def reimport(module_name):
    """Imports `module_name` afresh (a module warns once, when it is first imported)."""
    sys.modules.pop(module_name, None)
    return importlib.import_module(module_name)


def test_verify_module_warns_and_reexports_serving_and_main():
    from keras_margin import cli, serving

    with pytest.warns(DeprecationWarning, match=r"keras_margin\.verify moved to keras_margin\.serving") as caught:
        verify = reimport("keras_margin.verify")
    assert caught[0].filename == __file__
    assert "keras_margin.cli.main" in str(caught[0].message)
    for name in SERVING_NAMES:
        assert getattr(verify, name) is getattr(serving, name), name
    assert verify.main is cli.main
    assert set(verify.__all__) == set(serving.__all__) | {"main"}


def test_the_package_itself_uses_no_deprecated_path():
    """Importing every module (but the aliases), and the lazy attributes of keras_margin, warns nothing."""
    code = (
        "import warnings\n"
        "warnings.simplefilter('always')\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    import keras_margin\n"
        "    for name in keras_margin.__all__: getattr(keras_margin, name)\n"
        "    import keras_margin.cli, keras_margin.serving, keras_margin.evaluation, keras_margin.metrics\n"
        "print([str(w.message) for w in caught if 'moved to' in str(w.message)])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
