"""CIFAR-style ResNets (He et al. 2016, as in the common CIFAR adaptations).

A 3x3 stride-1 stem without max-pool, four stages of residual blocks with 64/128/256/512
base channels (strides 1/2/2/2), global average pooling to the embedding, one linear head.

- ResNet-18: BasicBlocks [2, 2, 2, 2] (two 3x3 convs, expansion 1), 512-d embedding;
  11,173,962 parameters at width 1, 10 classes, RGB.
- ResNet-50: Bottlenecks [3, 4, 6, 3] (1x1, 3x3, 1x1 convs, expansion 4), 2,048-d
  embedding; 23,520,842 parameters with 10 classes and 23,705,252 with 100 (as in
  kuangliu/pytorch-cifar and weiaicunzai/pytorch-cifar100; tests/test_models.py counts them).

The global average pool makes the embedding independent of the input size (32x32, 84x84).
"""

import torch
from torch import nn

from gcstudy.study.networks import scaled


def conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> list:
    """A bias-free ``kernel`` x ``kernel`` convolution ("same" padding) and its BatchNorm."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)
    return [conv, nn.BatchNorm2d(out_channels)]


def shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    """The identity, or a 1x1 conv-BN projection where the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return nn.Sequential()
    return nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers (the first with the stride) around a shortcut; ``base``
    channels at width 1 (``out_channels = scaled(expansion * base, width)``)."""

    expansion = 1

    def __init__(self, in_channels: int, base: int, stride: int, width: float):
        super().__init__()
        self.out_channels = channels = scaled(self.expansion * base, width)
        self.conv1, self.bn1 = conv_bn(in_channels, channels, 3, stride)
        self.conv2, self.bn2 = conv_bn(channels, channels, 3)
        self.shortcut = shortcut(in_channels, channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 (to ``base`` channels at width 1), 3x3 (with the stride), 1x1 (expanding to
    ``out_channels = scaled(expansion * base, width)``) conv-BN layers around a shortcut."""

    expansion = 4

    def __init__(self, in_channels: int, base: int, stride: int, width: float):
        super().__init__()
        channels = scaled(base, width)
        self.out_channels = out_channels = scaled(self.expansion * base, width)
        self.conv1, self.bn1 = conv_bn(in_channels, channels, 1)
        self.conv2, self.bn2 = conv_bn(channels, channels, 3, stride)
        self.conv3, self.bn3 = conv_bn(channels, out_channels, 1)
        self.shortcut = shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return torch.relu(out + self.shortcut(x))


# Name -> (block, blocks per stage).
ARCHITECTURES = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
}
STAGES = ((64, 1), (128, 2), (256, 2), (512, 2))  # (base channels, stride of its first block)


class ResNet(nn.Module):
    """A CIFAR-style ResNet (``ARCHITECTURES``) with ``embed`` (pooled features) and
    ``head`` (linear)."""

    def __init__(self, name: str, num_classes: int, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        block, depths = ARCHITECTURES[name]
        stem = scaled(64, width)
        self.stem = nn.Sequential(*conv_bn(in_channels, stem, 3), nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        channels = stem
        for (base, stride), depth in zip(STAGES, depths, strict=True):
            for index in range(depth):
                blocks.append(block(channels, base, stride if index == 0 else 1, width))
                channels = blocks[-1].out_channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = channels
        self.head = nn.Linear(channels, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``f(x)``: N x C x H x W -> N x embedding_dim."""
        return torch.flatten(self.pool(self.blocks(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
