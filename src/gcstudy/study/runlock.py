"""One writer per run folder: a lock file that names who trains the run.

``<run dir>/lock.json`` holds the holder: ``pid``, ``host``, SLURM ``job`` id, process
``start`` (clock ticks after boot, against pid reuse), ``since`` and ``state``: "running"
(a trainer holds it; written by ``acquire`` at the start of ``gcstudy.training.trainer.run``) or
"queued" (``gcstudy launch`` submitted a task for the run; written by ``reserve``).

A holder is live, and a second trainer is refused with ``RunLocked`` naming it, when:

- it is a process on this host: that pid exists with the recorded start time and is not a
  zombie (a dead or reused pid is stale);
- else it names a SLURM job: ``squeue`` lists the job in a state other than a final one
  (PENDING, RUNNING, REQUEUED, SUSPENDED, ...); a job squeue no longer knows or that has
  ended (COMPLETED, FAILED, CANCELLED, TIMEOUT, ...) is stale;
- else (another host, no job id): it cannot be checked from here and counts as live; the
  message says which file to remove if that process is gone.

The holder's own process and a later incarnation of its own SLURM job (a requeued task,
same job id) take the lock over. A stale holder is replaced. The lock file is created
complete and atomically (written aside, then ``os.link``, which also works on NFS) and is
removed when the process that holds it exits normally; a killed holder leaves a stale file.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

LOCK_NAME = "lock.json"
# squeue states of a job that may still (or again) run.
LIVE_JOB_STATES = (
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
    "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD",
    "SPECIAL_EXIT",
)  # fmt: skip


@dataclass(frozen=True)
class Holder:
    """Who trains (or is queued to train) a run folder."""

    pid: int | None
    host: str
    job: str | None
    start: int | None
    since: str
    state: str = "running"

    @classmethod
    def this_process(cls) -> Holder:
        from gcstudy import provenance

        pid = os.getpid()
        return cls(pid, platform.node(), current_job(), _start_ticks(pid), provenance.now())

    def describe(self) -> str:
        return f"job {self.job or '-'}, host {self.host}, pid {self.pid or '-'}"

    def is_ours(self, me: Holder) -> bool:
        """Held by this very process, or by an earlier run of this SLURM job (requeued)."""
        same_process = (self.pid, self.host, self.start) == (me.pid, me.host, me.start)
        return same_process or (self.job is not None and self.job == me.job)

    def alive(self) -> bool:
        """Whether the holder may still write into the folder (see the module doc)."""
        if self.pid is not None and self.host == platform.node():
            return _process_alive(self.pid, self.start)
        if self.job is not None:
            state = slurm_job_state(self.job)
            return state is None or state in LIVE_JOB_STATES
        return True  # another host and no job: cannot be checked from here


class RunLocked(RuntimeError):
    """A second writer for a run folder that a live holder trains."""

    def __init__(self, path: Path, holder: Holder):
        what = "is queued to be trained by" if holder.state == "queued" else "is being trained by"
        super().__init__(
            f"{path.parent} {what} {holder.describe()} (since {holder.since}); refusing a "
            f"second writer. If that process or job is gone, remove {path}"
        )
        self.path, self.holder = path, holder


def acquire(run_dir: str | os.PathLike) -> Holder:
    """Make this process the holder of ``run_dir`` (created if missing) until it exits.

    Raises ``RunLocked`` when a live holder other than this process (or its own requeued
    job) has it. Returns this process's ``Holder``."""
    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    me = Holder.this_process()
    for _ in range(5):
        if _create(path, me):
            atexit.register(release, path, me)
            return me
        text = _read(path)
        if text is None:  # removed meanwhile
            continue
        held = _parse(text)
        if held is not None and not held.is_ours(me) and held.alive():
            raise RunLocked(path, held)
        if _read(path) == text:  # unchanged since judged: replace the stale or own holder
            path.unlink(missing_ok=True)
    raise RunLocked(path, _parse(_read(path) or "") or me)


def reserve(run_dir: str | os.PathLike, job: str) -> bool:
    """Record that SLURM job ``job`` will train ``run_dir`` (state "queued"), unless the
    folder already has a holder (e.g. the task started first). Returns whether written."""
    from gcstudy import provenance

    path = Path(run_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    queued = Holder(None, platform.node(), job, None, provenance.now(), "queued")
    return _create(path, queued)


def holder(run_dir: str | os.PathLike) -> Holder | None:
    """The live holder of ``run_dir``, or None when it is free or its holder is stale."""
    text = _read(Path(run_dir) / LOCK_NAME)
    held = _parse(text) if text is not None else None
    return held if held is not None and held.alive() else None


def release(path: Path, me: Holder) -> None:
    """Remove the lock file if it still names ``me``."""
    text = _read(path)
    if text is not None and _parse(text) == me:
        path.unlink(missing_ok=True)


def current_job() -> str | None:
    """This process's SLURM job id (``<array job>_<task>`` in an array), or None."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def slurm_job_state(job: str) -> str | None:
    """The job's state from ``squeue`` ("" when squeue no longer lists it), or None when
    squeue cannot be asked (no SLURM here)."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "--states=all", "-j", job, "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return "" if "Invalid job id" in out.stderr else None
    return out.stdout.strip().split("\n")[0]


def _create(path: Path, holder: Holder) -> bool:
    """Create ``path`` holding ``holder``, complete, only if it does not exist."""
    aside = path.with_name(f".{path.name}.{platform.node()}.{os.getpid()}")
    aside.write_text(json.dumps(asdict(holder)) + "\n")
    try:
        os.link(aside, path)
        return True
    except FileExistsError:
        return False
    finally:
        aside.unlink(missing_ok=True)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _parse(text: str) -> Holder | None:
    """The holder in a lock file's text; None for a file that is not one (stale)."""
    try:
        return Holder(**json.loads(text))
    except (json.JSONDecodeError, TypeError):
        return None


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks after boot (/proc/<pid>/stat field 22)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[19])


def _process_alive(pid: int, start: int | None) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and (start is None or _start_ticks(pid) == start)
