"""Train the runs of a study config through submitit: one job array, requeued on timeout.

    gcstudy launch --configfile F [--executor slurm|local] [--only SELECTOR ...]

The alternative to ``snakemake --profile profiles/slurm`` for the training stage. The runs
come from ``gcstudy.config`` (the one place that expands a config), and every run trains
into exactly the folder the Snakemake rules use, ``<results>/runs/<run_id>/`` (spec.yaml,
trace.h5, model.pt; checkpoints in ckpt/), with the data set marker of the ``prepare_data``
rule and the ``spec.yaml`` of the ``run_spec`` rule written identically (same text, same
order of modification times). A later ``snakemake`` on the same config therefore finds these
runs done and only evaluates and aggregates.

Only runs without a finished trace are submitted, all of them as ONE job array
(``executor.batch()``). Each array task is a ``TrainRun``, a
``submitit.helpers.Checkpointable`` that trains in-process with ``gcstudy.train.run``.

Signals, requeue and resume:

* SLURM sends submitit's signal (``SIGUSR2``, ``SUBMITIT_PREEMPT_SIGNAL``)
  ``signal_delay_s`` before the time limit; preemption sends ``SIGTERM`` (and, with
  submitit's ``job._interrupt()``, then ``SIGUSR2``).
* While training, ``gcstudy.train`` owns SIGTERM/SIGUSR1/SIGUSR2: it finishes the current
  step, writes a checkpoint and raises ``Interrupted`` (with every signal it received).
  Outside training (start-up, final writes) submitit's own handlers are in place.
* ``TrainRun`` then hands the stop to submitit: if submitit's signal was among those
  received, it raises that signal again, now to submitit's restored handler, which calls
  ``checkpoint()`` (the default: the same callable; the state is gcstudy's checkpoint on
  disk), requeues the job (``scontrol requeue``; local executor: exit code 144) and exits.
  A lone SIGTERM (preemption, ``scancel``) waits up to ``SIGTERM_GRACE_S`` for submitit's
  signal to follow; if it does not, the job ends with an error saying where the checkpoint
  is, and the next ``gcstudy launch`` resumes it.
* The requeued task starts the same callable; ``gcstudy.train.run`` resumes from the newest
  checkpoint, so the final trace equals that of an uninterrupted run.

submitit counts every requeue of a job shorter than 10 minutes as a timeout; after
``max_num_timeout`` of them (``--max-timeouts``) the task ends with an error.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set before torch loads in the job process (see gcstudy.cli).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import submitit

log = logging.getLogger(__name__)

EXECUTORS = ("slurm", "local")
# A SIGTERM without submitit's signal: how long to wait for that signal before giving up.
SIGTERM_GRACE_S = 60.0
# Seconds between submitit's signal and the time limit; covers one training step plus one
# evaluation and the checkpoint write.
SIGNAL_DELAY_S = 120
LOG_FOLDER = "logs/submitit"
FINAL_SLURM_STATES = (
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "TIMEOUT",
)  # fmt: skip


class LaunchError(ValueError):
    """A launch that cannot go ahead (nothing selected, bad selector, bad executor)."""


@dataclass(frozen=True)
class Plan:
    """What ``launch`` will do: the selected runs and which of them need training."""

    workdir: Path
    results: Path
    config: dict[str, Any]
    selected: list  # gcstudy.config.Run
    pending: list  # the selected runs without a finished trace

    def run_dir(self, run_id: str) -> Path:
        return self.results / "runs" / run_id


# ----------------------------------------------------------------------------- the job


class TrainRun(submitit.helpers.Checkpointable):
    """One training run as a submitit job: ``gcstudy train <spec.yaml> --out <run dir>``,
    in-process, requeued through submitit when stopped by submitit's signal."""

    def __init__(self, run_id: str, spec: str, out: str, workdir: str, threads: int):
        self.run_id, self.spec, self.out = run_id, spec, out
        self.workdir, self.threads = workdir, threads

    def __call__(self) -> dict[str, str]:
        # As the Snakemake rule: run in the working directory (data_root is relative to it),
        # with the rule's thread count (numerics depend on it), before torch is loaded.
        os.chdir(self.workdir)
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
        )
        import torch

        from gcstudy import yamlio
        from gcstudy.spec import RunSpec
        from gcstudy.train import Interrupted, run

        torch.set_num_threads(self.threads)
        spec = RunSpec.from_dict(yamlio.load(self.spec) or {}, source=self.spec)
        log.info("run %s -> %s", self.run_id, self.out)
        try:
            status = run(spec, self.out, progress=False)
        except Interrupted as stop:
            hand_over(stop)
            raise
        return {"run_id": self.run_id, "status": status, "trace": f"{self.out}/trace.h5"}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit's handler before it requeues: the state to resume from is
        gcstudy's newest checkpoint on disk, so the same callable is resubmitted."""
        saved = sorted(Path(self.out, "ckpt").glob("step-*.pt"))
        log.info("requeueing %s; it resumes from %s", self.run_id, saved[-1] if saved else "step 0")
        return super().checkpoint(*args, **kwargs)

    def __repr__(self) -> str:
        return f"TrainRun({self.run_id!r})"


