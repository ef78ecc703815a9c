"""A study's progress at a glance: ``gcstudy status --configfile F``.

For each run of the config, from the files in its folder ``<results>/runs/<run_id>/``:

- **complete** / **diverged**: ``trace.h5`` says so;
- **running**: a live trainer holds the folder (``gcstudy.runlock``); its current step and
  wall time are the last record of ``trace.running.h5`` (written at each evaluation step);
- **pending**: nothing started yet, or **queued** (a submitted ``gcstudy launch`` task
  holds the folder and has not started; counted with pending);
- **failed**: started (``trace.running.h5`` or checkpoints) but no live trainer holds it:
  the job was killed, failed or ran out of retries; training it again resumes it. A
  ``trace.h5`` that cannot be read is failed too.

ETA: the steps still to train over all unfinished runs, times the mean seconds per step
measured so far (``wall_time / step`` of the running and finished traces), divided by the
number of runs training in parallel now (at least one). An estimate from the runs seen:
runs of other models or batch sizes may be faster or slower.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from gcstudy import runlock, traces

STATES = ("complete", "running", "pending", "diverged", "failed")


@dataclass(frozen=True)
class RunStatus:
    """Where one run stands."""

    run_id: str
    state: str  # one of STATES
    steps: int  # the run's step budget
    step: int = 0  # last traced step (running, failed, finished runs)
    wall_time: float = 0.0  # seconds of training up to ``step``
    holder: runlock.Holder | None = None
    queued: bool = False
    note: str = ""

    @property
    def seconds_per_step(self) -> float | None:
        return self.wall_time / self.step if self.step > 0 and self.wall_time > 0 else None


def survey(runs: list, results: str | Path) -> list[RunStatus]:
    """The status of each run (gcstudy.config.Run) under the results folder ``results``."""
    return [run_status(run.run_id, run.spec.steps, Path(results) / "runs" / run.run_id)
            for run in runs]  # fmt: skip


def run_status(run_id: str, steps: int, folder: Path) -> RunStatus:
    """The status of one run from its folder (see the module doc)."""
    finished = folder / "trace.h5"
    if finished.exists():
        try:
            trace = traces.load(finished)
        except traces.TraceError as error:
            return RunStatus(run_id, "failed", steps, note=str(error))
        return RunStatus(
            run_id, trace.attrs["status"], steps, int(trace.steps[-1]),
            float(trace.values["wall_time"][-1]),
        )  # fmt: skip
    step, wall_time, note = _progress(folder)
    holder = runlock.holder(folder)
    if holder is not None and holder.state == "queued":
        return RunStatus(run_id, "pending", steps, step, wall_time, holder, queued=True)
    if holder is not None:
        return RunStatus(run_id, "running", steps, step, wall_time, holder, note=note)
    started = (folder / "trace.running.h5").exists() or any(folder.glob("ckpt/step-*.pt"))
    if started:
        resume = f"no live trainer: training it again resumes from step {checkpoint_step(folder)}"
        return RunStatus(run_id, "failed", steps, step, wall_time, note=note or resume)
    return RunStatus(run_id, "pending", steps)


def _progress(folder: Path) -> tuple[int, float, str]:
    """(last traced step, its wall time, problem) from ``trace.running.h5``."""
    path = folder / "trace.running.h5"
    if not path.exists():
        return 0, 0.0, ""
    try:
        trace = traces.load(path, allow_running=True)
    except traces.TraceError as error:
        return 0, 0.0, str(error)
    return int(trace.steps[-1]), float(trace.values["wall_time"][-1]), ""


def eta_seconds(statuses: list[RunStatus]) -> tuple[float | None, float | None, int]:
    """(ETA in seconds, mean seconds per step, runs in parallel); None where nothing has
    been measured yet. See the module doc."""
    rates = [s.seconds_per_step for s in statuses if s.seconds_per_step is not None]
    parallel = sum(s.state == "running" for s in statuses)
    left = sum(s.steps - s.step for s in statuses if s.state in ("running", "pending", "failed"))
    if not rates:
        return (0.0 if left == 0 else None), None, parallel
    per_step = sum(rates) / len(rates)
    return left * per_step / max(parallel, 1), per_step, parallel


def render(statuses: list[RunStatus]) -> str:
    """The counts, the running runs with their step, and the ETA, as text."""
    counts = Counter(s.state for s in statuses)
    parts = [f"{counts[state]} {state}" for state in STATES]
    queued = sum(s.queued for s in statuses)
    if queued:
        parts[STATES.index("pending")] += f" ({queued} queued)"
    lines = [f"{len(statuses)} runs: " + ", ".join(parts)]
    for s in statuses:
        if s.state == "running":
            pace = f", {s.seconds_per_step:.2f} s/step" if s.seconds_per_step else ""
            lines.append(
                f"  running  {s.run_id}: step {s.step}/{s.steps}{pace} ({s.holder.describe()})"
            )
    for s in statuses:
        if s.state == "failed":
            lines.append(f"  failed   {s.run_id}: step {s.step}/{s.steps}: {s.note}")
    eta, per_step, parallel = eta_seconds(statuses)
    if eta is None:
        lines.append("ETA: unknown (no run has traced a step yet)")
    elif eta == 0:
        lines.append("ETA: done")
    else:
        lines.append(
            f"ETA: ~{_duration(eta)} ({per_step:.2f} s/step measured, "
            f"{max(parallel, 1)} run(s) in parallel)"
        )
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def checkpoint_step(folder: Path) -> int:
    """The newest checkpoint's step in ``folder/ckpt`` (0 without one)."""
    steps = [int(m.group(1)) for p in folder.glob("ckpt/step-*.pt")
             if (m := re.fullmatch(r"step-(\d+)\.pt", p.name))]  # fmt: skip
    return max(steps, default=0)
