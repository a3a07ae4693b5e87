"""The examples run end to end (on the offline MNIST in ../shared/data when present)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
TFDS_DIR = ROOT.parent / "shared" / "data" / "tfds"


def run_example(name, *args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / name), *args],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT,
    )


def test_quickstart_help():
    result = run_example("quickstart.py", "--help")
    assert result.returncode == 0, result.stderr
    assert "--data-dir" in result.stdout


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
