"""insightface's .rec training sets and .bin verification sets, against files written from the byte layout.

The reference files come from `tests/recordio_reference.py` (written from the
format's description, not from the package); the package's writers are
checked by parsing their output with that module's sequential reader.
"""

import collections
import pathlib
import struct

import numpy as np
import pytest
import tensorflow as tf
from scipy import stats

import recordio_reference as ref
from keras_margin import data, evaluation
from keras_margin.data.recordio import RecordIOError, frame

ROOT = pathlib.Path(__file__).resolve().parents[1]
CELEBA_DIR = ROOT.parent / "shared" / "data" / "faces" / "celeba_subset"
MAGIC = struct.pack("<I", ref.MAGIC)


def jpegs(count, size=8, seed=0):
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    return [tf.io.encode_jpeg(p, quality=90).numpy() for p in pixels], pixels


def stored(dataset):
    return [(bytes(image), int(label)) for image, label in dataset.records.as_numpy_iterator()]


# --- reading the layouts ---------------------------------------------------------

def test_insightface_layout_reads_the_written_bytes_and_labels(tmp_path):
    labels = [2, 0, 1, 2, 0, 2, 2, 1]
    images, _ = jpegs(len(labels))
    expected = ref.write_insightface_layout(tmp_path, images, labels)
    dataset = data.from_insightface_rec(tmp_path)
    assert dataset.num_classes == 3 and dataset.class_names == ["0", "1", "2"] and len(dataset) == 8
    assert stored(dataset) == [(image, label) for _, image, label in expected]
    np.testing.assert_array_equal(dataset.labels(), [label for _, _, label in expected])
    np.testing.assert_array_equal(dataset.keys, np.arange(1, 9))
    # the .rec path gives the same dataset, and images decode as RGB of the original size
    same = data.from_insightface_rec(tmp_path / "train.rec")
    assert stored(same) == stored(dataset)
    image, _ = next(iter(dataset.images()))
    assert image.shape == (8, 8, 3) and image.dtype == tf.uint8


def test_headerless_layout_and_label_arrays(tmp_path):
    labels = [3, 0, 1, 3, 2, 0]
    images, _ = jpegs(len(labels), seed=1)
    # im2rec style: every record an image; two carry their label as a float array (flag 2), class = first
    records = [
        (k, ref.header([float(label), 7.0] if k % 3 == 0 else label, k) + images[k])
        for k, label in enumerate(labels)
    ]
    order = [4, 0, 5, 1, 3, 2]  # file order differs from key order
    ref.write_rec(tmp_path / "shuffled.rec", tmp_path / "shuffled.idx", [records[i] for i in order])
    dataset = data.from_insightface_rec(tmp_path / "shuffled.rec")
    assert dataset.num_classes == 4
    assert stored(dataset) == list(zip(images, labels))  # key order


def test_a_record_split_at_the_magic_word_reads_back_whole(tmp_path):
    # payload = 24-byte header + image: the magic word at aligned payload offsets 28, 40, 44 (twice in a
    # row) and 56 (the very end); at payload offset 49 (unaligned) it must stay in the data
    tail = b"jpg!" + MAGIC + b"abcdefgh" + MAGIC + MAGIC + b"x" + MAGIC + b"yzw" + MAGIC
    assert len(ref.header(0)) + len(tail) == 60
    image_bytes = [b"plain-image", tail, b"z" * 13 + MAGIC]
    labels = [0, 1, 1]
    expected = ref.write_insightface_layout(tmp_path, image_bytes, labels)
    raw = (tmp_path / "train.rec").read_bytes()
    cflags = [struct.unpack_from("<I", raw, m.start() + 4)[0] >> 29 for m in _frames(raw)]
    assert 1 in cflags and 2 in cflags and 3 in cflags  # the reference really split it
    dataset = data.from_insightface_rec(tmp_path)
    assert [image for image, _ in stored(dataset)] == [image for _, image, _ in expected]
    # the package's framing is byte-identical to the reference writer's
    for payload in (ref.header(1) + tail, ref.header(0) + b"z" * 13 + MAGIC, ref.header(2) + MAGIC + b"q"):
        assert frame(payload) == ref.framed(payload)


