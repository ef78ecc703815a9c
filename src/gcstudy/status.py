"""A study's progress at a glance: ``gcstudy status [--configfile F]``.

Each run folder of the config (``<results>/runs/<folder>/``; runs of several studies with
one spec share the folder of the first, ``share_runs``, and are counted in it) is, from its
files:

- **complete** / **diverged**: ``trace.h5`` says so, its result files (``trace.h5``,
  ``model.pt`` and the evaluations written so far) are as sealed (``gcstudy.runfiles``),
  and the trace's run spec is the config's;
- **running**: a live trainer holds the folder (``gcstudy.runlock``); its current step and
  wall time come from ``progress.json`` (the trainer rewrites it every
  ``PROGRESS_SECONDS``) or the last record of ``trace.running.h5`` (each evaluation step),
  whichever is further;
- **pending**: nothing started yet, or **queued** (a submitted ``gcstudy launch`` task
  holds the folder and has not started; counted with pending);
- **failed**: started (``trace.running.h5`` or checkpoints) but no live trainer holds it:
  the job was killed, failed or ran out of retries; the workflow resumes it;
- **broken**: a result file is missing, truncated or changed (a trace without weights,
  weights without a trace, a file that does not match its seal): the workflow removes the
  broken files and trains or evaluates the run again;
- **stale**: a finished trace of another run spec than the config's (the config changed):
  the workflow trains the run again.

Failed, broken and stale runs are named with what to do; ``main``'s exit status is 0 when
every run is finished (complete or diverged), 1 when some run needs action (failed,
broken, stale), 3 while runs are running or pending and none needs action.

ETA: the steps still to train over all unfinished runs, times the mean seconds per step
measured so far (``wall_time / step`` of the running and finished traces), divided by the
number of runs training in parallel now (at least one). An estimate from the runs seen:
runs of other models or batch sizes may be faster or slower.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from gcstudy import runfiles, runlock, traces

STATES = ("complete", "running", "pending", "diverged", "failed", "broken", "stale")
FINISHED = ("complete", "diverged")
NEEDS_ACTION = ("failed", "broken", "stale")
PROGRESS_NAME = "progress.json"
PROGRESS_SECONDS = 5.0
RERUN = "run the workflow again (the same snakemake command)"


@dataclass(frozen=True)
class RunStatus:
    """Where one run folder stands."""

    run_id: str  # the run folder, relative to <results>/runs
    state: str  # one of STATES
    steps: int  # the run's step budget
    step: int = 0  # last traced step (running, failed, finished runs)
    wall_time: float = 0.0  # seconds of training up to ``step``
    holder: runlock.Holder | None = None
    queued: bool = False
    note: str = ""
    runs: int = 1  # the config's runs that read this folder

    @property
    def seconds_per_step(self) -> float | None:
        return self.wall_time / self.step if self.step > 0 and self.wall_time > 0 else None


def survey(runs: list, results: str | Path) -> list[RunStatus]:
    """The status of each run folder of ``runs`` (gcstudy.config.Run, as ``expand``
    gives them) under the results folder ``results``, in order."""
    from gcstudy.config import trained_runs

    readers = Counter(run.trained_in for run in runs)
    return [
        run_status(run, Path(results) / "runs" / run.run_id, readers[run.run_id])
        for run in trained_runs(runs)
    ]


def run_status(run, folder: Path, readers: int = 1) -> RunStatus:
    """The status of one trained run (``gcstudy.config.trained_runs``) from its folder
    (see the module doc); ``readers``: the config's runs that read the folder."""
    steps = run.spec.steps
    found = RunStatus(run.run_id, "pending", steps, runs=readers)
    holder = runlock.holder(folder)
    if (folder / "trace.h5").exists() or (holder is None and (folder / "model.pt").exists()):
        return _finished(found, folder, run.spec.to_dict())
    step, wall_time, note = _progress(folder)
    if holder is not None and holder.state == "queued":
        return replace(found, step=step, wall_time=wall_time, holder=holder, queued=True)
    if holder is not None:
        return replace(found, state="running", step=step, wall_time=wall_time, holder=holder,
                       note=note)  # fmt: skip
    started = (folder / "trace.running.h5").exists() or any(folder.glob("ckpt/step-*.pt"))
    if started:
        resume = (f"no live trainer; {RERUN}: it resumes from step "
                  f"{checkpoint_step(folder)}")  # fmt: skip
        return replace(found, state="failed", step=step, wall_time=wall_time, note=note or resume)
    return found


