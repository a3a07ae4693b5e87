"""The `python -m keras_margin` command: compare two faces, or identify one against a gallery.

    python -m keras_margin compare EMBEDDER a.jpg b.jpg [--align] [--threshold T]
    python -m keras_margin identify EMBEDDER gallery/ probe.jpg [--top-k 5] [--align] [--threshold T]

EMBEDDER is what `keras_margin.export.export_embedding_model` wrote: a
SavedModel folder, an `.onnx` file (needs onnxruntime) or a `.tflite` file
(needs ai-edge-litert, or TensorFlow's interpreter). Images are read, aligned
to the ArcFace template first with `--align` (MTCNN, the `[align]` extra),
resized and cropped to the model's input and scaled to [−1, 1], as in
training. The decision threshold is a cosine similarity: `--threshold`, or the
one stored with the export (`export_embedding_model(..., threshold=...)`, e.g.
a `verification_report`'s `threshold`); `compare` needs one of them.

`identify` embeds the gallery (one sub-folder of images per identity) once and
caches the embeddings in `gallery/.keras_margin_gallery.npz`, recomputed when
the images or the embedder change. An identity's score is its best image's;
a probe whose best score is below the threshold is reported as unknown.

The same steps from Python are `keras_margin.serving`.
"""

import argparse
import sys

from keras_margin.export import METADATA_NAME
from keras_margin.serving import Embedder, compare, identify

__all__ = ["main"]


def main(argv=None):
    """Runs `python -m keras_margin compare | identify` on `argv`; returns the exit status.

    Args:
        argv: the command's arguments (default: `sys.argv[1:]`).

    Returns:
        0 on success, 2 when an input is rejected (the message goes to
        stderr); a usage error exits through argparse.
    """
    parser = argparse.ArgumentParser(prog="python -m keras_margin",
                                     description="Face verification and identification with an exported embedder.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("compare", "cosine similarity of two faces, and same / different"),
                            ("identify", "the nearest gallery identities of a face")):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("embedder", help="a SavedModel folder, .onnx or .tflite from export_embedding_model")
        if name == "compare":
            command.add_argument("first")
            command.add_argument("second")
        else:
            command.add_argument("gallery", help="a folder with one sub-folder of images per identity")
            command.add_argument("probe")
            command.add_argument("--top-k", type=int, default=5)
        command.add_argument("--align", action="store_true", help="detect and align the faces first (MTCNN)")
        command.add_argument("--threshold", type=float, default=None,
                             help=f"cosine-similarity threshold (default: the one stored in the export's "
                                  f"{METADATA_NAME})")
    args = parser.parse_args(argv)
    try:
        embedder = Embedder(args.embedder)
        if args.command == "compare":
            similarity, same, threshold = compare(embedder, args.first, args.second, args.align, args.threshold)
            if same is None:
                parser.error("compare needs a threshold: pass --threshold, or export with threshold=...")
            print(f"cosine similarity {similarity:.4f}: {'same person' if same else 'different people'} "
                  f"(threshold {threshold:.4f})")
        else:
            if args.top_k < 1:
                parser.error(f"--top-k must be at least 1. Received: {args.top_k}")
            matches, decision, threshold = identify(embedder, args.gallery, args.probe, args.top_k, args.align,
                                                    args.threshold)
            for rank, (identity, similarity) in enumerate(matches, 1):
                print(f"{rank}. {identity}  {similarity:.4f}")
            if decision is not None:
                print(f"identified: {decision} (threshold {threshold:.4f})")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
