"""`load`: one split of a registered data set as uint8 tensors."""

from __future__ import annotations

import os

from gcstudy.data.labelled import LabelledImages, pool, restrict
from gcstudy.data.registry import DatasetSpec, check_split, get_spec


def load(name: str, root: str | os.PathLike | None, split: str) -> LabelledImages:
    """Load split `split` of data set `name` from the data root `root`.

    Returns LabelledImages: images uint8 N x C x 32 x 32 (0..255), labels int64 N with the
    parent data set's original class ids, and the names of all the parent's classes.

    Splits: `train` / `test` are the parent's official splits (for digits, every 5th
    example of each class is `test`); for a transfer data set they hold only its source
    classes. `source` / `val` / `target` (transfer data sets) pool train and test (train
    first) and keep the classes of that subset. `root` is ignored for digits and
    digits_fs (may be None) and required otherwise.

    Raises ValueError for an unknown name or split (naming the allowed ones) or a missing
    root, and DatasetNotFound (a FileNotFoundError) when files are missing or corrupt.
    """
    spec = get_spec(name)
    check_split(spec, split)
    if split in ("train", "test"):
        data = _official_split(spec, root, split)
    else:
        data = pool(_official_split(spec, root, "train"), _official_split(spec, root, "test"))
    if spec.transfer:
        data = restrict(data, spec.split_classes(split))
    return data


def _official_split(spec: DatasetSpec, root: str | os.PathLike | None, split: str):
    """The parent data set's own `train` or `test` split, all classes."""
    if spec.parent == "digits":
        from gcstudy.data.digits import load_digits

        return load_digits(split)
    if root is None:
        raise ValueError(f"dataset {spec.name!r} reads files: give the data root (--root DIR)")
    from gcstudy.data import torchvision_sets  # imports torchvision (seconds): only when needed

    return torchvision_sets.read(spec, root, train=split == "train")