def _frames(raw):
    """Offsets of frames found by walking the file (not by searching for the magic word)."""
    position = 0
    while position < len(raw):
        length = struct.unpack_from("<I", raw, position + 4)[0] & ((1 << 29) - 1)
        yield type("Frame", (), {"start": lambda self, p=position: p})()
        position += 8 + length + (-length % 4)


# --- corrupt files ---------------------------------------------------------------

@pytest.fixture
def valid_set(tmp_path):
    images, _ = jpegs(6, seed=2)
    ref.write_insightface_layout(tmp_path, images, [0, 0, 1, 1, 1, 2])
    return tmp_path


def _idx_lines(folder):
    return (folder / "train.idx").read_text().splitlines()


def test_bad_magic_names_the_file_and_offset(valid_set):
    lines = _idx_lines(valid_set)
    key, offset = lines[2].split("\t")
    lines[2] = f"{key}\t{int(offset) + 4}"
    (valid_set / "train.idx").write_text("\n".join(lines) + "\n")
    dataset = data.from_insightface_rec(valid_set)  # key 2 is not read when opening
    with pytest.raises(RecordIOError, match=rf"train.rec: bad magic word .* at byte offset {int(offset) + 4}"):
        dataset.read_records([1])
    with pytest.raises(tf.errors.OpError, match="bad magic word"):
        list(dataset.records)


def test_truncated_record_and_offset_past_the_end(valid_set):
    rec = valid_set / "train.rec"
    raw = rec.read_bytes()
    last_key, last_offset = _idx_lines(valid_set)[-1].split("\t")
    rec.write_bytes(raw[: int(last_offset) + 10])
    with pytest.raises(RecordIOError, match=rf"truncated record: .* at byte offset {int(last_offset) + 8}"):
        data.from_insightface_rec(valid_set)
    rec.write_bytes(raw)
    (valid_set / "train.idx").write_text((valid_set / "train.idx").read_text() + f"10\t{len(raw) + 100}\n")
    with pytest.raises(RecordIOError, match=rf"train.idx: key 10 points at byte offset {len(raw) + 100}, past the end"):
        data.from_insightface_rec(valid_set)


def test_a_key_listed_twice(valid_set):
    lines = _idx_lines(valid_set)
    (valid_set / "train.idx").write_text("\n".join(lines + [lines[1]]) + "\n")
    with pytest.raises(RecordIOError, match="train.idx: key 1 appears more than once"):
        data.from_insightface_rec(valid_set)


def test_header_range_that_disagrees_with_the_idx(valid_set):
    lines = _idx_lines(valid_set)
    (valid_set / "train.idx").write_text("\n".join(lines[:4] + lines[5:]) + "\n")  # drop key 4
    with pytest.raises(RecordIOError, match=r"announces keys 0 .. 9, but .*train.idx lacks \[4\]"):
        data.from_insightface_rec(valid_set)


def test_identity_records_that_do_not_tile_the_images(tmp_path):
    images, _ = jpegs(3, seed=3)
    records = [(0, ref.header([4, 6]))] + [(k, ref.header(0, k) + images[k - 1]) for k in (1, 2, 3)]
    records += [(4, ref.header([1, 3])), (5, ref.header([2, 4]))]  # overlapping ranges
    ref.write_rec(tmp_path / "train.rec", tmp_path / "train.idx", records)
    with pytest.raises(RecordIOError, match=r"identity record at key 5 gives the image keys \[2, 4\)"):
        data.from_insightface_rec(tmp_path)


