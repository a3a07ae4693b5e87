"""Time and peak memory of `keras_margin.evaluation.retrieval_report` on random clustered embeddings.

    python benchmarks/retrieval.py --num-embeddings 100000 --dim 128 --chunk-size 1024

Prints one JSON line: the arguments, seconds, peak resident memory (MiB) of the
process and of the embeddings themselves, and the report.
"""

import argparse
import json
import resource
import time

import numpy as np

from keras_margin.evaluation import retrieval_report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-embeddings", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--num-classes", type=int, default=10_000)
    parser.add_argument("--chunk-size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    labels = rng.integers(0, args.num_classes, size=args.num_embeddings)
    centers = rng.normal(size=(args.num_classes, args.dim)).astype("float32")
    embeddings = centers[labels] + rng.normal(size=(args.num_embeddings, args.dim)).astype("float32")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    report = retrieval_report(embeddings, labels, chunk_size=args.chunk_size)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        **vars(args),
        "seconds": round(seconds, 2),
        "peak_rss_mib": round(peak, 1),
        "peak_rss_before_mib": round(before, 1),
        "embeddings_mib": round(embeddings.nbytes / 2**20, 1),
        **report,
    }))


if __name__ == "__main__":
    main()
