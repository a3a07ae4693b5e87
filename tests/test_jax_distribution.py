"""Keras' JAX distribution API on 8 host CPU devices matches one device.

tests/scripts/jax_distribution.py runs in its own process (the device count is
an XLA flag read when JAX starts) and trains each part for 20 steps on one
device and distributed:
- `DataParallel` over the 8 devices: the global batch split along its batch
  axis, every weight replicated;
- `ModelParallel` on a (batch 2, model 4) mesh whose `LayoutMap` shards the
  head's class kernel along the class axis, as the scaling-out guide (docs/guides/scaling.md) says.
The default run trains a margin head, a sampling Partial FC head, the
center-loss layer and a mining triplet loss; the other parts are marked slow.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

pytest.importorskip("jax", reason="the distribution tests run Keras on JAX (pip install 'jax[cpu]')")
pytestmark = pytest.mark.xdist_group("jax_distribution_script")  # one worker runs each script once

SCRIPT = pathlib.Path(__file__).parent / "scripts" / "jax_distribution.py"
DATA_PARALLEL_DEFAULT = ["center_loss", "arc", "arc_partial_fc_sampled", "triplet_batch_hard"]
DATA_PARALLEL_SLOW = ["normalized_dense", "adaface", "cos", "combined", "sphere", "large", "arc_subcenters", "arc_partial_fc",
                      "arc_adaptive_warmup", "curricular", "magface", "contrastive", "triplet_semi_hard",
                      "triplet_batch_all"]
MODEL_PARALLEL_DEFAULT = ["arc", "arc_partial_fc_sampled"]
MODEL_PARALLEL_SLOW = ["normalized_dense", "cos", "combined", "sphere", "large", "arc_subcenters", "arc_partial_fc",
                       "arc_adaptive_warmup", "curricular", "adaface", "magface"]
MODEL_AXIS = 4


def params(default, slow):
    return [pytest.param(p, id=p) for p in default] + [pytest.param(p, id=p, marks=pytest.mark.slow) for p in slow]


def run_script(request, mode, test_name):
    selected = [item.callspec.params["part"] for item in request.session.items
                if item.module is request.module and item.originalname == test_name]
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT), mode, *selected], capture_output=True, text=True, timeout=600,
        cwd=SCRIPT.parent, env=dict(env, TF_CPP_MIN_LOG_LEVEL="3", JAX_PLATFORMS="cpu"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def data_parallel(request):
    return run_script(request, "data_parallel", "test_data_parallel_matches_one_device")


@pytest.fixture(scope="module")
def model_parallel(request):
    return run_script(request, "model_parallel", "test_model_parallel_matches_one_device_with_a_sharded_kernel")


def assert_matches_one_device(result):
    assert result["devices"] == 8
    assert result["weight_change"] > 0.05  # training really moved the trainable weights
    assert result["weight_difference"] <= 1e-5
    for one, many in zip(result["loss_one"], result["loss_many"], strict=True):
        assert many == pytest.approx(one, rel=1e-5)


@pytest.mark.parametrize("part", params(DATA_PARALLEL_DEFAULT, DATA_PARALLEL_SLOW))
def test_data_parallel_matches_one_device(data_parallel, part):
    result = data_parallel[part]
    assert result["mesh_shape"] == [8]
    assert result["batch_layout"] == ["batch", None]  # the batch is split over the 8 devices
    assert_matches_one_device(result)


@pytest.mark.parametrize("part", params(MODEL_PARALLEL_DEFAULT, MODEL_PARALLEL_SLOW))
def test_model_parallel_matches_one_device_with_a_sharded_kernel(model_parallel, part):
    result = model_parallel[part]
    assert result["mesh_shape"] == [2, MODEL_AXIS]
    assert result["batch_layout"] == ["batch", None]
    class_axis = 1  # (dim, C·K), Partial FC heads too
    expected_spec = [None, None]
    expected_spec[class_axis] = "model"
    assert result["kernel_spec"] == expected_spec
    assert result["kernel_devices"] == 8
    # each device holds 1/4 of the kernel: its classes, not a replica
    assert result["kernel_largest_share"] == pytest.approx(1 / MODEL_AXIS)
    assert_matches_one_device(result)
