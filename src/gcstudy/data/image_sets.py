"""Folder data sets (declared in a config, and ``mini_imagenet``): prepared once, then read.

Preparation lists the folder in its layout (gcstudy.study.image_folders), decodes every
image with PIL (JPEG, PNG, ... or a row of a mini-ImageNet pickle), converts it to
greyscale (``L``) or RGB, resizes it to ``image_size`` x ``image_size`` pixels (PIL's
bilinear filter, which averages over the source pixels when it shrinks; the aspect ratio
is not kept; an image of that size already is left as it is) and splits each class into
train and test (the layout's own split, or ``held_out_rows``). The result is written once,
atomically, into ``<data root>/prepared/<name>/`` (gcstudy.data.cache): idx files of the
train and test images (``N * C`` planes of ``image_size`` x ``image_size`` uint8, image by
image) and labels (int32), and ``manifest.json`` with each file's SHA-256, the recipe (the
data set's DatasetSpec: a changed declaration or folder is a stale cache) and the spec
itself, from which ``get_spec(name, root)`` knows a declared set in a process that never
read the config. Loading reads the cache; images are never resized per batch.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from gcstudy.data import cache
from gcstudy.data.errors import DatasetNotFound, one_line
from gcstudy.data.labelled import LabelledImages
from gcstudy.study.datasets import DatasetSpec
from gcstudy.study.image_folders import (
    LAYOUTS,
    MINI_IMAGENET_LAYOUTS,
    PICKLES,
    LayoutError,
    Listing,
    held_out_rows,
    list_folder,
)

log = logging.getLogger(__name__)
RECIPE_VERSION = 1
FILES = {split: (f"{split}-images-idx3-ubyte", f"{split}-labels-idx1-int") for split in
         ("train", "test")}  # fmt: skip


def recipe(spec: DatasetSpec) -> dict:
    """What a prepared cache is a function of: the data set's spec (folder, classes, their
    split, sizes, image size, channels, train / test split) and this code's version."""
    return {"version": RECIPE_VERSION, **dataclasses.asdict(spec)}


def read(spec: DatasetSpec, root: str | os.PathLike, split: str) -> LabelledImages:
    """The ``train`` or ``test`` images of every class (prepared first if needed): uint8
    N x C x image_size x image_size, int32 labels as int64, the class names."""
    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    manifest = ensure(spec, root)
    folder = spec.cache_path(root)
    images_file, labels_file = FILES[split]
    planes = read_sn3_pascalvincent_tensor(str(folder / images_file), strict=True)
    labels = read_sn3_pascalvincent_tensor(str(folder / labels_file), strict=True)
    size = spec.image_size
    images = planes.view(-1, spec.channels, size, size)
    return LabelledImages(images, labels.to(torch.int64), tuple(manifest["classes"]))


def ensure(spec: DatasetSpec, root: str | os.PathLike) -> dict:
    """The manifest of the checked cache folder of ``spec`` under ``root`` (prepared first
    if missing). DatasetNotFound naming the file when the cache is corrupt or stale."""
    folder = spec.cache_path(root)
    if not (folder / cache.MANIFEST).is_file():
        prepare(spec, root)
    try:
        return cache.verify(folder, spec.name, recipe(spec))
    except cache.CacheError as error:
        raise DatasetNotFound(
            f"Dataset {spec.name!r}: its prepared copy is corrupt or stale: {error}.\n"
            f"  Delete {folder} and prepare it again from {spec.folder_path(root)} "
            f"(`gcstudy prepare-data {spec.name} --root {root}`)."
        ) from None


def prepare(spec: DatasetSpec, root: str | os.PathLike) -> Path:
    """Decode, resize and split the images of ``spec``'s folder; write the cache."""
    source = spec.folder_path(root)
    listing = _listing(spec, source)
    log.info("preparing %s from %s (%s layout)", spec.name, source, listing.layout)
    arrays = _split_pixels(spec, source, listing)
    files = {}
    for split, (images_file, labels_file) in FILES.items():
        images, labels = arrays[split]
        files[images_file] = cache.idx_bytes(images.reshape(-1, *images.shape[2:]))
        files[labels_file] = cache.idx_bytes(labels)
    extra = {"spec": dataclasses.asdict(spec), "classes": list(listing.classes),
             "layout": listing.layout, "listing_sha256": listing.digest(),
             "train": len(arrays["train"][1]), "test": len(arrays["test"][1])}  # fmt: skip
    return cache.write(spec.cache_path(root), files, spec.name, recipe(spec), extra)


