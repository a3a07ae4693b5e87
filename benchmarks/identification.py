"""1:N identification at scale: `evaluation.identification_report` on a 10^6-image gallery.

    python benchmarks/identification.py                     # 1,000,000 × 128, 100,000 identities, 1,000 probes
    python benchmarks/identification.py --gallery 100000 --identities 10000

Random unit embeddings around identity centers (so the rates are not trivial);
half of the probes are of enrolled identities, half of unknown ones. Prints the
time, the peak memory the call allocates (tracemalloc), and the report.
"""

import argparse
import time
import tracemalloc

import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--noise", type=float, default=1.3, help="spread around the identity centers")
    args = parser.parse_args()

    from keras_margin import evaluation

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(args.identities + args.probes, args.dim)).astype(np.float32)
    gallery_labels = rng.integers(0, args.identities, size=args.gallery)
    gallery = centers[gallery_labels] + args.noise * rng.normal(size=(args.gallery, args.dim)).astype(np.float32)
    known = rng.integers(0, args.identities, size=args.probes // 2)
    unknown = args.identities + np.arange(args.probes - len(known))
    probe_labels = np.r_[known, unknown]
    probes = centers[probe_labels] + args.noise * rng.normal(size=(args.probes, args.dim)).astype(np.float32)
    tracemalloc.start()  # NumPy reports its allocations to tracemalloc
    start = time.perf_counter()
    report = evaluation.identification_report(gallery, gallery_labels, probes, probe_labels)
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    print(f"gallery {args.gallery:,} × {args.dim} ({args.identities:,} identities, {gallery.nbytes / 2**20:.0f} MB), "
          f"{args.probes:,} probes: {seconds:.1f} s, peak {peak / 2**20:.0f} MB allocated during the call")
    print(f"rank-1 {report['rank_k'][1]:.4f}, rank-5 {report['rank_k'][5]:.4f}, "
          f"TPIR at FPIR 1e-2 {report['tpir_at_fpir'][0.01]:.4f}, at 1e-1 {report['tpir_at_fpir'][0.1]:.4f}")


if __name__ == "__main__":
    main()
