"""MirroredStrategy over two logical CPUs matches one device on the same global batch.

tests/scripts/mirrored_training.py trains every head, CenterLossLayer and every
metric loss both ways in its own process (logical devices must be configured
before TensorFlow starts) and reports the largest weight difference. The
default run trains four parts that cover the kinds of state (a layer with its
own center update, a margin head, a head that samples classes, a mining metric
loss); the others are marked slow. The script runs once, for the parts selected.
"""

import json
import os
import pathlib
import subprocess
import sys

import keras
import pytest

pytestmark = pytest.mark.xdist_group("mirrored_script")  # under pytest-xdist, one worker runs the script once
SCRIPT = pathlib.Path(__file__).parent / "scripts" / "mirrored_training.py"
DEFAULT_PARTS = ["center_loss", "arc", "arc_partial_fc", "triplet_batch_hard"]
SLOW_PARTS = ["normalized_dense", "cos", "combined", "sphere", "large", "arc_subcenters", "arc_adaptive_warmup",
              "curricular", "adaface", "magface", "contrastive", "triplet_semi_hard", "triplet_batch_all"]
PART_PARAMS = [pytest.param(p, id=p) for p in DEFAULT_PARTS] + [pytest.param(p, id=p, marks=pytest.mark.slow) for p in SLOW_PARTS]


@pytest.fixture(scope="module")
def report(request):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute needs the TensorFlow backend")
    selected = [item.callspec.params["part"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")]
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *selected], capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("part", PART_PARAMS)
def test_two_replicas_match_one_device(report, part):
    result = report[part]
    assert result["replicas"] == 2
    assert result["weight_change"] > 0.05  # training really moved the weights
    assert result["weight_difference"] < 1e-5
    for one, two in zip(result["loss_one"], result["loss_two"]):
        assert two == pytest.approx(one, rel=1e-5)
