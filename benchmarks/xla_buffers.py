"""Count the (B × C) buffers XLA allocates in one compiled training step of each head.

For each part, a child process trains one step with `jit_compile=True` and
`XLA_FLAGS=--xla_dump_to=...`; this script then reads XLA's buffer assignment
of the training step (`*one_step_on_data*cpu_after_optimizations-buffer-assignment.txt`)
and reports

- `B×C values`: how many distinct f32[B, C] values the step computes into
  memory (each is one fused kernel's output; values fused away do not count);
- `peak temp / B×C`: the step's preallocated scratch memory in units of one
  f32[B, C] buffer, i.e. how many such buffers are live at the peak.

    python benchmarks/xla_buffers.py                # B=256, d=64, C=20,000
    python benchmarks/xla_buffers.py --classes 50000 --parts floor arcface

TensorFlow backend on CPU (XLA's CPU buffer assignment); the numbers do not
depend on d, which is kept small so the script runs in seconds.
"""

import argparse
import glob
import os
import pathlib
import re
import subprocess
import sys
import tempfile

BENCH = pathlib.Path(__file__).with_name("bench_heads.py")
PARTS = ("floor", "arcface", "cosface", "combined", "sphereface", "lsoftmax", "arcface_adaptive")


def buffer_counts(part, batch, dim, classes):
    with tempfile.TemporaryDirectory() as dump:
        env = dict(os.environ, XLA_FLAGS=f"--xla_dump_to={dump}", TF_CPP_MIN_LOG_LEVEL="3",
                   KERAS_BACKEND="tensorflow")
        command = [sys.executable, str(BENCH), "--child", part, str(classes), "1", "--batch", str(batch),
                   "--dim", str(dim), "--repeats", "1", "--warmup", "1"]
        subprocess.run(command, env=env, check=True, capture_output=True)
        files = glob.glob(f"{dump}/*one_step_on_data*cpu_after_optimizations-buffer-assignment.txt")
        text = max((pathlib.Path(f).read_text() for f in files), key=len)
    shape = f"f32[{batch},{classes}]"
    values = len(re.findall(rf"^ value: <\d+ [^>]*> \(size=\d+,offset=\d+\): {re.escape(shape)}\{{1,0\}}$",
                            text, flags=re.M))
    temp = re.search(r"^allocation \d+: size (\d+), preallocated-temp", text, flags=re.M)
    one = 4 * batch * classes
    return values, (int(temp.group(1)) / one if temp else 0.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--classes", type=int, default=20_000)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    args = parser.parse_args()
    print(f"B={args.batch}, d={args.dim}, C={args.classes}, jit_compile=True, TensorFlow/XLA on CPU\n")
    print("| part | B×C values | peak temp / B×C |")
    print("|---|---|---|")
    for part in args.parts:
        values, peak = buffer_counts(part, args.batch, args.dim, args.classes)
        print(f"| {part} | {values} | {peak:.2f} |", flush=True)


if __name__ == "__main__":
    main()
