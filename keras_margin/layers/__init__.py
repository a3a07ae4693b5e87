"""Keras layers of keras_margin: `NormalizedDense`, the margin heads, center loss and a fused BatchNormalization."""

from keras_margin.layers.ada_face_head import AdaFaceHead
from keras_margin.layers.arc_margin_head import ArcMarginHead
from keras_margin.layers.center_loss_layer import CenterLossLayer
from keras_margin.layers.combined_margin_head import CombinedMarginHead
from keras_margin.layers.cos_margin_head import CosMarginHead
from keras_margin.layers.curricular_face_head import CurricularFaceHead
from keras_margin.layers.elastic_margin_head import ElasticArcMarginHead, ElasticCosMarginHead
from keras_margin.layers.fused_batch_normalization import FusedBatchNormalization
from keras_margin.layers.large_margin_head import LargeMarginHead
from keras_margin.layers.mag_face_head import MagFaceHead
from keras_margin.layers.margin_head import MarginContext, ScaledCosineHead
from keras_margin.layers.normalized_dense import NormalizedDense
from keras_margin.layers.sphere_margin_head import SphereMarginHead

__all__ = [
    "AdaFaceHead",
    "ArcMarginHead",
    "CenterLossLayer",
    "CombinedMarginHead",
    "CosMarginHead",
    "CurricularFaceHead",
    "ElasticArcMarginHead",
    "ElasticCosMarginHead",
    "FusedBatchNormalization",
    "LargeMarginHead",
    "MagFaceHead",
    "MarginContext",
    "NormalizedDense",
    "ScaledCosineHead",
    "SphereMarginHead",
]
