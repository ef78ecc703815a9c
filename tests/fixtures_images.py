"""Tiny folders of real image files (PNG, JPEG written by PIL) and real mini-ImageNet
pickles, in the exact layouts gcstudy reads, for tests.

Each writer returns what it wrote, so a test can compare what gcstudy loads with the
pixels put on disk (an independent oracle: the written arrays, resized here with PIL).

PNG images hold random pixels (lossless: the oracle is exact). JPEG images are flat
colours that name the image (red: its class's index within its split, green: its index
within the class, blue: the split), so the oracle survives JPEG's loss (a flat block is
decoded to within a few levels).
"""

from __future__ import annotations

import csv
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

HEIGHT, WIDTH = 10, 12  # written images (rows, columns): not square, not the target size
# mini-ImageNet's three parts: (folder of the split-folder layout, pickle part, csv, classes)
PARTS = (("train", "train", "train.csv", 64), ("val", "validation", "val.csv", 16),
         ("test", "test", "test.csv", 20))  # fmt: skip
SPLIT_CODE = {"train": 40, "val": 120, "test": 200}  # blue of a flat JPEG per split


def random_pixels(rng: np.random.Generator, channels: int = 3, size=(HEIGHT, WIDTH)):
    """uint8 H x W x 3 (or H x W for one channel) random pixels."""
    shape = (*size, 3) if channels == 3 else size
    return rng.integers(0, 256, shape, dtype=np.uint8)


def resized(pixels: np.ndarray, size: int, channels: int = 3) -> np.ndarray:
    """The oracle: ``pixels`` as PIL converts and resizes them, C x size x size."""
    image = Image.fromarray(pixels).convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image)
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def write_class_folders(folder: Path, counts: dict[str, int], seed: int = 0, suffix=".png"):
    """One folder per class with ``counts[class]`` random-pixel images; returns class ->
    list of the arrays written, in file-name order."""
    rng = np.random.default_rng(seed)
    written = {}
    for name, count in counts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        written[name] = []
        for index in range(count):
            pixels = random_pixels(rng)
            Image.fromarray(pixels).save(folder / name / f"img{index:03d}{suffix}")
            written[name].append(pixels)
    return written


def wnids(count: int, start: int) -> list[str]:
    """ImageNet-like class names, e.g. n01530000."""
    return [f"n0{1530000 + 7 * (start + i):07d}" for i in range(count)]


def mini_imagenet_classes(source_images: int = 6, other_images: int = 2):
    """[(part folder, pickle part, csv file, class names, images per class)] of the three
    parts, 64 / 16 / 20 classes."""
    parts, start = [], 0
    for folder, part, table, count in PARTS:
        per_class = source_images if folder == "train" else other_images
        parts.append((folder, part, table, wnids(count, start), per_class))
        start += count
    return parts


def flat_jpeg_colour(class_index: int, image_index: int, split: str) -> tuple[int, int, int]:
    return (2 * class_index + 20, 30 * image_index + 10, SPLIT_CODE[split])


def write_mini_imagenet(folder: Path, layout: str, seed: int = 0) -> dict[str, dict]:
    """mini-ImageNet in ``layout`` (``csv``, ``split_folders``, ``pickles``) under
    ``folder``; returns part folder -> class name -> the images written (H x W x 3 arrays;
    for csv, the flat colours)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict] = {}
    for split, part, table, classes, per_class in mini_imagenet_classes():
        written[split] = {}
        if layout == "csv":
            (folder / "images").mkdir(exist_ok=True)
            rows = [("filename", "label")]
        if layout == "pickles":
            data = rng.integers(0, 256, (len(classes) * per_class, 84, 84, 3), dtype=np.uint8)
            order = rng.permutation(len(data))  # a class's rows are scattered, as in the files
            class_dict = {c: order[k * per_class : (k + 1) * per_class].tolist()
                          for k, c in enumerate(classes)}  # fmt: skip
            with open(folder / f"mini-imagenet-cache-{part}.pkl", "wb") as handle:
                pickle.dump({"image_data": data, "class_dict": class_dict}, handle)
            written[split] = {c: [data[r] for r in class_dict[c]] for c in classes}
            continue
        for k, name in enumerate(classes):
            written[split][name] = []
            for index in range(per_class):
                if layout == "csv":
                    colour = flat_jpeg_colour(k, index, split)
                    pixels = np.broadcast_to(np.array(colour, np.uint8), (84, 84, 3))
                    filename = f"{name}{index + 1:08d}.jpg"
                    Image.fromarray(pixels).save(folder / "images" / filename, quality=95)
                    rows.append((filename, name))
                else:
                    pixels = random_pixels(rng)
                    (folder / split / name).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(pixels).save(folder / split / name / f"{index:04d}.png")
                written[split][name].append(pixels)
        if layout == "csv":
            with open(folder / table, "w", newline="") as handle:
                csv.writer(handle).writerows(rows)
    return written
