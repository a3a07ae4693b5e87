"""Input-pipeline throughput from an insightface `.rec`, against decoding the same JPEGs from memory.

Builds a `.rec` of `--images` real 112×112 face JPEGs (the CelebA crops in
`../shared/data/faces/celeba_subset`, repeated as distinct records) with
`write_insightface_rec`, then measures images/s of preprocessed float batches
(decode, random flip, scale to [-1, 1], batch 128) for

- floor: the same JPEG bytes held in memory (`from_tensor_slices` → map → batch);
- rec: `from_insightface_rec(...).batches(shuffle=True)` (a full-index shuffle,
  read by offset), and the same in index order;
- folder / tfds: `from_folder` of an identity folder of the same JPEGs, and the
  prepared copy read again by its tfds name with `from_tfds`.

All in one process; each pipeline is warmed up, then timed in rounds that take
the pipelines in turn (the median of the rounds is reported). Then it
opens a synthetic index at the size of MS1MV2 (5,822,653 images, 85,742
identities; tiny image records) and reports open time and memory, P×K batch
time and the first full-shuffle epoch's start-up time.

    python benchmarks/bench_data.py                              # 100,000 images
    python benchmarks/bench_data.py --images 20000 --batches 30 --skip-scale
"""

import argparse
import os
import pathlib
import shutil
import struct
import tempfile
import time
import tracemalloc

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from keras_margin import data  # noqa: E402
from keras_margin.data.recordio import MAGIC  # noqa: E402

CELEBA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "faces" / "celeba_subset"


def face_jpegs():
    rows = [line.split(",") for line in (CELEBA / "labels.csv").read_text().splitlines()[1:]]
    identities = sorted({identity for _, identity in rows})
    index = {identity: i for i, identity in enumerate(identities)}
    return [(CELEBA / path).read_bytes() for path, _ in rows], np.array([index[i] for _, i in rows]), len(identities)


def preprocess(image):
    return data.scale_to_unit_range(data.random_flip(image, seed=0))


def images_per_second(iterator, num_batches):
    start = time.perf_counter()
    count = 0
    for _ in range(num_batches):
        images = next(iterator)[0]
        count += int(images.shape[0])
    return count / (time.perf_counter() - start)


def compare(pipelines, num_batches, rounds, warmup=10):
    """Median images/s of each pipeline over `rounds` rounds that take the pipelines in turn."""
    iterators = {name: iter(batches) for name, batches in pipelines.items()}
    for iterator in iterators.values():
        for _ in range(warmup):
            next(iterator)
    rates = {name: [] for name in pipelines}
    for _ in range(rounds):
        for name, iterator in iterators.items():
            rates[name].append(images_per_second(iterator, num_batches))
    return {name: float(np.median(r)) for name, r in rates.items()}


