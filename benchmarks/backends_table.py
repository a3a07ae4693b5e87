"""One Markdown table from several `bench_heads.py` JSON files, e.g. one per Keras backend.

    for b in tensorflow jax torch; do
        KERAS_BACKEND=$b python benchmarks/bench_heads.py --classes 10000 --json bench_$b.json
    done
    python benchmarks/backends_table.py bench_tensorflow.json bench_jax.json bench_torch.json

Each file gives two columns per number of classes, compiled and not (XLA on TensorFlow
and JAX, torch.compile on PyTorch), each cell "median ms/step (× the floor of that column)".
"""

import argparse
import json

COMPILER = {"tensorflow": "XLA", "jax": "XLA", "torch": "torch.compile"}


def cell(row):
    if row is None:
        return ""
    if "error" in row:
        return "error"
    ratio = f" ({row['ratio_to_floor']:.2f}×)" if "ratio_to_floor" in row else ""
    return f"{row['median_ms']:.1f}{ratio}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="JSON files written by bench_heads.py --json")
    args = parser.parse_args()
    runs = []
    for path in args.files:
        with open(path) as file:
            runs.append(json.load(file))
    columns, parts = [], []
    for run in runs:
        compiler = COMPILER.get(run["backend"], "jit")
        for classes in sorted({row["classes"] for row in run["rows"]}):
            for jit in (True, False):
                label = f"{run['backend']}, {compiler if jit else 'no ' + compiler}, C = {classes:,}"
                rows = {row["part"]: row for row in run["rows"] if row["classes"] == classes and row["jit"] == jit}
                if rows:
                    columns.append((label, rows))
                parts += [part for part in rows if part not in parts]
    print("| part | " + " | ".join(label for label, _ in columns) + " |")
    print("|---|" + "---|" * len(columns))
    for part in parts:
        print(f"| {part} | " + " | ".join(cell(rows.get(part)) for _, rows in columns) + " |")


if __name__ == "__main__":
    main()
