"""Serve exported embedding models: images/s of the float32 and the bfloat16 SavedModel of each backbone.

For each backbone one process builds it (random weights; batch-norm
statistics of one batch of random images) and writes it twice with
`export_embedding_model(..., precision=P)` (normalized, no flip); then each
SavedModel is loaded in a fresh process with `tf.saved_model.load` and
`serve(images)` is timed on a batch (`--repeats` calls after `--warmup`,
median). The bfloat16 rows also report
how far their embeddings are from the float32 export's on the same images
(the smallest cosine between the two). Verification accuracy on held-out
faces is measured by `examples/train_faces.py --export-bfloat16`.

    python benchmarks/bench_inference.py                          # iresnet18, iresnet50, mobilefacenet; B=32
    python benchmarks/bench_inference.py --parts iresnet18 --batch 1 32 128

Prints a Markdown table and writes the rows to a JSON file.
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import children  # noqa: E402
import roofline  # noqa: E402

PARTS = ("iresnet18", "iresnet34", "iresnet50", "iresnet100", "mobilefacenet", "mobilefacenet_large")
PRECISIONS = ("float32", "bfloat16")


def export_both(part, batch, size, workdir):
    """Writes the float32 and the bfloat16 SavedModel of one `part` (the same weights) and a batch of images."""
    import keras
    import numpy as np

    import keras_margin

    keras.utils.set_random_seed(0)
    model = getattr(keras_margin.backbones, part)(input_shape=(size, size, 3))
    rng = np.random.default_rng(0)
    calibrate_batch_norm(model, rng.uniform(-1, 1, size=(16, size, size, 3)).astype("float32"))
    np.save(os.path.join(workdir, f"{part}_images_{batch}.npy"),
            rng.uniform(-1, 1, size=(batch, size, size, 3)).astype("float32"))
    for precision in PRECISIONS:
        keras_margin.export.export_embedding_model(model, os.path.join(workdir, f"{part}_{precision}"),
                                                   precision=precision)


def serve_once(part, batch, precision, repeats, warmup, workdir):
    """Median seconds of one `serve` call of an exported `part`; its embeddings are saved beside it."""
    import numpy as np
    import tensorflow as tf

    served = tf.saved_model.load(os.path.join(workdir, f"{part}_{precision}"))
    images = tf.constant(np.load(os.path.join(workdir, f"{part}_images_{batch}.npy")))
    for _ in range(warmup):
        served.serve(images)["embeddings"].numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        embeddings = served.serve(images)["embeddings"].numpy()
        times.append(time.perf_counter() - start)
    np.save(os.path.join(workdir, f"{part}_{precision}_{batch}.npy"), embeddings)
    return float(np.median(times))


def calibrate_batch_norm(model, images):
    """Sets every BN's moving statistics to those of one training-mode pass over `images`.

    A freshly initialized deep network's activations grow by orders of
    magnitude with depth; with its batch statistics as moving statistics
    each BN normalizes its input as after training, so inference-mode
    feature maps have the scale a trained network's have.
    """
    import keras

    layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(images, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def run_child(args, part, batch, precision, workdir):
    """`precision="export"` writes the models; a precision times its model."""
    command = [sys.executable, __file__, "--child", part, str(batch), precision, workdir,
               "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--size", str(args.size)]
    return children.run_json(command)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=["iresnet18", "iresnet50", "mobilefacenet"])
    parser.add_argument("--batch", type=int, nargs="+", default=[32])
    parser.add_argument("--size", type=int, default=112, help="image height and width")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--json", default="bench_inference.json")
    parser.add_argument("--child", nargs=4, metavar=("PART", "BATCH", "PRECISION", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        part, batch, precision, workdir = args.child[0], int(args.child[1]), args.child[2], args.child[3]
        if precision == "export":
            export_both(part, batch, args.size, workdir)
            print(json.dumps({}))
            return
        seconds = serve_once(part, batch, precision, args.repeats, args.warmup, workdir)
        print(json.dumps({"median_ms": 1000 * seconds, "images_per_s": batch / seconds}))
        return

    import numpy as np
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__} SavedModels, {args.size}×{args.size}; {roofline.cpu_description()}", flush=True)
    print("\n| backbone | batch | precision | median ms/call | images/s | × float32 images/s | "
          "smallest cosine to float32 |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for part in args.parts:
            for batch in args.batch:
                float32_rate = None
                exported = run_child(args, part, batch, "export", workdir)
                if "error" in exported:
                    print(f"| {part} | {batch} | – | export error: {exported['error'][:80]} | | | |")
                    continue
                for precision in PRECISIONS:
                    result = run_child(args, part, batch, precision, workdir)
                    row = {"backbone": part, "batch": batch, "precision": precision, **result}
                    rows.append(row)
                    if "error" in result:
                        print(f"| {part} | {batch} | {precision} | error: {result['error'][:80]} | | | |")
                        continue
                    if precision == "float32":
                        float32_rate = result["images_per_s"]
                    agreement = "–"
                    if precision != "float32" and float32_rate:
                        row["speedup"] = result["images_per_s"] / float32_rate
                        full, low = (np.load(os.path.join(workdir, f"{part}_{p}_{batch}.npy")) for p in
                                     ("float32", precision))
                        row["min_cosine_to_float32"] = float(np.min(np.sum(full * low, axis=1)))
                        agreement = f"{row['min_cosine_to_float32']:.5f}"
                    speedup = f"{row['speedup']:.2f}" if "speedup" in row else "1.00" if precision == "float32" else "–"
                    print(f"| {part} | {batch} | {precision} | {result['median_ms']:.0f} | "
                          f"{result['images_per_s']:.1f} | {speedup} | {agreement} |", flush=True)
    with open(args.json, "w") as file:
        json.dump({"size": args.size, "cpu": roofline.cpu_description(), "rows": rows}, file, indent=2)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