def test_label_outside_the_classes(valid_set):
    (valid_set / "property").write_text("2,112,112")
    with pytest.raises(RecordIOError, match="property gives 2 classes but .* has 3 identity records"):
        data.from_insightface_rec(valid_set)
    # headerless: labels checked against the property file
    images, _ = jpegs(3, seed=4)
    folder = valid_set / "headerless"
    folder.mkdir()
    ref.write_rec(folder / "train.rec", folder / "train.idx", [(k, ref.header(k * 2) + images[k]) for k in range(3)])
    (folder / "property").write_text("4,112,112")
    with pytest.raises(RecordIOError, match=r"key 2 has label 4, outside \[0, 4\)"):
        data.from_insightface_rec(folder)


def test_image_label_that_disagrees_with_its_identity_record(tmp_path):
    images, _ = jpegs(4, seed=5)
    records = [(0, ref.header([5, 7]))] + [(k, ref.header([0, 0, 1, 0][k - 1], k) + images[k - 1]) for k in range(1, 5)]
    records += [(5, ref.header([1, 3])), (6, ref.header([3, 5]))]  # key 3 sits in identity 1 but says 1... and key 2 says 0
    ref.write_rec(tmp_path / "train.rec", tmp_path / "train.idx", records)
    dataset = data.from_insightface_rec(tmp_path)  # first images of each identity (keys 1, 3) agree
    np.testing.assert_array_equal(dataset.labels(), [0, 0, 1, 1])
    with pytest.raises(RecordIOError, match=r"key 4 .* has label 0, but the index puts it in class 1"):
        dataset.read_records([0, 1, 2, 3])


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="`path` must be a dataset folder"):
        data.from_insightface_rec(tmp_path / "faces.txt")
    with pytest.raises(FileNotFoundError, match="without train.rec"):
        data.from_insightface_rec(tmp_path)
    (tmp_path / "a.rec").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="a.idx"):
        data.from_insightface_rec(tmp_path / "a.rec")
    (tmp_path / "a.idx").write_text("0\tzero\n")
    with pytest.raises(RecordIOError, match="a.idx: not an index"):
        data.from_insightface_rec(tmp_path / "a.rec")


# --- writing ---------------------------------------------------------------------

def write_folder(root, counts, seed=0):
    rng = np.random.default_rng(seed)
    files = {}
    for identity, count in enumerate(counts):
        folder = root / f"person_{identity}"
        folder.mkdir(parents=True)
        for n in range(count):
            encoded = tf.io.encode_jpeg(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).numpy()
            (folder / f"{n}.jpg").write_bytes(encoded)
            files[encoded] = f"person_{identity}"
    return files


def test_folder_written_as_rec_reads_back_as_the_folder(tmp_path):
    files = write_folder(tmp_path / "faces", [3, 1, 4, 2])
    folder = data.from_folder(tmp_path / "faces", data_dir=tmp_path / "tfds")
    data.write_insightface_rec(folder, tmp_path / "rec")
    assert (tmp_path / "rec" / "property").read_text() == "4,10,12"
    # the file itself, parsed by the reference: header, images grouped by identity, identity records
    records = ref.read_all(tmp_path / "rec" / "train.rec")
    idx = dict(tuple(map(int, line.split("\t"))) for line in (tmp_path / "rec" / "train.idx").read_text().splitlines())
    assert sorted(idx) == list(range(15)) and [offset for offset, _ in records] == [idx[k] for k in range(15)]
    payloads = [ref.parse_payload(payload) for _, payload in records]
    assert payloads[0] == ([11.0, 15.0], 0, b"")
    image_labels = [int(labels[0]) for labels, _, _ in payloads[1:11]]
    assert image_labels == sorted(image_labels)
    assert [labels for labels, _, image in payloads[11:]] == [[1, 4], [4, 5], [5, 9], [9, 11]]
    assert all(image == b"" for _, _, image in payloads[11:])
    name_of = folder.class_names
    assert sorted((image, name_of[int(labels[0])]) for labels, _, image in payloads[1:11]) == sorted(files.items())
    # and the package's reader gives the folder back, names included
    back = data.from_insightface_rec(tmp_path / "rec")
    assert back.class_names == folder.class_names
    assert sorted((image, back.class_names[label]) for image, label in stored(back)) == sorted(files.items())
    with pytest.raises(FileExistsError, match="overwrite=True"):
        data.write_insightface_rec(folder, tmp_path / "rec")


