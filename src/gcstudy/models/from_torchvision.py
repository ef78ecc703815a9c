"""torchvision's classification architectures by name, split into embedding and head.

``torchvision:<arch>`` builds ``torchvision.models.get_model(arch, weights=None,
num_classes=K)`` (randomly initialised as torchvision initialises it) and finds its head
structurally: the last ``nn.Linear`` in module order, which must give the K logits, and no
other linear layer may give K outputs (an auxiliary classifier, as in GoogLeNet and
Inception v3, would make "the" head ambiguous). The head is replaced by an identity inside
the network, so ``embed(x)`` is the flattened input of the head, and the head is kept as
``.head``: ``forward(x) == head(embed(x))`` equals the original network's output on the
same weights. An architecture without such a layer (SqueezeNet, whose classifier is a
convolution) is refused with a ValueError.

A 1-channel data set (MNIST, digits) is repeated to 3 channels inside ``embed``, so the
network stays torchvision's own (its state dict loads into torchvision unchanged) and the
Jacobian of f with respect to the 1-channel input is the sum over the three copies.
"""

import torch
import torchvision
from torch import nn

from gcstudy.study.networks import TORCHVISION
from gcstudy.study.spec import did_you_mean

RGB = 3


def architectures() -> list[str]:
    """The classification architectures of ``torchvision.models`` (not detection,
    segmentation, video, optical flow or quantized ones)."""
    return torchvision.models.list_models(module=torchvision.models)


def final_linear(network: nn.Module, arch: str, num_classes: int) -> str:
    """The qualified name of ``network``'s head: its last ``nn.Linear`` in module order,
    checked to be the only linear layer with ``num_classes`` outputs."""
    modules = list(network.named_modules())
    linears = [(name, m) for name, m in modules if isinstance(m, nn.Linear)]
    if not linears:
        weighted = [(n, m) for n, m in modules if list(m.parameters(recurse=False))]
        raise ValueError(
            f"{TORCHVISION}{arch}: no final linear layer to split off as the head (its last "
            f"layer with weights, {weighted[-1][0]!r}, is {type(weighted[-1][1]).__name__}, "
            "not nn.Linear); only architectures whose logits come from an nn.Linear are "
            "supported"
        )
    name, head = linears[-1]
    giving_logits = [n for n, m in linears if m.out_features == num_classes]
    if head.out_features != num_classes or giving_logits != [name]:
        raise ValueError(
            f"{TORCHVISION}{arch}: cannot tell its final linear layer: the last one, {name!r}, "
            f"has {head.out_features} outputs, and the layers with {num_classes} outputs "
            f"(the classes) are {giving_logits or 'none'} (an auxiliary classifier?)"
        )
    return name


class TorchvisionNet(nn.Module):
    """A torchvision architecture with ``embed`` (the input of its final linear layer,
    flattened) and ``head`` (that layer, ``num_classes`` outputs)."""

    def __init__(self, arch: str, num_classes: int, in_channels: int = RGB):
        super().__init__()
        if arch not in architectures():
            raise ValueError(
                f"{TORCHVISION}{arch}: torchvision {torchvision.__version__} has no "
                f"classification architecture {arch!r}{did_you_mean(arch, architectures())}"
                "; torchvision.models.list_models(module=torchvision.models) lists them"
            )
        if in_channels not in (1, RGB):
            raise ValueError(
                f"{TORCHVISION}{arch}: takes 1- or 3-channel images, got {in_channels} channels"
            )
        network = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
        self.head_name = name = final_linear(network, arch, num_classes)
        parent, _, attribute = name.rpartition(".")
        self.head = network.get_submodule(name)
        setattr(network.get_submodule(parent), attribute, nn.Identity())
        self.body = network
        self.in_channels = in_channels
        self.embedding_dim = self.head.in_features

    def load_torchvision_state_dict(self, state: dict) -> None:
        """Load a state dict of the original torchvision network (its keys, e.g. ``fc.weight``
        for ResNet's head) into ``body`` and ``head``; strict, like ``load_state_dict``."""
        prefix = self.head_name + "."
        head = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
        self.head.load_state_dict(head)
        self.body.load_state_dict({k: v for k, v in state.items() if not k.startswith(prefix)})

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding ``f(x)``: N x C x H x W -> N x embedding_dim (C = 1 is repeated to 3)."""
        if self.in_channels == 1:
            x = x.expand(-1, RGB, -1, -1)
        return torch.flatten(self.body(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))
