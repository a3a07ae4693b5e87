"""keras_margin: Keras 3 layers and losses for deep face recognition.

The margin heads (ArcFace, CosFace, SphereFace, L-Softmax, combined) live in
`keras_margin.layers` and are re-exported here; their math is in
`keras_margin.margins`. Metric losses (contrastive, triplet) are in
`keras_margin.losses`.
"""

__version__ = "0.1.0"

from keras_margin import distances, layers, losses, margins
from keras_margin.layers import (
    ArcMarginHead,
    CenterLossLayer,
    CombinedMarginHead,
    CosMarginHead,
    LargeMarginHead,
    NormalizedDense,
    SphereMarginHead,
)

__all__ = [
    "ArcMarginHead",
    "CenterLossLayer",
    "CombinedMarginHead",
    "CosMarginHead",
    "LargeMarginHead",
    "NormalizedDense",
    "SphereMarginHead",
    "distances",
    "layers",
    "losses",
    "margins",
]
