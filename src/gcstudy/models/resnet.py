"""CIFAR-style ResNet-18 (He et al. 2016, as in the common CIFAR adaptations).

3x3 stride-1 stem without max-pool, BasicBlocks [2, 2, 2, 2] with 64/128/256/512 channels
(strides 1/2/2/2), global average pooling to the 512-d embedding, one linear head.
Parameter count at width 1, 10 classes, RGB: 11,173,962.
"""

import torch
from torch import nn

from gcstudy.study.networks import scaled


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 conv-BN projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 for 32x32 inputs with ``embed`` (pooled features) and ``head`` (linear)."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        stem = scaled(64, width)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, 1, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        blocks: list[nn.Module] = []
        channels = stem
        for base, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            out = scaled(base, width)
            blocks += [BasicBlock(channels, out, stride), BasicBlock(out, out, 1)]
            channels = out
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = channels
        self.head = nn.Linear(channels, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``f(x)``: N x C x 32 x 32 -> N x embedding_dim."""
        return torch.flatten(self.pool(self.blocks(self.stem(x))), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
