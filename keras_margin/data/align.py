"""From photos to aligned faces: detection and 5 landmarks (MTCNN), a similarity to the ArcFace template, the warp.

The similarity transform and the warp are NumPy; detection uses the `mtcnn`
package (extra `[align]`: `pip install "keras_margin[align]"`), whose weights
ship in its wheel, so alignment works offline.

Landmarks are `(5, 2)` arrays of `(x, y)` pixel coordinates, in the order left
eye, right eye, nose tip, left mouth corner, right mouth corner, "left" meaning
the image's left. Pixel `(i, j)` (row, column) has its center at
`(x, y) = (j, i)`, the convention of OpenCV's `warpAffine`, which insightface
aligns with.
"""

import csv
import pathlib

import keras
import numpy as np

from keras_margin._validation import check_choice, check_number

ARCFACE_TEMPLATE = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
])
"""The five landmarks (x, y), in pixels, of insightface's ArcFace 112 × 112 crops.

The rows are the left eye, right eye, nose tip, left and right mouth corners."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
FACE_RULES = ("largest", "center")
LOG_FIELDS = ("path", "faces_found", "score", "rule", "status", "reason")


def arcface_template(image_size=112):
    """The ArcFace template for a square crop of `image_size`, scaled as insightface does.

    Sizes that are multiples of 112 scale the 112 template; multiples of 128
    scale it by size/128 and shift it right by 8·size/128 (the 112 template
    centred in a 128 crop).

    Args:
        image_size: side of the square crop in pixels, a positive multiple of
            112 or of 128 (another size raises a ValueError); default 112.

    Returns:
        float64 array `(5, 2)`.

    Example:

    ```pycon
    >>> arcface_template(224).shape
    (5, 2)
    ```
    """
    size = check_number("image_size", image_size, low=1, integer=True)
    if size % 112 == 0:
        return ARCFACE_TEMPLATE * (size / 112.0)
    if size % 128 == 0:
        ratio = size / 128.0
        return ARCFACE_TEMPLATE * ratio + np.array([8.0 * ratio, 0.0])
    raise ValueError(f"`image_size` must be a multiple of 112 or of 128. Received: image_size={image_size}")


def _points(name, points):
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2 or not np.isfinite(points).all():
        raise ValueError(f"`{name}` must be a finite array of at least two (x, y) points. Received shape {points.shape}")
    return points


def estimate_similarity(source, target):
    """The least-squares similarity (rotation, uniform scale, shift) taking `source` points to `target`.

    Umeyama's closed form (IEEE TPAMI 1991): with the centred points, the
    SVD U·S·Vᵀ of their cross-covariance gives the rotation U·D·Vᵀ, where D
    flips the last axis when det(U·Vᵀ) < 0, so the result never mirrors; the
    scale is trace(S·D) / (the source's variance).

    Args:
        source: `(n, 2)` points, n ≥ 2 (e.g. detected landmarks).
        target: `(n, 2)` points (e.g. `arcface_template()`).

    Returns:
        float64 `(2, 3)` matrix M with `target ≈ M @ [x, y, 1]`.

    Example:

    ```pycon
    >>> matrix = estimate_similarity(face.landmarks, arcface_template())
    >>> crop = warp_affine(photo, matrix, (112, 112))   # what align_face does
    ```
    """
    source, target = _points("source", source), _points("target", target)
    if source.shape != target.shape:
        raise ValueError(f"`source` and `target` must have the same shape. Received {source.shape} and {target.shape}")
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    source_centred, target_centred = source - source_mean, target - target_mean
    variance = np.mean(np.sum(source_centred**2, axis=1))
    if variance == 0:
        raise ValueError("`source` points all coincide, so no similarity is defined.")
    covariance = target_centred.T @ source_centred / len(source)
    u, singular, vt = np.linalg.svd(covariance)
    flip = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        flip[1, 1] = -1.0
    rotation = u @ flip @ vt
    scale = np.trace(np.diag(singular) @ flip) / variance
    shift = target_mean - scale * rotation @ source_mean
    return np.hstack([scale * rotation, shift[:, None]])


def warp_affine(image, matrix, size):
    """Samples `image` at the inverse of the affine `matrix`: bilinear, black outside.

    Output pixel `(x, y)` takes the value of the input at `M⁻¹·(x, y)`, as
    OpenCV's `warpAffine(image, M, size)` with linear interpolation and a
    zero border.

    Args:
        image: `(height, width)` or `(height, width, channels)` array.
        matrix: `(2, 3)` affine map from input to output coordinates.
        size: output `(height, width)`.

    Returns:
        array of `size` (and the image's channels), of the image's dtype
        (rounded for integer images).

    Example:

    ```pycon
    >>> shift = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])   # one pixel to the right
    >>> warp_affine(np.arange(9.0).reshape(3, 3), shift, (3, 3))
    array([[0., 0., 1.],
           [0., 3., 4.],
           [0., 6., 7.]])
    ```
    """
    image = np.asarray(image)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (2, 3):
        raise ValueError(f"`matrix` must have shape (2, 3). Received: {matrix.shape}")
    if image.ndim not in (2, 3):
        raise ValueError(f"`image` must be (height, width) or (height, width, channels). Received: {image.shape}")
    height, width = size
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    source_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    source_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    pixels = image.astype(np.float64)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    # pad by one black pixel all round, so neighbours outside the image read 0
    padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)))
    x0, y0 = np.floor(source_x), np.floor(source_y)
    fx, fy = (source_x - x0)[..., None], (source_y - y0)[..., None]

    def at(y, x):
        inside = (x >= -1) & (x <= image.shape[1]) & (y >= -1) & (y <= image.shape[0])
        values = padded[np.clip(y + 1, 0, padded.shape[0] - 1).astype(int), np.clip(x + 1, 0, padded.shape[1] - 1).astype(int)]
        return values * inside[..., None]

    out = ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
           + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))
    if image.ndim == 2:
        out = out[..., 0]
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    return out.astype(image.dtype)


def align_face(image, landmarks, image_size=112):
    """The aligned square crop of a face: its landmarks mapped onto the ArcFace template.

    Args:
        image: `(height, width, channels)` (or grey `(height, width)`) array.
        landmarks: `(5, 2)` landmarks in the order of this module's docstring.
        image_size: side of the crop (a multiple of 112 or 128).

    Returns:
        `(image_size, image_size[, channels])` array of the image's dtype.

    Example:

    ```pycon
    >>> face = detect_faces(photo)[0]
    >>> crop = align_face(photo, face.landmarks)        # 112 × 112, like insightface's crops
    ```
    """
    landmarks = _points("landmarks", landmarks)
    if landmarks.shape != (5, 2):
        raise ValueError(f"`landmarks` must have shape (5, 2). Received: {landmarks.shape}")
    template = arcface_template(image_size)
    return warp_affine(image, estimate_similarity(landmarks, template), (image_size, image_size))


class Face:
    """One detected face: `box` (x, y, width, height), `confidence` and `landmarks` `(5, 2)`.

    `area` is the box's area and `center` its center `(x, y)`.

    Args:
        box: `(x, y, width, height)` of the face's box, in pixels (stored as a
            float64 array).
        confidence: the detector's score, a float.
        landmarks: `(5, 2)` landmarks `(x, y)` in the order of this module's
            docstring (stored as a float64 array).
    """

    def __init__(self, box, confidence, landmarks):
        self.box = np.asarray(box, dtype=np.float64)
        self.confidence = float(confidence)
        self.landmarks = np.asarray(landmarks, dtype=np.float64)

    @property
    def area(self):
        """The box's area, width × height, as a float."""
        return float(self.box[2] * self.box[3])

    @property
    def center(self):
        """The box's center `(x, y)`, a float64 array `(2,)`."""
        return self.box[:2] + self.box[2:] / 2

    def __repr__(self):
        return f"Face(box={self.box.round(1).tolist()}, confidence={self.confidence:.3f})"


def mtcnn_detector():
    """An `mtcnn.MTCNN()` detector; a clear error without the `[align]` extra or off TensorFlow.

    The mtcnn package builds its networks with Keras and reads their outputs
    as TensorFlow tensors, so it runs on the TensorFlow backend only.

    Returns:
        An `mtcnn.MTCNN`, to pass as `detector` to `detect_faces` and
        `align_folder`.

    Raises:
        RuntimeError: the Keras backend is not TensorFlow.
        ImportError: the `mtcnn` package is not installed.

    Example:

    ```pycon
    >>> detector = mtcnn_detector()
    >>> faces = detect_faces(photo, detector)
    ```
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"Face detection (mtcnn) runs on the TensorFlow Keras backend only; this process uses {backend!r}. "
            "Run alignment with KERAS_BACKEND=tensorflow, or pass the five landmarks yourself "
            "(align_face(image, landmarks))."
        )
    try:
        from mtcnn import MTCNN
    except ImportError as error:
        raise ImportError(
            "Face detection needs the mtcnn package: pip install \"keras_margin[align]\" (or pip install mtcnn)."
        ) from error
    return MTCNN()


def detect_faces(image, detector=None):
    """All faces MTCNN finds in an RGB image, most confident first.

    Args:
        image: `(height, width, 3)` uint8 array.
        detector: an `mtcnn.MTCNN` (made once with `mtcnn_detector()` and
            reused: building one loads its three networks).

    Returns:
        A list of `Face`. Landmarks come from MTCNN's numpy output, which
        keeps sub-pixel positions (its JSON output rounds them).

    Example:

    ```pycon
    >>> faces = detect_faces(photo, mtcnn_detector())
    >>> crop = align_face(photo, faces[0].landmarks)   # the most confident face
    ```
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"`image` must be an RGB array (height, width, 3). Received: {image.shape}")
    detector = detector or mtcnn_detector()
    rows = np.asarray(detector.detect_faces(image, output_type="numpy"), dtype=np.float64).reshape(-1, 16)
    # columns: image index, x, y, width, height, confidence, x of the 5 landmarks, y of the 5 landmarks
    faces = [Face(row[1:5], row[5], np.stack([row[6:11], row[11:16]], axis=1)) for row in rows]
    return sorted(faces, key=lambda face: -face.confidence)


