"""A study's progress at a glance: ``gcstudy status [--configfile F]``.

Each run folder of the config (``<results>/runs/<folder>/``; runs of several studies with
one spec share the folder of the first, ``share_runs``, and are counted in it) is, from its
files, complete, diverged, running, pending (or queued: a submitted ``gcstudy launch`` task
holds the folder and has not started; counted with pending), failed, broken or stale: see
``gcstudy.study.runfolder`` for what each means and how it is read.

Failed, broken and stale runs are named with what to do; ``main``'s exit status is 0 when
every run is finished (complete or diverged), 1 when some run needs action (failed,
broken, stale), 3 while runs are running or pending and none needs action.

ETA: the steps still to train over all unfinished runs, times the mean seconds per step
measured so far (``wall_time / step`` of the running and finished traces), divided by the
number of runs training in parallel now (at least one). An estimate from the runs seen:
runs of other models or batch sizes may be faster or slower.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gcstudy.study import runlock
from gcstudy.study.runfolder import FINISHED, NEEDS_ACTION, STATES, RunFolder

PROGRESS_SECONDS = 5.0  # how often the trainer rewrites progress.json


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
    """The status of each run folder of ``runs`` (gcstudy.study.config.Run, as ``expand``
    gives them) under the results folder ``results``, in order."""
    from gcstudy.study.config import trained_runs

    readers = Counter(run.trained_in for run in runs)
    return [
        run_status(run, RunFolder.under(results, run.run_id).path, readers[run.run_id])
        for run in trained_runs(runs)
    ]


def run_status(run, folder: Path, readers: int = 1) -> RunStatus:
    """The status of one trained run (``gcstudy.study.config.trained_runs``) from its folder
    (``RunFolder.state``); ``readers``: the config's runs that read the folder."""
    state = RunFolder(folder).state(run.spec)
    return RunStatus(
        run.run_id, state.name, run.spec.steps, state.step, state.wall_time, state.holder,
        state.queued, state.note, readers,
    )  # fmt: skip


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
