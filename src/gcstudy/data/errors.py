"""The missing-data error and its message: which folder, which files, how to get them."""

from __future__ import annotations

import os
from pathlib import Path

from gcstudy.study.datasets import DatasetSpec


class DatasetNotFound(FileNotFoundError):
    """A data set's files are missing, corrupt, or could not be downloaded.

    The message names the data set, the exact folder, the file names expected there, the
    `gcstudy prepare-data NAME --root DIR` command and how to place the files by hand.
    """


def one_line(error: BaseException) -> str:
    """`error` as `Type: text` on a single line (newlines and runs of spaces collapsed)."""
    return f"{type(error).__name__}: {' '.join(str(error).split())}"


def not_found(spec: DatasetSpec, root: str | os.PathLike, problem: str) -> DatasetNotFound:
    """A DatasetNotFound for `spec` under the data root `root`; `problem` says what failed."""
    folder = spec.folder_path(root)
    present = {p.name for p in folder.iterdir()} if folder.is_dir() else set()
    missing = [name for name in spec.files if name not in present]
    root_text = str(Path(root).expanduser().absolute())
    lines = [
        f"Dataset {spec.name!r} not available: {problem}",
        f"  expected folder: {folder}",
        f"  expected files there: {', '.join(spec.files)}",
        f"  missing: {', '.join(missing) if missing else 'none (present but unreadable)'}",
        f"Fetch them with `gcstudy prepare-data {spec.name} --root {root_text}` on a machine"
        " with internet access (e.g. the login node),",
        f"or by hand: {spec.download}.",
    ]
    return DatasetNotFound("\n".join(lines))
