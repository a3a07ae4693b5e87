"""Time a full training step of every head (and the metric losses) against the matmul floor.

The floor is the cheapest model that does the same essential work: a
`NormalizedDense` with a fixed scale and sparse softmax cross-entropy, i.e. one
(B × d)·(d × C) product forward and two backward. Every configuration runs in
a fresh process (so its peak memory is its own): it builds
`Dense(d) → head`, takes a few warm-up steps, then times `repeats` training
steps (forward, backward, optimizer update) and reports the median.

    python benchmarks/bench_heads.py                         # B=256, d=512, C in {10k, 100k}
    python benchmarks/bench_heads.py --classes 1000 --repeats 5 --parts floor arcface
    KERAS_BACKEND=jax python benchmarks/bench_heads.py       # e.g. on a GPU
    KERAS_BACKEND=torch python benchmarks/bench_heads.py     # jit_compile=True is torch.compile there

Prints a Markdown table (median ms/step, ratio to the floor with the same
jit setting, peak memory) and writes the rows to a JSON file.
"""

import argparse
import json
import resource
import sys
import time

import children
import roofline

PARTS = ("floor", "arcface", "cosface", "combined", "sphereface", "lsoftmax", "arcface_subcenters",
         "arcface_adaptive", "curricularface", "magface", "adaface", "elasticface_arc_plus", "elasticface_cos",
         "contrastive", "triplet_semi_hard", "triplet_batch_hard")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")
METRIC_LOSSES = ("contrastive", "triplet_semi_hard", "triplet_batch_hard")
PARTIAL_FC_PARTS = ("arcface", "cosface", "combined", "arcface_subcenters", "arcface_adaptive", "curricularface",
                    "magface", "adaface", "elasticface_arc_plus", "elasticface_cos")


