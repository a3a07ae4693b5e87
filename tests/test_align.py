"""Face alignment: the similarity fit against closed forms, the warp against SciPy, real photos through MTCNN.

The photo tests use ../shared/data/faces (CelebA crops aligned to the ArcFace
template, and raw CelebA photos with another detector's landmarks); they skip
with the reason when that data or the mtcnn package is absent.
"""

import csv
import math
import pathlib

import keras
import numpy as np
import pytest
from scipy import ndimage

from keras_margin.data import align

FACES = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
CROPS = FACES / "celeba_subset" / "aligned_112"
RAW = FACES / "celeba_raw_sample"
needs_crops = pytest.mark.skipif(not CROPS.is_dir(), reason=f"CelebA crops not found at {CROPS}")
needs_raw = pytest.mark.skipif(not RAW.is_dir(), reason=f"raw CelebA photos not found at {RAW}")


def similarity(scale, angle, shift):
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


@pytest.fixture(scope="module")
def detector():
    pytest.importorskip("mtcnn", reason="face detection needs the mtcnn package (the [align] extra)")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("mtcnn runs on the TensorFlow backend only (test_detection_off_tensorflow_raises_a_clear_error)")
    return align.mtcnn_detector()


@pytest.mark.skipif(keras.backend.backend() == "tensorflow", reason="the error is raised on the other backends")
def test_detection_off_tensorflow_raises_a_clear_error():
    with pytest.raises(RuntimeError, match="TensorFlow Keras backend only.*landmarks"):
        align.mtcnn_detector()


def read_rgb(path):
    import tensorflow as tf

    return tf.io.decode_image(tf.io.read_file(str(path)), channels=3).numpy()


def test_a_known_similarity_is_recovered_exactly(rng):
    for _ in range(20):
        truth = similarity(rng.uniform(0.2, 5.0), rng.uniform(-math.pi, math.pi), rng.normal(size=2) * 50)
        points = rng.normal(size=(5, 2)) * 30
        np.testing.assert_allclose(align.estimate_similarity(points, apply(truth, points)), truth, atol=1e-9)


def test_two_points_match_the_complex_closed_form(rng):
    # a similarity is w = a·z + b over the complex numbers; two points fix a and b
    z = rng.normal(size=2) + 1j * rng.normal(size=2)
    w = rng.normal(size=2) + 1j * rng.normal(size=2)
    a = (w[0] - w[1]) / (z[0] - z[1])
    b = w[0] - a * z[0]
    expected = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])
    matrix = align.estimate_similarity(np.c_[z.real, z.imag], np.c_[w.real, w.imag])
    np.testing.assert_allclose(matrix, expected, atol=1e-12)


def test_mirrored_points_give_a_proper_rotation(rng):
    points = rng.normal(size=(5, 2))
    matrix = align.estimate_similarity(points, points * np.array([-1.0, 1.0]))  # a reflection
    assert np.linalg.det(matrix[:, :2]) > 0  # the guard: no mirroring


def test_least_squares_beats_perturbations(rng):
    points = rng.normal(size=(5, 2)) * 20
    target = apply(similarity(1.3, 0.4, [5, -3]), points) + rng.normal(size=(5, 2))
    best = align.estimate_similarity(points, target)
    error = np.sum((apply(best, points) - target) ** 2)
    for _ in range(50):
        scale, angle = np.hypot(*best[:, 0]), math.atan2(best[1, 0], best[0, 0])
        other = similarity(scale * (1 + rng.normal() * 0.01), angle + rng.normal() * 0.01, best[:, 2] + rng.normal(size=2) * 0.1)
        assert np.sum((apply(other, points) - target) ** 2) >= error