def _finished(found: RunStatus, folder: Path, spec: dict) -> RunStatus:
    """The status of a folder with a result: complete/diverged, broken or stale."""
    evaluations = (n for n in runfiles.EVALUATIONS.values() if (folder / n).exists())
    names = (*runfiles.TRAINED, *evaluations)
    problems = [f"{name}: {p}" for name in names if (p := runfiles.problem(folder / name))]
    if problems:
        what = "; ".join(problems)
        return replace(found, state="broken", note=f"{what}; {RERUN}: it makes them again")
    try:
        trace = traces.load(folder / "trace.h5")
    except traces.TraceError as error:
        return replace(found, state="broken", note=f"{error}; {RERUN}: it trains the run again")
    step, wall_time = int(trace.steps[-1]), float(trace.values["wall_time"][-1])
    traced = trace.attrs.get("spec") or {}
    differing = sorted(k for k in set(traced) | set(spec) if traced.get(k) != spec.get(k))
    if differing:
        note = (f"trained with another run spec than the config's (keys "
                f"{', '.join(differing)} differ); {RERUN}: it trains the run again")  # fmt: skip
        return replace(found, state="stale", step=step, wall_time=wall_time, note=note)
    return replace(found, state=trace.attrs["status"], step=step, wall_time=wall_time)


def record_progress(folder: Path, step: int, wall_time: float) -> None:
    """Write ``folder/progress.json`` (the trainer's current step and wall time), atomic."""
    path = folder / PROGRESS_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"step": step, "wall_time": wall_time}) + "\n")
    os.replace(tmp, path)


def _progress(folder: Path) -> tuple[int, float, str]:
    """(current step, its wall time, problem): the further of ``progress.json`` and the
    last record of ``trace.running.h5``."""
    step, wall_time, note = 0, 0.0, ""
    path = folder / "trace.running.h5"
    if path.exists():
        try:
            trace = traces.load(path, allow_running=True)
            step, wall_time = int(trace.steps[-1]), float(trace.values["wall_time"][-1])
        except traces.TraceError as error:
            note = str(error)
    try:
        progress = json.loads((folder / PROGRESS_NAME).read_text())
        if progress["step"] > step:
            step, wall_time = int(progress["step"]), float(progress["wall_time"])
    except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError):
        pass
    return step, wall_time, note


def eta_seconds(statuses: list[RunStatus]) -> tuple[float | None, float | None, int]:
    """(ETA in seconds, mean seconds per step, runs in parallel); None where nothing has
    been measured yet. See the module doc."""
    rates = [s.seconds_per_step for s in statuses if s.seconds_per_step is not None]
    parallel = sum(s.state == "running" for s in statuses)
    left = sum(steps_left(s) for s in statuses)
    if not rates:
        return (0.0 if left == 0 else None), None, parallel
    per_step = sum(rates) / len(rates)
    return left * per_step / max(parallel, 1), per_step, parallel


def steps_left(found: RunStatus) -> int:
    """Training steps the run folder still needs (broken and stale runs: all of them)."""
    if found.state in FINISHED:
        return 0
    return found.steps if found.state in ("broken", "stale") else found.steps - found.step


def render(statuses: list[RunStatus]) -> str:
    """The counts (of the config's runs), the running run folders with their step, the
    run folders that need action with what to do, and the ETA, as text."""
    counts = Counter()
    for s in statuses:
        counts[s.state] += s.runs
    parts = [f"{counts[state]} {state}" for state in STATES]
    queued = sum(s.runs for s in statuses if s.queued)
    if queued:
        parts[STATES.index("pending")] += f" ({queued} queued)"
    total = sum(s.runs for s in statuses)
    lines = [f"{total} runs in {len(statuses)} run folders: " + ", ".join(parts)]
    for s in statuses:
        if s.state == "running":
            pace = f", {s.seconds_per_step:.2f} s/step" if s.seconds_per_step else ""
            lines.append(
                f"  running  {s.run_id}: step {s.step}/{s.steps}{pace} ({s.holder.describe()})"
            )
    for s in statuses:
        if s.state in NEEDS_ACTION:
            lines.append(f"  {s.state:<8} {s.run_id}: step {s.step}/{s.steps}: {s.note}")
    eta, per_step, parallel = eta_seconds(statuses)
    if eta is None:
        lines.append("ETA: unknown (no run has traced a step yet)")
    elif eta == 0:
        lines.append("ETA: done")
    else:
        lines.append(
            f"ETA: ~{duration(eta)} ({per_step:.2f} s/step measured, "
            f"{max(parallel, 1)} run(s) in parallel)"
        )
    return "\n".join(lines)


def exit_status(statuses: list[RunStatus]) -> int:
    """0: every run finished; 1: some run needs action; 3: runs still to train (see the
    module doc)."""
    if any(s.state in NEEDS_ACTION for s in statuses):
        return 1
    return 0 if all(s.state in FINISHED for s in statuses) else 3


def duration(seconds: float) -> str:
    """``75`` -> ``1 min 15 s``; ``4000`` -> ``1 h 06 min``."""
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def checkpoint_step(folder: Path) -> int:
    """The newest checkpoint's step in ``folder/ckpt`` (0 without one)."""
    steps = [int(m.group(1)) for p in folder.glob("ckpt/step-*.pt")
             if (m := re.fullmatch(r"step-(\d+)\.pt", p.name))]  # fmt: skip
    return max(steps, default=0)
