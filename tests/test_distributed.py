"""MirroredStrategy over two logical CPUs matches one device on the same global batch.

tests/scripts/mirrored_training.py trains every head, CenterLossLayer and every
metric loss both ways in its own process (logical devices must be configured
before TensorFlow starts) and reports the largest weight difference.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "mirrored_training.py"
PARTS = ["center_loss", "normalized_dense", "arc", "cos", "combined", "sphere", "large", "arc_subcenters",
         "arc_adaptive_warmup", "arc_partial_fc", "curricular", "adaface", "magface", "contrastive", "triplet_semi_hard", "triplet_batch_hard", "triplet_batch_all"]


@pytest.fixture(scope="module")
def report():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute needs the TensorFlow backend")
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *PARTS], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("part", PARTS)
def test_two_replicas_match_one_device(report, part):
    result = report[part]
    assert result["replicas"] == 2
    assert result["weight_change"] > 0.05  # training really moved the weights
    assert result["weight_difference"] < 1e-5
    for one, two in zip(result["loss_one"], result["loss_two"]):
        assert two == pytest.approx(one, rel=1e-5)
