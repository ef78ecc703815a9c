"""Atomic file writes: the one way gcstudy replaces a file.

A file is written under a temporary name beside it (``<name>.tmp``, in the same folder, so
on the same file system), optionally flushed to the disk (``fsync``), then renamed over the
target with ``os.replace``, which is atomic on POSIX: a reader sees the old file or the new
one, never half of one. If the writer fails (an exception, Ctrl-C), the temporary file is
removed and the old file is left as it was. A process killed mid-write leaves only
``<name>.tmp``, which the next write of the same file replaces.

``sync=True`` (traces, weights, checkpoints) also survives a crash of the machine: the data
is on the disk before the rename makes it visible. Cheap, often rewritten files (seals,
progress, configs, tables) are not synced.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TMP_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """Where ``path`` is written before it is renamed into place: ``<path>.tmp``."""
    return path.with_name(path.name + TMP_SUFFIX)


@contextmanager
def replacing(path: str | os.PathLike, sync: bool = False) -> Iterator[Path]:
    """Yield the temporary path to write ``path``'s new content to (by any writer that
    takes a path: h5py, xarray, torch.save, a copy); when the block ends normally, fsync it
    (``sync``) and rename it over ``path``; when it raises, remove it. The folder is made
    if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        yield tmp
        if sync:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str, sync: bool = False) -> Path:
    """Replace ``path`` with ``text`` (UTF-8), atomically (see the module doc)."""
    with replacing(path, sync) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