def test_decoded_images_are_written_as_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.repeat(np.repeat(rng.integers(0, 256, (6, 4, 4, 3)), 4, axis=1), 4, axis=2).astype(np.uint8)
    labels = np.array([1, 0, 1, 2, 0, 1])
    arrays = data.IdentityDataset.from_arrays(smooth, labels)
    data.write_insightface_rec(arrays, tmp_path, quality=95)
    back = data.from_insightface_rec(tmp_path)
    for image, label in stored(back):
        assert image[:2] == b"\xff\xd8"  # a JPEG
        decoded = tf.io.decode_jpeg(image).numpy().astype(int)
        matches = [i for i in range(6) if labels[i] == label and np.abs(decoded - smooth[i]).mean() < 25]
        assert len(matches) == 1


def test_rec_to_rec_copies_split_records_exactly(tmp_path):
    tail = b"jpg!" + MAGIC + b"end."
    (tmp_path / "a").mkdir()
    ref.write_insightface_layout(tmp_path / "a", [tail, b"x"], [1, 0])
    source = data.from_insightface_rec(tmp_path / "a")
    with pytest.raises(ValueError, match="pass `image_size="):
        data.write_insightface_rec(source, tmp_path / "b")
    data.write_insightface_rec(source, tmp_path / "b", image_size=(112, 112), overwrite=True)
    assert stored(data.from_insightface_rec(tmp_path / "b")) == stored(source) == [(b"x", 0), (tail, 1)]


# --- the IdentityDataset methods on a .rec -----------------------------------------

@pytest.fixture
def counted_set(tmp_path):
    """A set whose image bytes say which key they are, 12 identities of 2..9 images."""
    counts = [2, 5, 9, 3, 4, 6, 2, 7, 8, 3, 5, 4]
    labels = np.repeat(np.arange(len(counts)), counts).tolist()
    images = [f"image-{i:03d}".encode() for i in range(len(labels))]
    ref.write_insightface_layout(tmp_path, images, labels)
    return data.from_insightface_rec(tmp_path), counts


def test_full_index_shuffle_every_epoch(counted_set):
    dataset, counts = counted_set

    def epoch(batches):
        return [bytes(b) for images, _ in batches for b in images.numpy()]

    stream = _encoded_batches(dataset, seed=3)
    first, second = epoch(stream), epoch(stream)
    everything = sorted(image for image, _ in stored(dataset))
    assert sorted(first) == everything and sorted(second) == everything  # each epoch a permutation
    assert first != second and first != everything
    assert epoch(_encoded_batches(dataset, seed=3)) == first  # a fresh pipeline repeats the seed


def _encoded_batches(dataset, seed):
    """Batches of the stored bytes (decoding is skipped by making decode the identity)."""
    original = dataset.decode_image
    dataset.decode_image = lambda image: image
    try:
        return dataset.batches(8, shuffle=True, seed=seed, labels_as_input=False)
    finally:
        dataset.decode_image = original


