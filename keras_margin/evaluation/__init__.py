"""Evaluation protocols in NumPy, on embeddings computed once: the verification protocol (k-fold accuracy, ROC, EER,
TAR@FAR), 1:N identification (CMC, TPIR@FPIR), retrieval, face quality (MagFace's norm) and the error-versus-reject
curve, and the angle statistics of ArcFace's paper.

`flip_embeddings` computes the embeddings (flip-fused, unit length) from a Keras model; everything else takes
arrays. The Keras metrics that `model.compile(metrics=[...])` takes are in `keras_margin.metrics`.
"""

from keras_margin.evaluation.angles import inter_class_angle, intra_class_angle
from keras_margin.evaluation.embeddings import flip_embeddings
from keras_margin.evaluation.identification import identification_report
from keras_margin.evaluation.quality import embedding_quality, quality_filtered_verification
from keras_margin.evaluation.retrieval import retrieval_report
from keras_margin.evaluation.verification import (
    best_threshold,
    equal_error_rate,
    pair_scores,
    roc,
    tar_at_far,
    verification_report,
)

__all__ = [
    "best_threshold",
    "embedding_quality",
    "equal_error_rate",
    "flip_embeddings",
    "identification_report",
    "inter_class_angle",
    "intra_class_angle",
    "pair_scores",
    "quality_filtered_verification",
    "retrieval_report",
    "roc",
    "tar_at_far",
    "verification_report",
]
