"""PyTorch versions of IResNet and MobileFaceNet, for `bench_backbones.py` only (torch is not a dependency).

Written from the same architecture description as `keras_margin.backbones`
(insightface's `arcface_torch` modules: channels first, PyTorch padding), so
the benchmark can put the framework insightface trains in beside Keras.
"""

import math

import torch
from torch import nn

IRESNET_BLOCKS = {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3),
                  "iresnet100": (3, 13, 30, 3)}


class ImprovedBlock(nn.Module):
    def __init__(self, channels_in, channels, stride):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(channels_in, eps=1e-5),
            nn.Conv2d(channels_in, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels, eps=1e-5),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels, eps=1e-5),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or channels_in != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(channels_in, channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(channels, eps=1e-5))

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def iresnet(blocks, embedding_dim=512, size=112):
    layers = [nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64, eps=1e-5), nn.PReLU(64)]
    channels_in = 64
    for channels, count in zip((64, 128, 256, 512), blocks):
        for block in range(count):
            layers.append(ImprovedBlock(channels_in, channels, 2 if block == 0 else 1))
            channels_in = channels
    spatial = math.ceil(size / 16)
    embedding = nn.BatchNorm1d(embedding_dim, eps=1e-5)
    embedding.weight.requires_grad = False
    layers += [nn.BatchNorm2d(512, eps=1e-5), nn.Flatten(), nn.Linear(512 * spatial * spatial, embedding_dim),
               embedding]
    return nn.Sequential(*layers)


def conv_block(channels_in, channels, kernel, stride=1, groups=1, activation=True):
    layers = [nn.Conv2d(channels_in, channels, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(channels)]
    return layers + [nn.PReLU(channels)] if activation else layers


class DepthwiseBlock(nn.Module):
    def __init__(self, channels_in, channels, expansion, stride=1, residual=False):
        super().__init__()
        self.residual = residual
        self.body = nn.Sequential(*conv_block(channels_in, expansion, 1),
                                  *conv_block(expansion, expansion, 3, stride, groups=expansion),
                                  *conv_block(expansion, channels, 1, activation=False))

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilefacenet(embedding_dim=512, blocks=(1, 4, 6, 2), scale=2):
    c = 64 * scale
    layers = conv_block(3, c, 3, 2)
    layers += conv_block(c, c, 3, groups=64) if blocks[0] == 1 else [
        DepthwiseBlock(c, c, 128, residual=True) for _ in range(blocks[0])]
    for channels_in, channels, expansion, inner, count in ((c, c, 128, 128, blocks[1]),
                                                           (c, 2 * c, 256, 256, blocks[2]),
                                                           (2 * c, 2 * c, 512, 256, blocks[3])):
        layers.append(DepthwiseBlock(channels_in, channels, expansion, stride=2))
        layers += [DepthwiseBlock(channels, channels, inner, residual=True) for _ in range(count)]
    layers += conv_block(2 * c, 512, 1)
    layers += [nn.Conv2d(512, 512, 7, groups=512, bias=False), nn.BatchNorm2d(512), nn.Flatten(),
               nn.Linear(512, embedding_dim, bias=False), nn.BatchNorm1d(embedding_dim)]
    return nn.Sequential(*layers)


def torch_backbone(name):
    if name in IRESNET_BLOCKS:
        return iresnet(IRESNET_BLOCKS[name])
    if name == "mobilefacenet":
        return mobilefacenet()
    raise ValueError(f"no PyTorch version of {name!r}")


def arcface_logits(embeddings, kernel, labels, scale=16.0, margin=0.5):
    """s·cos(θ + m) at the target, s·cos θ elsewhere (the package's ArcMarginHead defaults)."""
    cosine = nn.functional.normalize(embeddings) @ nn.functional.normalize(kernel, dim=0)
    cosine = cosine.clamp(-1 + 1e-7, 1 - 1e-7)
    target = torch.cos(torch.acos(cosine.gather(1, labels[:, None])) + margin)
    return scale * cosine.scatter(1, labels[:, None], target)
