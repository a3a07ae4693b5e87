"""`keras_margin.serving` and `python -m keras_margin compare / identify` (`keras_margin.cli`) on exported models,
against the Keras model's embeddings.

Images are PNGs written here, already at the model's input size, so the
expected input is the image scaled to [−1, 1] (x / 127.5 − 1), computed in
NumPy; the expected similarity is that of the Keras embeddings, normalized here.
"""

import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_margin import cli, export, serving

SHAPE = (24, 24, 3)
EXPORTS = {"embedder.onnx": "onnx", "embedder.tflite": "litert"}
EXPORTABLE = export.FORMATS_BY_BACKEND[keras.backend.backend()]
HERE = EXPORTABLE[0]  # a SavedModel where this backend writes one, else (PyTorch) ONNX


def here(root, stem):
    """Where a model in this backend's first format goes: a SavedModel folder or an .onnx file."""
    return root / (stem if HERE == "tf_saved_model" else f"{stem}.onnx")


def export_here(embedder, root, stem, **kwargs):
    export.export_embedding_model(embedder, here(root, stem), format=HERE, **kwargs)
    return here(root, stem)


def exported_here(name):
    """`name` as a parameter, skipped where this Keras backend cannot export its format."""
    skip = EXPORTS.get(name, "tf_saved_model") not in EXPORTABLE
    reason = f"Keras cannot export {name} from the {keras.backend.backend()} backend (tests/test_export.py)"
    return pytest.param(name, marks=pytest.mark.skip(reason=reason) if skip else ())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    images = keras.Input(SHAPE, name="images")
    x = keras.layers.Conv2D(4, 3, activation="relu")(images)
    embedder = keras.Model(images, keras.layers.Dense(6)(keras.layers.Flatten()(x)))
    root = tmp_path_factory.mktemp("verify")
    export_here(embedder, root, "with_threshold", threshold=0.5)
    export_here(embedder, root, "plain")
    for name, file_format in EXPORTS.items():
        if file_format in EXPORTABLE:
            export.export_embedding_model(embedder, root / name, format=file_format, threshold=0.5)
    pictures = {}
    for name in ("a", "b", "c"):
        pixels = rng.integers(0, 256, SHAPE, dtype=np.uint8)
        (root / f"{name}.png").write_bytes(tf.io.encode_png(pixels).numpy())
        pictures[name] = pixels
    return root, embedder, pictures


def keras_embedding(embedder, pixels):
    embedding = embedder.predict((pixels[None].astype(np.float32) / 127.5 - 1.0), verbose=0)[0].astype(np.float64)
    return embedding / np.linalg.norm(embedding)


@pytest.mark.parametrize("name", [exported_here(n) for n in ("with_threshold", "embedder.onnx", "embedder.tflite")])
def test_compare_equals_the_keras_similarity_in_every_format(exported, name):
    root, embedder, pictures = exported
    model = serving.Embedder(root / name)
    assert model.input_shape == SHAPE and model.metadata["threshold"] == 0.5
    similarity, same, threshold = serving.compare(model, root / "a.png", root / "b.png")
    expected = keras_embedding(embedder, pictures["a"]) @ keras_embedding(embedder, pictures["b"])
    assert similarity == pytest.approx(expected, abs=1e-5)
    assert same == (expected >= 0.5) and threshold == 0.5
    assert serving.compare(model, root / "a.png", root / "a.png")[0] == pytest.approx(1.0, abs=1e-6)


def test_identify_ranks_identities_by_their_best_image_and_caches(exported, tmp_path):
    root, embedder, pictures = exported
    gallery = tmp_path / "gallery"
    for identity, names in (("ann", ("a",)), ("bob", ("b", "c"))):
        (gallery / identity).mkdir(parents=True)
        for name in names:
            (gallery / identity / f"{name}.png").write_bytes((root / f"{name}.png").read_bytes())
    model = serving.Embedder(here(root, "with_threshold"))
    matches, decision, _ = serving.identify(model, gallery, root / "c.png", top_k=5)
    probe = keras_embedding(embedder, pictures["c"])
    expected = {"ann": keras_embedding(embedder, pictures["a"]) @ probe,
                "bob": max(keras_embedding(embedder, pictures[n]) @ probe for n in ("b", "c"))}
    assert [m[0] for m in matches] == sorted(expected, key=lambda k: -expected[k])
    for identity, similarity in matches:
        assert similarity == pytest.approx(expected[identity], abs=1e-5)
    assert decision == "bob"  # its own image: similarity 1
    cache = gallery / serving.CACHE_NAME
    stamp = cache.stat().st_mtime_ns
    assert serving.identify(model, gallery, root / "c.png")[0] == matches and cache.stat().st_mtime_ns == stamp
    (gallery / "ann" / "b.png").write_bytes((root / "b.png").read_bytes())  # the gallery changed
    assert serving.identify(model, gallery, root / "c.png")[0] != matches
    _, decision, _ = serving.identify(model, gallery, root / "a.png", threshold=1.01)
    assert decision == "unknown"


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "keras_margin", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))


