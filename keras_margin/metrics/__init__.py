"""Evaluation: the verification protocol (k-fold accuracy, ROC, EER, TAR@FAR) and angle statistics."""

from keras_margin.metrics.angles import inter_class_angle, intra_class_angle
from keras_margin.metrics.verification import (
    best_threshold,
    equal_error_rate,
    pair_scores,
    roc,
    tar_at_far,
    verification_report,
)

__all__ = [
    "best_threshold",
    "equal_error_rate",
    "inter_class_angle",
    "intra_class_angle",
    "pair_scores",
    "roc",
    "tar_at_far",
    "verification_report",
]