def hand_over(stop: Exception) -> None:
    """After gcstudy checkpointed and stopped on ``stop.signals``: let submitit requeue.

    Re-raises submitit's signal to its handler (restored when training stopped); that
    handler checkpoints this callable, requeues the job and exits (SystemExit). Returns only
    when no requeue happened (no submitit handler, or a lone SIGTERM not followed by
    submitit's signal within ``SIGTERM_GRACE_S``); the caller then re-raises ``stop``.
    """
    usr = submitit.JobEnvironment._usr_sig()
    handler = signal.getsignal(usr)
    if not callable(handler):  # not inside a submitit job: nobody to requeue
        return
    signals = getattr(stop, "signals", (stop.signum,))
    if usr in signals:
        log.warning("%s; handing over to submitit to requeue", stop)
        signal.raise_signal(usr)  # runs submitit's handler now: requeue, then SystemExit
        return
    log.warning(
        "%s; waiting up to %.0f s for %s (preemption/timeout) to requeue",
        stop,
        SIGTERM_GRACE_S,
        signal.Signals(usr).name,
    )
    deadline = time.monotonic() + SIGTERM_GRACE_S
    while time.monotonic() < deadline:
        time.sleep(0.2)  # submitit's handler runs here if the signal comes


# ----------------------------------------------------------------------------- planning


def load_config(configfiles: list[str | os.PathLike]) -> dict[str, Any]:
    """The config as Snakemake builds it from ``--configfile F [G ...]``: later files
    merged into earlier ones with ``snakemake.utils.update_config`` (nested mappings
    merged, other values replaced), then validated with the schema defaults filled in."""
    from snakemake.utils import update_config

    from gcstudy import config as study_config
    from gcstudy import yamlio

    if not configfiles:
        raise LaunchError("no --configfile given")
    merged: dict[str, Any] = {}
    for path in configfiles:
        update_config(merged, yamlio.load(path) or {})
    study_config.validate(merged, source=", ".join(map(str, configfiles)))
    return merged


def select(runs: list, only: list[str] | tuple[str, ...] = ()) -> list:
    """Runs whose study is one of ``only`` or whose id matches one of its globs (all runs
    when ``only`` is empty); a selector that matches nothing is an error."""
    if not only:
        return list(runs)
    chosen = []
    studies = sorted({run.study for run in runs})
    for selector in only:
        hits = [
            run
            for run in runs
            if run.study == selector or fnmatch.fnmatchcase(run.run_id, selector)
        ]
        if not hits:
            raise LaunchError(
                f"--only {selector!r} matches no run: give a study name "
                f"({', '.join(studies)}) or a glob on run ids (e.g. '{runs[0].run_id[:-1]}*')"
            )
        chosen.extend(hits)
    wanted = {run.run_id for run in chosen}
    return [run for run in runs if run.run_id in wanted]


