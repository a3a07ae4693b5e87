"""keras_margin: Keras 3 layers and losses for deep face recognition.

The margin heads (ArcFace, CosFace, SphereFace, L-Softmax, combined) live in
`keras_margin.layers` and are re-exported here; their math is in
`keras_margin.margins`.
"""

__version__ = "0.1.0"

from keras_margin import layers, margins
from keras_margin.layers import (
    ArcMarginHead,
    CombinedMarginHead,
    CosMarginHead,
    LargeMarginHead,
    NormalizedDense,
    SphereMarginHead,
)

__all__ = [
    "ArcMarginHead",
    "CombinedMarginHead",
    "CosMarginHead",
    "LargeMarginHead",
    "NormalizedDense",
    "SphereMarginHead",
    "layers",
    "margins",
]
