"""Keras metrics of keras_margin: objects that `model.compile(metrics=[...])` takes.

`TargetAngle` streams the mean angle between embeddings and their class weights from a head's logits;
`LatestValue` reports the last value it was given (the margin heads log their margin factor and adaptive scale
with it). The NumPy evaluation protocols (verification, identification, retrieval, quality, angle statistics) are
in `keras_margin.evaluation`.
"""

from keras_margin.metrics.latest_value import LatestValue
from keras_margin.metrics.target_angle import TargetAngle

__all__ = [
    "LatestValue",
    "TargetAngle",
]

# Names that moved to keras_margin.evaluation; reachable here, with a DeprecationWarning, until the next release.
_MOVED_TO_EVALUATION = (
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
)


def __getattr__(name):
    if name in _MOVED_TO_EVALUATION:
        from keras_margin import evaluation
        from keras_margin._deprecation import warn_moved

        warn_moved(f"keras_margin.metrics.{name}", f"keras_margin.evaluation.{name}")
        return getattr(evaluation, name)
    raise AttributeError(f"module 'keras_margin.metrics' has no attribute {name!r}")
