"""CIFAR-style VGG: 3x3 conv + BatchNorm + ReLU stacks, five 2x2 max-pools, one linear head.

A 32x32 input is pooled five times to 1x1, so the output of the last stage is the 512-d
embedding (``512 * width`` channels). A global average pool follows the last stage so that
larger inputs give the same embedding size (84x84 -> 2x2 -> averaged to 1x1); at 32x32 it
averages one value, an identity bit for bit (tests/test_models.py), so the CIFAR-size
networks compute exactly what they computed without it. Parameter counts at width 1,
10 classes, RGB: VGG-11 9,231,114 and VGG-13 9,416,010.
"""

import torch
from torch import nn

from gcstudy.study.networks import scaled

# Channel counts per conv layer; "M" is a 2x2 max-pool (Simonyan & Zisserman, configs A and B).
CONFIGS = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
}


class VGG(nn.Module):
    """VGG-11/13 with ``embed`` (conv stack, globally pooled) and ``head`` (linear)."""

    def __init__(self, name: str, num_classes: int, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIGS[name]:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                continue
            out = scaled(item, width)
            layers += [
                nn.Conv2d(channels, out, kernel_size=3, padding=1),
                nn.BatchNorm2d(out),
                nn.ReLU(inplace=True),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.embedding_dim = channels
        self.head = nn.Linear(channels, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``f(x)``: N x C x H x W -> N x embedding_dim."""
        return torch.flatten(self.pool(self.features(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
