"""Deprecated alias of `keras_margin.serving` (and `keras_margin.cli.main`); it goes in the next release.

`keras_margin.verify` held both the Python API of a served embedder and the
`python -m keras_margin` command. Import `Embedder`, `compare`, `identify`,
`gallery_embeddings` and `load_images` from `keras_margin.serving`, and
`main` from `keras_margin.cli`.
"""

from keras_margin._deprecation import warn_moved
from keras_margin.cli import main
from keras_margin.serving import (  # the module's constants and helper too, as `verify` had them
    CACHE_NAME,  # noqa: F401
    IMAGE_SUFFIXES,  # noqa: F401
    Embedder,
    compare,
    gallery_embeddings,
    identify,
    load_images,
    threshold_of,  # noqa: F401
)

__all__ = [
    "Embedder",
    "compare",
    "identify",
    "gallery_embeddings",
    "load_images",
    "main",
]

warn_moved("keras_margin.verify", "keras_margin.serving (and keras_margin.cli.main)")