def _listing(spec: DatasetSpec, source: Path) -> Listing:
    """The folder's listing; for ``mini_imagenet`` in one of its layouts, 64/16/20 classes."""
    mini_imagenet = spec.parent == "mini_imagenet"
    layouts = MINI_IMAGENET_LAYOUTS if mini_imagenet else tuple(LAYOUTS)
    try:
        listing = list_folder(source)
    except LayoutError as error:
        raise _not_there(spec, source, layouts, str(error)) from None
    if mini_imagenet:
        sizes = tuple(len(part) for part in listing.parts or ())
        wanted = tuple(len(c) for c in (spec.source_classes, spec.val_classes,
                                        spec.target_classes))  # fmt: skip
        if listing.layout not in layouts or sizes != wanted:
            problem = f"{listing.layout} layout with source/val/target classes {sizes or 'none'}"
            raise _not_there(spec, source, layouts, f"found the {problem}, expected {wanted}")
    elif listing.classes != spec.class_names:
        raise DatasetNotFound(
            f"Dataset {spec.name!r}: the classes in {source} changed since it was declared; "
            "read the config again"
        )
    return listing


def _not_there(spec: DatasetSpec, source: Path, layouts, problem: str) -> DatasetNotFound:
    accepted = "\n".join(f"  - {LAYOUTS[layout]}" for layout in layouts)
    return DatasetNotFound(
        f"Dataset {spec.name!r} not available: {problem}\n  expected folder: {source}\n"
        f"  put the files there in one of these layouts:\n{accepted}"
    )


def _split_pixels(spec: DatasetSpec, source: Path, listing: Listing) -> dict:
    """{"train": (images, labels), "test": (...)}: uint8 N x C x S x S and int32 N, class by
    class, each class's images in listing order."""
    parts = {"train": [], "test": []}
    pickles: dict[str, np.ndarray] = {}
    for label, refs in enumerate(listing.images):
        if listing.test_images is not None:
            chosen = {"train": refs, "test": listing.test_images[label]}
        else:
            test = set(held_out_rows(len(refs), spec.test_fraction, spec.split_seed, label))
            chosen = {
                "train": [r for i, r in enumerate(refs) if i not in test],
                "test": [r for i, r in enumerate(refs) if i in test],
            }
        for split, split_refs in chosen.items():
            parts[split] += [(label, ref) for ref in split_refs]
    shape = (spec.channels, spec.image_size, spec.image_size)
    arrays = {}
    for split, entries in parts.items():
        images = np.empty((len(entries), *shape), dtype=np.uint8)
        for row, (_, ref) in enumerate(entries):
            images[row] = _pixels(_image(source, ref, pickles), spec.channels, spec.image_size)
        labels = np.array([label for label, _ in entries], dtype=np.int32)
        arrays[split] = (images, labels)
    return arrays


def _image(source: Path, ref: str, pickles: dict):
    """The PIL image ``ref`` names: a file under ``source`` or ``<pickle>:<row>``."""
    from PIL import Image

    name, _, row = ref.rpartition(":")
    if name in PICKLES:
        if name not in pickles:
            with open(source / name, "rb") as handle:
                pickles[name] = pickle.load(handle)["image_data"]
        return Image.fromarray(np.asarray(pickles[name][int(row)]))
    path = source / ref
    try:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise DatasetNotFound(f"{path}: cannot read it as an image ({one_line(error)})") from None


def _pixels(image, channels: int, size: int) -> np.ndarray:
    """uint8 C x size x size: converted to greyscale or RGB, resized bilinearly."""
    from PIL import Image

    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)
