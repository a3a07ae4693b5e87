"""Serve an exported embedding model from Python: embed images, compare two faces, identify a face in a gallery.

`Embedder` loads what `keras_margin.export.export_embedding_model` wrote: a
SavedModel folder, an `.onnx` file (needs onnxruntime) or a `.tflite` file
(needs ai-edge-litert, or TensorFlow's interpreter). `load_images` reads
images, aligned to the ArcFace template first with `align=True` (MTCNN, the
`[align]` extra), resized and cropped to the model's input and scaled to
[−1, 1], as in training. The decision threshold is a cosine similarity: the
`threshold` argument, or the one stored with the export
(`export_embedding_model(..., threshold=...)`, e.g. a `verification_report`'s
`threshold`).

`identify` embeds the gallery (one sub-folder of images per identity) once and
caches the embeddings in `gallery/.keras_margin_gallery.npz`, recomputed when
the images or the embedder change. An identity's score is its best image's;
a probe whose best score is below the threshold is reported as unknown.

The command line over these functions is `keras_margin.cli`
(`python -m keras_margin compare | identify`).
"""

import hashlib
import json
import pathlib

import numpy as np

from keras_margin.export import read_metadata

__all__ = [
    "Embedder",
    "compare",
    "identify",
    "gallery_embeddings",
    "load_images",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
CACHE_NAME = ".keras_margin_gallery.npz"


class Embedder:
    """An exported embedding model in its runtime: `embedder(images)` → L2-normalized embeddings.

    A SavedModel folder runs in TensorFlow, an `.onnx` file in onnxruntime
    (CPU), a `.tflite` file in ai-edge-litert's interpreter (or TensorFlow's).
    `embedder(images, batch_size=64)` takes a float32 array
    `(n, height, width, channels)` preprocessed as in training and returns
    float64 unit-norm embeddings `(n, dim)`; `input_shape` is the model's
    `(height, width, channels)` and `metadata` what `read_metadata` returns.

    Args:
        path: what `keras_margin.export.export_embedding_model` wrote: a
            SavedModel folder, an `.onnx` or a `.tflite` file; another path
            raises a ValueError.

    Example:

    ```pycon
    >>> embedder = Embedder("embedder.onnx")
    >>> embeddings = embedder(load_images(["a.jpg", "b.jpg"], embedder.input_shape))
    ```
    """

    def __init__(self, path):
        self.path = pathlib.Path(path)
        if not self.path.exists():
            raise ValueError(f"`embedder` must be an exported model (SavedModel folder, .onnx, .tflite). "
                             f"Received: {str(self.path)!r}, which does not exist")
        self.metadata = read_metadata(self.path)
        suffix = self.path.suffix.lower()
        if self.path.is_dir():
            import tensorflow as tf

            self._model = tf.saved_model.load(str(self.path))
            signature = self._model.signatures["serve"]
            self.input_shape = tuple(signature.structured_input_signature[1]["images"].shape[1:])
            self._run = lambda images: self._model.serve(tf.constant(images))["embeddings"].numpy()
        elif suffix == ".onnx":
            import onnxruntime

            session = onnxruntime.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            self.input_shape = tuple(session.get_inputs()[0].shape[1:])
            self._run = lambda images: session.run(["embeddings"], {"images": images})[0]
        elif suffix == ".tflite":
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError:
                import tensorflow as tf

                Interpreter = tf.lite.Interpreter
            interpreter = Interpreter(model_path=str(self.path))
            runner = interpreter.get_signature_runner("serving_default")
            self.input_shape = tuple(interpreter.get_input_details()[0]["shape_signature"][1:])
            self._run = lambda images: runner(images=images)["embeddings"]
        else:
            raise ValueError(f"`embedder` must be a SavedModel folder, an .onnx or a .tflite file. "
                             f"Received: {str(self.path)!r}")
        self.input_shape = tuple(int(d) for d in self.input_shape)

    def __call__(self, images, batch_size=64):
        outputs = [self._run(np.ascontiguousarray(images[i:i + batch_size], dtype=np.float32))
                   for i in range(0, len(images), batch_size)]
        embeddings = np.concatenate(outputs).astype(np.float64)
        return embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)

    def fingerprint(self):
        """Changes when the exported files change (for the gallery cache)."""
        files = sorted(self.path.rglob("*")) if self.path.is_dir() else [self.path]
        digest = hashlib.sha256()
        for file in files:
            if file.is_file():
                stat = file.stat()
                digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        return digest.hexdigest()


def load_images(paths, input_shape, align=False, detector=None):
    """The images at `paths` as the model's float32 input: (aligned,) resized and cropped, in `[−1, 1]`.

    Args:
        paths: image files (JPEG, PNG, BMP or GIF).
        input_shape: the model's `(height, width, channels)`, e.g.
            `Embedder.input_shape`.
        align: detect the largest face (MTCNN, confidence ≥ 0.5) and align it
            to the ArcFace template first; default `False`. Needs the `[align]`
            extra; an image with no face raises a ValueError.
        detector: an `mtcnn.MTCNN` to reuse when aligning (default: a new one).

    Returns:
        float32 array `(len(paths), height, width, channels)`.

    Raises:
        ValueError: an image cannot be read, or no face is found in it.

    Example:

    ```pycon
    >>> embedder = Embedder("embedder.onnx")
    >>> images = load_images(["a.jpg", "b.jpg"], embedder.input_shape)
    ```
    """
    from keras_margin.data.images import load_image, load_image_batch

    height, width, channels = input_shape

    def decoded():  # one image at a time: load_image_batch shrinks each before the next is read
        nonlocal detector
        for path in paths:
            image = load_image(path, channels=3)
            if align:
                from keras_margin.data import align as alignment

                detector = detector or alignment.mtcnn_detector()
                face = alignment.choose_face(alignment.detect_faces(image, detector), image.shape, "largest", 0.5)
                if face is None:
                    raise ValueError(f"No face found in {str(path)!r}; drop --align to use the image as it is")
                # the model's size when the template is defined there (multiples of 112 or 128), else 112,
                # resized below
                size = height if height == width and (height % 112 == 0 or height % 128 == 0) else 112
                image = alignment.align_face(image, face.landmarks, size)
            yield image

    return load_image_batch(decoded(), (height, width), channels)


