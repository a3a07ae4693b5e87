"""A tensorflow-datasets builder for a folder with one sub-folder per identity."""

import os
import re

import tensorflow as tf
import tensorflow_datasets as tfds

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


class IdentityFolder(tfds.core.GeneratorBasedBuilder):
    """Prepares `root_dir/<identity>/<image>` as a tfds dataset with one `train` split.

    This is the layout face datasets ship in (LFW, CASIA-WebFace, ORL, ...).
    `download_and_prepare()` writes the images, unchanged, into tfds record
    files under `data_dir/identity_folder/<config name>/1.0.0/`; from then on
    the dataset is read like any tfds dataset, without the original folder.
    Identities are the sub-folder names, sorted, and become the `ClassLabel`
    names; files with other extensions than .jpg, .jpeg, .png, .bmp and .gif
    are ignored.

    Args:
        root_dir: the folder holding one sub-folder per identity.
        channels: 1 (grayscale) or 3 (RGB); images are converted on decoding.
        config_name: name of the prepared copy (default: the folder's base
            name, e.g. `orl`), so two folders with the same base name need
            different names.
        **kwargs: passed to `tfds.core.DatasetBuilder` (e.g. `data_dir`).

    Features: `image` (uint8, `(None, None, channels)`), `label`
    (`ClassLabel` of the identity names) and `image/filename`
    (`"<identity>/<file>"`).

    Example:

    ```pycon
    >>> builder = IdentityFolder("faces/orl", data_dir="/tmp/tfds", channels=1)
    >>> builder.download_and_prepare()
    >>> ds = builder.as_dataset(split="train")
    ```
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Images and identity labels from a folder per identity."}

    def __init__(self, root_dir, *, channels=3, config_name=None, **kwargs):
        root_dir = os.path.abspath(os.path.expanduser(os.fspath(root_dir)))
        if not tf.io.gfile.isdir(root_dir):
            raise ValueError(f"`root_dir` must be an existing folder. Received: root_dir={root_dir!r}")
        if channels not in (1, 3):
            raise ValueError(f"`channels` must be one of (1, 3). Received: channels={channels!r}")
        self._root_dir = root_dir
        self._channels = channels
        self._identities = sorted(
            entry for entry in tf.io.gfile.listdir(root_dir)
            if tf.io.gfile.isdir(os.path.join(root_dir, entry))
        )
        if not self._identities:
            raise ValueError(f"`root_dir` has no identity sub-folders. Received: root_dir={root_dir!r}")
        name = config_name or re.sub(r"[^a-z0-9_]+", "_", os.path.basename(root_dir).lower()).strip("_")
        config = tfds.core.BuilderConfig(name=name or "faces", description=f"identities in {root_dir}")
        super().__init__(config=config, **kwargs)

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, self._channels)),
                "label": tfds.features.ClassLabel(names=self._identities),
                "image/filename": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for identity in self._identities:
            folder = os.path.join(self._root_dir, identity)
            for file_name in sorted(tf.io.gfile.listdir(folder)):
                if not file_name.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                key = f"{identity}/{file_name}"
                yield key, {
                    "image": os.path.join(folder, file_name),
                    "label": identity,
                    "image/filename": key,
                }
