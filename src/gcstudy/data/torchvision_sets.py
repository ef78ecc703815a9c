"""MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 read (and downloaded) through torchvision.

torchvision's own on-disk formats and parsers are used unchanged: idx files under
`<root>/MNIST/raw/` and `<root>/FashionMNIST/raw/`, pickle batches under
`<root>/cifar-10-batches-py/` and `<root>/cifar-100-python/` (md5-checked by torchvision).
mnist_5k is read by the same `MNIST` class from `<root>/mnist_5k/MNIST/raw/` (torchvision's
root is then `<root>/mnist_5k`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from gcstudy.data.errors import not_found, one_line
from gcstudy.data.labelled import LabelledImages
from gcstudy.study.datasets import DatasetSpec

TORCHVISION_CLASSES: dict[str, type[torchvision.datasets.VisionDataset]] = {
    "mnist": torchvision.datasets.MNIST,
    "mnist_5k": torchvision.datasets.MNIST,
    "fashion_mnist": torchvision.datasets.FashionMNIST,
    "cifar10": torchvision.datasets.CIFAR10,
    "cifar100": torchvision.datasets.CIFAR100,
}
MNIST_PAD = 2  # 28 x 28 zero-padded by 2 pixels each side to 32 x 32

# What torchvision's readers raise on a missing, truncated or malformed file.
_READ_ERRORS = (
    RuntimeError,
    OSError,
    EOFError,
    pickle.UnpicklingError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AssertionError,
)


def read(spec: DatasetSpec, root: str | os.PathLike, train: bool) -> LabelledImages:
    """The official train (or test) split of `spec.parent` from the files under `root`.

    Returns uint8 images N x C x 32 x 32 (MNIST-style 28 x 28 images zero-padded by 2
    pixels each side; CIFAR images in RGB channel order), int64 labels and the class names.
    Raises DatasetNotFound if the files are missing, corrupt or inconsistent.
    """
    dataset_class = TORCHVISION_CLASSES[spec.parent]
    try:
        dataset = dataset_class(str(torchvision_root(spec, root)), train=train, download=False)
    except _READ_ERRORS as error:
        raise not_found(spec, root, f"files missing or corrupt ({one_line(error)})") from error
    if isinstance(dataset, torchvision.datasets.MNIST):
        images = F.pad(dataset.data[:, None], (MNIST_PAD,) * 4)
    else:
        images = torch.from_numpy(np.ascontiguousarray(dataset.data.transpose(0, 3, 1, 2)))
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    classes = tuple(dataset.classes)
    problem = _inconsistency(spec, images, labels, classes)
    if problem:
        raise not_found(spec, root, f"corrupt files ({problem})")
    return LabelledImages(images, labels, classes)


def torchvision_root(spec: DatasetSpec, root: str | os.PathLike) -> Path:
    """The root torchvision's class is given: the folder above `<ClassName>/raw` for the
    MNIST family, above the batch folder for CIFAR (the data root itself, except for
    mnist_5k)."""
    folder = spec.folder_path(root)
    return folder.parents[1] if spec.folder.endswith("/raw") else folder.parent


def download(spec: DatasetSpec, root: str | os.PathLike) -> None:
    """Fetch `spec.parent`'s files into `root` with torchvision (no-op if already there)."""
    train_split_reader = TORCHVISION_CLASSES[spec.parent]
    train_split_reader(os.fspath(root), train=True, download=True)


def _inconsistency(
    spec: DatasetSpec, images: torch.Tensor, labels: torch.Tensor, classes: tuple[str, ...]
) -> str:
    """What is wrong with data read from disk, or "" if it matches `spec`."""
    expected = (spec.channels, spec.image_size, spec.image_size)
    if images.shape[1:] != expected or images.dtype != torch.uint8:
        return f"images of shape {tuple(images.shape[1:])}, expected {expected}"
    if len(images) != len(labels):
        return f"{len(images)} images but {len(labels)} labels"
    if len(classes) != spec.num_classes:
        return f"{len(classes)} class names, expected {spec.num_classes}"
    if len(labels) and not 0 <= int(labels.min()) <= int(labels.max()) < spec.num_classes:
        return f"labels outside 0..{spec.num_classes - 1}"
    return ""
