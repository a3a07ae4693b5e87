"""This machine's limits, measured: matrix-product peak per dtype and memory bandwidth.

A benchmark step cannot be faster than its products at the matmul peak of
their dtype, nor than the bytes it must move at the memory bandwidth; the
larger of the two is the step's roofline. `measure_peaks` times, for the
current Keras backend, a 2048³ product in each dtype by every route the
backend offers (with and without XLA, low-precision or float32 output) and
keeps the fastest, and a 1 GiB NumPy copy for the bandwidth.

    python benchmarks/roofline.py                     # prints the peaks of the current backend
    KERAS_BACKEND=jax python benchmarks/roofline.py
"""

import argparse
import json
import os
import platform
import time

import numpy as np

POLICY_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def cpu_description():
    """The CPU's model name and whether it has the bfloat16 units (AMX, AVX512-BF16)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as file:
            for line in file:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    units = [name for name, flag in (("AMX-BF16", "amx_bf16"), ("AVX512-BF16", "avx512_bf16")) if flag in flags]
    return f"{model}, {os.cpu_count()} CPUs, bfloat16 units: {', '.join(units) or 'none'}"


def _median_seconds(function, repeats=8):
    function()
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _product_routes(backend, dtype, n):
    """Callables computing an n×n·n×n product in `dtype` by each route of `backend`."""
    rng = np.random.default_rng(0)
    a_np, b_np = rng.normal(size=(n, n)).astype("float32"), rng.normal(size=(n, n)).astype("float32")
    routes = {}
    if backend == "tensorflow":
        import tensorflow as tf

        a, b = tf.cast(a_np, dtype), tf.cast(b_np, dtype)
        routes["eager"] = lambda: tf.matmul(a, b).numpy()
        xla = tf.function(lambda a, b: tf.matmul(a, b), jit_compile=True)
        routes["XLA"] = lambda: xla(a, b).numpy()
        if dtype != "float32":
            wide = tf.function(lambda a, b: tf.linalg.matmul(a, b, output_type=tf.float32), jit_compile=True)
            routes["XLA, float32 output"] = lambda: wide(a, b).numpy()
    elif backend == "jax":
        import jax
        import jax.numpy as jnp

        a, b = jnp.asarray(a_np, dtype), jnp.asarray(b_np, dtype)
        same = jax.jit(jnp.matmul)
        routes["XLA"] = lambda: same(a, b).block_until_ready()
        if dtype != "float32":
            wide = jax.jit(lambda a, b: jnp.matmul(a, b, preferred_element_type=jnp.float32))
            routes["XLA, float32 output"] = lambda: wide(a, b).block_until_ready()
    elif backend == "torch":
        import torch

        a, b = torch.from_numpy(a_np).to(getattr(torch, dtype)), torch.from_numpy(b_np).to(getattr(torch, dtype))
        routes["eager"] = lambda: a @ b
    return routes


def matmul_peak(backend, dtype, n=2048):
    """The fastest route's GFLOP/s for an n³ product in `dtype`, and every route's."""
    by_route = {}
    for route, function in _product_routes(backend, dtype, n).items():
        try:
            by_route[route] = 2 * n**3 / _median_seconds(function) / 1e9
        except Exception as error:  # a route this build lacks (e.g. no float16 kernel): not a peak
            by_route[route] = f"{type(error).__name__}"
    numbers = {route: value for route, value in by_route.items() if isinstance(value, float)}
    best = max(numbers, key=numbers.get) if numbers else None
    return {"gflops": numbers[best] if best else None, "route": best, "routes": by_route}


def memory_bandwidth(gib=1):
    """GB/s of a NumPy copy of `gib` GiB (bytes read + bytes written)."""
    source = np.ones(gib * 2**30 // 4, dtype=np.float32)
    target = np.empty_like(source)
    seconds = _median_seconds(lambda: np.copyto(target, source), repeats=5)
    return 2 * source.nbytes / seconds / 1e9


def measure_peaks(backend, policies):
    """The peaks a roofline needs: GFLOP/s per dtype of `policies` and GB/s."""
    dtypes = sorted({POLICY_DTYPES[policy] for policy in policies})
    return {"cpu": cpu_description(), "backend": backend,
            "matmul": {dtype: matmul_peak(backend, dtype) for dtype in dtypes},
            "bandwidth_gbs": memory_bandwidth()}


def roofline_ms(flops, bytes_moved, dtype, peaks):
    """The bound in ms: the larger of the products at the dtype's peak and the bytes at the bandwidth."""
    gflops = peaks["matmul"][dtype]["gflops"]
    compute = flops / (gflops * 1e9) if gflops else 0.0
    memory = bytes_moved / (peaks["bandwidth_gbs"] * 1e9)
    return 1000 * max(compute, memory)


def describe(peaks):
    """One line per measured limit, for a benchmark's header."""
    lines = [peaks["cpu"]]
    for dtype, peak in peaks["matmul"].items():
        routes = ", ".join(f"{route} {value:.0f}" if isinstance(value, float) else f"{route} {value}"
                           for route, value in peak["routes"].items())
        best = f"{peak['gflops']:.0f} GFLOP/s" if peak["gflops"] else "none"
        lines.append(f"matmul peak {dtype}: {best} ({routes})")
    lines.append(f"memory bandwidth: {peaks['bandwidth_gbs']:.1f} GB/s (NumPy copy, read + write)")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", nargs="+", choices=sorted(POLICY_DTYPES), default=list(POLICY_DTYPES))
    parser.add_argument("--json", action="store_true", help="print only the measurements, as one JSON line")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    measured = measure_peaks(keras.backend.backend(), args.policies)
    print(json.dumps(measured) if args.json else "\n".join(describe(measured)))


if __name__ == "__main__":
    main()
