"""The data sets gcstudy writes itself (``mnist_5k``, ``glyphs``): written once, then checked.

``ensure`` writes a generated data set's cache under the data root the first time it is
needed (``gcstudy prepare-data NAME``, or the first load) and checks it on every read; a
corrupt or stale cache is refused with the file named and what to do.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from gcstudy.data import cache
from gcstudy.data.errors import DatasetNotFound
from gcstudy.study.datasets import DatasetSpec

log = logging.getLogger(__name__)
RECIPES = {"mnist_5k": "gcstudy.data.mnist_5k", "glyphs": "gcstudy.data.glyphs"}


def ensure(spec: DatasetSpec, root: str | os.PathLike) -> Path:
    """The checked cache folder of generated data set ``spec`` under ``root``, written
    first if it does not exist. Raises DatasetNotFound naming the file when it is corrupt,
    incomplete or was written by another recipe."""
    recipe = importlib.import_module(RECIPES[spec.parent])
    folder = spec.cache_path(root)
    if not folder.exists():
        log.info("writing %s from %s into %s", spec.name, spec.generated_from, folder)
        files, extra = recipe.build()
        cache.write(folder, files, spec.parent, recipe.RECIPE, extra)
    try:
        cache.verify(folder, spec.parent, recipe.RECIPE)
    except cache.CacheError as error:
        raise DatasetNotFound(
            f"Dataset {spec.name!r}: its cache is corrupt or stale: {error}.\n"
            f"  Delete {folder}; gcstudy writes it again from {spec.generated_from} "
            "(nothing is downloaded)."
        ) from None
    return folder
