"""Folders of images on disk: the layouts gcstudy reads, listed without decoding an image.

A folder data set (declared in a config's ``datasets``, or the built-in ``mini_imagenet``)
is one of these layouts, recognised from what the folder holds, checked in this order:

- ``pickles``: the learn2learn / torchmeta mini-ImageNet files
  ``mini-imagenet-cache-{train,validation,test}.pkl``, each a pickled dict with
  ``image_data`` (uint8 N x 84 x 84 x 3, RGB) and ``class_dict`` (class name -> the rows of
  ``image_data`` holding its images);
- ``csv``: Ravi and Larochelle's ``train.csv``, ``val.csv``, ``test.csv`` (a header, then
  rows ``filename,label``, e.g. ``n0153282900000005.jpg,n01532829``) beside a flat
  ``images/`` folder;
- ``split_folders``: ``train/``, ``val/`` and ``test/``, each one folder per class (the
  classes of the three are disjoint);
- ``train_test``: ``train/`` and ``test/``, each one folder per class, the same classes;
- ``image_folder``: one folder per class (torchvision's ImageFolder).

The first three are mini-ImageNet's layouts: their classes come split into source (train),
val and target (test) classes. In every layout a class's label id is its rank among the
sorted class names (for mini-ImageNet's layouts: the sorted source classes first, then the
sorted val classes, then the sorted target classes). A class folder's images are the files
under it with an image suffix (``IMAGE_SUFFIXES``), sorted by path, as torchvision's
ImageFolder finds them; hidden files and folders (a leading ``.``) are skipped.

Where the layout gives no train / test split, each class's images are split by
``held_out_rows``: ``held_out_count(n, fraction)`` of them, drawn with
``numpy.random.default_rng([seed, label id])``, are test images. Torch-free: a config
check lists folders, only preparation (``gcstudy.data.image_sets``) decodes images.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# = torchvision.datasets.folder.IMG_EXTENSIONS (a test checks that they agree)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
PICKLES = tuple(f"mini-imagenet-cache-{part}.pkl" for part in ("train", "validation", "test"))
CSVS = ("train.csv", "val.csv", "test.csv")
SPLIT_FOLDERS = ("train", "val", "test")
LAYOUTS = {
    "pickles": f"the pickles {', '.join(PICKLES)}",
    "csv": f"{', '.join(CSVS)} (rows filename,label) beside a folder images/",
    "split_folders": "folders train/, val/, test/, each with one folder of images per class",
    "train_test": "folders train/ and test/, each with one folder of images per class",
    "image_folder": "one folder of images per class",
}
MINI_IMAGENET_LAYOUTS = ("pickles", "csv", "split_folders")


class LayoutError(ValueError):
    """A folder that holds no known layout, or a layout with a defect; names the file."""


@dataclass(frozen=True)
class Listing:
    """What a folder holds, found by listing it.

    layout: one of ``LAYOUTS``. classes: class names in label-id order. images: per class,
    where each image is (a path relative to the folder, or ``<pickle file>:<row>``).
    test_images: per class, the test images where the layout splits train and test
    (``train_test``), else None. parts: for mini-ImageNet's layouts, the label ids of the
    (source, val, target) classes, else None.
    """

    layout: str
    classes: tuple[str, ...]
    images: tuple[tuple[str, ...], ...]
    test_images: tuple[tuple[str, ...], ...] | None = None
    parts: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None = None

    def digest(self) -> str:
        """SHA-256 of the layout, class names and image names: what preparation read."""
        text = repr((self.layout, self.classes, self.images, self.test_images))
        return hashlib.sha256(text.encode()).hexdigest()


def detect(folder: Path) -> str:
    """The layout of ``folder`` (``LayoutError`` naming the folder and the layouts if none)."""
    if not folder.is_dir():
        raise LayoutError(f"{folder} is not a folder")
    present = {entry.name for entry in os.scandir(folder)}
    if set(PICKLES) <= present:
        return "pickles"
    if set(CSVS) <= present and (folder / "images").is_dir():
        return "csv"
    if all((folder / split).is_dir() for split in SPLIT_FOLDERS):
        return "split_folders"
    if all((folder / split).is_dir() for split in ("train", "test")):
        return "train_test"
    if _class_folders(folder):
        return "image_folder"
    accepted = "\n".join(f"  - {text}" for text in LAYOUTS.values())
    raise LayoutError(f"{folder} holds none of the layouts gcstudy reads:\n{accepted}")


def list_folder(folder: str | os.PathLike) -> Listing:
    """List ``folder`` in its layout (``detect``); ``LayoutError`` naming what is wrong."""
    folder = Path(folder).expanduser().absolute()
    layout = detect(folder)
    if layout == "pickles":
        return _list_pickles(folder)
    if layout == "csv":
        return _list_csv(folder)
    if layout == "split_folders":
        parts = [_list_classes(folder / split) for split in SPLIT_FOLDERS]
        return _joined("split_folders", parts, [f"{split}/" for split in SPLIT_FOLDERS])
    if layout == "train_test":
        train, test = _list_classes(folder / "train"), _list_classes(folder / "test")
        if list(train) != list(test):
            differ = sorted(set(train) ^ set(test))
            raise LayoutError(
                f"{folder}: train/ and test/ must hold the same class folders; "
                f"only in one of them: {', '.join(differ[:5])}"
            )
        prefixed = [tuple(f"train/{p}" for p in train[c]) for c in train]
        tests = [tuple(f"test/{p}" for p in test[c]) for c in train]
        return Listing(layout, tuple(train), tuple(prefixed), tuple(tests))
    classes = _list_classes(folder)
    return Listing(layout, tuple(classes), tuple(classes.values()))


def held_out_count(n: int, fraction: float) -> int:
    """Test images of a class of ``n`` images: ``fraction * n`` rounded half up, kept
    within 1..n-1 when the class has two or more images (each split gets one)."""
    count = math.floor(fraction * n + 0.5)
    return min(max(count, 1), n - 1) if n >= 2 else 0


def held_out_rows(n: int, fraction: float, seed: int, label: int) -> np.ndarray:
    """Sorted positions (within its class) of the test images of class ``label``:
    ``held_out_count(n, fraction)`` drawn without replacement by
    ``numpy.random.default_rng([seed, label])`` (one stream per class, so a class's split
    does not depend on the other classes)."""
    rng = np.random.default_rng([seed, label])
    return np.sort(rng.permutation(n)[: held_out_count(n, fraction)])


def split_classes(num_classes: int, counts: tuple[int, ...], seed: int) -> tuple:
    """Label ids cut into consecutive parts of ``counts`` (summing to ``num_classes``)
    from ``numpy.random.default_rng(seed).permutation(num_classes)``, each part sorted."""
    order = np.random.default_rng(seed).permutation(num_classes)
    ends = np.cumsum(counts)
    return tuple(
        tuple(sorted(int(i) for i in order[end - count : end]))
        for count, end in zip(counts, ends, strict=True)
    )


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _class_folders(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and _visible(e.name))


def _list_classes(folder: Path) -> dict[str, tuple[str, ...]]:
    """Class name -> its images (paths relative to ``folder``), classes sorted; each class
    folder must hold an image."""
    if not folder.is_dir():
        raise LayoutError(f"{folder} is not a folder")
    classes = {}
    for name in _class_folders(folder):
        images = []
        for top, dirs, files in os.walk(folder / name, followlinks=True):
            dirs[:] = sorted(d for d in dirs if _visible(d))
            base = Path(top).relative_to(folder)
            images += [
                (base / f).as_posix()
                for f in sorted(files)
                if _visible(f) and f.lower().endswith(IMAGE_SUFFIXES)
            ]
        if not images:
            raise LayoutError(
                f"{folder / name}: a class folder without images "
                f"(files ending {', '.join(IMAGE_SUFFIXES)})"
            )
        classes[name] = tuple(images)
    if not classes:
        raise LayoutError(f"{folder}: no class folders (one folder of images per class)")
    return classes


def _joined(layout: str, parts: list[dict], prefixes: list[str]) -> Listing:
    """One listing of mini-ImageNet's three class parts (source, val, target)."""
    names = [name for part in parts for name in part]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LayoutError(f"{layout}: classes in more than one split: {', '.join(repeated[:5])}")
    images, ids, start = [], [], 0
    for part, prefix in zip(parts, prefixes, strict=True):
        images += [tuple(f"{prefix}{path}" for path in part[name]) for name in part]
        ids.append(tuple(range(start, start + len(part))))
        start += len(part)
    return Listing(layout, tuple(names), tuple(images), None, tuple(ids))


