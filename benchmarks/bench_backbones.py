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
    python benchmarks/bench_backbones.py --parts iresnet18 --batch 32 128 --policy mixed_bfloat16
    KERAS_BACKEND=jax python benchmarks/bench_backbones.py --torch off     # e.g. on a GPU

Prints a Markdown table and writes the rows to a JSON file.
"""

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

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
    for _ in range(warmup):
        model.train_on_batch([x, y], y)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        keras.ops.convert_to_numpy(model.train_on_batch([x, y], y))
        times.append(time.perf_counter() - start)
    return times


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

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return list(np.asarray(times))


def run_child(args, part, batch, jit, policy):
    command = [sys.executable, __file__, "--child", part, str(batch), str(int(jit)), policy,
               "--classes", str(args.classes), "--repeats", str(args.repeats), "--warmup", str(args.warmup),
               "--size", str(args.size)]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    if result.returncode:
        lines = result.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else "failed"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=KERAS_PARTS, default=["iresnet18", "iresnet50", "mobilefacenet"])
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--jit", choices=("on", "off", "both"), default="both")
    parser.add_argument("--policy", nargs="+", choices=POLICIES, default=["float32", "mixed_bfloat16"])
    parser.add_argument("--torch", choices=("auto", "off"), default="auto",
                        help="also time the PyTorch modules when torch is installed")
    parser.add_argument("--classes", type=int, default=1000, help="classes of the ArcFace head")
    parser.add_argument("--size", type=int, default=112, help="image height and width")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", default="bench_backbones.json")
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

    import keras

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
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
    print("\n| backbone | batch | framework | XLA | policy | median ms/step | images/s | peak memory (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    rows = []
    for part in args.parts:
        for batch in args.batch:
            configurations = [(part, jit, policy) for policy in args.policy for jit in jits]
            if have_torch and part in ("iresnet18", "iresnet50", "mobilefacenet"):
                configurations += [(f"torch_{part}", False, p) for p in args.policy if p != "mixed_float16"]
            for name, jit, policy in configurations:
                result = run_child(args, name, batch, jit, policy)
                framework = "PyTorch" if name.startswith("torch_") else "Keras"
                rows.append({"backbone": part, "batch": batch, "framework": framework, "jit": jit, "policy": policy,
                             **result})
                xla = "–" if framework == "PyTorch" else ("on" if jit else "off")
                if "error" in result:
                    print(f"| {part} | {batch} | {framework} | {xla} | {policy} | error: {result['error'][:80]} | | |")
                    continue
                print(f"| {part} | {batch} | {framework} | {xla} | {policy} | {result['median_ms']:.0f} | "
                      f"{result['images_per_s']:.1f} | {result['peak_memory_mb']:.0f} |", flush=True)
    with open(args.json, "w") as file:
        json.dump({"backend": keras.backend.backend(), "classes": args.classes, "size": args.size, "rows": rows},
                  file, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
