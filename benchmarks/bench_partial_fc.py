"""Time a Partial FC training step against the full head's, at a million classes, in one run.

Each configuration runs in a fresh process (the 2 GB kernel, its gradient
and the optimizer's work stay out of the other's memory and timings): it
builds `Dense(d) → ArcMarginHead(C, sample_rate=r)`, compiles it with sparse
softmax cross-entropy, SGD and `jit_compile=True` (the same model and loss
for both: a sampled head returns `(B, C)` logits like the full one), takes
warm-up steps, then times `repeats` training steps. With `--rounds` > 1 the
configurations alternate, round after round, and the median over rounds is
kept, so a slow spell of a shared machine hits both alike.

    python benchmarks/bench_partial_fc.py                                # C = 1M, d = 512, B = 128, r = 0.1
    python benchmarks/bench_partial_fc.py --classes 100000 --batch 256 --rounds 3

Prints both step times, their ratio and the CPU flags, and writes them to a
JSON file.
"""

import argparse
import json
import os
import subprocess
import sys

import children
import roofline


def measure(classes, dim, batch, sample_rate, repeats, warmup, optimizer):
    """One configuration, in this process: seconds per training step and peak RSS."""
    import keras
    import numpy as np
    from bench_heads import peak_memory_mb

    import keras_margin

    features = keras.Input((dim,), name="features")
    labels = keras.Input((), dtype="int32", name="labels")
    embeddings = keras.layers.Dense(dim, name="embedding")(features)  # so the step needs d(loss)/dx
    head = keras_margin.ArcMarginHead(classes, scale=64.0, sample_rate=sample_rate, seed=0)
    model = keras.Model([features, labels], head(embeddings, labels=labels))
    optimizers = {"sgd": lambda: keras.optimizers.SGD(0.1),
                  "sgd_momentum": lambda: keras.optimizers.SGD(0.1, momentum=0.9)}
    model.compile(optimizers[optimizer](), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=True)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, dim)).astype("float32")
    y = rng.integers(0, classes, batch).astype("int32")
    times = children.timed_steps(lambda: keras.ops.convert_to_numpy(model.train_on_batch([x, y], y)), warmup, repeats)
    return {"median_s": float(np.median(times)), "min_s": float(np.min(times)), "peak_memory_mb": peak_memory_mb()}


def cpu_flags():
    """The vector and matrix extensions of this CPU, as `grep -o -w -E 'avx2|...' /proc/cpuinfo | sort -u` lists them."""
    try:
        output = subprocess.run(["grep", "-o", "-w", "-E", "avx2|avx512f|avx512_bf16|amx_tile", "/proc/cpuinfo"],
                                capture_output=True, text=True, check=False).stdout
    except OSError:
        return []
    return sorted(set(output.split()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--sample-rate", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--optimizer", choices=("sgd", "sgd_momentum"), default="sgd")
    parser.add_argument("--json", default="bench_partial_fc.json")
    parser.add_argument("--child", type=float, help=argparse.SUPPRESS)  # the sample rate of one configuration
    args = parser.parse_args()

    if args.child is not None:
        print(json.dumps(measure(args.classes, args.dim, args.batch, args.child, args.repeats, args.warmup,
                                 args.optimizer)))
        return

    def run(sample_rate):
        return children.run_json([sys.executable, __file__, "--child", str(sample_rate), "--classes",
                                  str(args.classes), "--dim", str(args.dim), "--batch", str(args.batch),
                                  "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                                  "--optimizer", args.optimizer])

    import numpy as np

    rates = (1.0, args.sample_rate)
    results = {rate: [] for rate in rates}
    for _ in range(args.rounds):
        for rate in rates:
            result = run(rate)
            if "error" in result:
                sys.exit(f"sample_rate={rate}: {result['error']}")
            results[rate].append(result)
    full, sampled = ([r["median_s"] for r in results[rate]] for rate in rates)
    full_s, sampled_s = float(np.median(full)), float(np.median(sampled))
    report = {
        "backend": os.environ.get("KERAS_BACKEND", "tensorflow"), "jit_compile": True,
        "classes": args.classes, "dim": args.dim, "batch": args.batch, "sample_rate": args.sample_rate,
        "optimizer": args.optimizer, "rounds": args.rounds, "repeats": args.repeats,
        "cpu": roofline.cpu_description(), "cpu_flags": cpu_flags(),
        "full_step_s": full_s, "sampled_step_s": sampled_s, "ratio": sampled_s / full_s,
        "full_peak_memory_mb": max(r["peak_memory_mb"] for r in results[1.0]),
        "sampled_peak_memory_mb": max(r["peak_memory_mb"] for r in results[args.sample_rate]),
        "full_steps_s": full, "sampled_steps_s": sampled,
    }
    print(f"{report['cpu']}; flags: {' '.join(report['cpu_flags'])}")
    print(f"C={args.classes:,}, d={args.dim}, B={args.batch}, {args.optimizer}, XLA, "
          f"median of {args.repeats} steps x {args.rounds} round(s)")
    print(f"full head (sample_rate=1):      {full_s:.3f} s/step, peak {report['full_peak_memory_mb']:.0f} MB")
    print(f"Partial FC (sample_rate={args.sample_rate:g}): {sampled_s:.3f} s/step, "
          f"peak {report['sampled_peak_memory_mb']:.0f} MB")
    print(f"ratio: {report['ratio']:.3f}")
    with open(args.json, "w") as file:
        json.dump(report, file, indent=2)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
