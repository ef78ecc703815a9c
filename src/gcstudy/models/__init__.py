"""CIFAR-style networks with an explicit embedding: ``model(x) == model.head(model.embed(x))``.

``build(name, num_classes, in_channels=3, width=1.0)`` returns VGG-11, VGG-13 or ResNet-18
adapted to 32x32 inputs. The *embedding* ``f = model.embed`` is everything before the last
linear layer (512-d at width 1); its geometric complexity is what the study measures.
"""

from gcstudy.models.resnet import ResNet18
from gcstudy.models.vgg import VGG
from gcstudy.study.networks import MODELS, scaled


def build(name: str, num_classes: int, in_channels: int = 3, width: float = 1.0):
    """Build a CIFAR-style network for 32x32 inputs.

    Args:
        name: one of ``MODELS`` ("vgg11", "vgg13", "resnet18").
        num_classes: number of outputs of the linear head.
        in_channels: 1 for (padded) MNIST-like data, 3 for CIFAR.
        width: multiplier applied to every channel count (0.25 gives a ~16x cheaper net);
            the embedding has ``max(1, round(512 * width))`` dimensions.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    if name in ("vgg11", "vgg13"):
        return VGG(name, num_classes, in_channels, width)
    if name == "resnet18":
        return ResNet18(num_classes, in_channels, width)
    raise ValueError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")


__all__ = ["MODELS", "VGG", "ResNet18", "build", "scaled"]