def plan(
    configfiles: list[str | os.PathLike],
    only: list[str] | tuple[str, ...] = (),
    results: str | os.PathLike | None = None,
    workdir: str | os.PathLike = ".",
) -> Plan:
    """The selected runs of the config and those of them still to train."""
    from gcstudy import config as study_config
    from gcstudy import traces

    workdir = Path(workdir).resolve()
    config = load_config([Path(f).resolve() for f in configfiles])
    selected = select(study_config.expand(config), only)
    results_dir = workdir / (results if results is not None else config["results"])
    pending, stale = [], []
    for run in selected:
        trace = results_dir / "runs" / run.run_id / "trace.h5"
        if traces.status(trace) not in traces.FINISHED:
            pending.append(run)
        elif _trace_spec(trace) != json.loads(json.dumps(run.spec.to_dict())):
            stale.append(str(trace.parent))
    if stale:
        raise LaunchError(
            "these runs finished with another run spec than the config's now: "
            f"{', '.join(stale)}; remove their folders to train them again"
        )
    return Plan(workdir, results_dir, config, selected, pending)


def _trace_spec(path: Path) -> dict | None:
    """The run spec recorded in a trace file."""
    import h5py

    with h5py.File(path, "r") as f:
        value = f.attrs.get("spec")
    return json.loads(value) if isinstance(value, str | bytes) else None


def prepare_files(p: Plan) -> list[TrainRun]:
    """Write what the Snakemake rules upstream of ``train`` write (the data set markers of
    ``prepare_data``, preparing the data here as that local rule does, and each run's
    ``spec.yaml`` of ``run_spec``); return one job per pending run."""
    from gcstudy import config as study_config
    from gcstudy.data import prepare

    resources = p.config["resources"]
    threads = resources["cpus_per_gpu"] if resources["gpu"] else resources["threads"]
    for dataset in sorted({run.spec.dataset for run in p.pending}):
        marker = p.results / "data" / f"{dataset}.ready"
        if not marker.exists():  # an existing marker keeps its age (Snakemake compares)
            folder = prepare(dataset, p.workdir / p.config["data_root"])
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{dataset}: ready in {folder}\n")  # = gcstudy prepare-data
    jobs = []
    for run in p.pending:
        spec = p.run_dir(run.run_id) / "spec.yaml"
        study_config.write_yaml(run.spec.to_dict(), spec)  # = rule run_spec
        jobs.append(TrainRun(run.run_id, str(spec), str(spec.parent), str(p.workdir), threads))
    return jobs


def time_limit_minutes(config: dict[str, Any], runs: list) -> int:
    """The job time limit of the ``train`` rule on its first attempt (common.smk,
    ``train_minutes``), for the longest run of the array."""
    per_1000 = config["resources"]["minutes_per_1000_steps"]
    return max(max(10, round(per_1000 * run.spec.steps / 1000 * 2)) for run in runs)


def make_executor(
    kind: str,
    p: Plan,
    timeout_min: int | None = None,
    max_num_timeout: int = 3,
) -> submitit.Executor:
    """A submitit executor for the pending runs of ``p`` (see ``slurm_parameters``)."""
    if kind not in EXECUTORS:
        raise LaunchError(f"executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
    folder = p.workdir / LOG_FOLDER / "%j"
    if kind == "local":
        gpus = p.config["resources"]["gpu"]
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=max_num_timeout)
        executor.update_parameters(
            timeout_min=timeout_min or time_limit_minutes(p.config, p.pending),
            **({"gpus_per_node": gpus} if gpus else {}),
        )
        return executor
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_num_timeout)
    executor.update_parameters(**slurm_parameters(p, timeout_min))
    return executor


