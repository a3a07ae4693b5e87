"""keras_margin: Keras 3 layers and losses for deep face recognition.

The margin heads (ArcFace, CosFace, SphereFace, L-Softmax, combined, and the
adaptive CurricularFace, MagFace, AdaFace and ElasticFace) live in
`keras_margin.layers` and are re-exported here; their math is in
`keras_margin.margins`. Metric losses (contrastive, triplet) are in
`keras_margin.losses`, face backbones (IResNet, MobileFaceNet) in
`keras_margin.backbones`, Keras metrics in `keras_margin.metrics`. Input
pipelines (`keras_margin.data`), evaluation protocols (`keras_margin.evaluation`,
`keras_margin.callbacks`), export (`keras_margin.export`), serving an export
(`keras_margin.serving`) and figures (`keras_margin.plot`) are imported on
first use, so `import keras_margin` loads neither tensorflow-datasets nor
matplotlib.
"""

import importlib

__version__ = "0.1.0"

from keras_margin import backbones, distances, layers, losses, margins
from keras_margin.layers import (
    AdaFaceHead,
    ArcMarginHead,
    CenterLossLayer,
    CombinedMarginHead,
    CosMarginHead,
    CurricularFaceHead,
    ElasticArcMarginHead,
    ElasticCosMarginHead,
    LargeMarginHead,
    MagFaceHead,
    NormalizedDense,
    SphereMarginHead,
)

__all__ = [
    "AdaFaceHead",
    "ArcMarginHead",
    "CenterLossLayer",
    "CombinedMarginHead",
    "CosMarginHead",
    "CurricularFaceHead",
    "ElasticArcMarginHead",
    "ElasticCosMarginHead",
    "LargeMarginHead",
    "MagFaceHead",
    "NormalizedDense",
    "SphereMarginHead",
    "backbones",
    "callbacks",
    "data",
    "distances",
    "evaluation",
    "export",
    "layers",
    "losses",
    "margins",
    "metrics",
    "plot",
    "serving",
]

_LAZY_MODULES = ("callbacks", "data", "evaluation", "export", "metrics", "plot", "serving")


def __getattr__(name):
    if name in _LAZY_MODULES:
        return importlib.import_module(f"keras_margin.{name}")
    raise AttributeError(f"module 'keras_margin' has no attribute {name!r}")
