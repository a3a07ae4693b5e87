"""Per-epoch curves of `train_faces.py --curves` runs as Markdown tables.

    python benchmarks/curves_table.py recipes_output/celeba/softmax-seed0/report.json \\
        recipes_output/celeba/arcface-paper-seed0/report.json

For each report: training loss and accuracy, the verification accuracy and
TAR@FAR = 1e-2 of the test pairs, and the median angles (degrees) of the
`AngleStatistics` callback: θ_y, the nearest wrong class weight, genuine and
impostor pairs (with the 10th / 90th percentiles of the pair angles).
"""

import argparse
import json
import pathlib

COLUMNS = [
    ("loss", "loss", "{:.2f}"),
    ("accuracy", "train acc.", "{:.3f}"),
    ("val_test_pairs_accuracy", "test acc.", "{:.3f}"),
    ("val_test_pairs_tar@far=1e-2", "TAR@1e-2", "{:.3f}"),
    ("angle_target_p50", "θ_y p50", "{:.1f}"),
    ("angle_nontarget_p50", "nearest θ_j p50", "{:.1f}"),
    ("angle_genuine_p50", "genuine p50 (p10–p90)", "{:.1f}"),
    ("angle_impostor_p50", "impostor p50 (p10–p90)", "{:.1f}"),
]


def table(report, every=1):
    history = report["history"]
    missing = [key for key, _, _ in COLUMNS if key not in history]
    if missing:
        raise SystemExit(f"the report has no {missing[0]!r}: was it written by train_faces.py --curves?")
    lines = ["| epoch | " + " | ".join(title for _, title, _ in COLUMNS) + " |",
             "|---" * (len(COLUMNS) + 1) + "|"]
    epochs = len(history["loss"])
    for epoch in range(epochs):
        if (epoch + 1) % every and epoch + 1 != epochs:
            continue
        cells = []
        for key, _, style in COLUMNS:
            cell = style.format(history[key][epoch])
            if key in ("angle_genuine_p50", "angle_impostor_p50"):
                kind = key[len("angle_"):-len("_p50")]
                cell += f" ({history[f'angle_{kind}_p10'][epoch]:.0f}–{history[f'angle_{kind}_p90'][epoch]:.0f})"
            cells.append(cell)
        lines.append(f"| {epoch + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=pathlib.Path)
    parser.add_argument("--every", type=int, default=1, help="print every this many epochs (and the last)")
    args = parser.parse_args()
    for path in args.reports:
        report = json.loads(path.read_text())
        options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in report["args"].items()
                           if k in ("head", "scale", "margin") and v is not None)
        print(f"\n{path.parent.name} ({options}):\n")
        print(table(report, args.every))


if __name__ == "__main__":
    main()
