"""MultiWorkerMirroredStrategy with two worker processes matches one device on the global batch.

tests/scripts/multiworker_training.py runs as each of two workers on
127.0.0.1 (TF_CONFIG, free ports). Each worker reads its own shard of the data
and trains a margin head, CenterLossLayer and a mining metric loss; the chief
also trains the same model on one device and reports the weight differences.
Both workers report which examples they read, so the test checks that the
shards are disjoint and cover the data. The run is bounded: on timeout both
processes are killed.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("multiworker_script")  # under pytest-xdist, one worker runs the script once
SCRIPT = pathlib.Path(__file__).parent / "scripts" / "multiworker_training.py"
PARTS = ["arc", "center_loss", "triplet_batch_hard"]
NUM_EXAMPLES = 64  # the data of tests/scripts/training_parts.py
TIMEOUT_S = 300


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def reports():
    """The two workers' JSON reports, chief first."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("tf.distribute needs the TensorFlow backend")
    cluster = {"worker": [f"127.0.0.1:{free_port()}" for _ in range(2)]}
    workers = []
    for index in range(2):
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        env = dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
        workers.append(subprocess.Popen([sys.executable, str(SCRIPT), *PARTS], env=env, text=True,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outputs, deadline = [], time.monotonic() + TIMEOUT_S
    try:
        for worker in workers:
            outputs.append(worker.communicate(timeout=max(1.0, deadline - time.monotonic())))
    except subprocess.TimeoutExpired:
        for worker in workers:
            worker.kill()
        tails = [worker.communicate()[1][-2000:] for worker in workers]
        pytest.fail(f"the workers ran past {TIMEOUT_S} s; stderr tails:\n" + "\n---\n".join(tails))
    for index, (worker, (_, stderr)) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}:\n{stderr[-3000:]}"
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outputs]


def test_shards_are_disjoint_and_cover_the_data(reports):
    shards = [report["shard"] for report in reports]
    assert [shard["task"] for shard in shards] == [0, 1]
    assert [report["replicas"] for report in reports] == [2, 2]
    assert [(shard["pipeline"], shard["pipelines"]) for shard in shards] == [(0, 2), (1, 2)]
    seen = [set(shard["indices"]) for shard in shards]
    assert all(len(s) == len(shard["indices"]) == NUM_EXAMPLES // 2 for s, shard in zip(seen, shards))
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == set(range(NUM_EXAMPLES))
    # each global batch of 16 is worker 0's 8 rows then worker 1's, in the single-device order
    batches = np.arange(NUM_EXAMPLES).reshape(-1, 16)
    assert shards[0]["indices"] == batches[:, :8].ravel().tolist()
    assert shards[1]["indices"] == batches[:, 8:].ravel().tolist()


@pytest.mark.parametrize("part", PARTS)
def test_two_workers_match_one_device(reports, part):
    result = reports[0][part]
    assert result["replicas"] == 2
    assert result["weight_change"] > 0.05  # training really moved the weights
    assert result["weight_difference"] < 1e-5
    assert len(result["loss_two"]) == len(result["loss_one"])
    for one, two in zip(result["loss_one"], result["loss_two"]):
        assert two == pytest.approx(one, rel=1e-5)