def test_command_line(exported, tmp_path, capsys):
    root, _, _ = exported
    result = run_cli("compare", here(root, "with_threshold"), root / "a.png", root / "a.png")  # `python -m` wiring
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cosine similarity 1.0000: same person (threshold 0.5000)" in result.stdout
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["compare", str(here(root, "plain")), str(root / "a.png"), str(root / "b.png")])
    assert exit_info.value.code == 2 and "needs a threshold" in capsys.readouterr().err
    gallery = tmp_path / "gallery"
    (gallery / "ann").mkdir(parents=True)
    (gallery / "ann" / "a.png").write_bytes((root / "a.png").read_bytes())
    identify = ["identify", str(here(root, "with_threshold")), str(gallery), str(root / "a.png"), "--top-k", "1"]
    assert cli.main(identify) == 0
    output = capsys.readouterr().out
    assert output.splitlines()[0].startswith("1. ann  1.0000") and "identified: ann" in output
    assert cli.main(["compare", str(tmp_path / "missing"), str(root / "a.png"), str(root / "b.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_errors_and_metadata(exported, tmp_path):
    root, embedder, _ = exported
    assert export.read_metadata(here(root, "plain"))["threshold"] is None
    assert export.read_metadata(here(root, "with_threshold"))["format"] == HERE
    if "onnx" in EXPORTABLE:
        assert export.read_metadata(root / "embedder.onnx")["format"] == "onnx"
    with pytest.raises(ValueError, match="SavedModel folder, an .onnx or a .tflite"):
        (tmp_path / "model.h5").write_bytes(b"")
        serving.Embedder(tmp_path / "model.h5")
    model = serving.Embedder(here(root, "plain"))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="Cannot read the image"):
        serving.compare(model, tmp_path / "broken.png", root / "a.png")
    with pytest.raises(ValueError, match="gallery"):
        serving.identify(model, tmp_path / "nowhere", root / "a.png")
    with pytest.raises(TypeError):
        export_here(embedder, tmp_path, "x", metadata={"bad": object()})
    from_report = export_here(embedder, tmp_path, "from_report", threshold={"threshold": 0.25, "accuracy": 1})

    class Evaluated:  # a VerificationCallback after an evaluation
        last_report = {"threshold": 0.75}

    from_callback = export_here(embedder, tmp_path, "from_callback", threshold=Evaluated())
    assert export.read_metadata(from_report)["threshold"] == 0.25
    assert export.read_metadata(from_callback)["threshold"] == 0.75
    with pytest.raises(ValueError, match="has evaluated"):
        export_here(embedder, tmp_path, "y", threshold="high")


RAW = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "celeba_raw_sample"
CROPS = RAW.parent / "celeba_subset" / "aligned_112"


@pytest.mark.skipif(not RAW.is_dir(), reason=f"raw CelebA photos not found at {RAW}")
def test_compare_with_alignment_matches_the_aligned_crop(exported):
    pytest.importorskip("mtcnn", reason="--align needs the mtcnn package (the [align] extra)")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("--align detects with mtcnn, TensorFlow backend only (tests/test_align.py tests the error)")
    root, _, _ = exported
    photo = next(p for p in sorted(RAW.glob("*/*.jpg")) if (CROPS / p.parent.name / p.name).exists())
    crop = CROPS / photo.parent.name / photo.name
    model = serving.Embedder(here(root, "with_threshold"))
    aligned = serving.load_images([photo], model.input_shape, align=True)[0]
    reference = serving.load_images([crop], model.input_shape)[0]
    assert np.abs(aligned - reference).mean() < 0.15  # in [-1, 1] units: the same face, aligned alike
    similarity, _, _ = serving.compare(model, photo, crop, align=True)
    assert similarity > 0.9