def slurm_parameters(p: Plan, timeout_min: int | None = None) -> dict[str, Any]:
    """sbatch settings as the ``train`` rule asks them through profiles/slurm: GPUs and CPUs
    from the config's ``resources`` (``gpu`` GPUs with ``cpus_per_gpu`` cores each, else
    ``threads`` cores), ``mem_mb``, the rule's time limit (or ``timeout_min``); account and
    partition from GCSTUDY_SLURM_ACCOUNT / GCSTUDY_SLURM_PARTITION."""
    resources = p.config["resources"]
    gpus = resources["gpu"]
    minutes = timeout_min or time_limit_minutes(p.config, p.pending)
    params: dict[str, Any] = {
        "job_name": "gcstudy_launch",
        "time": minutes,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": resources["cpus_per_gpu"] * gpus if gpus else resources["threads"],
        "mem": f"{resources['mem_mb']}M",
        # at most a quarter of a (short) time limit
        "signal_delay_s": min(SIGNAL_DELAY_S, 15 * minutes),
        "array_parallelism": 256,
        # the job's working directory (squeue %Z, the jobcomp log), as Snakemake's jobs
        "additional_parameters": {"chdir": str(p.workdir)},
    }
    if gpus:
        params["gpus_per_node"] = gpus
    if os.environ.get("GCSTUDY_SLURM_ACCOUNT"):
        params["account"] = os.environ["GCSTUDY_SLURM_ACCOUNT"]
    if os.environ.get("GCSTUDY_SLURM_PARTITION"):
        params["partition"] = os.environ["GCSTUDY_SLURM_PARTITION"]
    return params


# ----------------------------------------------------------------------------- launching


def launch(
    configfiles: list[str | os.PathLike],
    executor: str = "slurm",
    only: list[str] | tuple[str, ...] = (),
    results: str | os.PathLike | None = None,
    workdir: str | os.PathLike = ".",
    timeout_min: int | None = None,
    max_num_timeout: int = 3,
) -> tuple[Plan, list[submitit.Job]]:
    """Submit the pending runs of the config as one job array; returns the plan and the
    jobs (one per pending run, in plan order; none when everything is done)."""
    p = plan(configfiles, only, results, workdir)
    if not p.pending:
        return p, []
    runs = prepare_files(p)
    ex = make_executor(executor, p, timeout_min, max_num_timeout)
    # One sbatch, one job array (a single job for a single run; for the local executor,
    # one process per run). batch() rather than map_array: each array task's callable must
    # itself be the Checkpointable (submitit checks ``hasattr(function, "checkpoint")``).
    jobs = []
    with ex.batch():
        for run in runs:
            jobs.append(ex.submit(run))
    return p, jobs


def wait(jobs: list[submitit.Job], executor: str, poll_s: float | None = None) -> list[dict]:
    """Wait for every job; one outcome per job (``state``: done, failed or lost).

    Without SLURM accounting (no slurmdbd) submitit cannot tell that a job ended without
    writing its result, so on SLURM a job that squeue reports finished, or no longer lists,
    without a result file for a minute counts as lost.
    """
    poll_s = poll_s or (5.0 if executor == "slurm" else 1.0)
    outcomes: dict[int, dict] = {}
    gone_since: dict[int, float] = {}
    while len(outcomes) < len(jobs):
        for i, job in enumerate(jobs):
            if i in outcomes:
                continue
            if job.paths.result_pickle.exists():
                try:
                    outcomes[i] = {"job": job.job_id, "state": "done", **job.result()}
                except Exception as error:  # the job's own exception, as text
                    outcomes[i] = {"job": job.job_id, "state": "failed", "error": str(error)}
            elif executor == "slurm" and _slurm_state(job.job_id) in ("", *FINAL_SLURM_STATES):
                since = gone_since.setdefault(i, time.monotonic())
                if time.monotonic() - since > 60:
                    outcomes[i] = {"job": job.job_id, "state": "lost", "error": "no result"}
            elif executor == "local" and job.done():
                time.sleep(1)  # the result file is written just before the process ends
                if not job.paths.result_pickle.exists():
                    outcomes[i] = {"job": job.job_id, "state": "lost", "error": "no result"}
            else:
                gone_since.pop(i, None)
        if len(outcomes) < len(jobs):
            time.sleep(poll_s)
    return [outcomes[i] for i in range(len(jobs))]


def _slurm_state(job_id: str) -> str:
    """The job's state as squeue reports it ('' when squeue no longer lists it)."""
    try:
        out = subprocess.run(
            ["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "UNKNOWN"
    if out.returncode != 0:
        return "" if "Invalid job id" in out.stderr else "UNKNOWN"
    return out.stdout.strip().split("\n")[0]
