"""The labelled image set every loader returns, and the two set operations on it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch


class LabelledImages(NamedTuple):
    """Images with their labels, as one data set split.

    images: uint8, N x C x S x S (S = 32, or a folder set's image_size), pixel values
        0..255 (C = 1 for digits / MNIST / Fashion-MNIST, 3 (RGB) for CIFAR).
    labels: int64, N, the original class ids of the parent data set (never remapped, so a
        class subset such as digits 5-9 keeps the ids 5..9).
    classes: names of all classes of the parent data set, indexed by label id.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]


def restrict(data: LabelledImages, class_ids: Sequence[int]) -> LabelledImages:
    """The examples of `data` whose label is in `class_ids`, in their original order."""
    keep = torch.isin(data.labels, torch.as_tensor(list(class_ids), dtype=torch.int64))
    return LabelledImages(data.images[keep], data.labels[keep], data.classes)


def pool(*parts: LabelledImages) -> LabelledImages:
    """Concatenate splits of one data set (e.g. train then test), keeping their order."""
    if any(part.classes != parts[0].classes for part in parts):
        raise ValueError("can only pool splits of the same data set (class names differ)")
    return LabelledImages(
        torch.cat([part.images for part in parts]),
        torch.cat([part.labels for part in parts]),
        parts[0].classes,
    )