def build(part, batch, dim, classes, jit, sample_rate=1.0, policy="float32"):
    import keras

    import keras_margin

    keras.config.set_dtype_policy(policy)
    embeddings_in = keras.Input((dim,), name="features")
    embeddings = keras.layers.Dense(dim, name="embedding")(embeddings_in)  # so the step needs d(loss)/dx
    if part in METRIC_LOSSES:
        model = keras.Model(embeddings_in, embeddings)
        loss = {
            "contrastive": keras_margin.losses.ContrastiveLoss(),
            "triplet_semi_hard": keras_margin.losses.TripletLoss(mining="semi_hard"),
            "triplet_batch_hard": keras_margin.losses.TripletLoss(mining="batch_hard"),
        }[part]
        model.compile(keras.optimizers.SGD(0.01), loss, jit_compile=jit)
        return model, False
    partial = {} if sample_rate == 1.0 or part not in PARTIAL_FC_PARTS else {"sample_rate": sample_rate}
    head = {
        "floor": lambda: keras_margin.NormalizedDense(classes, scale=64.0),
        "arcface": lambda: keras_margin.ArcMarginHead(classes, **partial),
        "cosface": lambda: keras_margin.CosMarginHead(classes, **partial),
        "combined": lambda: keras_margin.CombinedMarginHead(classes, m1=1.0, m2=0.3, m3=0.2, **partial),
        "sphereface": lambda: keras_margin.SphereMarginHead(classes),
        "lsoftmax": lambda: keras_margin.LargeMarginHead(classes),
        "arcface_subcenters": lambda: keras_margin.ArcMarginHead(classes // 3, num_subcenters=3, **partial),
        "arcface_adaptive": lambda: keras_margin.ArcMarginHead(classes, scale="adaptive", **partial),
        "curricularface": lambda: keras_margin.CurricularFaceHead(classes, **partial),
        "magface": lambda: keras_margin.MagFaceHead(classes, **partial),
        "adaface": lambda: keras_margin.AdaFaceHead(classes, **partial),
        "elasticface_arc_plus": lambda: keras_margin.ElasticArcMarginHead(classes, sorted_margins=True,
                                                                         margin_std=0.0175, seed=0, **partial),
        "elasticface_cos": lambda: keras_margin.ElasticCosMarginHead(classes, seed=0, **partial),
    }[part]()
    labels = keras.Input((), dtype="int32", name="labels")
    if part == "floor":
        model = keras.Model([embeddings_in, labels], head(embeddings))
    else:
        model = keras.Model([embeddings_in, labels], head(embeddings, labels=labels))
    # A Partial FC head adds its own loss
    loss = None if partial and part in PARTIAL_FC_PARTS else keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(keras.optimizers.SGD(0.01), loss, jit_compile=jit)
    return model, True


def measure(part, batch, dim, classes, jit, repeats, warmup, sample_rate, policy="float32"):
    """One configuration, in this process: median seconds per step and peak RSS."""
    import keras
    import numpy as np

    model, takes_labels = build(part, batch, dim, classes, jit, sample_rate, policy)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, dim)).astype("float32")
    num_labels = classes // 3 if part == "arcface_subcenters" else classes
    if part in METRIC_LOSSES:
        y = np.repeat(np.arange(batch // 4), 4).astype("int32")  # P×K-like: 4 images per identity
        inputs = x
    else:
        y = rng.integers(0, num_labels, batch).astype("int32")
        inputs = [x, y]
    for _ in range(warmup):
        model.train_on_batch(inputs, y)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = model.train_on_batch(inputs, y)
        keras.ops.convert_to_numpy(loss)
        times.append(time.perf_counter() - start)
    return {"median_ms": 1000 * float(np.median(times)), "min_ms": 1000 * float(np.min(times)),
            "peak_memory_mb": peak_memory_mb()}


def peak_memory_mb():
    import keras

    if keras.backend.backend() == "jax":
        import jax

        device = jax.local_devices()[0]
        if device.platform != "cpu":
            return device.memory_stats()["peak_bytes_in_use"] / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def step_roofline_ms(part, batch, dim, classes, policy, sample_rate, peaks):
    """The step's bound: its products at the policy dtype's peak, or the bytes it must move at the bandwidth.

    Products: the head's (B × d)·(d × C') forward and its two backward products
    (C' = the classes a Partial FC step samples), plus the embedding Dense's
    forward and kernel gradient. Bytes: the float32 kernel read and written once
    (the SGD update) and the float32 (B × C') logits written and read once.
    """
    columns = round(classes * sample_rate)
    flops = 3 * 2 * batch * dim * columns + 2 * 2 * batch * dim * dim
    bytes_moved = 2 * 4 * dim * classes + 2 * 4 * batch * columns
    return roofline.roofline_ms(flops, bytes_moved, roofline.POLICY_DTYPES[policy], peaks)


def median_over_rounds(results):
    """One round's result as is; several: the median of each timing (peak memory: the largest)."""
    if len(results) == 1 or any("error" in r for r in results):
        return next((r for r in results if "error" in r), results[0])
    import numpy as np

    return {"median_ms": float(np.median([r["median_ms"] for r in results])),
            "min_ms": float(np.min([r["min_ms"] for r in results])),
            "peak_memory_mb": float(np.max([r["peak_memory_mb"] for r in results])),
            "round_medians_ms": [r["median_ms"] for r in results]}


def run_child(args, part, classes, jit, policy):
    command = [sys.executable, __file__, "--child", part, str(classes), str(int(jit)), policy,
               "--batch", str(args.batch), "--dim", str(args.dim), "--repeats", str(args.repeats),
               "--warmup", str(args.warmup), "--sample-rate", str(args.sample_rate)]
    return children.run_json(command)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--jit", choices=("on", "off", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every part this many times, interleaved, and report the median")
    parser.add_argument("--sample-rate", type=float, default=1.0, help="Partial FC rate of the normalized heads")
    parser.add_argument("--json", default="bench_heads.json")
    parser.add_argument("--dtype-policy", nargs="+", choices=POLICIES, default=["float32"],
                        help="Keras dtype policies to time (each with every --jit setting)")
    parser.add_argument("--roofline", choices=("on", "off"), default="on",
                        help="measure the matmul peaks and bandwidth first and print each step's × roofline")
    parser.add_argument("--child", nargs=4, metavar=("PART", "CLASSES", "JIT", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        part, classes, jit, policy = args.child[0], int(args.child[1]), bool(int(args.child[2])), args.child[3]
        print(json.dumps(measure(part, args.batch, args.dim, classes, jit, args.repeats, args.warmup,
                                 args.sample_rate, policy)))
        return

    import keras

    jits = {"on": [True], "off": [False], "both": [True, False]}[args.jit]
    rows = []
    peaks = children.measure_peaks(args.dtype_policy) if args.roofline == "on" else None
    print(f"backend {keras.backend.backend()}; B={args.batch}, d={args.dim}, sample_rate={args.sample_rate}")
    print("\n".join(roofline.describe(peaks) if peaks else [roofline.cpu_description()]), flush=True)
    print("\n| part | C | policy | XLA (torch.compile on PyTorch) | median ms/step | × floor | × float32 XLA | "
          "× roofline | peak memory (MB) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for classes in args.classes:
        # --rounds > 1: every configuration runs once per round, in turn, and the median over rounds is kept,
        # so a slow spell of the machine hits all of them alike
        configurations = [(part, policy, jit) for policy in args.dtype_policy for jit in jits for part in args.parts]
        results = {configuration: [] for configuration in configurations}
        for _ in range(args.rounds):
            for part, policy, jit in configurations:
                results[part, policy, jit].append(run_child(args, part, classes, jit, policy))
        results = {configuration: median_over_rounds(runs) for configuration, runs in results.items()}
        for part, policy, jit in configurations:
            result = results[part, policy, jit]
            row = {"part": part, "classes": classes, "policy": policy, "jit": jit, **result}
            rows.append(row)
            if "error" in result:
                print(f"| {part} | {classes:,} | {policy} | {'on' if jit else 'off'} | error: {result['error'][:80]} "
                      "| | | | |")
                continue
            floor = results.get(("floor", policy, jit), {}).get("median_ms")
            float32_xla = results.get((part, "float32", True), {}).get("median_ms")
            if floor and part not in METRIC_LOSSES:
                row["ratio_to_floor"] = result["median_ms"] / floor
            if float32_xla:
                row["ratio_to_float32_xla"] = result["median_ms"] / float32_xla
            if peaks and part not in METRIC_LOSSES:
                row["roofline_ms"] = step_roofline_ms(part, args.batch, args.dim, classes, policy, args.sample_rate,
                                                      peaks)
                row["ratio_to_roofline"] = result["median_ms"] / row["roofline_ms"]
            columns = [f"{row[key]:.3f}" if key in row else "–"
                       for key in ("ratio_to_floor", "ratio_to_float32_xla", "ratio_to_roofline")]
            print(f"| {part} | {classes:,} | {policy} | {'on' if jit else 'off'} | {result['median_ms']:.1f} | "
                  + " | ".join(columns) + f" | {result['peak_memory_mb']:.0f} |", flush=True)
    with open(args.json, "w") as file:
        json.dump({"batch": args.batch, "dim": args.dim, "backend": keras.backend.backend(),
                   "sample_rate": args.sample_rate, "peaks": peaks, "rows": rows}, file, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