def test_templates_follow_insightface_scaling():
    np.testing.assert_allclose(align.arcface_template(112), align.ARCFACE_TEMPLATE)
    np.testing.assert_allclose(align.arcface_template(224), align.ARCFACE_TEMPLATE * 2)
    np.testing.assert_allclose(align.arcface_template(128), align.ARCFACE_TEMPLATE + [8.0, 0.0])
    with pytest.raises(ValueError, match="multiple of 112 or of 128"):
        align.arcface_template(100)


def test_warp_matches_scipy_bilinear_with_a_black_border(rng):
    image = rng.uniform(0, 255, size=(40, 50, 3))
    matrix = similarity(1.2, 0.3, [4.0, -6.0])
    got = align.warp_affine(image, matrix, (45, 45))
    inverse = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    # scipy works in (row, column) = (y, x): swap the axes of the inverse map
    swap = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 1]])
    rows_columns = swap @ inverse @ swap
    for channel in range(3):
        want = ndimage.affine_transform(image[..., channel], rows_columns[:2, :2], offset=rows_columns[:2, 2],
                                        output_shape=(45, 45), order=1, mode="constant", cval=0.0)
        # SciPy zeroes a sample once it is half a pixel outside, OpenCV blends to black over a pixel: compare inside
        inner = ndimage.binary_erosion(want != 0, iterations=2)
        np.testing.assert_allclose(got[..., channel][inner], want[inner], atol=1e-9)
    assert got.dtype == image.dtype
    assert (align.warp_affine(np.full((10, 10), 200, np.uint8), similarity(1, 0, [30, 30]), (10, 10)) == 0).all()


def moved_crop(crop, rng):
    """The crop placed in a larger canvas by a known similarity; returns the canvas and the moved template."""
    matrix = similarity(rng.uniform(1.3, 2.0), rng.uniform(-0.5, 0.5), [rng.uniform(60, 100), rng.uniform(60, 100)])
    return align.warp_affine(crop, matrix, (360, 360)), apply(matrix, align.ARCFACE_TEMPLATE), matrix


def shift_between(a, b):
    """The translation (pixels) that best maps b onto a, by phase correlation."""
    a, b = a.mean(axis=2) - a.mean(), b.mean(axis=2) - b.mean()
    cross = np.fft.ifft2(np.fft.fft2(a) * np.conj(np.fft.fft2(b)))
    peak = np.array(np.unravel_index(np.argmax(np.abs(cross)), a.shape), dtype=float)
    peak[peak > np.array(a.shape) / 2] -= np.array(a.shape)[peak > np.array(a.shape) / 2]
    return peak


@needs_crops
def test_a_moved_crop_is_realigned_with_the_known_landmarks(rng):
    crops = sorted(CROPS.glob("*/*.jpg"))[:5]
    for path in crops:
        crop = read_rgb(path).astype(np.float64)
        canvas, landmarks, _ = moved_crop(crop, rng)
        realigned = align.align_face(canvas, landmarks)
        inner = (slice(8, -8), slice(8, -8))
        assert np.abs(realigned[inner] - crop[inner]).mean() < 4.0  # interpolation only
        np.testing.assert_array_equal(shift_between(crop, realigned), [0, 0])


@needs_crops
def test_a_moved_crop_is_realigned_by_detection_within_a_few_pixels(rng, detector):
    errors = []
    for path in sorted(CROPS.glob("*/*.jpg"))[:6]:
        crop = read_rgb(path)
        canvas, landmarks, _ = moved_crop(crop, rng)
        faces = align.detect_faces(canvas.astype(np.uint8), detector)
        face = align.choose_face(faces, canvas.shape, "largest", min_confidence=0.5)
        assert face is not None, path
        errors.append(np.linalg.norm(face.landmarks - landmarks, axis=1).mean() / 1.65)  # in crop pixels (about the mean scale)
        realigned = align.align_face(canvas.astype(np.uint8), face.landmarks)
        assert np.abs(shift_between(crop.astype(float), realigned.astype(float))).max() <= 3, path
    # the crops were aligned with another detector's landmarks (YuNet), whose points sit a few pixels
    # from MTCNN's; swapped or misread landmarks would be tens of pixels off
    assert np.median(errors) < 8.0, errors


