"""Networks with an explicit embedding: ``model(x) == model.head(model.embed(x))``.

``build(name, num_classes, in_channels=3, width=1.0)`` returns VGG-11, VGG-13, ResNet-18 or
ResNet-50 in their CIFAR-style forms (3x3 first convolutions, no early downsampling; 32x32
and 84x84 inputs), or a torchvision architecture named ``torchvision:<arch>``. The
*embedding* ``f = model.embed`` is everything before the last linear layer (512-d for VGG
and ResNet-18, 2048-d for ResNet-50, at width 1); its geometric complexity is what the
study measures. docs/science.md#networks describes them.
"""

from gcstudy.models.resnet import ARCHITECTURES as RESNETS
from gcstudy.models.resnet import ResNet
from gcstudy.models.vgg import CONFIGS as VGGS
from gcstudy.models.vgg import VGG
from gcstudy.study.networks import MODELS, check_model_name, scaled, torchvision_arch


def build(name: str, num_classes: int, in_channels: int = 3, width: float = 1.0):
    """Build a network.

    Args:
        name: one of ``MODELS`` ("vgg11", "vgg13", "resnet18", "resnet50") or
            ``torchvision:<arch>``.
        num_classes: number of outputs of the linear head.
        in_channels: 1 for (padded) MNIST-like data, 3 for CIFAR.
        width: multiplier applied to every channel count (0.25 gives a ~16x cheaper net);
            the embedding has ``gcstudy.study.networks.embedding_dim(name, width)``
            dimensions. A torchvision architecture takes width 1 only.
    """
    try:
        check_model_name(name)
    except ValueError as error:
        raise ValueError(f"unknown model {name!r}; {error}") from None
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if not width > 0:
        raise ValueError(f"width must be > 0, got {width}")
    arch = torchvision_arch(name)
    if arch is not None:
        if width != 1:
            raise ValueError(f"{name} takes width 1 only (torchvision's own network), got {width}")
        from gcstudy.models.from_torchvision import TorchvisionNet  # imports torchvision

        return TorchvisionNet(arch, num_classes, in_channels)
    if name in VGGS:
        return VGG(name, num_classes, in_channels, width)
    assert name in RESNETS, f"{name} is in MODELS but has no builder"
    return ResNet(name, num_classes, in_channels, width)


def build_shapes(name: str, num_classes: int, in_channels: int = 3, width: float = 1.0):
    """``build``, on torch's meta device where it can be: shapes only, no memory and no
    arithmetic (a torchvision network in about 0.1 s), so that a workflow can refuse a
    network it cannot build before any job. An architecture whose initialisation reads
    numbers back (torchvision's RegNets) is built on the CPU instead."""
    import torch

    try:
        with torch.device("meta"):
            return build(name, num_classes, in_channels, width)
    except RuntimeError:  # "Cannot copy out of meta tensor; no data!"
        return build(name, num_classes, in_channels, width)


__all__ = ["MODELS", "VGG", "ResNet", "build", "build_shapes", "scaled"]
