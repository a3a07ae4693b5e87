"""Evaluation: the verification protocol (k-fold accuracy, ROC, EER, TAR@FAR), retrieval, angle statistics,
face quality (MagFace's norm) and the error-versus-reject curve."""

from keras_margin.metrics.angles import inter_class_angle, intra_class_angle
from keras_margin.metrics.embeddings import flip_embeddings
from keras_margin.metrics.identification import identification_report
from keras_margin.metrics.quality import embedding_quality, quality_filtered_verification
from keras_margin.metrics.retrieval import retrieval_report
from keras_margin.metrics.target_angle import TargetAngle
from keras_margin.metrics.verification import (
    best_threshold,
    equal_error_rate,
    pair_scores,
    roc,
    tar_at_far,
    verification_report,
)

__all__ = [
    "TargetAngle",
    "best_threshold",
    "embedding_quality",
    "flip_embeddings",
    "identification_report",
    "equal_error_rate",
    "inter_class_angle",
    "intra_class_angle",
    "pair_scores",
    "quality_filtered_verification",
    "retrieval_report",
    "roc",
    "tar_at_far",
    "verification_report",
]
