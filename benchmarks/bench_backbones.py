"""Time a training step of each face backbone + an ArcFace head at 112×112, per XLA setting and dtype policy.

Every configuration runs in a fresh process: it builds `backbone → ArcMarginHead`
with SGD, takes `--warmup` steps, then times `--repeats` training steps
(forward, backward, update) and reports the median ms/step and images/s.
With PyTorch installed (`pip install torch`, a benchmark-only tool, not a
dependency) the same step of an IResNet / MobileFaceNet written here in
PyTorch after insightface's modules runs beside it, in float32 and under
bfloat16 autocast, so the table shows how the Keras step compares with the
framework insightface trains in on the same machine.

    python benchmarks/bench_backbones.py                                  # B=32, r18, r50, mbf
    python benchmarks/bench_backbones.py --parts iresnet18 --batch 32 128 --dtype-policy mixed_bfloat16
    KERAS_BACKEND=jax python benchmarks/bench_backbones.py --torch off     # e.g. on a GPU

Prints a Markdown table (with each step against the float32 step of the same
backbone, framework and XLA setting, and against its roofline: the step's
multiply-accumulates, counted from the layer shapes, at the matmul peak of the
policy's dtype that `roofline.py` measures first) and writes the rows to a
JSON file.
"""

import argparse
import json
import os
import platform
import resource
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import children  # noqa: E402
import roofline  # noqa: E402

KERAS_PARTS = ("iresnet18", "iresnet34", "iresnet50", "iresnet100", "mobilefacenet", "mobilefacenet_large")
POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")


def keras_step(part, batch, classes, jit, policy, repeats, warmup, size):
    import keras
    import numpy as np

    import keras_margin

    keras.config.set_dtype_policy(policy)
    embedder = getattr(keras_margin.backbones, part)(input_shape=(size, size, 3))
    images = keras.Input((size, size, 3))
    labels = keras.Input((), dtype="int32")
    model = keras.Model([images, labels], keras_margin.ArcMarginHead(classes)(embedder(images), labels=labels))
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=jit)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, classes, batch).astype("int32")
    return children.timed_steps(lambda: keras.ops.convert_to_numpy(model.train_on_batch([x, y], y)), warmup, repeats)


def torch_step(part, batch, classes, policy, repeats, warmup, size):
    import numpy as np
    import torch

    from torch_backbones import arcface_logits, torch_backbone

    torch.manual_seed(0)
    model = torch_backbone(part)
    kernel = torch.nn.Parameter(torch.randn(512, classes) * 0.01)
    optimizer = torch.optim.SGD([*model.parameters(), kernel], lr=0.01, momentum=0.9)
    x = torch.rand(batch, 3, size, size) * 2 - 1
    y = torch.randint(0, classes, (batch,))
    low = policy == "mixed_bfloat16"

    def step():
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            embeddings = model(x)
        loss = torch.nn.functional.cross_entropy(arcface_logits(embeddings.float(), kernel, y), y)
        loss.backward()
        optimizer.step()
        return loss.item()

    return children.timed_steps(step, warmup, repeats)


def step_roofline_ms(shape, batch, classes, policy, peaks):
    """The step's bound: forward and backward products (3 × 2 × MACs per image, and the head's) at the peak.

    Bytes: the float32 weights read and written once (the SGD update); the
    feature maps are left out, so this is the compute bound.
    """
    flops = 3 * 2 * batch * (shape["macs"] + 512 * classes)
    bytes_moved = 2 * 4 * (shape["parameters"] + 512 * classes)
    return roofline.roofline_ms(flops, bytes_moved, roofline.POLICY_DTYPES[policy], peaks)


