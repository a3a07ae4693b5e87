"""README.md is short, its links resolve, and its training example runs (on tiny images)."""

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# The example's constants and sizes, shrunk so that it trains in seconds on 20 identities (5 images each) of
# 32×32 images. Every pattern must occur in the example: a rewrite of the README that drops
# one fails here instead of silently testing a bigger run.
SHRINK = {
    "SIZE, BATCH, EPOCHS = 112, 128, 20": "SIZE, BATCH, EPOCHS = 32, 8, 1",
    "verification_pairs(1000,": "verification_pairs(20,",
    "backbones.iresnet50(": "backbones.iresnet18(",
}


def readme_example():
    text = README.read_text()
    section = text.split("\n## Train a face model\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_is_short():
    assert len(README.read_text().splitlines()) <= 250


def test_example_is_at_most_25_lines():
    assert len(readme_example().strip().splitlines()) <= 25


def test_readme_links_resolve():
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README.read_text())
    local = [target for target in targets if "://" not in target]
    assert local, "the README links into the docs"
    missing = [target for target in local if not (ROOT / target).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_the_two_commands_are_there():
    text = README.read_text()
    test_line = re.search(r"^pip install .*\[test\].*pytest.*$", text, re.M)
    assert test_line, "the test line .ci/run reads"
    assert "pytest -n 2 --dist loadgroup" in test_line.group(0) and "-m jax_ci" in test_line.group(0)
    assert re.search(r"^pip install \"\.\[examples\]\" && python examples/feature_geometry\.py$", text, re.M)


def write_faces(root, identities=20, images_per_identity=5, seed=0):
    """Identity folders of PNG faces: each person a colour plus noise, so the classes differ."""
    import PIL.Image

    rng = np.random.default_rng(seed)
    for person in range(identities):
        folder = root / f"person_{person:02d}"
        folder.mkdir(parents=True)
        colour = rng.integers(0, 256, 3)
        for index in range(images_per_identity):
            image = np.clip(colour + rng.normal(0, 30, (40, 40, 3)), 0, 255).astype(np.uint8)
            PIL.Image.fromarray(image).save(folder / f"{index}.png")


def test_readme_example_trains_evaluates_and_exports(tmp_path):
    code = readme_example()
    for pattern, replacement in SHRINK.items():
        assert pattern in code, f"the README example no longer contains {pattern!r}"
        code = code.replace(pattern, replacement)
    write_faces(tmp_path / "faces")
    (tmp_path / "example.py").write_text(code)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", TFDS_DATA_DIR=str(tmp_path / "tfds"), KERAS_BACKEND="tensorflow")
    result = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # the verification callback printed its result, and the embedder was exported and serves unit vectors
    assert "verification_accuracy" in result.stdout + result.stderr or "Accuracy" in result.stdout
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "embedder"))
    embeddings = served.serve(tf.random.uniform((2, 32, 32, 3), -1, 1))["embeddings"].numpy()
    assert embeddings.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=1e-5)

    # the README's serving line, on two of the faces
    serving = re.search(r"`(python -m keras_margin compare embedder \S+ \S+ --threshold \S+)`",
                        " ".join(README.read_text().split()))
    assert serving, "the README shows the compare command"
    command = serving.group(1).split()[1:]
    command[-4:-2] = [str(tmp_path / "faces" / "person_00" / "0.png"), str(tmp_path / "faces" / "person_01" / "0.png")]
    compared = subprocess.run([sys.executable, *command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=300)
    assert compared.returncode == 0, compared.stderr[-3000:]
    assert re.match(r"cosine similarity -?[01]\.\d{4}: (same person|different people) \(threshold 0\.\d+\)",
                    compared.stdout), compared.stdout


def test_getting_started_shows_the_readme_example():
    """The docs' walk-through explains the same code this file runs."""
    page = (ROOT / "docs" / "getting-started.md").read_text()
    assert f"```python\n{readme_example()}```" in page