def reference_landmarks():
    with open(RAW / "reference_landmarks.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    return {row["path"]: row for row in rows}


@needs_raw
def test_mtcnn_landmarks_agree_with_another_detector_on_raw_photos(detector):
    relative_errors = []
    for relative, row in reference_landmarks().items():
        if row["n_faces_detected"] != "1":
            continue
        photo = read_rgb(RAW / relative)
        face = align.choose_face(align.detect_faces(photo, detector), photo.shape, "largest", 0.5)
        assert face is not None, relative
        theirs = np.array(row["landmarks_5pt_xy"].split(), dtype=float).reshape(5, 2)
        eye_distance = np.linalg.norm(theirs[1] - theirs[0])
        relative_errors.append(np.linalg.norm(face.landmarks - theirs, axis=1).mean() / eye_distance)
    # same points in the same order: a swapped pair would be about one eye distance off
    assert len(relative_errors) >= 30
    assert max(relative_errors) < 0.35 and np.median(relative_errors) < 0.12, relative_errors


@needs_raw
def test_align_folder_writes_crops_and_a_log_and_resumes(tmp_path, detector):
    import tensorflow as tf

    source = tmp_path / "photos"
    identities = sorted(p for p in RAW.iterdir() if p.is_dir())[:2]
    for identity in identities:
        (source / identity.name).mkdir(parents=True)
        for photo in sorted(identity.glob("*.jpg"))[:3]:
            (source / identity.name / photo.name).write_bytes(photo.read_bytes())
    blank = np.full((200, 200, 3), 128, np.uint8)
    (source / identities[0].name / "blank.jpg").write_bytes(tf.io.encode_jpeg(blank).numpy())
    (source / identities[0].name / "broken.jpg").write_bytes(b"not a jpeg")

    calls = []

    class Counting:
        def detect_faces(self, image, **kwargs):
            calls.append(image.shape)
            return detector.detect_faces(image, **kwargs)

    result = align.align_folder(source, tmp_path / "aligned", detector=Counting(), progress=False)
    assert (result["aligned"], result["dropped"], result["skipped"]) == (6, 2, 0)
    with open(result["log"], newline="") as file:
        log = {row["path"]: row for row in csv.DictReader(file)}
    assert len(log) == 8
    assert log[f"{identities[0].name}/blank.jpg"]["reason"] == "no face"
    assert log[f"{identities[0].name}/broken.jpg"]["reason"].startswith("unreadable")
    crops = sorted((tmp_path / "aligned").glob("*/*.jpg"))
    assert len(crops) == 6 and all(read_rgb(path).shape == (112, 112, 3) for path in crops)
    # the crops resemble the dataset's own alignment of the same photos
    for path in crops:
        reference = CROPS / path.parent.name / path.name
        if reference.exists():
            assert np.abs(shift_between(read_rgb(reference).astype(float), read_rgb(path).astype(float))).max() <= 4

    calls.clear()
    again = align.align_folder(source, tmp_path / "aligned", detector=Counting(), progress=False)
    assert (again["aligned"], again["dropped"], again["skipped"]) == (0, 0, 8) and not calls

    from keras_margin import data

    folder = data.from_folder(str(tmp_path / "aligned"), data_dir=str(tmp_path / "tfds"))
    assert folder.num_classes == 2


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="source_dir"):
        align.align_folder(tmp_path / "missing", tmp_path / "out")
    with pytest.raises(ValueError, match="holds no images"):
        align.align_folder(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="face"):
        align.choose_face([], (10, 10, 3), rule="first")
    with pytest.raises(ValueError, match="landmarks"):
        align.align_face(np.zeros((10, 10, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="coincide"):
        align.estimate_similarity(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="RGB"):
        align.detect_faces(np.zeros((10, 10)), detector=object())
