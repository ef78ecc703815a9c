"""CPU cost of preparing a folder data set once, against reading the prepared copy.

    python benchmarks/bench_prepare.py [--classes 20] [--per-class 100] [--size 84]

Writes ``--classes`` x ``--per-class`` JPEG files of 84 x 84 RGB pixels (smooth random
images, as PIL writes them at quality 95) in torchvision's ImageFolder layout, declares
the folder as a data set at ``--size`` pixels, then measures, in this one process, the CPU
seconds (``time.process_time``) of ``gcstudy prepare-data``'s work (list, decode, resize,
split, write the checked cache) and of loading the prepared copy from a fresh
reader, train and test (checksums included). Prints both per 1,000 images, their ratio, and the
preparation of mini-ImageNet's 60,000 images extrapolated linearly from it (an estimate).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from gcstudy.data import load, prepare
from gcstudy.data.loader import _load
from gcstudy.study.datasets import declare

MINI_IMAGENET_IMAGES = 60000


def write_jpegs(folder: Path, classes: int, per_class: int) -> int:
    """Smooth random 84 x 84 images (a 6 x 6 random grid upsampled), one folder per class."""
    rng = np.random.default_rng(0)
    for k in range(classes):
        (folder / f"class{k:03d}").mkdir(parents=True)
        for i in range(per_class):
            grid = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            image = Image.fromarray(grid).resize((84, 84), Image.Resampling.BICUBIC)
            image.save(folder / f"class{k:03d}" / f"{i:05d}.jpg", quality=95)
    return classes * per_class


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--size", type=int, default=84)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        images = write_jpegs(Path(tmp) / "images", args.classes, args.per_class)
        declare("bench", {"path": str(Path(tmp) / "images"), "image_size": args.size}, "bench")
        start = time.process_time()
        prepare("bench", Path(tmp) / "data")
        prepared = time.process_time() - start
        _load.cache_clear()
        start = time.process_time()
        for split in ("train", "test"):
            load("bench", Path(tmp) / "data", split)
        loaded = time.process_time() - start
    per_1000 = 1000 / images
    print(f"{images} JPEG images of 84 x 84, prepared at {args.size} x {args.size}")
    print(f"prepare: {prepared * per_1000:.3f} CPU s per 1,000 images")
    print(f"load the prepared copy (train, test): {loaded * per_1000:.3f} CPU s per 1,000 images")
    print(f"prepare / load: {prepared / loaded:.1f}")
    print(
        f"mini-ImageNet ({MINI_IMAGENET_IMAGES:,} images), extrapolated: "
        f"{prepared * MINI_IMAGENET_IMAGES / images / 60:.1f} CPU minutes to prepare"
    )


if __name__ == "__main__":
    main()