def throughput(args, workdir):
    jpegs, labels, num_identities = face_jpegs()
    repeats = -(-args.images // len(jpegs))
    all_jpegs = (jpegs * repeats)[: args.images]
    all_labels = np.concatenate([labels + r * num_identities for r in range(repeats)])[: args.images].astype("int32")
    names = [str(i) for i in range(num_identities * repeats)]
    memory = data.IdentityDataset(
        tf.data.Dataset.from_tensor_slices((all_jpegs, all_labels)), names,
        decode_image=lambda image: tf.io.decode_jpeg(image, channels=3), name="memory",
    )
    start = time.perf_counter()
    data.write_insightface_rec(memory, workdir / "rec")
    write_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rec = data.from_insightface_rec(workdir / "rec")
    open_seconds = time.perf_counter() - start
    print(f"wrote {len(rec)} images ({(workdir / 'rec' / 'train.rec').stat().st_size / 2**20:.0f} MiB) "
          f"in {write_seconds:.1f} s ({len(rec) / write_seconds:,.0f} images/s), opened in {open_seconds:.2f} s")

    floor = (
        tf.data.Dataset.from_tensor_slices((all_jpegs, all_labels)).repeat()
        .map(lambda b, y: (preprocess(tf.io.decode_jpeg(b, channels=3)), y), num_parallel_calls=tf.data.AUTOTUNE)
        .batch(128).prefetch(tf.data.AUTOTUNE)
    )
    pipelines = {
        "floor: JPEG bytes in memory": floor,
        "rec, full-index shuffle": rec.batches(128, preprocess, shuffle=True, seed=0, labels_as_input=False).repeat(),
        "rec, index order": rec.batches(128, preprocess, shuffle=False, labels_as_input=False).repeat(),
    }
    if args.folder_images:
        folder = workdir / "folder"
        for i, (jpeg, label) in enumerate(zip(all_jpegs[: args.folder_images], all_labels)):
            (folder / f"{label:06d}").mkdir(parents=True, exist_ok=True)
            (folder / f"{label:06d}" / f"{i:07d}.jpg").write_bytes(jpeg)
        start = time.perf_counter()
        faces = data.from_folder(folder, data_dir=workdir / "tfds", config_name="bench")
        print(f"prepared an identity folder of {args.folder_images} images with tfds in "
              f"{time.perf_counter() - start:.1f} s")
        by_name = data.from_tfds("identity_folder/bench", data_dir=workdir / "tfds", download=False)
        pipelines["folder (from_folder, shuffle buffer 10k)"] = faces.batches(
            128, preprocess, shuffle_buffer=10_000, seed=0, labels_as_input=False).repeat()
        pipelines["tfds (from_tfds, shuffle buffer 10k)"] = by_name.batches(
            128, preprocess, shuffle_buffer=10_000, seed=0, labels_as_input=False).repeat()

    rates = compare(pipelines, args.batches, args.rounds)
    floor_rate = rates["floor: JPEG bytes in memory"]
    print(f"\nmedian of {args.rounds} rounds of {args.batches} batches of 128 per pipeline, taken in turn "
          f"after 10 warm-up batches each, {os.cpu_count()} cores\n")
    print("| pipeline | images/s | time vs floor |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:,.0f} | {floor_rate / rate:.3f}× |")


def synthetic_index(folder, num_images, num_identities, header=True):
    """insightface's layout (or a headerless one) with 8-byte 'images', written with NumPy; returns its size."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = np.full(num_identities, num_images // num_identities)
    sizes[: num_images % num_identities] += 1
    labels = np.repeat(np.arange(num_identities), sizes).astype("float32")
    keys = np.arange(1, num_images + 1)
    # one image frame: magic, lrec (length 32), flag 0, label, id (u64), id2 (u64), 8 image bytes
    frame = np.zeros(num_images, dtype=[("magic", "<u4"), ("lrec", "<u4"), ("flag", "<u4"), ("label", "<f4"),
                                         ("id", "<u8"), ("id2", "<u8"), ("image", "S8")])
    frame["magic"], frame["lrec"], frame["label"], frame["id"], frame["image"] = MAGIC, 32, labels, keys, b"notajpeg"

    def small(labels_):  # a flag-2 record with no image: the header and the identity records
        return struct.pack("<IIIfQQ2f", MAGIC, 32, 2, 0.0, 0, 0, *labels_)

    ends = 1 + np.cumsum(sizes)
    identity_records = b"".join(small((e - s, e)) for s, e in zip(sizes.tolist(), ends.tolist()))
    with open(folder / "train.rec", "wb") as f:
        if header:
            f.write(small((num_images + 1, num_images + 1 + num_identities)))
        f.write(frame.tobytes())
        if header:
            f.write(identity_records)
    if header:
        offsets = np.r_[0, 40 + 40 * np.arange(num_images), 40 + 40 * num_images + 40 * np.arange(num_identities)]
    else:
        offsets = 40 * np.arange(num_images)
    with open(folder / "train.idx", "w") as f:
        f.write("".join(f"{k}\t{o}\n" for k, o in enumerate(offsets.tolist())))
    (folder / "property").write_text(f"{num_identities},112,112")
    return (folder / "train.rec").stat().st_size


def timed_open(folder, layout):
    tracemalloc.start()
    start = time.perf_counter()
    dataset = data.from_insightface_rec(folder)
    seconds = time.perf_counter() - start
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"from_insightface_rec, {layout}: {seconds:.2f} s; the index holds {current / 2**20:.0f} MiB "
          f"({current / len(dataset):.1f} bytes per record), peak traced {peak / 2**20:.0f} MiB")
    return dataset


def scale(args, workdir):
    folder = workdir / "ms1mv2_like"
    start = time.perf_counter()
    size = synthetic_index(folder, args.scale_images, args.scale_identities)
    synthetic_index(workdir / "headerless", args.scale_images, args.scale_identities, header=False)
    print(f"\nsynthetic set: {args.scale_images:,} images, {args.scale_identities:,} identities, "
          f"{size / 2**20:.0f} MiB .rec, .idx {(folder / 'train.idx').stat().st_size / 2**20:.0f} MiB "
          f"(both layouts written in {time.perf_counter() - start:.0f} s)")
    timed_open(workdir / "headerless", "headerless (labels read from every record)")
    dataset = timed_open(folder, "insightface layout")

    dataset.decode_image = lambda image: image  # the 'images' are not JPEGs: time the sampling and reads only
    batches = iter(dataset.pk_batches(16, 4, seed=0, labels_as_input=False))
    next(batches)
    start = time.perf_counter()
    for _ in range(200):
        next(batches)
    print(f"pk_batches(16, 4): {(time.perf_counter() - start) / 200 * 1e3:.2f} ms per batch (no decoding)")
    start = time.perf_counter()
    next(iter(dataset.batches(128, shuffle=True, seed=0, labels_as_input=False)))
    print(f"first batch of a full-index shuffle epoch: {time.perf_counter() - start:.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=100, help="timed batches of 128 per pipeline and round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over the pipelines (the median is reported)")
    parser.add_argument("--folder-images", type=int, default=20_000,
                        help="images in the identity-folder / tfds rows (0: skip them)")
    parser.add_argument("--scale-images", type=int, default=5_822_653)
    parser.add_argument("--scale-identities", type=int, default=85_742)
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--workdir", default=None, help="where to write the sets (default: a temporary folder)")
    args = parser.parse_args()
    tfds.disable_progress_bar()
    if not (CELEBA / "labels.csv").is_file():
        raise SystemExit(f"needs the CelebA crops at {CELEBA}")
    workdir = pathlib.Path(args.workdir or tempfile.mkdtemp(prefix="bench_data_"))
    try:
        throughput(args, workdir)
        if not args.skip_scale:
            scale(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
