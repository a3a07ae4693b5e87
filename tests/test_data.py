"""keras_margin.data: identity datasets, splits, batches, P×K sampling, pairs, preprocessing.

References are independent of the code under test: labels are checked against
the folder names / raw tfds records, pixels against the files written here,
and the sampler against counts over the batches it yields.
"""

import collections
import pathlib
import threading

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from keras_margin import data

ROOT = pathlib.Path(__file__).resolve().parents[1]
ORL_DIR = ROOT.parent / "shared" / "data" / "faces" / "orl"
TFDS_DIR = ROOT.parent / "shared" / "data" / "tfds"


def indexed_arrays(counts, size=4):
    """One tiny image per record whose pixels encode the record index; labels from `counts`."""
    labels = np.repeat(np.arange(len(counts)), counts).astype("int32")
    rng = np.random.default_rng(0)
    order = rng.permutation(len(labels))
    labels = labels[order]
    images = np.zeros((len(labels), size, size, 1), "int32")
    images[:, 0, 0, 0] = np.arange(len(labels))
    return images, labels


def record_index(images):
    return np.asarray(images)[..., 0, 0, 0].astype(int)


def write_identity_folder(root, counts, shape=(12, 10), channels=1, seed=0):
    """Writes `root/idXX/NN.png` with random pixels; returns {relative path: pixels}."""
    rng = np.random.default_rng(seed)
    written = {}
    for identity, count in enumerate(counts):
        folder = root / f"id{identity:02d}"
        folder.mkdir(parents=True)
        for n in range(count):
            pixels = rng.integers(0, 256, size=(*shape, channels), dtype=np.uint8)
            (folder / f"{n:02d}.png").write_bytes(tf.io.encode_png(pixels).numpy())
            written[f"id{identity:02d}/{n:02d}.png"] = pixels
        (folder / "notes.txt").write_text("not an image")
    return written


# --- sources -----------------------------------------------------------------

def test_from_folder_labels_and_pixels_match_the_files(tmp_path):
    written = write_identity_folder(tmp_path / "faces", counts=[3, 1, 4])
    dataset = data.from_folder(tmp_path / "faces", data_dir=tmp_path / "tfds", channels=1)
    assert dataset.class_names == ["id00", "id01", "id02"]
    # the builder also stores file names: check each record against its file
    raw = tfds.builder("identity_folder/faces", data_dir=tmp_path / "tfds").as_dataset(split="train")
    seen = 0
    for example in raw.as_numpy_iterator():
        name = example["image/filename"].decode()
        np.testing.assert_array_equal(example["image"], written[name])
        assert dataset.class_names[example["label"]] == name.split("/")[0]
        seen += 1
    assert seen == len(written) == 8
    # and the IdentityDataset stream decodes to the same multiset of (pixels, identity)
    expected = sorted((v.tobytes(), k.split("/")[0]) for k, v in written.items())
    got = sorted((image.tobytes(), dataset.class_names[label]) for image, label in dataset.images().as_numpy_iterator())
    assert got == expected
    np.testing.assert_array_equal(np.bincount(dataset.labels()), [3, 1, 4])


def test_from_folder_waits_while_another_process_prepares_the_same_folder(tmp_path):
    fcntl = pytest.importorskip("fcntl", reason="the preparation lock is a POSIX flock")

    write_identity_folder(tmp_path / "faces", counts=[3, 1, 4])
    version_dir = tmp_path / "tfds" / "identity_folder" / "faces" / "1.0.0"
    version_dir.parent.mkdir(parents=True)
    result = {}
    with open(str(version_dir) + ".lock", "a") as held:  # as a preparing process holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: result.update(
            dataset=data.from_folder(tmp_path / "faces", data_dir=tmp_path / "tfds", channels=1)))
        worker.start()
        worker.join(timeout=3.0)
        assert worker.is_alive() and not version_dir.exists()  # waiting, writing nothing
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(timeout=120)
    assert not worker.is_alive()
    np.testing.assert_array_equal(np.bincount(result["dataset"].labels()), [3, 1, 4])


