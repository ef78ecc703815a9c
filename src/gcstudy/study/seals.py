"""Seals: whether a result file is still the file its writer wrote.

The result files of a run folder (``gcstudy.study.runfolder``: the trace, the weights and
the evaluations) are each written under a temporary name and renamed into place
(``gcstudy.files``), then **sealed**: ``<name>.sum`` records its size in bytes, its
modification time in nanoseconds and its SHA-256.

``problem(path)`` says what is wrong with a result file, or None:

- a missing file is "missing";
- a sealed file whose size and modification time are those recorded is taken as sealed,
  without reading it (two ``stat`` calls and a small read); any other sealed file must
  have the recorded SHA-256 (a copied or touched file passes, a truncated or overwritten
  one does not);
- an unsealed file (written before seals existed, or its writer died between the rename
  and the seal) must have an intact format: an HDF5 file opens (HDF5 records the end of
  the file, so a truncated one does not) and a trace says it is finished; a torch file's
  zip directory (at its end) reads.

A change that keeps a file's size and modification time (a bit flipped on disk) is not
seen by the cheap test; ``verify`` always hashes.
Which files a run folder holds, and what is done about a broken one, is
``gcstudy.study.runfolder``'s.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import h5py

from gcstudy import files

SEAL_SUFFIX = ".sum"
CHUNK = 1 << 20


def seal(path: str | os.PathLike) -> Path:
    """Record ``path``'s size, modification time and SHA-256 in ``<path>.sum`` (atomic)."""
    path = Path(path)
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(path)}
    return files.write_text(seal_of(path), json.dumps(record) + "\n")


def seal_of(path: Path) -> Path:
    return path.with_name(path.name + SEAL_SUFFIX)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def problem(
    path: str | os.PathLike, thorough: bool = False, finished_trace: bool = False
) -> str | None:
    """What is wrong with the result file ``path`` (see the module doc), or None.
    ``thorough``: hash a sealed file even when its size and time are as recorded;
    ``finished_trace``: the file is a trace, which unsealed must say its run finished."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    record = _read_seal(path)
    if record is None:
        return format_problem(path, finished_trace)
    if not thorough and (stat.st_size, stat.st_mtime_ns) == (record["size"], record["mtime_ns"]):
        return None
    if stat.st_size != record["size"]:
        return f"its size is {stat.st_size} bytes, {record['size']} were written (truncated?)"
    if sha256(path) != record["sha256"]:
        return "its content changed since it was written (SHA-256 differs from its seal)"
    return None


def verify(path: str | os.PathLike) -> str | None:
    """``problem`` that always reads the whole file, and requires a seal."""
    path = Path(path)
    if path.is_file() and not seal_of(path).is_file():
        return f"it has no seal ({seal_of(path).name})"
    return problem(path, thorough=True)


def format_problem(path: Path, finished_trace: bool = False) -> str | None:
    """What is wrong with the format of an unsealed result file, or None (a ``.pt`` file
    is a torch zip archive, any other an HDF5 file; see ``problem`` for
    ``finished_trace``)."""
    if path.suffix == ".pt":
        try:
            with zipfile.ZipFile(path) as archive:
                archive.infolist()
        except (zipfile.BadZipFile, OSError) as error:
            return f"it is not a readable torch file ({error})"
        return None
    try:
        with h5py.File(path, "r") as f:
            status = f.attrs.get("status")
    except OSError as error:
        return f"it is not a readable HDF5 file ({error})"
    if finished_trace:
        status = status.decode() if isinstance(status, bytes) else status
        if status not in ("complete", "diverged"):
            return f"its status is {status!r}, not a finished run"
    return None


def _read_seal(path: Path) -> dict | None:
    try:
        record = json.loads(seal_of(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or not {"size", "mtime_ns", "sha256"} <= record.keys():
        return None
    return record


def remove(path: Path) -> None:
    """Remove a result file and its seal."""
    path.unlink(missing_ok=True)
    seal_of(path).unlink(missing_ok=True)