def run_child(args, part, batch, jit, policy):
    command = [sys.executable, __file__, "--child", part, str(batch), str(int(jit)), policy,
               "--classes", str(args.classes), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--size", str(args.size)]
    return children.run_json(command)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=KERAS_PARTS, default=["iresnet18", "iresnet50", "mobilefacenet"])
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--jit", choices=("on", "off", "both"), default="both")
    parser.add_argument("--dtype-policy", "--policy", dest="dtype_policy", nargs="+", choices=POLICIES,
                        default=["float32", "mixed_bfloat16"], help="Keras dtype policies to time")
    parser.add_argument("--roofline", choices=("on", "off"), default="on",
                        help="measure the matmul peaks first and print each step's × roofline")
    parser.add_argument("--torch", choices=("auto", "off"), default="auto",
                        help="also time the PyTorch modules when torch is installed")
    parser.add_argument("--classes", type=int, default=1000, help="classes of the ArcFace head")
    parser.add_argument("--size", type=int, default=112, help="image height and width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", default="bench_backbones.json")
    parser.add_argument("--macs-of", choices=KERAS_PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs=4, metavar=("PART", "BATCH", "JIT", "POLICY"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        part, batch, jit, policy = args.child[0], int(args.child[1]), bool(int(args.child[2])), args.child[3]
        if part.startswith("torch_"):
            times = torch_step(part[len("torch_"):], batch, args.classes, policy, args.repeats, args.warmup, args.size)
        else:
            times = keras_step(part, batch, args.classes, jit, policy, args.repeats, args.warmup, args.size)
        median = sorted(times)[len(times) // 2]
        print(json.dumps({"median_ms": 1000 * median, "images_per_s": batch / median,
                          "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return
    if args.macs_of:
        import keras_margin

        model = getattr(keras_margin.backbones, args.macs_of)(input_shape=(args.size, args.size, 3))
        print(json.dumps({"macs": keras_margin.backbones.count_macs(model), "parameters": model.count_params()}))
        return

    import keras

    have_torch = False
    if args.torch == "auto":
        try:
            import torch  # noqa: F401

            have_torch = True
        except ImportError:
            pass
    jits = {"on": [True], "off": [False], "both": [True, False]}[args.jit]
    print(f"Keras {keras.__version__} on {keras.backend.backend()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; {args.size}×{args.size}, ArcFace head with {args.classes} classes, SGD", flush=True)
    peaks = None
    if args.roofline == "on":
        peaks = children.measure_peaks(args.dtype_policy)
        print("\n".join(roofline.describe(peaks)))
    print("\n| backbone | batch | framework | XLA | policy | median ms/step | images/s | × float32 | × roofline | "
          "peak memory (MB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for part in args.parts:
        shape = None
        if peaks:
            shape = children.run_json([sys.executable, __file__, "--macs-of", part, "--size", str(args.size)], check=True)
        for batch in args.batch:
            float32_ms = {}
            configurations = [(part, jit, policy) for policy in args.dtype_policy for jit in jits]
            if have_torch and part in ("iresnet18", "iresnet50", "mobilefacenet"):
                configurations += [(f"torch_{part}", False, p) for p in args.dtype_policy if p != "mixed_float16"]
            for name, jit, policy in configurations:
                result = run_child(args, name, batch, jit, policy)
                framework = "PyTorch" if name.startswith("torch_") else "Keras"
                row = {"backbone": part, "batch": batch, "framework": framework, "jit": jit, "policy": policy, **result}
                rows.append(row)
                xla = "–" if framework == "PyTorch" else ("on" if jit else "off")
                if "error" in result:
                    print(f"| {part} | {batch} | {framework} | {xla} | {policy} | error: {result['error'][:80]} "
                          "| | | | |")
                    continue
                if policy == "float32":
                    float32_ms[framework, jit] = result["median_ms"]
                if (framework, jit) in float32_ms:
                    row["ratio_to_float32"] = result["median_ms"] / float32_ms[framework, jit]
                if shape:
                    row["roofline_ms"] = step_roofline_ms(shape, batch, args.classes, policy, peaks)
                    row["ratio_to_roofline"] = result["median_ms"] / row["roofline_ms"]
                columns = [f"{row[key]:.2f}" if key in row else "–" for key in ("ratio_to_float32", "ratio_to_roofline")]
                print(f"| {part} | {batch} | {framework} | {xla} | {policy} | {result['median_ms']:.0f} | "
                      f"{result['images_per_s']:.1f} | " + " | ".join(columns) + f" | {result['peak_memory_mb']:.0f} |",
                      flush=True)
    with open(args.json, "w") as file:
        json.dump({"backend": keras.backend.backend(), "classes": args.classes, "size": args.size, "peaks": peaks,
                   "rows": rows}, file, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
