"""scikit-learn's bundled digits (1,797 real 8x8 handwritten digits) as 32 x 32 uint8 images.

There is no official train/test split; the one here is deterministic and needs no seed:
within each class, in the data set's order, every 5th example (positions 4, 9, 14, ...
counting from 0 within the class) is `test`, the rest `train`.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
import torch.nn.functional as F

from gcstudy.data.labelled import LabelledImages

DIGITS_CLASSES: tuple[str, ...] = tuple(str(digit) for digit in range(10))
TEST_EVERY = 5  # every 5th example of a class is a test example
_GREY_LEVELS = 16  # digits pixels are 0..16


def upsample(raw: np.ndarray) -> torch.Tensor:
    """Digits pixels (N x 8 x 8, values 0..16) to uint8 images N x 1 x 32 x 32 (0..255).

    Pixels are scaled to round(v * 255 / 16), upsampled by bilinear interpolation
    (align_corners=False) in float64, and rounded (half to even) to uint8.
    """
    scaled = torch.round(torch.as_tensor(raw, dtype=torch.float64) * 255 / _GREY_LEVELS)
    big = F.interpolate(scaled[:, None], size=(32, 32), mode="bilinear", align_corners=False)
    return torch.round(big).clamp_(0, 255).to(torch.uint8)


def held_out_mask(labels: torch.Tensor) -> torch.Tensor:
    """Boolean mask, N: True at every 5th example of each class (positions 4, 9, ...)."""
    mask = torch.zeros_like(labels, dtype=torch.bool)
    for label in labels.unique():
        positions = torch.nonzero(labels == label).flatten()
        mask[positions[TEST_EVERY - 1 :: TEST_EVERY]] = True
    return mask


def load_digits(split: str) -> LabelledImages:
    """The `train` or `test` split of the digits (images N x 1 x 32 x 32, labels 0..9)."""
    images, labels = _all_digits()
    keep = held_out_mask(labels)
    if split == "train":
        keep = ~keep
    elif split != "test":
        raise ValueError(f"unknown digits split {split!r}; allowed: train, test")
    return LabelledImages(images[keep], labels[keep], DIGITS_CLASSES)


@cache
def _all_digits() -> tuple[torch.Tensor, torch.Tensor]:
    """All 1,797 upsampled images and their labels, read once per process."""
    from sklearn.datasets import load_digits as sklearn_digits  # slow import: only when used

    bunch = sklearn_digits()
    return upsample(bunch.images), torch.as_tensor(bunch.target, dtype=torch.int64)
