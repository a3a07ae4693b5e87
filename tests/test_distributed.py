"""MirroredStrategy over two logical CPUs matches one device (own process each)."""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "mirrored_center_loss.py"


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="tf.distribute needs the TensorFlow backend")
def test_center_loss_layer_under_mirrored_strategy_matches_one_device():
    result = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert report["center_change"] > 0.5  # the centers really moved
    assert report["center_difference"] < 1e-5
    assert report["kernel_difference"] < 1e-5
    for one, two in zip(report["loss_one"], report["loss_two"]):
        assert two == pytest.approx(one, rel=1e-5)
