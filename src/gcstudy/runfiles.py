"""A run folder's result files, and whether each is still the file its writer wrote.

The result files of a run folder are ``trace.h5`` and ``model.pt`` (written by the trainer,
one result: a trace without its weights, or weights without their trace, is no finished
run) and the evaluations ``fewshot.nc`` and ``gc_estimators.nc``. Each is written under a
temporary name and renamed into place, then **sealed**: ``<name>.sum`` records its size in
bytes, its modification time in nanoseconds and its SHA-256.

``problem(path)`` says what is wrong with a result file, or None:

- a missing file is "missing";
- a sealed file whose size and modification time are those recorded is taken as sealed,
  without reading it (two ``stat`` calls and a small read); any other sealed file must
  have the recorded SHA-256 (a copied or touched file passes, a truncated or overwritten
  one does not);
- an unsealed file (written before seals existed, or its writer died between the rename
  and the seal) must have an intact format: an HDF5 file opens (HDF5 records the end of
  the file, so a truncated one does not) and a trace says it is finished; ``model.pt``'s
  zip directory (at its end) reads.

A change that keeps a file's size and modification time (a bit flipped on disk) is not
seen by the cheap test; ``verify`` (used before a kept copy is restored) always hashes.

``check_study`` is what the workflow runs each time Snakemake starts (see the Snakefile
and docs/recovery.md): it removes broken result files, so that Snakemake sees them
missing, and records what it found and when in ``<results>/run_files.json``, an input of
every rule that reads the runs: when that file changes, study.nc, the statistics, the
figures and the report are rebuilt, and the runs they need trained or evaluated again.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import shutil
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import h5py

from gcstudy import runlock

EVALUATIONS = {"fewshot": "fewshot.nc", "gc_estimators": "gc_estimators.nc"}  # kind: file
TRAINED = ("model.pt", "trace.h5")  # one result, written in this order: the trace says done
SEAL_SUFFIX = ".sum"
STUDY_CHECK = "run_files.json"  # under the results folder
CHUNK = 1 << 20
log = logging.getLogger(__name__)


def seal(path: str | os.PathLike) -> Path:
    """Record ``path``'s size, modification time and SHA-256 in ``<path>.sum`` (atomic)."""
    path = Path(path)
    stat = path.stat()
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256(path)}
    target = seal_of(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(record) + "\n")
    os.replace(tmp, target)
    return target


def seal_of(path: Path) -> Path:
    return path.with_name(path.name + SEAL_SUFFIX)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def problem(path: str | os.PathLike, thorough: bool = False) -> str | None:
    """What is wrong with the result file ``path`` (see the module doc), or None.
    ``thorough``: hash a sealed file even when its size and time are as recorded."""
    path = Path(path)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return "missing"
    record = _read_seal(path)
    if record is None:
        return format_problem(path)
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


def format_problem(path: Path) -> str | None:
    """What is wrong with the format of an unsealed result file, or None."""
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
    if path.name == "trace.h5":
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


def copy(source: Path, target: Path) -> None:
    """Copy a sealed result file and its seal (an independent copy, never a hard link:
    a damage to one is no damage to the other); atomic, times kept."""
    for src, dst in ((seal_of(source), seal_of(target)), (source, target)):
        tmp = dst.with_name(dst.name + ".copy")
        shutil.copy2(src, tmp)
        os.replace(tmp, dst)


def remove(path: Path) -> None:
    """Remove a result file and its seal."""
    path.unlink(missing_ok=True)
    seal_of(path).unlink(missing_ok=True)


@dataclass(frozen=True)
class Finding:
    """A result file the study needs that is missing or was broken (and removed)."""

    path: str
    reason: str
    removed: bool = False


def check_folder(folder: Path, evaluations: Iterable[str] = ()) -> list[Finding]:
    """The missing and broken result files of one run folder: a broken file is removed,
    and with it its partner of ``TRAINED`` (so that the run is trained again as a whole).
    A folder held by a live trainer (``gcstudy.runlock``) is left alone."""
    names = (*TRAINED, *evaluations)
    problems = {name: problem(folder / name) for name in names}
    if not any(problems.values()) or runlock.holder(folder) is not None:
        return []
    trained_broken = any(problems[name] for name in TRAINED)
    findings = []
    for name, reason in problems.items():
        path = folder / name
        partner = name in TRAINED and trained_broken and reason is None
        if reason == "missing" or (reason is None and not partner):
            if reason:
                findings.append(Finding(str(path), reason))
            continue
        remove(path)
        why = reason or "its partner in the run's result is missing or broken"
        log.warning("removed %s (%s): it will be made again", path, why)
        findings.append(Finding(str(path), why, removed=True))
    return findings


def check_study(results: str | os.PathLike, folders: dict[str, Iterable[str]]) -> list[Finding]:
    """Check the run folders ``results/runs/<folder>`` (folder -> the evaluations it
    needs) and record the findings in ``results/run_files.json``: rewritten (its time
    advancing) when something is missing or was removed, else created with time 0 if
    absent, so that an intact study starts no rule."""
    results = Path(results)
    findings = [f for name, evaluations in folders.items()
                for f in check_folder(results / "runs" / name, evaluations)]  # fmt: skip
    record = results / STUDY_CHECK
    if findings or not record.exists():
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(record.name + ".tmp")
        # the time makes each record differ: Snakemake ignores a newer input whose
        # checksum it recorded before (the same findings again, after a recovery)
        checked_at = datetime.datetime.now(datetime.UTC).isoformat()
        found = [f.__dict__ for f in findings]
        tmp.write_text(json.dumps({"checked_at": checked_at, "findings": found}, indent=1))
        os.replace(tmp, record)
        if not findings:
            os.utime(record, ns=(0, 0))
    return findings