def threshold_of(embedder, given):
    if given is not None:
        return float(given)
    stored = embedder.metadata.get("threshold")
    return None if stored is None else float(stored)


def compare(embedder, first, second, align=False, threshold=None):
    """`(similarity, same or None, threshold)` of two image files.

    Args:
        embedder: an `Embedder`.
        first: path of the first image.
        second: path of the second image.
        align: detect and align the faces first (see `load_images`); default
            `False`.
        threshold: cosine-similarity threshold; default `None`: the one stored
            with the export, if any.

    Returns:
        `(similarity, same, threshold)`: the cosine similarity (a float),
        whether it reaches the threshold (`None` without a threshold), and the
        threshold used (or `None`).

    Example:

    ```pycon
    >>> similarity, same, threshold = compare(Embedder("embedder"), "a.jpg", "b.jpg", threshold=0.3)
    ```
    """
    a, b = embedder(load_images([first, second], embedder.input_shape, align))
    similarity = float(a @ b)
    threshold = threshold_of(embedder, threshold)
    return similarity, None if threshold is None else similarity >= threshold, threshold


def gallery_embeddings(embedder, gallery_dir, align=False):
    """`(identities, labels, embeddings)` of a gallery folder, from the cache when it is current.

    The embeddings are cached in `gallery_dir/.keras_margin_gallery.npz` and
    recomputed when the images, the exported model or `align` change.

    Args:
        embedder: an `Embedder`.
        gallery_dir: a folder with one sub-folder of images per identity
            (.jpg, .jpeg, .png, .bmp).
        align: detect and align the faces first (see `load_images`); default
            `False`.

    Returns:
        `(identities, labels, embeddings)`: the sorted identity names, an int
        array `(n,)` indexing them per image, and the unit-norm embeddings
        `(n, dim)`.

    Raises:
        ValueError: `gallery_dir` is not a folder, or holds no images in
            identity sub-folders.

    Example:

    ```pycon
    >>> identities, labels, embeddings = gallery_embeddings(Embedder("embedder"), "gallery/")
    ```
    """
    gallery_dir = pathlib.Path(gallery_dir)
    if not gallery_dir.is_dir():
        raise ValueError(f"`gallery` must be a folder of identity folders. Received: {str(gallery_dir)!r}")
    paths = sorted(p for p in gallery_dir.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"`gallery` holds no images in identity sub-folders: {str(gallery_dir)!r}")
    key = hashlib.sha256(json.dumps([embedder.fingerprint(), bool(align)] + [
        [p.relative_to(gallery_dir).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in paths]).encode()
    ).hexdigest()
    cache = gallery_dir / CACHE_NAME
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        if str(stored["key"]) == key:
            return list(stored["identities"]), stored["labels"], stored["embeddings"]
    identities = sorted({p.parent.name for p in paths})
    labels = np.array([identities.index(p.parent.name) for p in paths])
    embeddings = embedder(load_images(paths, embedder.input_shape, align))
    np.savez(cache, key=key, identities=np.array(identities), labels=labels, embeddings=embeddings)
    return identities, labels, embeddings


def identify(embedder, gallery_dir, probe, top_k=5, align=False, threshold=None):
    """The `top_k` gallery identities nearest the probe: `[(identity, similarity)]`, and the decision.

    An identity's similarity is that of its best-matching gallery image.

    Args:
        embedder: an `Embedder`.
        gallery_dir: a folder with one sub-folder of images per identity (see
            `gallery_embeddings`).
        probe: path of the image to identify.
        top_k: how many identities to return, ≥ 1; default 5.
        align: detect and align the faces first (see `load_images`); default
            `False`.
        threshold: cosine-similarity threshold; default `None`: the one stored
            with the export, if any.

    Returns:
        `(matches, best or "unknown" or None, threshold)`: `best` is the
        top identity when its similarity reaches the threshold, "unknown" below
        it, None without a threshold.

    Example:

    ```pycon
    >>> matches, decision, threshold = identify(Embedder("embedder"), "gallery/", "probe.jpg", top_k=3)
    ```
    """
    identities, labels, embeddings = gallery_embeddings(embedder, gallery_dir, align)
    [query] = embedder(load_images([probe], embedder.input_shape, align))
    similarity = embeddings @ query
    best = np.full(len(identities), -np.inf)
    np.maximum.at(best, labels, similarity)
    order = np.argsort(-best, kind="stable")[:top_k]
    matches = [(identities[i], float(best[i])) for i in order]
    threshold = threshold_of(embedder, threshold)
    decision = None if threshold is None else (matches[0][0] if matches[0][1] >= threshold else "unknown")
    return matches, decision, threshold
