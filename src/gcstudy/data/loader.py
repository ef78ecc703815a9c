"""`load`: one split of a registered data set as uint8 tensors."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from gcstudy.data.labelled import LabelledImages, pool, restrict
from gcstudy.study.datasets import DatasetSpec, check_split, get_spec


def load(name: str, root: str | os.PathLike | None, split: str) -> LabelledImages:
    """Load split `split` of data set `name` from the data root `root`.

    Returns LabelledImages: images uint8 N x C x S x S (0..255; S = the spec's image_size,
    32 but for folder sets), labels int64 N with the parent data set's original class ids,
    and the names of all the parent's classes.

    Splits: `train` / `test` are the parent's official splits (for digits, every 5th
    example of each class is `test`; for mnist_5k, a seeded stratified 400 / 100 per digit;
    for glyphs, every 6th instance of a class); for a transfer data set they hold only its
    source classes. `source` / `val` / `target` (transfer data sets) pool train and test
    (train first) and keep the classes of that subset. `root` is ignored for digits and
    digits_fs (may be None) and required otherwise. A generated data set (mnist_5k, glyphs)
    is written under `root` on first use, a folder set (mini_imagenet, a declared set: its
    name is known from the config, or from its prepared copy under `root`) prepared there
    on first use (gcstudy.data.image_sets).

    Splits are read once per process (a job that trains several runs reads its data once);
    callers must not modify the returned tensors in place.

    Raises ValueError for an unknown name or split (naming the allowed ones) or a missing
    root, and DatasetNotFound (a FileNotFoundError) when files are missing or corrupt.
    """
    spec = get_spec(name, root)
    check_split(spec, split)
    if spec.parent != "digits" and root is None:
        raise ValueError(f"dataset {spec.name!r} reads files: give the data root (--root DIR)")
    return _load(spec, None if root is None else str(Path(root).expanduser().absolute()), split)


@lru_cache(maxsize=16)
def _load(spec: DatasetSpec, root: str | None, split: str) -> LabelledImages:
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
    if spec.from_folder:
        from gcstudy.data import image_sets

        return image_sets.read(spec, root, split)
    if spec.generated:
        from gcstudy.data.generated import ensure

        folder = ensure(spec, root)
        if spec.parent == "glyphs":
            from gcstudy.data import glyphs

            return glyphs.read(folder, split)
    from gcstudy.data import torchvision_sets  # imports torchvision (seconds): only when needed

    return torchvision_sets.read(spec, root, train=split == "train")
