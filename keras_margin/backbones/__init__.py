"""Face-recognition backbones as functional Keras models: IResNet and MobileFaceNet.

They follow insightface's `arcface_torch` modules layer for layer (channels
last), take 112×112 images and return the embedding a margin head trains.
`count_macs` counts a model's multiply-accumulates from its layer shapes.
"""

from keras_margin.backbones.iresnet import iresnet, iresnet18, iresnet34, iresnet50, iresnet100, iresnet200
from keras_margin.backbones.macs import count_macs
from keras_margin.backbones.mobilefacenet import mobilefacenet, mobilefacenet_large

__all__ = [
    "count_macs",
    "iresnet",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "iresnet200",
    "mobilefacenet",
    "mobilefacenet_large",
]
