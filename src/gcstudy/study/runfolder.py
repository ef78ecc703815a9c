"""A run folder: the files it holds, the evaluations it needs, and its state read from them.

Each trained run has one folder, ``<results>/runs/<folder>/`` (runs of several studies with
one run spec share the folder of the first, ``gcstudy.study.config.trained_runs``). Its files,
each named here and nowhere else:

==========================  ============================================================
``spec.yaml``               the run spec the trainer reads (from its batch file)
``trace.h5``                the finished trace (``gcstudy.study.traces``)
``model.pt``                the final weights with the run spec (``gcstudy.training.trainer``)
``fewshot.nc``              evaluation ``fewshot`` (``gcstudy.measure.evaluations``)
``gc_estimators.nc``        evaluation ``gc_estimators``
``<name>.sum``              the seal of each of the four result files above
                            (``gcstudy.study.seals``: size, modification time, SHA-256)
``trace.running.h5``        the trace so far, while training
``progress.json``           the trainer's current step and wall time, while training
``lock.json``               who trains the folder (``gcstudy.study.runlock``)
``ckpt/step-<step>.pt``     checkpoints (``gcstudy.training.checkpoints``), removed when finished
==========================  ============================================================

``model.pt`` and ``trace.h5`` are one result (``TRAINED``, written in this order: the trace
says done): a trace without its weights, or weights without their trace, is no finished
run. A folder needs the evaluation files of the evaluations of every run that reads it
(``evaluations_by_folder``; the ``bound`` evaluation has no file of its own).

A folder's **state** (``RunFolder.state``), from its files:

- **complete** / **diverged**: ``trace.h5`` says so, its result files (``trace.h5``,
  ``model.pt`` and the evaluations written so far) are as sealed, and the trace's run spec
  is the expected one;
- **running**: a live trainer holds the folder (``lock.json``); its step and wall time come
  from ``progress.json`` or the last record of ``trace.running.h5``, whichever is further;
- **pending**: nothing started yet, or queued (a submitted ``gcstudy launch`` task holds
  the folder and has not started);
- **failed**: started (``trace.running.h5`` or checkpoints) but no live trainer holds it;
- **broken**: a result file is missing, truncated or changed (see ``gcstudy.study.seals``);
- **stale**: a finished trace of another run spec than the expected one.

``check_study`` is what the workflow runs each time Snakemake starts (docs/recovery.md): it
removes the broken result files of every folder, so that Snakemake sees them missing, and
records what it found in ``<results>/run_files.json``.

This module reads three file formats, each owned by its own module and none importing a
stage: traces (``gcstudy.study.traces``), the lock (``gcstudy.study.runlock``) and the seals
(``gcstudy.study.seals``).
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import re
import shutil
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py

from gcstudy import files
from gcstudy.study import runlock, traces
from gcstudy.study import seals as runfiles

if TYPE_CHECKING:
    from gcstudy.study.spec import RunSpec

RUNS = "runs"  # the run folders' parent, under the results folder
SPEC = "spec.yaml"
TRACE = "trace.h5"
MODEL = "model.pt"
RUNNING_TRACE = "trace.running.h5"
PROGRESS = "progress.json"
LOCK = runlock.LOCK_NAME
CHECKPOINTS = "ckpt"
EVALUATION_FILES = {"fewshot": "fewshot.nc", "gc_estimators": "gc_estimators.nc"}  # kind: file
TRAINED = (MODEL, TRACE)  # one result, written in this order: the trace says done
STUDY_CHECK = "run_files.json"  # under the results folder (``check_study``)

STATES = ("complete", "running", "pending", "diverged", "failed", "broken", "stale")
FINISHED = traces.FINISHED  # ("complete", "diverged")
NEEDS_ACTION = ("failed", "broken", "stale")
RERUN = "run the workflow again (the same snakemake command)"

log = logging.getLogger(__name__)


def checkpoint_name(step: int) -> str:
    """The file name of the checkpoint after ``step`` updates: ``step-00000100.pt``."""
    return f"step-{step:08d}.pt"


CHECKPOINT_GLOB = "step-*.pt"
_CHECKPOINT_NAME = re.compile(r"step-(\d+)\.pt")


def runs_root(results: str | os.PathLike) -> Path:
    """The parent of the run folders: ``<results>/runs``."""
    return Path(results) / RUNS


def evaluations_by_folder(
    readers: Iterable[tuple[Hashable, Iterable[str]]],
) -> dict[Hashable, tuple[str, ...]]:
    """Each run folder's evaluations from ``(folder, evaluations)`` of the runs that read
    it (runs of several studies may share one folder; ``folder`` a name or a path): the
    union of theirs, in the order first seen; folders in the order first seen. The one
    answer to "which evaluations does a folder need" (config, workflow, ``train --runs``)."""
    wanted: dict[Hashable, dict[str, None]] = {}
    for folder, evaluations in readers:
        wanted.setdefault(folder, {}).update(dict.fromkeys(evaluations))
    return {folder: tuple(kinds) for folder, kinds in wanted.items()}


def differing_keys(traced: dict | None, spec: dict) -> list[str]:
    """The keys in which a trace's recorded run spec differs from ``spec`` (compared as
    JSON, as the trace stores it); empty when they agree."""
    traced, spec = traced or {}, json.loads(json.dumps(spec))
    return sorted(k for k in set(traced) | set(spec) if traced.get(k) != spec.get(k))


@dataclass(frozen=True)
class State:
    """Where a run folder stands (see the module doc)."""

    name: str  # one of STATES
    step: int = 0  # last traced step (running, failed, finished runs)
    wall_time: float = 0.0  # seconds of training up to ``step``
    holder: runlock.Holder | None = None
    queued: bool = False  # pending, held by a submitted task that has not started
    note: str = ""  # what is wrong and what to do (failed, broken, stale)


@dataclass(frozen=True)
class Finding:
    """A result file the study needs that is missing or was broken (and removed)."""

    path: str
    reason: str
    removed: bool = False


@dataclass(frozen=True)
class RunFolder:
    """One run folder: ``path`` and the evaluation kinds the study asks of it."""

    path: Path
    evaluations: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        object.__setattr__(self, "evaluations", tuple(self.evaluations))

    @classmethod
    def under(cls, results: str | os.PathLike, folder: str, evaluations: Iterable[str] = ()):
        """The run folder ``<results>/runs/<folder>``."""
        return cls(runs_root(results) / folder, tuple(evaluations))

    # ------------------------------------------------------------------ the files

    @property
    def spec(self) -> Path:
        return self.path / SPEC

    @property
    def trace(self) -> Path:
        return self.path / TRACE

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def running_trace(self) -> Path:
        return self.path / RUNNING_TRACE

    @property
    def progress_file(self) -> Path:
        return self.path / PROGRESS

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def trained(self) -> tuple[Path, ...]:
        """The two files of the trained result, in the order they are written."""
        return tuple(self.path / name for name in TRAINED)

    def evaluation_file(self, kind: str) -> Path:
        """The file of evaluation ``kind`` (a key of ``EVALUATION_FILES``)."""
        return self.path / EVALUATION_FILES[kind]

    @property
    def evaluation_files(self) -> tuple[Path, ...]:
        """The evaluation files this folder needs (``evaluations`` that have a file)."""
        return tuple(self.evaluation_file(k) for k in self.evaluations if k in EVALUATION_FILES)

    @property
    def result_files(self) -> tuple[Path, ...]:
        """Every result file this folder needs: the trained result, then the evaluations."""
        return (*self.trained, *self.evaluation_files)

    # ------------------------------------------------------------------ the result files

    def problem(self, path: Path) -> str | None:
        """What is wrong with the result file ``path`` of this folder, or None
        (``gcstudy.study.seals.problem``; an unsealed trace must say its run finished)."""
        return runfiles.problem(path, finished_trace=path.name == TRACE)

    def trained_problems(self) -> dict[Path, str | None]:
        """The problem (or None) of each file of the trained result."""
        return {path: self.problem(path) for path in self.trained}

    def remove_trained(self) -> None:
        """Remove the trained result (both files and their seals)."""
        for path in self.trained:
            runfiles.remove(path)

    def check(self) -> list[Finding]:
        """The missing and broken result files of this folder: a broken file is removed,
        and with it its partner of ``TRAINED`` (so that the run is trained again as a
        whole). A folder held by a live trainer (``gcstudy.study.runlock``) is left alone."""
        problems = {path: self.problem(path) for path in self.result_files}
        if not any(problems.values()) or runlock.holder(self.path) is not None:
            return []
        trained_broken = any(problems[path] for path in self.trained)
        findings = []
        for path, reason in problems.items():
            partner = path in self.trained and trained_broken and reason is None
            if reason == "missing" or (reason is None and not partner):
                if reason:
                    findings.append(Finding(str(path), reason))
                continue
            runfiles.remove(path)
            why = reason or "its partner in the run's result is missing or broken"
            log.warning("removed %s (%s): it will be made again", path, why)
            findings.append(Finding(str(path), why, removed=True))
        return findings

    def trace_status(self) -> str | None:
        """The status the trace says ("complete", "diverged"), or None without one."""
        return traces.status(self.trace)

    def traced_spec(self) -> dict | None:
        """The run spec recorded in the trace (its attribute only, not checked)."""
        with h5py.File(self.trace, "r") as f:
            value = f.attrs.get("spec")
        return json.loads(value) if isinstance(value, str | bytes) else None

    # ------------------------------------------------------------------ while training

    def record_progress(self, step: int, wall_time: float) -> None:
        """Write ``progress.json`` (the trainer's current step and wall time), atomic."""
        text = json.dumps({"step": step, "wall_time": wall_time}) + "\n"
        files.write_text(self.progress_file, text)

    def progress(self) -> tuple[int, float, str]:
        """(current step, its wall time, problem): the further of ``progress.json`` and
        the last record of ``trace.running.h5``."""
        step, wall_time, note = 0, 0.0, ""
        if self.running_trace.exists():
            try:
                trace = traces.load(self.running_trace, allow_running=True)
                step, wall_time = int(trace.steps[-1]), float(trace.values["wall_time"][-1])
            except traces.TraceError as error:
                note = str(error)
        try:
            progress = json.loads(self.progress_file.read_text())
            if progress["step"] > step:
                step, wall_time = int(progress["step"]), float(progress["wall_time"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
            pass
        return step, wall_time, note

    def checkpoint_steps(self) -> list[int]:
        """The steps of the checkpoints in ``ckpt/``, oldest first."""
        found = (_CHECKPOINT_NAME.fullmatch(p.name) for p in self.checkpoints.glob(CHECKPOINT_GLOB))
        return sorted(int(m.group(1)) for m in found if m)

    def started(self) -> bool:
        """Training began here: a running trace or a checkpoint is on disk."""
        return self.running_trace.exists() or bool(self.checkpoint_steps())

    def remove_progress(self) -> None:
        """Remove what only a run in training needs (running trace, progress, checkpoints:
        ``ckpt/`` goes whole)."""
        self.running_trace.unlink(missing_ok=True)
        self.progress_file.unlink(missing_ok=True)
        shutil.rmtree(self.checkpoints, ignore_errors=True)

    # ------------------------------------------------------------------ the state

    def state(self, spec: RunSpec) -> State:
        """Where this folder stands (see the module doc) for a run of ``spec`` (the
        expected run spec)."""
        holder = runlock.holder(self.path)
        if self.trace.exists() or (holder is None and self.model.exists()):
            return self._finished_state(spec.to_dict())
        step, wall_time, note = self.progress()
        if holder is not None and holder.state == "queued":
            return State("pending", step, wall_time, holder, queued=True)
        if holder is not None:
            return State("running", step, wall_time, holder, note=note)
        if self.started():
            resume = (f"no live trainer; {RERUN}: it resumes from step "
                      f"{max(self.checkpoint_steps(), default=0)}")  # fmt: skip
            return State("failed", step, wall_time, note=note or resume)
        return State("pending")

    def _finished_state(self, spec: dict) -> State:
        """The state of a folder with a result: complete/diverged, broken or stale."""
        written = (self.path / name for name in EVALUATION_FILES.values())
        paths = (*self.trained, *(path for path in written if path.exists()))
        problems = [f"{path.name}: {p}" for path in paths if (p := self.problem(path))]
        if problems:
            what = "; ".join(problems)
            return State("broken", note=f"{what}; {RERUN}: it makes them again")
        try:
            trace = traces.load(self.trace)
        except traces.TraceError as error:
            return State("broken", note=f"{error}; {RERUN}: it trains the run again")
        step, wall_time = int(trace.steps[-1]), float(trace.values["wall_time"][-1])
        differing = differing_keys(trace.attrs.get("spec"), spec)
        if differing:
            note = (
                f"trained with another run spec than the config's (keys "
                f"{', '.join(differing)} differ); {RERUN}: it trains the run again"
            )
            return State("stale", step, wall_time, note=note)
        return State(trace.attrs["status"], step, wall_time)


def check_study(results: str | os.PathLike, folders: Iterable[RunFolder]) -> list[Finding]:
    """Check the run folders (``RunFolder.check``) and record the findings in
    ``results/run_files.json``: rewritten (its time advancing) when something is missing or
    was removed, else created with time 0 if absent, so that an intact study starts no
    rule."""
    findings = [finding for folder in folders for finding in folder.check()]
    record = Path(results) / STUDY_CHECK
    if findings or not record.exists():
        # the time makes each record differ: Snakemake ignores a newer input whose
        # checksum it recorded before (the same findings again, after a recovery)
        checked_at = datetime.datetime.now(datetime.UTC).isoformat()
        found = [f.__dict__ for f in findings]
        text = json.dumps({"checked_at": checked_at, "findings": found}, indent=1)
        files.write_text(record, text)
        if not findings:
            os.utime(record, ns=(0, 0))
    return findings
