"""Benchmark configurations in fresh processes, each printing its result as one JSON line.

A fresh process per configuration keeps one configuration's compiled
functions, allocator state and peak memory out of the next one's numbers.
"""

import json
import os
import subprocess
import sys
import time

import roofline


def run_json(command, check=False):
    """Runs `command` and returns the JSON of the last line it printed.

    With `check`, a failing command raises `CalledProcessError`; without it,
    the failure comes back as `{"error": <the last line of its stderr>}`, so
    that one failing configuration leaves a row instead of ending the table.
    """
    result = subprocess.run(command, capture_output=True, text=True, check=check,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if result.returncode:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_peaks(policies):
    """`roofline.measure_peaks` in a fresh process, so its arrays stay out of the children's peak memory."""
    return run_json([sys.executable, roofline.__file__, "--json", "--policies", *policies], check=True)


def timed_steps(step, warmup, repeats):
    """Seconds of each of `repeats` calls of `step()`, after `warmup` untimed calls (compilation happens there).

    `step` must return only when the work is done (e.g. convert its result to NumPy).
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times
