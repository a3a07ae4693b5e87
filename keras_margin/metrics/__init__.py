"""Evaluation: the verification protocol (k-fold accuracy, ROC, EER, TAR@FAR), retrieval, angle statistics."""

from keras_margin.metrics.angles import inter_class_angle, intra_class_angle
from keras_margin.metrics.embeddings import flip_embeddings
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
    "flip_embeddings",
    "equal_error_rate",
    "inter_class_angle",
    "intra_class_angle",
    "pair_scores",
    "retrieval_report",
    "roc",
    "tar_at_far",
    "verification_report",
]