def choose_face(faces, image_shape, rule="largest", min_confidence=0.9):
    """The face `rule` picks among those at least `min_confidence`, or None.

    `"largest"`: the largest box; `"center"`: the box whose center is nearest
    the image's center.

    Args:
        faces: a list of `Face` (e.g. from `detect_faces`).
        image_shape: the image's shape, `(height, width, ...)`.
        rule: `"largest"` (default) or `"center"`; another value raises a
            ValueError.
        min_confidence: faces with a lower confidence are not chosen; default
            0.9.

    Returns:
        A `Face`, or `None` when no face reaches `min_confidence`.

    Example:

    ```pycon
    >>> face = choose_face(detect_faces(photo, detector), photo.shape, rule="center")
    >>> crop = None if face is None else align_face(photo, face.landmarks)
    ```
    """
    check_choice("face", rule, FACE_RULES)
    kept = [face for face in faces if face.confidence >= min_confidence]
    if not kept:
        return None
    if rule == "largest":
        return max(kept, key=lambda face: face.area)
    middle = np.array([image_shape[1], image_shape[0]], dtype=np.float64) / 2
    return min(kept, key=lambda face: float(np.sum((face.center - middle) ** 2)))


def align_folder(source_dir, target_dir, image_size=112, face="largest", min_confidence=0.9, detector=None,
                 log_name="alignment_log.csv", progress=True, jpeg_quality=95):
    """Aligns a folder of raw photos, one sub-folder per identity, into an identity folder of crops.

    Every image under `source_dir/<identity>/` is read, its faces detected,
    one chosen by `face` among those with confidence ≥ `min_confidence`,
    aligned to the ArcFace template and written as a JPEG to
    `target_dir/<identity>/<name>.jpg`, ready for `data.from_folder`.
    Each image gets one row in `target_dir/<log_name>`: its path, the
    number of faces found, the chosen face's score, the rule, `aligned` or
    `dropped`, and why (`no face`, `no face with confidence ≥ 0.9`, or the
    error that stopped reading it). Nothing is skipped silently.

    The log makes the run resumable: images already in it are not read
    again, so an interrupted run continues where it stopped.

    Args:
        source_dir: folder of identity folders of photos.
        target_dir: where the aligned identity folders and the log go.
        image_size: side of the crops.
        face: `"largest"` or `"center"`, the rule for photos with several faces.
        min_confidence: faces below it are not used.
        detector: an `mtcnn.MTCNN` to reuse (default: a new one).
        log_name: file name of the CSV log inside `target_dir`.
        progress: show a progress bar (tqdm).
        jpeg_quality: quality of the written crops.

    Returns:
        A dict with the counts `aligned`, `dropped`, `skipped` (already in
        the log) and the log's path.

    Example:

    ```pycon
    >>> counts = align_folder("raw_photos/", "aligned/", image_size=112)
    >>> faces = keras_margin.data.from_folder("aligned/")
    ```
    """
    import tensorflow as tf
    from tqdm import tqdm

    from keras_margin.data.images import load_image

    source_dir, target_dir = pathlib.Path(source_dir), pathlib.Path(target_dir)
    if not source_dir.is_dir():
        raise ValueError(f"`source_dir` must be an existing folder. Received: source_dir={str(source_dir)!r}")
    check_choice("face", face, FACE_RULES)
    min_confidence = check_number("min_confidence", min_confidence, low=0.0, high=1.0)
    jpeg_quality = check_number("jpeg_quality", jpeg_quality, low=1, high=100, integer=True)
    arcface_template(image_size)  # validates the size
    images = sorted(path for path in source_dir.glob("*/*") if path.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"`source_dir` holds no images in identity sub-folders ({', '.join(IMAGE_SUFFIXES)}): "
                         f"{str(source_dir)!r}")
    target_dir.mkdir(parents=True, exist_ok=True)
    log_path = target_dir / log_name
    done = set()
    if log_path.exists():
        with open(log_path, newline="") as file:
            done = {row["path"] for row in csv.DictReader(file)}
    counts = {"aligned": 0, "dropped": 0, "skipped": 0}
    new_log = not log_path.exists()
    with open(log_path, "a", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=LOG_FIELDS)
        if new_log:
            writer.writeheader()
        for path in tqdm(images, desc="aligning", unit="image", disable=not progress):
            relative = path.relative_to(source_dir).as_posix()
            if relative in done:
                counts["skipped"] += 1
                continue
            row = {"path": relative, "faces_found": 0, "score": "", "rule": face, "status": "dropped", "reason": ""}
            try:
                photo = load_image(path, channels=3)
            except ValueError as error:
                row["reason"] = f"unreadable: {str(error)[:300]}"
            else:
                detector = detector or mtcnn_detector()
                faces = detect_faces(photo, detector)
                chosen = choose_face(faces, photo.shape, face, min_confidence)
                row["faces_found"] = len(faces)
                if chosen is None:
                    row["reason"] = "no face" if not faces else f"no face with confidence ≥ {min_confidence:g}"
                else:
                    crop = align_face(photo, chosen.landmarks, image_size)
                    output = target_dir / path.parent.name / (path.stem + ".jpg")
                    output.parent.mkdir(parents=True, exist_ok=True)
                    output.write_bytes(tf.io.encode_jpeg(crop, quality=jpeg_quality).numpy())
                    row.update(score=f"{chosen.confidence:.4f}", status="aligned")
            counts[row["status"]] += 1
            writer.writerow(row)
            file.flush()
    return {**counts, "log": str(log_path)}


__all__ = [
    "ARCFACE_TEMPLATE",
    "Face",
    "align_face",
    "align_folder",
    "arcface_template",
    "choose_face",
    "detect_faces",
    "estimate_similarity",
    "mtcnn_detector",
    "warp_affine",
]
