"""tf.data / tensorflow-datasets input pipelines for face-recognition training and evaluation.

- `from_tfds(name, ...)` and `from_folder(root_dir, ...)` give an
  `IdentityDataset`: images labelled by identity, read lazily.
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
- `keras_margin.data.align`: photos → aligned crops (MTCNN landmarks, the
  ArcFace template, `align_face`, `align_folder`; extra `[align]`).
"""

from keras_margin.data.folder_builder import IdentityFolder
from keras_margin.data.identity_dataset import IdentityDataset, as_head_inputs
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
    "VerificationPair",
    "as_head_inputs",
    "face_preprocessing",
    "from_folder",
    "from_insightface_rec",
    "from_tfds",
    "pairs_from_bin",
    "pairs_from_list",
    "pk_batches",
    "random_flip",
    "read_bin",
    "read_pairs_list",
    "resize_and_crop",
    "sample_pair_indices",
    "scale_to_unit_range",
    "verification_pairs",
    "write_insightface_rec",
    "write_pairs_bin",
]