def test_from_folder_reads_the_copy_another_process_prepared_while_it_waited(tmp_path):
    # The race two training runs hit: the waiting process must not keep what it knew of the (then
    # unprepared) copy from before the lock, or it finds no 'train' split once the other one has written it.
    fcntl = pytest.importorskip("fcntl", reason="the preparation lock is a POSIX flock")
    from keras_margin.data.folder_builder import IdentityFolder

    write_identity_folder(tmp_path / "faces", counts=[2, 5])
    other = IdentityFolder(tmp_path / "faces", channels=1, data_dir=tmp_path / "tfds")
    pathlib.Path(other.data_dir).parent.mkdir(parents=True)
    result = {}
    with open(other.data_dir + ".lock", "a") as held:  # the other process's lock, held while it prepares
        fcntl.flock(held, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: result.update(
            dataset=data.from_folder(tmp_path / "faces", data_dir=tmp_path / "tfds", channels=1)))
        worker.start()
        worker.join(timeout=3.0)
        assert worker.is_alive()
        other.download_and_prepare()
        fcntl.flock(held, fcntl.LOCK_UN)
    worker.join(timeout=120)
    assert not worker.is_alive()
    np.testing.assert_array_equal(np.bincount(result["dataset"].labels()), [2, 5])


def test_from_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="root_dir"):
        data.from_folder(tmp_path / "missing", data_dir=tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no identity sub-folders"):
        data.from_folder(tmp_path / "empty", data_dir=tmp_path)
    write_identity_folder(tmp_path / "faces", counts=[1])
    with pytest.raises(ValueError, match="channels"):
        data.from_folder(tmp_path / "faces", data_dir=tmp_path, channels=2)


@pytest.mark.skipif(not ORL_DIR.is_dir(), reason=f"ORL faces not found at {ORL_DIR}")
def test_orl_folder(tmp_path):
    dataset = data.from_folder(ORL_DIR, data_dir=tmp_path, channels=1)
    assert dataset.num_classes == 40
    assert dataset.class_names[0] == "s01"
    np.testing.assert_array_equal(np.bincount(dataset.labels()), [10] * 40)
    image, _ = next(dataset.images().as_numpy_iterator())
    assert image.shape == (112, 92, 1) and image.dtype == np.uint8


def test_from_tfds_class_label_with_mock_data():
    with tfds.testing.mock_data(num_examples=30):
        dataset = data.from_tfds("mnist", split="train", data_dir="/nonexistent")
        raw_labels = [int(ex["label"]) for ex in tfds.load("mnist", split="train", data_dir="/nonexistent")]
        assert dataset.num_classes == 10
        assert dataset.labels().tolist() == raw_labels
        image, label = next(dataset.images().as_numpy_iterator())
    assert image.shape == (28, 28, 1) and image.dtype == np.uint8 and label.dtype == np.int32


def test_from_tfds_text_labels_become_sorted_identities():
    with tfds.testing.mock_data(num_examples=12):
        dataset = data.from_tfds("lfw", split="train", data_dir="/nonexistent")
        raw_names = [ex["label"].numpy().decode() for ex in tfds.load("lfw", split="train", data_dir="/nonexistent")]
        labels = dataset.labels()
    assert dataset.class_names == sorted(set(raw_names))
    assert [dataset.class_names[label] for label in labels] == raw_names


def test_from_tfds_rejects_an_unknown_feature():
    with tfds.testing.mock_data(num_examples=4):
        with pytest.raises(ValueError, match="no feature 'identity'"):
            data.from_tfds("mnist", data_dir="/nonexistent", label_key="identity")


@pytest.mark.skipif(not (TFDS_DIR / "mnist").is_dir(), reason=f"offline MNIST not found at {TFDS_DIR}")
def test_offline_mnist_test_split():
    dataset = data.from_tfds("mnist", split="test", data_dir=TFDS_DIR, download=False)
    # label counts of the MNIST test split, as documented by the data's README and LeCun's page
    np.testing.assert_array_equal(
        np.bincount(dataset.labels()), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )


# --- splits and batches ------------------------------------------------------

def test_split_identities_is_disjoint_complete_and_seeded():
    images, labels = indexed_arrays([5, 3, 4, 6, 2, 5, 3])
    dataset = data.IdentityDataset.from_arrays(images, labels, class_names=list("abcdefg"))
    train, test = dataset.split_identities(num_test_identities=2, seed=3)
    assert set(train.class_names).isdisjoint(test.class_names)
    assert sorted(train.class_names + test.class_names) == list("abcdefg")
    assert train.num_classes == 5 and test.num_classes == 2
    for part in (train, test):
        for image, label in part.images().as_numpy_iterator():
            original = labels[record_index(image)]
            assert part.class_names[label] == "abcdefg"[original]
    counts = collections.Counter(train.labels().tolist()) + collections.Counter((test.labels() + 100).tolist())
    assert sum(counts.values()) == len(labels)
    again, _ = dataset.split_identities(num_test_identities=2, seed=3)
    assert again.class_names == train.class_names
    other = {tuple(dataset.split_identities(num_test_identities=2, seed=s)[1].class_names) for s in range(10)}
    assert len(other) > 1
    _, by_fraction = dataset.split_identities(test_fraction=0.3, seed=0)
    assert by_fraction.num_classes == 2  # round(0.3 · 7)


@pytest.mark.parametrize(
    "kwargs, match",
    [({}, "exactly one"), ({"num_test_identities": 7}, "num_test_identities"),
     ({"test_fraction": 1.0}, "test_fraction"), ({"num_test_identities": 1, "test_fraction": 0.5}, "exactly one")],
)
def test_split_identities_errors(kwargs, match):
    images, labels = indexed_arrays([2] * 7)
    with pytest.raises(ValueError, match=match):
        data.IdentityDataset.from_arrays(images, labels).split_identities(**kwargs)


def test_batches_for_heads_and_for_metric_losses():
    images, labels = indexed_arrays([4, 5, 3])
    dataset = data.IdentityDataset.from_arrays(images, labels)
    (x, y_in), y = next(iter(dataset.batches(5)))
    np.testing.assert_array_equal(y_in, y)
    np.testing.assert_array_equal(y, labels[record_index(x)])
    x, y = next(iter(dataset.batches(5, labels_as_input=False, preprocess=lambda im: tf.cast(im, tf.float32) * 2)))
    assert x.dtype == tf.float32 and x.shape == (5, 4, 4, 1)
    np.testing.assert_array_equal(y, labels[record_index(x.numpy() / 2)])
    sizes = [len(b[1]) for b in dataset.batches(5, drop_remainder=True)]
    assert sizes == [5, 5]
    first = [b[1].numpy().tolist() for b in dataset.batches(4, shuffle_buffer=12, seed=7)]
    second = [b[1].numpy().tolist() for b in dataset.batches(4, shuffle_buffer=12, seed=7)]
    assert first == second
    # shuffle=True without a buffer size shuffles (10,000 records: all of these); shuffle=False keeps order
    order = [int(i) for x, _ in dataset.batches(12, shuffle=True, seed=7, labels_as_input=False)
             for i in record_index(x)]
    assert sorted(order) == list(range(12)) and order != list(range(12))
    kept = [int(i) for x, _ in dataset.batches(12, shuffle=False, shuffle_buffer=12, labels_as_input=False)
            for i in record_index(x)]
    assert kept == list(range(12))


def test_from_arrays_errors():
    with pytest.raises(ValueError, match="labels"):
        data.IdentityDataset.from_arrays(np.zeros((3, 2, 2, 1)), np.zeros(2, "int32"))
    with pytest.raises(ValueError, match="class_names"):
        data.IdentityDataset.from_arrays(np.zeros((2, 2, 2, 1)), np.array([0, 3]), class_names=["a", "b"])


# --- P×K sampler -------------------------------------------------------------

def check_pk_batch(images, labels, p, k, all_labels):
    labels = np.asarray(labels)
    assert labels.shape == (p * k,)
    blocks = labels.reshape(p, k)
    assert (blocks == blocks[:, :1]).all(), labels  # grouped by identity
    assert len(set(blocks[:, 0])) == p, labels  # P distinct identities
    np.testing.assert_array_equal(all_labels[record_index(images)], labels)  # each image with its own label


def test_pk_batches_shape_distinctness_and_no_reuse():
    counts = [9, 4, 7, 2, 12, 5, 6, 3, 8, 10]
    images, labels = indexed_arrays(counts)
    dataset = data.IdentityDataset.from_arrays(images, labels)
    p, k = 4, 3
    used = []
    batches = list(data.pk_batches(dataset, p, k, seed=0, shuffle_buffer=100, labels_as_input=False))
    for x, y in batches:
        check_pk_batch(x, y, p, k, labels)
        used.extend(record_index(x).tolist())
    assert len(used) == len(set(used))  # an image at most once per pass
    # the n-th group of an identity exists when it has ≥ (n + 1)·K images, and the n-th
    # groups of all identities form floor(count / P) batches
    groups_per_key = [sum(n >= (key + 1) * k for n in counts) for key in range(max(counts) // k)]
    assert len(batches) == sum(g // p for g in groups_per_key)
    assert {labels[i] for i in used} <= {c for c, n in enumerate(counts) if n >= k}


def test_pk_batches_are_reproducible_and_seed_dependent():
    images, labels = indexed_arrays([6] * 12)
    dataset = data.IdentityDataset.from_arrays(images, labels)

    def run(seed):
        return [record_index(x).tolist() for x, _ in data.pk_batches(dataset, 3, 2, seed=seed, labels_as_input=False)]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_pk_batches_scale_to_many_identities():
    # 3000 identities × 4 images: one pass, every batch valid, nearly all images used
    images, labels = indexed_arrays([4] * 3000, size=1)
    dataset = data.IdentityDataset.from_arrays(images, labels)
    total = 0
    for x, y in data.pk_batches(dataset, 32, 4, seed=0, shuffle_buffer=2000, labels_as_input=False):
        check_pk_batch(x, y, 32, 4, labels)
        total += 1
    assert total == 3000 // 32


def test_pk_batches_with_labels_input_and_preprocess():
    images, labels = indexed_arrays([4] * 5)
    dataset = data.IdentityDataset.from_arrays(images, labels)
    (x, y_in), y = next(iter(data.pk_batches(
        dataset, 2, 2, seed=0, labels_as_input=True, preprocess=lambda im: tf.cast(im, tf.float32))))
    assert x.dtype == tf.float32 and x.shape == (4, 4, 4, 1)
    np.testing.assert_array_equal(y_in, y)


@pytest.mark.parametrize(
    "p, k, match", [(1, 2, "identities_per_batch"), (6, 2, "at most the number of identities"), (2, 0, "images_per_identity")]
)
def test_pk_batches_errors(p, k, match):
    images, labels = indexed_arrays([3] * 5)
    with pytest.raises(ValueError, match=match):
        data.pk_batches(data.IdentityDataset.from_arrays(images, labels), p, k)


# --- verification pairs ------------------------------------------------------

def test_sample_pair_indices_balanced_distinct_and_seeded():
    labels = np.repeat(np.arange(8), [1, 2, 5, 3, 4, 1, 6, 2])
    first, second, same = data.sample_pair_indices(labels, 41, seed=5)
    assert same.sum() == 20 and (~same).sum() == 21
    np.testing.assert_array_equal(same, labels[first] == labels[second])
    assert (first != second).all()
    keys = {(min(a, b), max(a, b)) for a, b in zip(first, second)}
    assert len(keys) == 41
    again = data.sample_pair_indices(labels, 41, seed=5)
    np.testing.assert_array_equal(again[0], first)
    assert 0 < same[:20].sum() < 20  # interleaved, not in blocks


@pytest.mark.parametrize(
    "labels, num_pairs, match",
    [([0, 1, 2], 4, "two images"), ([0, 0, 0], 4, "two identities"), ([0, 0, 1, 1], 8, "distinct ones exist"),
     ([0, 0, 1], 1, "num_pairs")],
)
def test_sample_pair_indices_errors(labels, num_pairs, match):
    with pytest.raises(ValueError, match=match):
        data.sample_pair_indices(np.array(labels), num_pairs)


def test_verification_pairs_fetch_the_right_images():
    images, labels = indexed_arrays([3, 4, 2, 5])
    dataset = data.IdentityDataset.from_arrays(images, labels)
    first, second, same = data.sample_pair_indices(dataset.labels(), 10, seed=2)
    pairs = list(dataset.verification_pairs(10, seed=2).as_numpy_iterator())
    assert len(pairs) == 10
    for (a, b, s), i, j, expected in zip(pairs, first, second, same):
        assert record_index(a) == i and record_index(b) == j and s == expected
        assert s == (labels[record_index(a)] == labels[record_index(b)])


def test_verification_pairs_from_an_identity_folder(tmp_path):
    written = write_identity_folder(tmp_path / "faces", counts=[3, 3, 2], channels=1)
    dataset = data.from_folder(tmp_path / "faces", data_dir=tmp_path / "tfds", channels=1)
    pixel_owner = {v.tobytes(): k.split("/")[0] for k, v in written.items()}
    for a, b, same in dataset.verification_pairs(8, seed=0).as_numpy_iterator():
        assert same == (pixel_owner[a.tobytes()] == pixel_owner[b.tobytes()])


LFW_STYLE_PAIRS = """2\t2
Ann\t1\t2
Bob\t1\t3
Ann\t2\tBob\t1
Cid\t1\tAnn\t1
Bob\t2\t3
Cid\t1\t2
Ann\t1\tCid\t2
Bob\t3\tCid\t1
"""


def test_read_pairs_list_in_lfw_format(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text(LFW_STYLE_PAIRS)
    pairs = data.read_pairs_list(path)
    assert len(pairs) == 8
    assert pairs[0] == data.VerificationPair("Ann", 1, "Ann", 2) and pairs[0].same
    assert pairs[2] == data.VerificationPair("Ann", 2, "Bob", 1) and not pairs[2].same
    assert [p.same for p in pairs] == [True, True, False, False] * 2


@pytest.mark.parametrize(
    "text, match",
    [("x y\n", "first line"), ("1 2\nAnn 1 2\n", "announces 4 pairs"), ("1\nAnn 1\nAnn 1 2\n", "line 2"),
     ("1\nAnn one 2\nAnn 1 Bob 1\n", "line 2")],
)
def test_read_pairs_list_errors(tmp_path, text, match):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        data.read_pairs_list(path)


def test_pairs_from_list_reads_lfw_layout(tmp_path):
    rng = np.random.default_rng(0)
    pixels = {}
    for name, count in [("Ann", 2), ("Bob", 3), ("Cid", 2)]:
        (tmp_path / name).mkdir()
        for number in range(1, count + 1):
            image = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
            # PNG bytes under LFW's .jpg names: decoding goes by content, and stays lossless here
            (tmp_path / name / f"{name}_{number:04d}.jpg").write_bytes(tf.io.encode_png(image).numpy())
            pixels[(name, number)] = image
    (tmp_path / "pairs.txt").write_text(LFW_STYLE_PAIRS)
    pairs = data.read_pairs_list(tmp_path / "pairs.txt")
    dataset = data.pairs_from_list(pairs, tmp_path)
    for pair, (a, b, same) in zip(pairs, dataset.as_numpy_iterator()):
        np.testing.assert_array_equal(a, pixels[(pair.name1, pair.number1)])
        np.testing.assert_array_equal(b, pixels[(pair.name2, pair.number2)])
        assert same == pair.same
    with pytest.raises(FileNotFoundError, match="missing"):
        data.pairs_from_list([data.VerificationPair("Dan", 1, "Ann", 1)], tmp_path)


# --- preprocessing -----------------------------------------------------------

def test_resize_and_crop_takes_the_centered_window():
    image = np.arange(10 * 6 * 1, dtype=np.uint8).reshape(10, 6, 1)
    # same size as the centered square window: no resampling, an exact crop
    np.testing.assert_array_equal(data.resize_and_crop(image, (6, 6)).numpy(), image[2:8].astype("float32"))
    wide = np.arange(4 * 9 * 3, dtype=np.uint8).reshape(4, 9, 3)
    np.testing.assert_array_equal(data.resize_and_crop(wide, (4, 6)).numpy(), wide[:, 1:7].astype("float32"))
    # shrinking a constant image keeps the constant
    np.testing.assert_allclose(data.resize_and_crop(np.full((50, 40, 1), 7, np.uint8), 20).numpy(), 7.0, atol=1e-5)
    assert data.resize_and_crop(image, (3, 5)).shape == (3, 5, 1)


def test_scale_to_unit_range_and_channels():
    image = np.array([0, 127.5, 255], dtype=np.float32).reshape(1, 3, 1)
    np.testing.assert_allclose(data.scale_to_unit_range(image).numpy().ravel(), [-1, 0, 1])
    gray = np.full((4, 4, 1), 51, np.uint8)
    rgb = data.face_preprocessing(channels=3)(gray).numpy()
    assert rgb.shape == (4, 4, 3)
    np.testing.assert_allclose(rgb, 51 / 127.5 - 1, rtol=1e-6)
    back = data.face_preprocessing(channels=1)(np.full((4, 4, 3), 51, np.uint8)).numpy()
    np.testing.assert_allclose(back, 51 / 127.5 - 1, rtol=1e-6)


def test_random_flip_mirrors_about_half_the_time():
    image = np.arange(3 * 4, dtype=np.uint8).reshape(3, 4, 1)
    flips = tf.data.Dataset.from_tensors(image).repeat(400).map(data.face_preprocessing(flip=True, seed=3))
    outputs = np.stack(list(flips.as_numpy_iterator()))
    plain = image / 127.5 - 1
    is_plain = np.all(np.isclose(outputs, plain), axis=(1, 2, 3))
    is_mirror = np.all(np.isclose(outputs, plain[:, ::-1]), axis=(1, 2, 3))
    assert (is_plain | is_mirror).all()
    assert 150 < is_mirror.sum() < 250  # Binomial(400, 1/2): ±5 standard deviations


@pytest.mark.parametrize("size", [0, (3,), (2.5, 3), "a"])
def test_bad_image_size(size):
    with pytest.raises(ValueError, match="image_size"):
        data.face_preprocessing(image_size=size)


def test_head_batches_fit_a_model_with_a_labels_input():
    import keras

    import keras_margin

    with tfds.testing.mock_data(num_examples=64):
        dataset = data.from_tfds("mnist", data_dir="/nonexistent")
        batches = dataset.batches(16, preprocess=data.scale_to_unit_range, drop_remainder=True)
        images = keras.Input((28, 28, 1))
        labels = keras.Input((), dtype="int32")
        embeddings = keras.layers.Dense(8)(keras.layers.Flatten()(images))
        logits = keras_margin.ArcMarginHead(dataset.num_classes, scale=8.0)(embeddings, labels=labels)
        model = keras.Model([images, labels], logits)
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=True)
        history = model.fit(batches, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()


def test_take_keeps_identities_and_order():
    images, labels = indexed_arrays([3, 4, 5])
    dataset = data.IdentityDataset.from_arrays(images, labels, class_names=["a", "b", "c"])
    first = dataset.take(5)
    assert first.class_names == ["a", "b", "c"]
    np.testing.assert_array_equal(first.labels(), labels[:5])


def test_lazy_submodules_do_not_load_tfds_on_import():
    import subprocess
    import sys

    code = (
        "import sys, keras_margin; assert 'tensorflow_datasets' not in sys.modules; "
        "keras_margin.data.pk_batches; keras_margin.evaluation.verification_report; "
        "assert 'tensorflow_datasets' in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_shards_of_a_stream_are_disjoint_and_cover_it():
    images, labels = indexed_arrays([3, 4, 2])
    dataset = data.IdentityDataset.from_arrays(images, labels)
    shards = [[int(record_index(image)) for image, _ in dataset.shard(3, i).records.as_numpy_iterator()]
              for i in range(3)]
    assert sorted(sum(shards, [])) == list(range(9))
    assert shards[1] == [1, 4, 7]  # every third record from index 1
    with pytest.raises(ValueError, match="`num_shards` must be an integer"):
        dataset.shard(0, 0)


# --- the image loader and the dataset interface -------------------------------

def test_the_image_loader_reads_paths_and_bytes_alike(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    png = tf.io.encode_png(pixels).numpy()
    (tmp_path / "a.png").write_bytes(png)
    np.testing.assert_array_equal(data.load_image(tmp_path / "a.png"), pixels)
    np.testing.assert_array_equal(data.load_image(png), pixels)
    np.testing.assert_array_equal(data.decode_image(tf.constant(png)).numpy(), pixels)
    gray = data.load_image(str(tmp_path / "a.png"), channels=1)
    assert gray.shape == (9, 7, 1) and gray.dtype == np.uint8
    # inside tf.data, from a path
    [mapped] = tf.data.Dataset.from_tensor_slices([str(tmp_path / "a.png")]).map(data.read_image).as_numpy_iterator()
    np.testing.assert_array_equal(mapped, pixels)
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"Cannot read the image '.*broken.jpg'"):
        data.load_image(tmp_path / "broken.jpg")
    with pytest.raises(ValueError, match="Cannot read the image"):
        data.load_image(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="channels"):
        data.load_image(png, channels=4)


def test_load_image_batch_is_face_preprocessing_of_the_decoded_images(tmp_path):
    rng = np.random.default_rng(1)
    first, second = (rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((30, 20, 3), (16, 16, 3)))
    (tmp_path / "first.png").write_bytes(tf.io.encode_png(first).numpy())
    for channels in (1, 3):
        preprocess = data.face_preprocessing((12, 12), channels)
        batch = data.load_image_batch(
            [tmp_path / "first.png", tf.io.encode_png(second).numpy(), second], (12, 12), channels
        )
        assert batch.shape == (3, 12, 12, channels) and batch.dtype == np.float32
        np.testing.assert_array_equal(batch[2], preprocess(second).numpy())  # a decoded array: converted alike
        np.testing.assert_array_equal(batch[1], preprocess(data.decode_image(tf.io.encode_png(second), channels)))
        np.testing.assert_array_equal(batch[0], preprocess(data.load_image(tmp_path / "first.png", channels)))
    assert -1 <= batch.min() and batch.max() <= 1
    with pytest.raises(ValueError, match="empty"):
        data.load_image_batch([], (12, 12))


def test_every_dataset_is_an_identity_dataset_built_on_its_primitives():
    images, labels = indexed_arrays([3, 2])
    # the constructor of 0.1 still builds the stream over the records
    stream = data.IdentityDataset(tf.data.Dataset.from_tensor_slices((images, labels)), ["a", "b"], lambda x: x)
    assert type(stream) is data.StreamDataset and isinstance(stream, data.IdentityDataset)
    np.testing.assert_array_equal(stream.labels(), labels)
    assert not stream.random_access and not data.RecordIODataset.__abstractmethods__
    # the shared behaviour is written once: the sources implement primitives, not the methods users call
    shared = ("batches", "pk_batches", "split_identities", "select_identities", "take", "shard",
              "verification_pairs", "images")
    for source in (data.StreamDataset, data.RecordIODataset):
        assert not set(shared) & set(vars(source)), source
    with pytest.raises(TypeError, match="abstract"):  # a source must implement every primitive
        type("Incomplete", (data.IdentityDataset,), {})()


def test_pk_batches_of_a_stream_stop_after_num_batches():
    images, labels = indexed_arrays([6] * 12)
    dataset = data.IdentityDataset.from_arrays(images, labels)
    assert len(list(dataset.pk_batches(3, 2, seed=0, num_batches=2, labels_as_input=False))) == 2
    with pytest.raises(ValueError, match="num_batches"):
        dataset.pk_batches(3, 2, num_batches=0)
