"""tf.data / tensorflow-datasets input pipelines for face-recognition training and evaluation.

- `IdentityDataset` is what every dataset offers, written once on a few
  primitives; `from_tfds(name, ...)`, `from_folder(root_dir, ...)` and
  `IdentityDataset.from_arrays` give a `StreamDataset` (a `tf.data` stream),
  `from_insightface_rec` a `RecordIODataset` (read by offset): images
  labelled by identity, read lazily.
- `IdentityDataset.split_identities` makes identity-disjoint train / test
  sets for open-set evaluation.
- `IdentityDataset.batches` feeds a model whose margin head takes the labels
  (`((images, labels), labels)`), or a metric loss (`(images, labels)`).
- `pk_batches`: P identities × K images per batch, for mined losses.
- `verification_pairs` (from held-out identities) and `read_pairs_list` +
  `pairs_from_list` (LFW `pairs.txt`) give `(image1, image2, same)`.
- `from_insightface_rec` / `write_insightface_rec`: insightface's `.rec`
  training sets, read by random access; `pairs_from_bin` / `write_pairs_bin`:
  its `.bin` verification sets. No MXNet needed.
- `face_preprocessing` and its parts: crop / resize, [-1, 1], random flips.
- The one image loader every reader uses: `decode_image` / `read_image`
  (tensors, inside `tf.data`), `load_image` / `load_image_batch` (NumPy).
- `keras_margin.data.align`: photos → aligned crops (MTCNN landmarks, the
  ArcFace template, `align_face`, `align_folder`; extra `[align]`).
"""

import importlib.util

if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tensorflow_datasets") is None:
    raise ImportError(
        "keras_margin.data builds tf.data pipelines and needs TensorFlow and tensorflow-datasets, which are not "
        "installed: pip install \"keras-margin[tensorflow]\" (the layers, losses, backbones and evaluation work "
        "without them)"
    )

from keras_margin.data.folder_builder import IdentityFolder
from keras_margin.data.identity_dataset import IdentityDataset, StreamDataset, as_head_inputs
from keras_margin.data.images import decode_image, load_image, load_image_batch, read_image
from keras_margin.data.insightface_bin import pairs_from_bin, read_bin, write_pairs_bin
from keras_margin.data.insightface_rec import RecordIODataset, from_insightface_rec, write_insightface_rec
from keras_margin.data.pairs import (
    VerificationPair,
    pairs_from_list,
    read_pairs_list,
    sample_pair_indices,
    verification_pairs,
)
from keras_margin.data.pk_sampler import pk_batches
from keras_margin.data.recordio import RecordFile, RecordIOError
from keras_margin.data.preprocessing import face_preprocessing, random_flip, resize_and_crop, scale_to_unit_range
from keras_margin.data.sources import from_folder, from_tfds

__all__ = [
    "IdentityDataset",
    "IdentityFolder",
    "RecordFile",
    "RecordIODataset",
    "RecordIOError",
    "StreamDataset",
    "VerificationPair",
    "as_head_inputs",
    "decode_image",
    "face_preprocessing",
    "from_folder",
    "from_insightface_rec",
    "from_tfds",
    "load_image",
    "load_image_batch",
    "pairs_from_bin",
    "pairs_from_list",
    "pk_batches",
    "random_flip",
    "read_bin",
    "read_image",
    "read_pairs_list",
    "resize_and_crop",
    "sample_pair_indices",
    "scale_to_unit_range",
    "verification_pairs",
    "write_insightface_rec",
    "write_pairs_bin",
]
