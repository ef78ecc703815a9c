"""One Snakemake per results folder: an OS lock that lives as long as its process.

Snakemake's own lock (``.snakemake/locks``) names no process, and its message advises
``--unlock``, which removes it whether or not the other Snakemake still runs; a second
Snakemake then follows ``--rerun-incomplete`` and deletes the outputs of the first one's
jobs. So the workflow takes its own lock: when the main Snakemake process reads the
Snakefile, it locks ``<results>/.workflow.lock`` with ``flock(2)`` and holds it until it
exits. The kernel releases the lock when the process ends, however it ends (no stale lock
to remove by hand). The file names the holder: pid, host, start time, command line.

A second Snakemake reading the Snakefile while the lock is held is refused with
``StudyInUse`` naming the holder, before it builds its DAG, hence before any flag of it
(``--unlock``, ``--rerun-incomplete``, ``--forcerun``, ``--touch``) can touch a file. A dry
run (``-n``) is let through (it writes nothing); the caller skips its own writes then.

On NFS, ``flock`` works between hosts where the mount has locking (Linux maps it to NFS
byte-range locks); on a mount without locking each host only sees its own holders.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import platform
import sys
from pathlib import Path

LOCK_NAME = ".workflow.lock"
_held: dict[Path, int] = {}  # lock file -> open descriptor, for the life of the process


class StudyInUse(RuntimeError):
    """Another live process holds the results folder's workflow lock."""

    def __init__(self, results: Path, holder: dict | None):
        who = describe(holder)
        super().__init__(
            f"{results} is in use by another Snakemake: {who}. It is still running (its "
            f"lock {results / LOCK_NAME} is held); a second one would delete or overwrite "
            "its files, whatever flags it is given (--unlock, --rerun-incomplete). Wait "
            "for it to finish (`gcstudy status` shows its progress), or stop it first "
            "(Ctrl-C in its terminal, or `kill PID`), then run the same command again."
        )
        self.holder = holder


def describe(holder: dict | None) -> str:
    if not holder:
        return "a process that has not written its name yet"
    return (
        f"pid {holder['pid']} on host {holder['host']}, since {holder['since']}, "
        f"command: {holder['command']}"
    )


def acquire(results: str | os.PathLike) -> bool:
    """Hold the lock of ``results`` (created if missing) until this process exits; True
    if this process holds it now, False if a live process other than this one does."""
    path = Path(results).resolve() / LOCK_NAME
    if path in _held:
        return True
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    holder = {
        "pid": os.getpid(),
        "host": platform.node(),
        "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
    _held[path] = descriptor  # never closed: closing would release the lock
    return True


def holder(results: str | os.PathLike) -> dict | None:
    """Who the lock file of ``results`` names (the holder, if the lock is held), or None."""
    try:
        return json.loads((Path(results) / LOCK_NAME).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def guard(results: str | os.PathLike, dry_run: bool) -> bool:
    """The workflow's guard (see the module doc): True when this process holds the lock
    and may write; False for a dry run beside a live holder (a note names it); raises
    ``StudyInUse`` for anything else beside a live holder."""
    if acquire(results):
        return True
    held_by = holder(results)
    if not dry_run:
        raise StudyInUse(Path(results), held_by)
    print(f"gcstudy: note: {results} is in use by another Snakemake ({describe(held_by)}); "
          "this dry run changes nothing and checks no run files", file=sys.stderr)  # fmt: skip
    return False
