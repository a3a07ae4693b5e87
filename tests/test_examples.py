"""The examples run end to end (on the offline MNIST in ../shared/data when present)."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

from keras_margin import export

ROOT = pathlib.Path(__file__).resolve().parents[1]
TFDS_DIR = ROOT.parent / "shared" / "data" / "tfds"


def run_example(name, *args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


@pytest.mark.jax_ci
@pytest.mark.skipif(not (TFDS_DIR / "mnist").is_dir(), reason=f"offline MNIST not found at {TFDS_DIR}")
def test_quickstart_trains_saves_and_reloads(tmp_path):
    result = run_example(
        "quickstart.py", "--data-dir", str(TFDS_DIR), "--epochs", "1", "--max-examples", "2048",
        "--output-dir", str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    accuracy_line = next(line for line in result.stdout.splitlines() if line.startswith("test accuracy"))
    # 2048 images, one epoch: far above the 10% of chance
    assert float(accuracy_line.split()[-1]) > 0.6, result.stdout
    assert "identical margin logits = True" in result.stdout
    assert (tmp_path / "embedder.keras").is_file()


ORL_DIR = ROOT.parent / "shared" / "data" / "faces" / "orl"
HAVE_MNIST = (TFDS_DIR / "mnist").is_dir()
MNIST_ARGS = ["--data-dir", str(TFDS_DIR)] if HAVE_MNIST else ["--mock-data"]


HELP_DRIVER = """
import contextlib, io, runpy, sys
for name in sys.argv[1:]:
    sys.argv = [name, "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(name, run_name="__main__")
        except SystemExit as exit:
            assert exit.code == 0, (name, exit.code)
    print("=== " + name)
    print(out.getvalue())
"""


def test_every_example_has_help():
    # one process for all of them: each would otherwise pay TensorFlow's import
    names = ["quickstart.py", "feature_geometry.py", "train_faces.py", "triplet_pk.py"]
    result = subprocess.run(
        [sys.executable, "-c", HELP_DRIVER, *[str(ROOT / "examples" / n) for n in names]],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        cwd=ROOT / "examples",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sections = result.stdout.split("=== ")[1:]
    assert len(sections) == len(names)
    for name, section in zip(names, sections):
        assert "--data-dir" in section, name
        assert name == "quickstart.py" or "--smoke" in section, name


def test_feature_geometry_smoke(tmp_path):
    # every loss, 2-D and 3-D, a few steps each; XLA is covered by the layer tests and costs a compile per model
    result = run_example("feature_geometry.py", "--smoke", "--no-jit-compile", "--output-dir", str(tmp_path), *MNIST_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    table = result.stdout.split("train s")[1].strip().split("\n\n")[0].splitlines()
    assert len(table) == 6 + 3  # six losses in 2-D, three angular heads in 3-D
    for row in table:
        accuracy, intra, inter = (float(v) for v in row.split()[-4:-1])
        assert 0 <= accuracy <= 1 and 0 <= intra <= 180 and 0 < inter <= 180, row
    figure = tmp_path / "feature_geometry.png"
    assert figure.stat().st_size > 50_000  # 15 panels of scatter plots


@pytest.mark.skipif(not ORL_DIR.is_dir(), reason=f"ORL faces not found at {ORL_DIR}")
def test_train_faces_on_orl_with_center_loss_exports_a_savedmodel(tmp_path):
    result = run_example(
        "train_faces.py", "--data", str(ORL_DIR), "--channels", "1", "--data-dir", str(tmp_path / "tfds"),
        "--head", "cosface", "--center-loss", "--smoke", "--output-dir", str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["training_identities"] == 32 and len(report["held_out_identities"]) == 8
    assert 0 <= report["verification"]["accuracy"] <= 1
    assert set(report["verification"]["tar_at_far"]) == {"0.001", "0.01"}
    assert report["export_max_abs_difference"] < 1e-5
    assert report["export_format"] == export.FORMATS_BY_BACKEND[keras.backend.backend()][0]
    exported = pathlib.Path(report["exported"])  # a SavedModel folder, or an ONNX file on PyTorch
    assert (exported / "saved_model.pb").is_file() if exported.is_dir() else exported.suffix == ".onnx"
    assert "center_loss" in report["history"]


def test_train_faces_triplet_on_mock_tfds(tmp_path):
    result = run_example(
        "train_faces.py", "--data", "mnist", "--mock-data", "--triplet", "--channels", "1", "--smoke",
        "--identities-per-batch", "4", "--images-per-identity", "2", "--output-dir", str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["args"]["triplet"] and report["training_identities"] == 8
    assert report["export_max_abs_difference"] < 1e-5


def test_triplet_pk_smoke():
    result = run_example("triplet_pk.py", "--smoke", *MNIST_ARGS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out digits" in result.stdout and "AUC" in result.stdout


def test_train_faces_from_a_rec_with_bins(tmp_path):
    import numpy as np
    import tensorflow as tf

    import recordio_reference as ref

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6), 8).tolist()
    pixels = rng.integers(0, 256, (len(labels), 112, 112, 3), dtype=np.uint8)
    images = [tf.io.encode_jpeg(p).numpy() for p in pixels]
    (tmp_path / "faces").mkdir()
    ref.write_insightface_layout(tmp_path / "faces", images, labels)
    (tmp_path / "lfw.bin").write_bytes(ref.python2_bin(images[:40], [i % 2 == 0 for i in range(20)]))
    result = run_example(
        "train_faces.py", "--data", str(tmp_path / "faces"), "--val", str(tmp_path / "lfw.bin"),
        "--val-every-steps", "3", "--smoke", "--batch-size", "8", "--output-dir", str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[lfw][3] Accuracy-Flip:" in result.stdout and "[lfw][6] Accuracy-Flip:" in result.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["training_identities"] == 6 and report["held_out_identities"] == []
    assert 0 <= report["bin_verification"]["lfw"]["accuracy"] <= 1
    assert len(report["history"]["val_lfw_accuracy"]) == 1  # one epoch, the latest of its evaluations
    assert report["export_max_abs_difference"] < 1e-5


@pytest.mark.slow  # about a minute: MobileFaceNet under mixed precision, XLA, three exports
def test_train_faces_recipe_on_fold_pairs_with_a_backbone(tmp_path):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    root = tmp_path / "faces"
    lines = ["fold,path1,path2,same"]
    for identity in range(8):
        (root / "aligned" / f"{identity:04d}").mkdir(parents=True)
        for n in range(4):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            (root / "aligned" / f"{identity:04d}" / f"{n}.jpg").write_bytes(tf.io.encode_jpeg(pixels).numpy())
    for fold, identities in ((0, (0, 1, 2, 3)), (1, (4, 5)), (2, (6, 7))):
        for i in range(10):
            a, b = identities[i % len(identities)], identities[(i + 1) % len(identities)]
            same = i % 2 == 0
            second = f"aligned/{a:04d}/{(i + 1) % 4}.jpg" if same else f"aligned/{b:04d}/{i % 4}.jpg"
            lines.append(f"{fold},aligned/{a:04d}/{i % 4}.jpg,{second},{int(same)}")
    (root / "pairs.csv").write_text("\n".join(lines) + "\n")
    litert = "litert" in export.FORMATS_BY_BACKEND[keras.backend.backend()]
    saved_model = "tf_saved_model" in export.FORMATS_BY_BACKEND[keras.backend.backend()]
    result = run_example(
        "train_faces.py", "--data", str(root / "aligned"), "--data-dir", str(tmp_path / "tfds"),
        "--pairs-csv", str(root / "pairs.csv"), "--train-folds", "0-1", "--test-folds", "2",
        "--backbone", "mobilefacenet", "--optimizer", "sgd", "--mixed-precision", "--smoke", "--batch-size", "8",
        "--head", "adaface", "--curves", *(["--litert-int8"] if litert else []),
        *(["--export-bfloat16"] if saved_model else []), "--output-dir", str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    history = report["history"]
    assert history["val_test_pairs_accuracy"] == [report["verification"]["accuracy"]]  # one epoch: the same pairs
    for kind in ("target", "nontarget", "genuine", "impostor"):
        assert history[f"angle_{kind}_p10"][0] <= history[f"angle_{kind}_p50"][0] <= history[f"angle_{kind}_p90"][0]
    if litert:  # the int8 export needs the TensorFlow backend
        assert 0 <= report["litert_int8"]["accuracy"] <= 1 and pathlib.Path(report["litert_int8"]["path"]).is_file()
    if saved_model:
        low = report["bfloat16_export"]
        assert 0 <= low["accuracy"] <= 1 and low["num_pairs"] == 10
        assert export.read_metadata(low["path"])["precision"] == "bfloat16"
    assert report["training_identities"] == 6  # identities of folds 0 and 1
    assert report["verification"]["num_pairs"] == 10  # the pairs of fold 2
    assert report["args"]["learning_rate"] == 0.1 * 8 / 512 and report["args"]["weight_decay"] == 5e-4
    assert report["export_max_abs_difference"] < 1e-4


def load_script(relative_path):
    """A script of the repository (not a package module) imported as a module, without running main()."""
    import importlib.util

    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_train_faces():
    return load_script("examples/train_faces.py")


def test_train_faces_weight_decay_and_embedding_bn_options():
    import keras

    import keras_margin

    train_faces = load_train_faces()
    embedder = train_faces.embedding_network(16, 1, 8, embedding_bn="fixed-scale")
    bn = embedder.get_layer("embedding")
    assert isinstance(bn, keras.layers.BatchNormalization) and not bn.scale and bn.center
    assert isinstance(train_faces.embedding_network(16, 1, 8, "none").get_layer("embedding"), keras.layers.Dense)
    images = keras.Input((16, 16, 1))
    labels = keras.Input((), dtype="int32")
    head = keras_margin.ArcMarginHead(4)
    model = keras.Model([images, labels], head(embedder(images), labels=labels))
    train_faces.add_weight_decay(model, 5e-4, head, head_weight_decay=0.0)
    decayed = {v.path: v.regularizer.l2 for v in model.trainable_variables if v.regularizer is not None}
    assert head.kernel.path not in decayed and head.kernel.regularizer is None
    assert decayed and all(path.endswith("kernel") for path in decayed)
    assert all(value == 2.5e-4 for value in decayed.values())  # L2(wd / 2): gradient wd·w, as in PyTorch
    train_faces.add_weight_decay(model, 5e-4, head, head_weight_decay=1e-3)
    assert head.kernel.regularizer.l2 == 5e-4
    for clip, expected in (("5", 5.0), ("0", None)):
        args = train_faces.parse_args(["--data", "unused", "--optimizer", "sgd", "--clip-norm", clip])
        assert train_faces.make_optimizer(args, steps_per_epoch=10).global_clipnorm == expected


def test_train_faces_builds_every_head_it_offers():
    train_faces = load_train_faces()
    for name in train_faces.HEADS:
        margin = ["--margin", "4"] if name in ("sphereface", "lsoftmax") else ["--margin", "0.3"]
        args = train_faces.parse_args(["--data", "unused", "--head", name, "--scale", "auto", *margin,
                                       "--margin-std", "0.02", "--sorted-margins"])
        head = train_faces.make_head(name, 20, args)
        if name == "softmax":
            continue
        config = head.get_config()
        if "scale" in config:
            assert config["scale"] == "auto", name
        if name not in ("magface", "combined", "sphereface", "lsoftmax"):
            assert config["margin"] == 0.3, name
        if name.startswith("elasticface"):
            assert (config["margin_std"], config["sorted_margins"]) == (0.02, True)


def test_train_faces_combined_head_is_insightfaces_combined_margin():
    # insightface's combined loss: cos(m1·θ + m2) − m3 with (m1, m2, m3) = (1, 0.3, 0.2); --margin sets m2
    train_faces = load_train_faces()
    for margin, m2 in (([], 0.3), (["--margin", "0.4"], 0.4)):
        args = train_faces.parse_args(["--data", "unused", "--head", "combined", *margin])
        config = train_faces.make_head("combined", 20, args).get_config()
        assert (config["m1"], config["m2"], config["m3"]) == (1.0, m2, 0.2)


def test_every_recipe_row_is_a_valid_train_faces_command():
    """A misspelt option in a benchmark row would only surface after a 30-minute run's start."""
    recipes = load_script("benchmarks/recipes.py")
    train_faces = load_train_faces()
    assert "arcface-auto-lr0.05-center" in recipes.RECIPES
    for suite, suite_options in recipes.SUITES.items():
        for row, row_options in recipes.RECIPES.items():
            try:
                args = train_faces.parse_args([*suite_options, *row_options, "--seed", "0"])
            except SystemExit as error:
                raise AssertionError(f"suite {suite!r}, row {row!r}: train_faces.py rejects its options") from error
            # the row's own options win over the suite's: argparse keeps the last value
            if "--learning-rate" in row_options:
                value = row_options[row_options.index("--learning-rate") + 1]
                assert args.learning_rate == float(value), (suite, row)
            assert args.center_loss == ("--center-loss" in row_options), (suite, row)
