"""Every bad argument and input raises a ValueError that names it."""

import math

import numpy as np
import pytest

from keras_margin import layers

BAD_CONSTRUCTORS = [
    # (callable, the argument the message must name)
    (lambda: layers.NormalizedDense(0), "num_classes"),
    (lambda: layers.NormalizedDense(4, scale=0.0), "scale"),
    (lambda: layers.ArcMarginHead(10, scale=-1.0), "scale"),
    (lambda: layers.ArcMarginHead(10, scale=float("nan")), "scale"),
    (lambda: layers.CosMarginHead(10, scale=0.0), "scale"),
    (lambda: layers.CombinedMarginHead(10, scale=float("inf")), "scale"),
    (lambda: layers.ArcMarginHead(10, margin=-0.1), "margin"),
    (lambda: layers.ArcMarginHead(10, margin=math.pi), "margin"),  # no valid angle left
    (lambda: layers.ArcMarginHead(10, margin=4.0), "margin"),
    (lambda: layers.CosMarginHead(10, margin=-0.35), "margin"),
    (lambda: layers.CombinedMarginHead(10, m1=0.9), "m1"),
    (lambda: layers.CombinedMarginHead(10, m2=-0.5), "m2"),
    (lambda: layers.CombinedMarginHead(10, m2=math.pi), "m2"),
    (lambda: layers.CombinedMarginHead(10, m3=-0.1), "m3"),
    (lambda: layers.ArcMarginHead(10, fallback="clip"), "fallback"),
    (lambda: layers.CombinedMarginHead(10, fallback=None), "fallback"),
    (lambda: layers.ArcMarginHead(10, gradient="stop"), "gradient"),
    (lambda: layers.SphereMarginHead(10, margin=2.5), "margin"),
    (lambda: layers.SphereMarginHead(10, margin=0), "margin"),
    (lambda: layers.LargeMarginHead(10, margin=1.5), "margin"),
    (lambda: layers.LargeMarginHead(10, margin=-2), "margin"),
    (lambda: layers.SphereMarginHead(10, lambda_base=-1.0), "lambda_base"),
    (lambda: layers.SphereMarginHead(10, lambda_gamma=-0.1), "lambda_gamma"),
    (lambda: layers.LargeMarginHead(10, lambda_power=-1.0), "lambda_power"),
    (lambda: layers.LargeMarginHead(10, lambda_min=-5.0), "lambda_min"),
    (lambda: layers.ArcMarginHead(1), "num_classes"),
    (lambda: layers.CosMarginHead(2.5), "num_classes"),
    (lambda: layers.SphereMarginHead(True), "num_classes"),
    (lambda: layers.LargeMarginHead(0), "num_classes"),
    (lambda: layers.CombinedMarginHead("10"), "num_classes"),
    (lambda: layers.ArcMarginHead(10, num_subcenters=0), "num_subcenters"),
    (lambda: layers.LargeMarginHead(10, num_subcenters=3), "num_subcenters"),
]


@pytest.mark.parametrize("make,argument", BAD_CONSTRUCTORS)
def test_bad_constructor_arguments_raise_naming_the_argument(make, argument):
    with pytest.raises(ValueError, match=f"`?{argument}`?"):
        make()


HEAD_CLASSES = [layers.ArcMarginHead, layers.CosMarginHead, layers.CombinedMarginHead,
                layers.SphereMarginHead, layers.LargeMarginHead]


@pytest.mark.parametrize("head_cls", HEAD_CLASSES)
@pytest.mark.parametrize("shape", [(4,), (4, 3, 2)])
def test_embeddings_must_be_rank_2(head_cls, shape):
    with pytest.raises(ValueError, match="embeddings"):
        head_cls(5)(np.ones(shape, "float32"))


@pytest.mark.parametrize("head_cls", HEAD_CLASSES + [layers.NormalizedDense])
def test_embedding_dim_must_match_the_built_kernel(head_cls):
    layer = head_cls(5)
    layer(np.ones((2, 3), "float32"))
    with pytest.raises(ValueError, match="axis -1"):
        layer(np.ones((2, 4), "float32"))


@pytest.mark.parametrize("head_cls", HEAD_CLASSES)
@pytest.mark.parametrize(
    "labels,pattern",
    [
        (np.array([0, 1, 2]), "same batch size"),
        (np.array([[0, 1], [2, 3], [4, 0], [1, 2]]), r"\(batch,\) or \(batch, 1\)"),
        (np.array([0, 1, 2, 5]), r"\[0, 5\)"),
        (np.array([0, -1, 2, 3]), r"\[0, 5\)"),
        (np.array([0.0, 1.5, 2.0, 3.0], "float32"), "whole numbers"),
    ],
)
def test_bad_labels_raise_in_eager_mode(head_cls, labels, pattern):
    with pytest.raises(ValueError, match="labels") as info:
        head_cls(5)(np.ones((4, 3), "float32"), labels=labels)
    assert info.match(pattern)


def test_labels_batch_mismatch_is_caught_when_building_a_model():
    import keras

    embeddings = keras.Input((3,), batch_size=8)
    labels = keras.Input((), batch_size=4, dtype="int32")
    with pytest.raises(ValueError, match="same batch size"):
        layers.ArcMarginHead(5)(embeddings, labels=labels)
