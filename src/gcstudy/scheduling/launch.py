"""Train the runs of a study config through submitit: job arrays, requeued on timeout.

    gcstudy launch --configfile F [--executor slurm|local] [--only SELECTOR ...]
                   [--set-resources train:KEY=VALUE ...]

The alternative to ``snakemake --profile profiles/slurm`` for the training stage. The runs
come from ``gcstudy.study.config`` (the one place that expands a config) and are trained in the
batches of the Snakemake rule ``train`` (``gcstudy.scheduling.batches``, the config's
``resources.batch``), one array task per batch, by the same ``train_batch``: each run
trains into exactly the folder the rules use, ``<results>/runs/<run_id>/``, with its
evaluations, and the batch file of rule ``batch_spec``, the data set markers of rule
``prepare_data`` and the batch's manifest are the files the rules write. A later
``snakemake`` on the same config therefore finds these batches done and only aggregates.

Only batches without a manifest (or whose batch file changed) are submitted; ``--only``
selects the batches that hold a matching run. One job array (``executor.batch()``) per
time limit: batches are grouped by the limit the ``train`` rule gives them
(``gcstudy.scheduling.jobs.train_minutes`` of their runs). The sbatch settings are the
``train`` rule's resources through profiles/slurm, with the same ``--set-resources
train:...`` overrides (qos, constraint, gpu_model, partition, ...). Each array task is a
``TrainBatch``, a ``submitit.helpers.Checkpointable`` that trains in-process.

Signals, requeue and resume:

* SLURM sends submitit's signal (``SIGUSR2``, ``SUBMITIT_PREEMPT_SIGNAL``)
  ``signal_delay_s`` before the time limit; preemption sends ``SIGTERM`` (and, with
  submitit's ``job._interrupt()``, then ``SIGUSR2``).
* While training, ``gcstudy.training.trainer`` owns SIGTERM/SIGUSR1/SIGUSR2: it finishes the current
  step, writes a checkpoint and raises ``Interrupted`` (with every signal it received).
  Outside training (start-up, final writes) submitit's own handlers are in place.
* ``TrainRun`` then hands the stop to submitit: if submitit's signal was among those
  received, it raises that signal again, now to submitit's restored handler, which calls
  ``checkpoint()`` (the default: the same callable; the state is gcstudy's checkpoint on
  disk), requeues the job (``scontrol requeue``; local executor: exit code 144) and exits.
  A lone SIGTERM (preemption, ``scancel``) waits up to ``SIGTERM_GRACE_S`` for submitit's
  signal to follow; if it does not, the job ends with an error saying where the checkpoint
  is, and the next ``gcstudy launch`` resumes it.
* The requeued task starts the same callable; the batch skips its finished runs and
  ``gcstudy.training.trainer.run`` resumes from the newest checkpoint, so the final trace
  equals that of an uninterrupted run.

submitit counts every requeue of a job shorter than 10 minutes as a timeout; after
``max_num_timeout`` of them (``--max-timeouts``) the task ends with an error.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Set before torch loads in the job process (see gcstudy.cli).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import submitit

from gcstudy.scheduling import batches
from gcstudy.scheduling.jobs import WARNING_SECONDS
from gcstudy.study.runfolder import RunFolder
from gcstudy.study.runlock import slurm_job_state

log = logging.getLogger(__name__)

EXECUTORS = ("slurm", "local")
# A SIGTERM without submitit's signal: how long to wait for that signal before giving up.
SIGTERM_GRACE_S = 60.0
LOG_FOLDER = "logs/submitit"
FINAL_SLURM_STATES = (
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "TIMEOUT",
)  # fmt: skip


class LaunchError(ValueError):
    """A launch that cannot go ahead (nothing selected, bad selector, bad executor)."""


@dataclass(frozen=True)
class Plan:
    """What ``launch`` will do: the selected runs, and the batches that hold them by
    whether they need training."""

    workdir: Path
    results: str  # the results folder, relative to workdir (as the rules name it)
    config: dict[str, Any]
    selected: list  # gcstudy.study.config.Run
    pending: dict[str, list]  # batch -> its trained runs: no manifest, or a changed batch file
    busy: list  # (batch, run, gcstudy.study.runlock.Holder): queued or running elsewhere, skipped

    def run_dir(self, run_id: str) -> Path:
        return RunFolder.under(self.workdir / self.results, run_id).path

    def content(self, batch: str) -> dict[str, Any]:
        """What the batch file of a pending batch says (as rule ``batch_spec`` writes it)."""
        return batches.batch_content(self.results, self.pending[batch], self.config["evaluate"])

    def batch_file(self, batch: str) -> Path:
        return self.workdir / batches.batch_path(self.results, batch)

    def manifest(self, batch: str) -> Path:
        return self.workdir / batches.manifest_path(self.results, batch)


# ----------------------------------------------------------------------------- the job


class TrainBatch(submitit.helpers.Checkpointable):
    """One batch as a submitit job: ``gcstudy train --batch FILE --manifest FILE``,
    in-process, requeued through submitit when stopped by submitit's signal."""

    def __init__(self, batch: str, batch_file: str, manifest: str, workdir: str, threads: int):
        self.batch, self.batch_file, self.manifest = batch, batch_file, manifest
        self.workdir, self.threads = workdir, threads

    def __call__(self) -> dict[str, Any]:
        # As the Snakemake rule: run in the working directory (data_root and the batch's
        # run folders are relative to it), with the rule's thread count (numerics depend on
        # it), before torch is loaded.
        os.chdir(self.workdir)
        os.environ["OMP_NUM_THREADS"] = str(self.threads)
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr
        )
        import torch

        from gcstudy.training.trainer import Interrupted

        torch.set_num_threads(self.threads)
        log.info("batch %s (%s)", self.batch, self.batch_file)
        try:
            outcomes = batches.train_batch(self.batch_file, self.manifest, progress=False)
        except Interrupted as stop:
            hand_over(stop)
            raise
        failed = [str(folder) for folder, status in outcomes.items() if status == "failed"]
        if failed:
            raise RuntimeError(f"batch {self.batch}: runs failed: {', '.join(failed)}")
        return {"batch": self.batch, "runs": {str(f): s for f, s in outcomes.items()}}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit's handler before it requeues: the state to resume from is on
        disk (finished runs, gcstudy's checkpoints), so the same callable is resubmitted."""
        log.info("requeueing batch %s; it resumes from its checkpoints", self.batch)
        return super().checkpoint(*args, **kwargs)

    def __repr__(self) -> str:
        return f"TrainBatch({self.batch!r})"


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
    if signal.SIGTERM not in signals:  # Ctrl-C (SIGINT): the user stops it, no requeue
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
    """The batches that hold the selected runs of the config, and those of them still to
    train: without a manifest, or whose batch file would change, and none of whose runs is
    queued or running already (a live ``gcstudy.study.runlock`` holder: an earlier launch's
    task, a Snakemake job, a ``gcstudy train``)."""
    from gcstudy.study import config as study_config
    from gcstudy.study import runlock

    workdir = Path(workdir).resolve()
    if not configfiles:
        raise LaunchError("no --configfile given")
    # a declared data set's folder is relative to the working directory (once it exists)
    with contextlib.chdir(workdir) if workdir.is_dir() else contextlib.nullcontext():
        config = study_config.load_all([Path(f).resolve() for f in configfiles])
    runs = study_config.expand(config)
    selected = select(runs, only)
    folders = {run.trained_in for run in selected}
    results = str(results if results is not None else config["results"])
    p = Plan(workdir, results, config, selected, {}, [])
    for batch, members in batches.batches(runs, config["resources"]["batch"]).items():
        if not folders & {run.run_id for run in members}:
            continue
        held = [(batch, run, h) for run in members if (h := runlock.holder(p.run_dir(run.run_id)))]
        p.busy.extend(held)
        if held:
            continue
        p.pending[batch] = members
        if p.manifest(batch).exists() and _written(p.batch_file(batch)) == p.content(batch):
            del p.pending[batch]
    return p


def _written(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def prepare_files(p: Plan) -> dict[str, TrainBatch]:
    """Write what the Snakemake rules upstream of ``train`` write (the data set markers of
    ``prepare_data``, preparing the data here as that local rule does, and the batch files
    of ``batch_spec``; a changed batch file loses its manifest); return one job per pending
    batch."""
    from gcstudy.data import prepare
    from gcstudy.study import config as study_config

    resources = p.config["resources"]
    threads = resources["cpus_per_gpu"] if resources["gpu"] else resources["threads"]
    datasets = {run.spec.dataset for runs in p.pending.values() for run in runs}
    for dataset in sorted(datasets):
        marker = p.workdir / p.results / "data" / f"{dataset}.ready"
        if not marker.exists():  # an existing marker keeps its age (Snakemake compares)
            folder = prepare(dataset, p.workdir / p.config["data_root"])
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(f"{dataset}: ready in {folder}\n")  # = gcstudy prepare-data
    jobs = {}
    for batch in p.pending:
        if _written(p.batch_file(batch)) != p.content(batch):
            p.manifest(batch).unlink(missing_ok=True)
            study_config.write_json(p.content(batch), p.batch_file(batch))  # = rule batch_spec
        jobs[batch] = TrainBatch(batch, str(batches.batch_path(p.results, batch)),
                                 str(batches.manifest_path(p.results, batch)), str(p.workdir),
                                 threads)  # fmt: skip
    return jobs


# The ``train`` rule's resources that ``--set-resources train:KEY=VALUE`` may change, as
# the SLURM plugin reads them (see profiles/slurm/config.yaml).
TRAIN_RESOURCES = (
    "runtime", "mem_mb", "gpu", "cpus_per_gpu", "cpus_per_task", "gpu_model", "qos",
    "constraint", "slurm_partition", "slurm_account", "slurm_extra",
)  # fmt: skip


def train_resources(entries: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``train`` entries of Snakemake-style ``--set-resources RULE:KEY=VALUE`` (the
    same flags as for ``snakemake --profile profiles/slurm``); other rules' entries are
    ignored (launch only trains). Integer values become ints, quotes are stripped."""
    chosen: dict[str, Any] = {}
    for entry in entries:
        rule, sep, assignment = entry.partition(":")
        key, eq, value = assignment.partition("=")
        if not (sep and eq and rule and key):
            raise LaunchError(f"--set-resources {entry!r}: expected RULE:RESOURCE=VALUE")
        if rule != "train":
            continue
        if key not in TRAIN_RESOURCES:
            raise LaunchError(
                f"--set-resources {entry!r}: resource {key!r} is not one launch passes to "
                f"sbatch; known: {', '.join(TRAIN_RESOURCES)}"
            )
        value = value.strip().strip("'\"")
        chosen[key] = int(value) if value.isdigit() else value
    return chosen


def by_time_limit(p: Plan, minutes: int | None = None) -> dict[int, list[str]]:
    """The pending batches by the time limit of their first attempt (as the ``train``
    rule: ``gcstudy.scheduling.jobs.train_minutes`` of the batch's runs), shortest first,
    each in plan order: one job array per limit. ``minutes`` (``--timeout-min`` or a
    ``runtime`` resource) gives every batch the same limit."""
    from gcstudy.scheduling import jobs

    limits: dict[int, list[str]] = {}
    for batch, runs in p.pending.items():
        limits.setdefault(minutes or jobs.train_minutes(p.config, runs), []).append(batch)
    return dict(sorted(limits.items()))


def make_executor(
    kind: str,
    p: Plan,
    minutes: int,
    max_num_timeout: int = 3,
    resources: dict[str, Any] | None = None,
) -> submitit.Executor:
    """A submitit executor for batches of ``p`` with time limit ``minutes`` (see
    ``slurm_parameters``)."""
    if kind not in EXECUTORS:
        raise LaunchError(f"executor {kind!r}: expected one of {', '.join(EXECUTORS)}")
    folder = p.workdir / LOG_FOLDER / "%j"
    if kind == "local":
        gpus = p.config["resources"]["gpu"]
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=max_num_timeout)
        executor.update_parameters(timeout_min=minutes, **({"gpus_per_node": gpus} if gpus else {}))
        return executor
    executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=max_num_timeout)
    executor.update_parameters(**slurm_parameters(p, minutes, resources))
    return executor


def slurm_parameters(
    p: Plan, minutes: int, resources: dict[str, Any] | None = None
) -> dict[str, Any]:
    """sbatch settings as the ``train`` rule asks them through profiles/slurm: GPUs and CPUs
    from the config's ``resources`` (``gpu`` GPUs with ``cpus_per_gpu`` cores each, else
    ``threads`` cores), ``mem_mb``, the time limit ``minutes``; account and partition from
    GCSTUDY_SLURM_ACCOUNT / GCSTUDY_SLURM_PARTITION (unset: sbatch's own defaults, e.g.
    SBATCH_ACCOUNT); then ``resources``, the ``train`` entries of ``--set-resources``
    (``train_resources``), which win."""
    config = p.config["resources"]
    given = dict(resources or {})
    gpus = given.get("gpu", config["gpu"])
    minutes = given.get("runtime", minutes)
    if "cpus_per_task" in given:
        cpus = given["cpus_per_task"]
    elif gpus:
        cpus = given.get("cpus_per_gpu", config["cpus_per_gpu"]) * gpus
    else:
        cpus = config["threads"]
    params: dict[str, Any] = {
        "job_name": "gcstudy_launch",
        "time": minutes,
        "nodes": 1,
        "ntasks_per_node": 1,
        "cpus_per_task": cpus,
        "mem": f"{given.get('mem_mb', config['mem_mb'])}M",
        # at most a quarter of a (short) time limit
        "signal_delay_s": min(WARNING_SECONDS, 15 * minutes),
        "array_parallelism": 256,
        # the job's working directory (squeue %Z, the jobcomp log), as Snakemake's jobs
        "additional_parameters": {"chdir": str(p.workdir), **_sbatch_flags(given)},
    }
    if gpus and "gpu_model" in given:  # as the plugin: --gpus=<model>:<n>
        params["gres"] = f"gpu:{given['gpu_model']}:{gpus}"
    elif gpus:
        params["gpus_per_node"] = gpus
    account = given.get("slurm_account", os.environ.get("GCSTUDY_SLURM_ACCOUNT"))
    partition = given.get("slurm_partition", os.environ.get("GCSTUDY_SLURM_PARTITION"))
    for key, value in (("account", account), ("partition", partition)):
        if value:
            params[key] = value
    for key in ("qos", "constraint"):
        if key in given:
            params[key] = given[key]
    return params


def _sbatch_flags(resources: dict[str, Any]) -> dict[str, Any]:
    """``slurm_extra`` ("--mail-type=FAIL --exclusive") as submitit's additional_parameters."""
    flags: dict[str, Any] = {}
    for token in str(resources.get("slurm_extra", "")).split():
        if not token.startswith("--"):
            raise LaunchError(f"slurm_extra {token!r}: expected --flag or --flag=value")
        key, eq, value = token[2:].partition("=")
        flags[key.replace("-", "_")] = value if eq else True
    return flags


# ----------------------------------------------------------------------------- launching


def launch(
    configfiles: list[str | os.PathLike],
    executor: str = "slurm",
    only: list[str] | tuple[str, ...] = (),
    results: str | os.PathLike | None = None,
    workdir: str | os.PathLike = ".",
    timeout_min: int | None = None,
    max_num_timeout: int = 3,
    set_resources: list[str] | tuple[str, ...] = (),
) -> tuple[Plan, dict[str, submitit.Job]]:
    """Submit the pending batches of the config, one job array per time limit; returns the
    plan and the jobs (batch -> job, in plan order; none when everything is done)."""
    from gcstudy.study import runlock

    p = plan(configfiles, only, results, workdir)
    if not p.pending:
        return p, {}
    resources = train_resources(set_resources)
    jobs = prepare_files(p)
    submitted: dict[str, submitit.Job] = {}
    for minutes, chosen in by_time_limit(p, timeout_min or resources.get("runtime")).items():
        ex = make_executor(executor, p, minutes, max_num_timeout, resources)
        # One sbatch, one job array per limit (a single job for a single batch; for the
        # local executor, one process per batch). batch() rather than map_array: each array
        # task's callable must itself be the Checkpointable (submitit checks
        # ``hasattr(function, "checkpoint")``).
        with ex.batch():
            array = {batch: ex.submit(jobs[batch]) for batch in chosen}
        submitted.update(array)
        if executor == "slurm":  # queued: a later launch or trainer sees the folders taken
            for batch, job in array.items():
                for run in p.pending[batch]:
                    runlock.reserve(p.run_dir(run.run_id), job.job_id)
    return p, {batch: submitted[batch] for batch in p.pending}


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
            elif executor == "slurm" and slurm_job_state(job.job_id) in ("", *FINAL_SLURM_STATES):
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
