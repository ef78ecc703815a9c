"""A figure of example images of a data set, one block of rows per split
(``gcstudy show-data NAME --root DIR --out FILE.png``; docs/glyphs.png is one).

For each split (a transfer set's source, val and target classes; train and test otherwise)
the first ``classes`` classes of the split, ``per_class`` instances each drawn with a fixed
seed, one column per class titled with its name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from gcstudy.data.loader import load
from gcstudy.study.datasets import get_spec


def example_grid(
    name: str,
    root: str | os.PathLike | None,
    out: str | os.PathLike,
    classes: int = 16,
    per_class: int = 3,
    seed: int = 0,
) -> Path:
    """Write the figure to ``out`` (PNG, PDF or SVG by its suffix); returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spec = get_spec(name, root)
    splits = [s for s in ("source", "val", "target") if s in spec.splits] or ["train", "test"]
    rng = np.random.default_rng(seed)
    blocks = []
    for split in splits:
        data = load(name, root, split)
        labels = data.labels.numpy()
        present = np.unique(labels)
        shown = present[:classes]
        picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in shown]
        blocks.append((split, data, len(present), shown, picks))
    rows = per_class * len(blocks)
    fig, axes = plt.subplots(
        rows, classes, figsize=(classes * 0.62, rows * 0.62 + 0.35 * len(blocks)), squeeze=False
    )
    for ax in axes.flat:
        ax.axis("off")
    row = 0
    for split, data, count, shown, picks in blocks:
        for column, (label, chosen) in enumerate(zip(shown, picks, strict=True)):
            for k, index in enumerate(chosen):
                ax = axes[row + k, column]
                image = data.images[index].permute(1, 2, 0).numpy()
                ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
                if k == 0:
                    ax.set_title(data.classes[label], fontsize=8, pad=2)
        axes[row, 0].text(
            -0.4, 0.5, f"{split}\n({count})", transform=axes[row, 0].transAxes, ha="right",
            va="center", fontsize=8,
        )  # fmt: skip
        row += per_class
    fig.suptitle(f"{name}: examples of the first {classes} classes of each split", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
