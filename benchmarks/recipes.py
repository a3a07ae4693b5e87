"""Measure training recipes: verification accuracy on identities never seen in training.

Runs `examples/train_faces.py` once per (recipe, seed) in a fresh process and
prints a Markdown table of the held-out verification accuracy (mean ± std over
the seeds; each seed also draws another identity split), TAR@FAR=1e-2 and the
final training loss, and writes everything to a JSON file.

    python benchmarks/recipes.py --suite orl --data-dir /tmp/tfds
    python benchmarks/recipes.py --suite mnist --data-dir ../shared/data/tfds
    python benchmarks/recipes.py --suite orl --only arcface-default softmax --seeds 0
    python benchmarks/recipes.py --suite celeba --data-dir /tmp/tfds --only softmax arcface-default
    python benchmarks/recipes.py --suite celeba --reuse --only softmax arcface-default  # runs only what is missing

Suites:
  orl:   ../shared/data/faces/orl (40 people × 10 images), 30 people train, 10 held out.
  mnist: MNIST from a tfds data_dir, 6 digits train, 4 held out (an open-set split).
  celeba: ../shared/data/faces/celeba_subset, the identities of folds 0-6 of its pairs.csv train
          (210 people, about 4,400 images), the 1,800 pairs of folds 7-9 verify (unseen people).
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
TRAIN_FACES = ROOT / "examples" / "train_faces.py"
ORL = ROOT.parent / "shared" / "data" / "faces" / "orl"
CELEBA = ROOT.parent / "shared" / "data" / "faces" / "celeba_subset"

SUITES = {
    "orl": [
        "--data", str(ORL), "--channels", "1", "--image-size", "48", "--epochs", "30",
        "--batch-size", "32", "--test-identities", "0.25", "--num-pairs", "800",
    ],
    "celeba": [  # arcface_torch's SGD recipe on the small CNN; folds 0-6 train, the pairs of folds 7-9 verify
        "--data", str(CELEBA / "aligned_112"), "--pairs-csv", str(CELEBA / "pairs.csv"), "--image-size", "64",
        "--epochs", "12", "--batch-size", "64", "--optimizer", "sgd",
    ],
    "mnist": [
        "--data", "mnist", "--channels", "1", "--image-size", "28", "--epochs", "5",
        "--batch-size", "64", "--max-images", "12000", "--test-identities", "0.4", "--num-pairs", "2000",
    ],
}

# name → extra train_faces.py options; "default" rows use the package's defaults, except that the ArcFace, CosFace
# and combined rows measure the package defaults of 0.1, s = 16 (the results pages' numbers): their scale is given
# explicitly, since the package now defaults to the papers' s = 64 (the "paper" rows).
S16 = ["--scale", "16"]  # the package default of 0.1 for ArcFace, CosFace and the combined head
SGD = ["--optimizer", "momentum", "--learning-rate", "0.1"]  # plain SGD, momentum 0.9, constant rate
PAPER_ARC = ["--head", "arcface", "--scale", "64", "--margin", "0.5", "--margin-warmup-steps", "0"]
PAPER_COS = ["--head", "cosface", "--scale", "64", "--margin", "0.35", "--margin-warmup-steps", "0"]
RECIPES = {
    "softmax": ["--head", "softmax"],
    "softmax-center": ["--head", "softmax", "--center-loss"],
    "combined-insightface": ["--head", "combined", *S16],  # (m1, m2, m3) = (1, 0.3, 0.2); at its defaults: ArcFace
    "sphereface-default": ["--head", "sphereface"],
    "lsoftmax-default": ["--head", "lsoftmax"],
    "arcface-default": ["--head", "arcface", *S16],  # "default": the package default of 0.1, s = 16
    "cosface-default": ["--head", "cosface", *S16],
    "curricularface-default": ["--head", "curricularface"],
    "magface-default": ["--head", "magface"],
    "adaface-default": ["--head", "adaface"],
    "adaface-auto": ["--head", "adaface", "--scale", "auto"],
    "elasticface-arc-default": ["--head", "elasticface-arc"],
    "elasticface-arc-plus": ["--head", "elasticface-arc", "--sorted-margins", "--margin-std", "0.0175"],
    "elasticface-cos-default": ["--head", "elasticface-cos"],
    "arcface-paper": PAPER_ARC,
    "arcface-paper-noclip": [*PAPER_ARC, "--clip-norm", "0"],
    "cosface-paper-noclip": [*PAPER_COS, "--clip-norm", "0"],
    "softmax-noclip": ["--head", "softmax", "--clip-norm", "0"],
    "cosface-paper": PAPER_COS,
    "arcface-s16-m0.3": ["--head", "arcface", "--scale", "16", "--margin", "0.3", "--margin-warmup-steps", "0"],
    "arcface-s64-warmup": ["--head", "arcface", "--scale", "64", "--margin", "0.5", "--margin-warmup-steps", "150"],
    "arcface-auto-m0.5": ["--head", "arcface", "--scale", "auto", "--margin", "0.5", "--margin-warmup-steps", "0"],
    "arcface-auto-warmup": ["--head", "arcface", "--scale", "auto", "--margin", "0.5", "--margin-warmup-steps", "150"],
    "arcface-adaptive": ["--head", "arcface", "--scale", "adaptive", "--margin", "0.5", "--margin-warmup-steps", "0"],
    "cosface-auto-m0.35": ["--head", "cosface", "--scale", "auto", "--margin", "0.35", "--margin-warmup-steps", "0"],
    "cosface-s16-m0.2": ["--head", "cosface", "--scale", "16", "--margin", "0.2", "--margin-warmup-steps", "0"],
    "softmax-sgd": ["--head", "softmax", *SGD],
    "arcface-default-sgd": ["--head", "arcface", *S16, *SGD],  # s = 16, the package default of 0.1
    "cosface-default-sgd": ["--head", "cosface", *S16, *SGD],
    "arcface-paper-sgd": [*PAPER_ARC, *SGD],
    "cosface-paper-sgd": [*PAPER_COS, *SGD],
    "arcface-s64-warmup-sgd": [*PAPER_ARC[:-1], "150", *SGD],
    "arcface-auto-sgd": ["--head", "arcface", "--scale", "auto", "--margin", "0.5", "--margin-warmup-steps", "0",
                         *SGD],
    "arcface-auto-warmup-sgd": ["--head", "arcface", "--scale", "auto", "--margin", "0.5",
                                "--margin-warmup-steps", "150", *SGD],
    "cosface-auto-sgd": ["--head", "cosface", "--scale", "auto", "--margin", "0.35", "--margin-warmup-steps", "0",
                         *SGD],
}
# celeba: one factor of the recipe changed at a time, for softmax and ArcFace at the AdaCos scale
FACTORS = {
    "24ep": ["--epochs", "24"],  # twice the training length (1,632 steps)
    "b128": ["--batch-size", "128"],  # half the steps; the learning rate follows the batch (0.1 × B / 512)
    "b32": ["--batch-size", "32"],
    "head-wd0": ["--head-weight-decay", "0"],  # no weight decay on the head's kernel
    "fixed-bn": ["--embedding-bn", "fixed-scale"],  # insightface's last BN: offset only
    "dim512": ["--embedding-dim", "512"],
    "lr0.05": ["--learning-rate", "0.05"],  # 4× the recipe's 0.1 × 64 / 512
}
for factor, options in FACTORS.items():
    RECIPES[f"softmax-{factor}"] = [*RECIPES["softmax"], *options]
    RECIPES[f"arcface-auto-{factor}"] = [*RECIPES["arcface-auto-m0.5"], *options]
for factor in ("24ep", "lr0.05"):
    RECIPES[f"cosface-auto-{factor}"] = [*RECIPES["cosface-auto-m0.35"], *FACTORS[factor]]
RECIPES["arcface-default-lr0.05"] = [*RECIPES["arcface-default"], *FACTORS["lr0.05"]]
RECIPES["softmax-center-lr0.05"] = [*RECIPES["softmax-center"], *FACTORS["lr0.05"]]
RECIPES["arcface-auto-lr0.05-center"] = [*RECIPES["arcface-auto-lr0.05"], "--center-loss"]


def run(suite, recipe, seed, data_dir, output_root, extra=(), reuse=False):
    """One training run's summary; with `reuse`, that of an earlier run of the same command where there is one."""
    output_dir = output_root / suite / f"{recipe}-seed{seed}"
    command = [sys.executable, str(TRAIN_FACES), *SUITES[suite], *RECIPES[recipe], *extra,
               "--seed", str(seed), "--output-dir", str(output_dir)]
    if data_dir:
        command += ["--data-dir", data_dir]
    shown = " ".join(["python", *command[1:]])
    summary_path = output_dir / "summary.json"
    if reuse and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary["command"] == shown:
            return summary
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    report = json.loads((output_dir / "report.json").read_text())
    verification = report["verification"]
    summary = {
        "accuracy": verification["accuracy"],
        "tar@far=1e-2": verification["tar_at_far"]["0.01"],
        "auc": verification["auc"],
        "final_loss": report["history"]["loss"][-1],
        "seconds": time.perf_counter() - start,
        "command": shown,
    }
    summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suite", choices=sorted(SUITES), required=True)
    parser.add_argument("--only", nargs="*", choices=sorted(RECIPES), help="recipes to run (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--data-dir", default=None, help="tfds data_dir (MNIST; where ORL is prepared)")
    parser.add_argument("--output-dir", default="recipes_output")
    parser.add_argument("--json", default=None, help="results file (default: <output-dir>/<suite>.json)")
    parser.add_argument("--reuse", action="store_true",
                        help="take a run's result from its output folder where the same command already ran")
    parser.add_argument("--curves", action="store_true",
                        help="celeba: log per-epoch verification and angle quantiles (train_faces.py --curves)")
    args = parser.parse_args()
    if args.curves and args.suite != "celeba":
        parser.error("--curves needs the celeba suite (its pairs.csv)")
    extra = ["--curves"] if args.curves else []

    output_root = pathlib.Path(args.output_dir)
    results = {}
    for recipe in args.only or RECIPES:
        runs = [run(args.suite, recipe, seed, args.data_dir, output_root, extra, args.reuse) for seed in args.seeds]
        results[recipe] = {"options": RECIPES[recipe], "runs": runs}
        accuracy = [r["accuracy"] for r in runs]
        print(f"{recipe}: accuracy {np.mean(accuracy):.4f} ± {np.std(accuracy):.4f} "
              f"({', '.join(f'{a:.3f}' for a in accuracy)})", flush=True)

    print(f"\n| {args.suite} recipe | verification accuracy | TAR@FAR=1e-2 | final training loss |")
    print("|---|---|---|---|")
    for recipe, result in results.items():
        columns = []
        for key in ("accuracy", "tar@far=1e-2", "final_loss"):
            values = [r[key] for r in result["runs"]]
            percent = key != "final_loss"
            scale = 100.0 if percent else 1.0
            columns.append(f"{np.mean(values) * scale:.1f}{'%' if percent else ''} ± {np.std(values) * scale:.1f}")
        print(f"| {recipe} | " + " | ".join(columns) + " |")
    json_path = pathlib.Path(args.json or output_root / f"{args.suite}.json")
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"suite": args.suite, "seeds": args.seeds, "results": results}, indent=2))
    print(f"\nwrote {json_path}")


if __name__ == "__main__":
    main()