def test_shards_are_disjoint_and_cover_the_set(counted_set):
    dataset, _ = counted_set
    shards = [stored(dataset.shard(3, i)) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(stored(dataset))
    assert len(set(map(tuple, sum(shards, [])))) == len(dataset)
    with pytest.raises(ValueError, match="`index` must be an integer in"):
        dataset.shard(3, 3)


def test_split_select_take_and_pairs_on_a_rec(counted_set):
    dataset, counts = counted_set
    train, test = dataset.split_identities(num_test_identities=3, seed=0)
    # the same split of an in-memory copy of the labels (the reference: IdentityDataset.from_arrays)
    labels = dataset.labels()
    arrays = data.IdentityDataset.from_arrays(np.arange(len(labels)).reshape(-1, 1, 1, 1), labels)
    train_ref, test_ref = arrays.split_identities(num_test_identities=3, seed=0)
    assert test.class_names == test_ref.class_names
    key_of = {f"image-{i:03d}".encode(): i for i in range(len(labels))}
    got = sorted((key_of[image], label) for image, label in stored(test))
    expected = sorted((int(image.reshape(())), int(label)) for image, label in test_ref.records.as_numpy_iterator())
    assert got == expected
    assert [key_of[image] for image, _ in stored(dataset.take(4))] == [0, 1, 2, 3]
    # verification pairs: the pairs sample_pair_indices draws from the labels, with their own bytes
    test.decode_image = lambda image: image
    pairs = list(test.verification_pairs(20, seed=1).as_numpy_iterator())
    first, second, same = data.sample_pair_indices(test.labels(), 20, seed=1)
    ordered = [image for image, _ in stored(test)]
    assert [(a, b, s) for a, b, s in pairs] == [(ordered[i], ordered[j], s) for i, j, s in zip(first, second, same)]


def test_pk_batches_from_a_rec_are_balanced_and_uniform(counted_set):
    dataset, counts = counted_set
    p, k = 4, 3
    original = dataset.decode_image
    dataset.decode_image = lambda image: image
    batches = data.pk_batches(dataset, p, k, seed=0, labels_as_input=False)
    dataset.decode_image = original
    key_label = {f"image-{i:03d}".encode(): label for i, label in enumerate(np.repeat(np.arange(12), counts))}
    eligible = [c for c, n in enumerate(counts) if n >= k]
    drawn = collections.Counter()
    num_batches = 0
    for _ in range(40):
        for images, labels in batches.as_numpy_iterator():
            labels = labels.tolist()
            assert len(images) == p * k and len(set(images.tolist())) == p * k  # K distinct images each
            groups = [labels[i * k:(i + 1) * k] for i in range(p)]
            assert all(len(set(g)) == 1 for g in groups) and len({g[0] for g in groups}) == p
            assert [key_label[bytes(image)] for image in images] == labels
            drawn.update(g[0] for g in groups)
            num_batches += 1
    assert num_batches == 40 * (sum(counts) // (p * k))
    assert set(drawn) == set(eligible)  # identities with fewer than K images never appear
    observed = [drawn[c] for c in eligible]
    assert stats.chisquare(observed).pvalue > 0.01, observed


# --- .bin ------------------------------------------------------------------------

def test_python2_bin_reads_in_order(tmp_path):
    images, pixels = jpegs(6, seed=6)
    issame = [True, False, True]
    (tmp_path / "lfw.bin").write_bytes(ref.python2_bin(images, issame))
    pairs = list(data.pairs_from_bin(tmp_path / "lfw.bin").as_numpy_iterator())
    assert [bool(s) for _, _, s in pairs] == issame
    for i, (a, b, _) in enumerate(pairs):
        np.testing.assert_array_equal(a, tf.io.decode_jpeg(images[2 * i]).numpy())
        np.testing.assert_array_equal(b, tf.io.decode_jpeg(images[2 * i + 1]).numpy())


def test_bin_write_read_round_trip_and_errors(tmp_path):
    images, _ = jpegs(8, seed=7)
    pixels = np.repeat(np.repeat(np.random.default_rng(7).integers(0, 256, (8, 2, 2, 3)), 8, 1), 8, 2).astype(np.uint8)
    same = [False, True, True, False]
    encoded = tf.data.Dataset.from_tensor_slices((images[0::2], images[1::2], same))
    assert data.write_pairs_bin(encoded, tmp_path / "a.bin") == 4
    assert data.read_bin(tmp_path / "a.bin")[0] == images  # stored as they are
    decoded = tf.data.Dataset.from_tensor_slices((pixels[0::2], pixels[1::2], same)).batch(3)
    data.write_pairs_bin(decoded, tmp_path / "b.bin")
    back, back_same = data.read_bin(tmp_path / "b.bin")
    assert back_same.tolist() == same
    assert all(np.abs(tf.io.decode_jpeg(b).numpy().astype(int) - p).mean() < 25 for b, p in zip(back, pixels))
    with pytest.raises(ValueError, match="uint8"):
        data.write_pairs_bin(decoded.map(lambda a, b, s: (tf.cast(a, tf.float32), b, s)), tmp_path / "c.bin")
    (tmp_path / "odd.bin").write_bytes(ref.python2_bin(images[:5], [True, False, True]))
    with pytest.raises(ValueError, match=r"odd.bin: 5 images for 3 pairs"):
        data.pairs_from_bin(tmp_path / "odd.bin")
    (tmp_path / "evil.bin").write_bytes(b"\x80\x02cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(ValueError, match="evil.bin: not a .bin .* os.system"):
        data.read_bin(tmp_path / "evil.bin")


def test_verification_callback_on_bins_equals_the_report_on_arrays(tmp_path, capsys):
    import keras

    from keras_margin.callbacks import VerificationCallback

    rng = np.random.default_rng(8)
    bins = {}
    for name, num_pairs in (("lfw", 12), ("cfp_fp", 10)):
        pixels = np.repeat(np.repeat(rng.integers(0, 256, (2 * num_pairs, 4, 4, 3)), 2, 1), 2, 2).astype(np.uint8)
        pixels[1::4] = np.clip(pixels[0::4].astype(int) + 8, 0, 255)  # same pairs look alike
        issame = [i % 2 == 0 for i in range(num_pairs)]
        images = [tf.io.encode_jpeg(p, quality=95).numpy() for p in pixels]
        (tmp_path / f"{name}.bin").write_bytes(ref.python2_bin(images, issame))
        decoded = np.stack([tf.io.decode_jpeg(b).numpy() for b in images]).astype("float32") / 127.5 - 1
        bins[name] = (decoded, np.array(issame))

    embedder = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(5)])
    head = keras.layers.Dense(3)
    model = keras.Sequential([embedder, head])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = VerificationCallback(
        [tmp_path / "lfw.bin", str(tmp_path / "cfp_fp.bin")], embedder, every_steps=3, num_folds=2,
        far_targets=(0.1,), verbose=1,
    )
    x = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    history = model.fit(x, np.arange(16) % 3, batch_size=4, epochs=2, verbose=0, callbacks=[callback])
    assert [step for step, _ in callback.history] == [3, 6]  # 8 steps, every 3
    printed = capsys.readouterr().out
    for name, (decoded, issame) in bins.items():
        # flip-fused embeddings computed here: f(x) + f(mirror x), normalized
        e = embedder.predict(decoded, verbose=0) + embedder.predict(decoded[:, :, ::-1], verbose=0)
        e /= np.linalg.norm(e, axis=1, keepdims=True)
        expected = evaluation.verification_report(e[0::2], e[1::2], issame, num_folds=2, far_targets=(0.1,))
        assert history.history[f"val_{name}_accuracy"][-1] == pytest.approx(expected["accuracy"])
        assert history.history[f"val_{name}_auc"][-1] == pytest.approx(expected["auc"])
        assert history.history[f"val_{name}_tar@far=1e-1"][-1] == pytest.approx(expected["tar_at_far"][0.1])
        line = f"[{name}][6] Accuracy-Flip: {expected['accuracy']:1.5f}+-{expected['accuracy_std']:1.5f}"
        assert line in printed, printed
    with pytest.raises(ValueError, match="every_steps"):
        VerificationCallback(tmp_path / "lfw.bin", embedder, every_steps=0)
