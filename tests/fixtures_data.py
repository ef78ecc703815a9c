"""Tiny data set files in the exact on-disk formats torchvision reads, for tests.

Each writer creates the files under a data root and returns what it wrote, so a test can
check that the real torchvision parsing path gives back the same pixels and labels:

    written = write_mnist(tmp_path, n_train=20, n_test=10)
    written["train"].images   # uint8 N x 28 x 28, exactly as stored in the idx file

CIFAR files fail torchvision's md5 check (they are not the real archives); call
`skip_cifar_md5(monkeypatch)` in a test to switch that check off for the test only.
"""

from __future__ import annotations

import os
import pickle
import struct
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torchvision

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle",
    "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2",
)  # fmt: skip
# coarse class id of each fine class id, as in the real CIFAR-100 files
CIFAR100_FINE_TO_COARSE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11,
    6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10, 12, 14, 16, 9, 11, 5,
    5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17,
    10, 3, 2, 12, 12, 16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13,
    16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8, 14, 13,
)  # fmt: skip

IDX_UBYTE = 0x08  # idx data type code of unsigned bytes


class WrittenSplit(NamedTuple):
    """One split as written to disk: images uint8 (N x 28 x 28 for MNIST-style files,
    N x 3 x 32 x 32 RGB planes for CIFAR) and labels int64 N."""

    images: np.ndarray
    labels: np.ndarray


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array as an idx file: magic 0x0000 08 ndim, big-endian int32 dims."""
    header = struct.pack(">I", (IDX_UBYTE << 8) | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    Path(path).write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _split(n: int, n_classes: int, shape: tuple[int, ...], rng: np.random.Generator):
    """n images of `shape` with pixels 1..255 (never 0, unlike zero padding) and labels
    cycling through the classes (0, 1, ..., n_classes-1, 0, 1, ...)."""
    images = rng.integers(1, 256, size=(n, *shape), dtype=np.uint8)
    return WrittenSplit(images, np.arange(n, dtype=np.int64) % n_classes)


def write_mnist(
    root: str | os.PathLike, n_train: int, n_test: int, name: str = "MNIST", seed: int = 0
) -> dict[str, WrittenSplit]:
    """Write the four uncompressed idx files of `<root>/<name>/raw/` (name: "MNIST" or
    "FashionMNIST"); labels cycle 0..9. Returns {"train": ..., "test": ...}."""
    raw = Path(root) / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {
        "train": _split(n_train, 10, (28, 28), rng),
        "test": _split(n_test, 10, (28, 28), rng),
    }
    for split, prefix in (("train", "train"), ("test", "t10k")):
        write_idx(raw / f"{prefix}-images-idx3-ubyte", written[split].images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", written[split].labels.astype(np.uint8))
    return written


def _dump(path: Path, obj: dict) -> None:
    # str keys: what the original Python-2 pickles give under torchvision's
    # pickle.load(encoding="latin1"); bytes keys (b"data") would load as bytes and fail.
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def _rows(images: np.ndarray) -> np.ndarray:
    """N x 3 x 32 x 32 -> N x 3072 rows: the red plane, then green, then blue, row-major."""
    return images.reshape(len(images), 3 * 32 * 32)


def write_cifar10(
    root: str | os.PathLike, n_per_class_train: int, n_per_class_test: int, seed: int = 0
) -> dict[str, WrittenSplit]:
    """Write `<root>/cifar-10-batches-py/` (data_batch_1..5, test_batch, batches.meta).

    The train images are spread over the five batches in order; labels cycle 0..9.
    Returns {"train": ..., "test": ...} with images N x 3 x 32 x 32 in RGB order.
    """
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {
        "train": _split(10 * n_per_class_train, 10, (3, 32, 32), rng),
        "test": _split(10 * n_per_class_test, 10, (3, 32, 32), rng),
    }
    train = written["train"]
    parts = np.array_split(np.arange(len(train.labels)), 5)
    for number, part in enumerate(parts, start=1):
        _dump(
            folder / f"data_batch_{number}",
            {
                "batch_label": f"training batch {number} of 5",
                "labels": train.labels[part].tolist(),
                "data": _rows(train.images[part]),
                "filenames": [f"train_{i}.png" for i in part],
            },
        )
    test = written["test"]
    _dump(
        folder / "test_batch",
        {
            "batch_label": "testing batch 1 of 1",
            "labels": test.labels.tolist(),
            "data": _rows(test.images),
            "filenames": [f"test_{i}.png" for i in range(len(test.labels))],
        },
    )
    _dump(
        folder / "batches.meta",
        {
            "num_cases_per_batch": len(parts[0]),
            "label_names": list(CIFAR10_CLASSES),
            "num_vis": 3072,
        },
    )
    return written


def write_cifar100(
    root: str | os.PathLike, n_per_class_train: int, n_per_class_test: int, seed: int = 0
) -> dict[str, WrittenSplit]:
    """Write `<root>/cifar-100-python/` (train, test, meta) with fine and coarse labels.

    Fine labels cycle 0..99. Returns {"train": ..., "test": ...} with images
    N x 3 x 32 x 32 in RGB order and the fine labels.
    """
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {
        "train": _split(100 * n_per_class_train, 100, (3, 32, 32), rng),
        "test": _split(100 * n_per_class_test, 100, (3, 32, 32), rng),
    }
    coarse = np.asarray(CIFAR100_FINE_TO_COARSE)
    for split, part in written.items():
        _dump(
            folder / split,
            {
                "filenames": [f"{split}_{i}.png" for i in range(len(part.labels))],
                "batch_label": f"{split}ing batch 1 of 1",
                "fine_labels": part.labels.tolist(),
                "coarse_labels": coarse[part.labels].tolist(),
                "data": _rows(part.images),
            },
        )
    _dump(
        folder / "meta",
        {
            "fine_label_names": list(CIFAR100_CLASSES),
            "coarse_label_names": list(CIFAR100_COARSE_CLASSES),
        },
    )
    return written


def skip_cifar_md5(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let torchvision's CIFAR10/CIFAR100 read fixture files: for this test only, its file
    checks test that a file exists instead of its md5 sum. This covers both the batch
    check (`_check_integrity`) and the meta-file check (`_load_meta`), which call the same
    `torchvision.datasets.cifar.check_integrity`; the parsing code stays the real one."""

    def exists(fpath: str | os.PathLike, md5: str | None = None) -> bool:
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