def _list_csv(folder: Path) -> Listing:
    """Ravi and Larochelle's csv files: every listed image must be in ``images/``."""
    present = set(os.listdir(folder / "images"))
    parts = []
    for name in CSVS:
        path = folder / name
        with open(path, newline="") as handle:
            rows = list(csv.reader(handle))
        if not rows or [cell.strip() for cell in rows[0]] != ["filename", "label"]:
            raise LayoutError(f"{path}: expected the header 'filename,label'")
        by_class: dict[str, list[str]] = {}
        for number, row in enumerate(rows[1:], start=2):
            if len(row) != 2:
                raise LayoutError(f"{path}, line {number}: expected 'filename,label'")
            if row[0] not in present:
                raise LayoutError(f"{path}, line {number}: {folder / 'images' / row[0]} is missing")
            by_class.setdefault(row[1], []).append(f"images/{row[0]}")
        parts.append({c: tuple(by_class[c]) for c in sorted(by_class)})
    return _joined("csv", parts, ["", "", ""])


def _list_pickles(folder: Path) -> Listing:
    """The learn2learn / torchmeta pickles: each file's ``class_dict`` rows must index its
    ``image_data`` (uint8 N x H x W x 3). Unpickling reads the pixels too (a pickle cannot be
    listed without loading it); pickles can run code when loaded: use files you trust."""
    parts = []
    for name in PICKLES:
        path = folder / name
        try:
            with open(path, "rb") as handle:
                content = pickle.load(handle)
            data, class_dict = content["image_data"], content["class_dict"]
            shape, rows = np.shape(data), {str(c): list(r) for c, r in class_dict.items()}
        except Exception as error:  # any unpickling or format failure: the file is wrong
            raise LayoutError(
                f"{path}: not a mini-ImageNet pickle (a dict with 'image_data' and "
                f"'class_dict'; {type(error).__name__}: {error})"
            ) from None
        if len(shape) != 4 or shape[3] != 3 or np.asarray(data).dtype != np.uint8:
            raise LayoutError(f"{path}: image_data has shape {shape}, expected uint8 N x H x W x 3")
        if any(not 0 <= int(r) < shape[0] for rs in rows.values() for r in rs):
            raise LayoutError(f"{path}: class_dict names rows outside 0..{shape[0] - 1}")
        parts.append({c: tuple(f"{name}:{int(r)}" for r in rows[c]) for c in sorted(rows)})
    return _joined("pickles", parts, ["", "", ""])
