"""The gcstudy workflow on a real (single-node) SLURM: the Snakemake profile and the submitit
launcher, each checked against the same config run locally.

One tiny study (digits, two runs) is run three ways at once by the module fixture, so that
the slow parts (job start-up, the Snakemake plugin's status polling) overlap:

- `snakemake --cores 2` locally: the reference;
- `snakemake --profile tests/profiles/slurm-test`: every `train` job through sbatch, with
  the site settings of a cluster without accounting (the account in sbatch's own
  SBATCH_ACCOUNT, the partition in GCSTUDY_SLURM_PARTITION); once each run has
  checkpointed past step 10, the first run's job is cancelled (`scancel`: SIGTERM, SIGKILL
  after KillWait), so Snakemake reports it CANCELLED, resubmits it and it resumes; the
  second run's job gets the time-limit warning (`scancel --signal=USR1`: to the job's
  steps, not the batch shell, as `sbatch --signal=USR1@120` delivers it): gcstudy
  checkpoints and stops, the job step's Snakemake survives the signal and reports the
  failure, Snakemake resubmits the job with a longer time limit and the run resumes;
- `gcstudy.scheduling.launch` (submitit, one job array): both tasks are interrupted after step 10 as
  SLURM would on preemption (SIGTERM + SIGUSR2) and on a time limit (SIGUSR2 alone), are
  requeued by submitit, released at once (`scontrol update StartTime=now`; SLURM holds a
  requeued job ~2 minutes) and resume.

Every run must end with the trace (all variables but wall_time, steps, spec) and weights of
the local run, at the same paths and under the same run ids. Without SLURM the tests skip
with the reason, except under CI=true, where they fail (conftest.py, slurm_support.py).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from slurm_support import ROOT, clean_env, jobcomp_records, run_cmd, wait_for

from gcstudy.scheduling import jobs as job_limits
from gcstudy.scheduling import launch
from gcstudy.study import config as study_config
from gcstudy.study import runlock, traces

TEST_PROFILE = ROOT / "tests" / "profiles" / "slurm-test"
SNAKEFILE = ROOT / "Snakefile"
# Overall deadline for each of the three ways (normally 1-2 minutes, 3-5 on a machine whose
# CPUs are busy with other work): waits follow events (checkpoints, job states, processes
# ending) and fail at once when a process they wait on has ended; this bound only stops
# a hung run.
TIMEOUT = 1500
CHECKPOINT_STEP = 10  # interrupt once a checkpoint at this step or later exists
ACCOUNT = "gcstudy_ci"  # given to sbatch through SBATCH_ACCOUNT (no accounting here)

# Long enough (80 steps, ~3 s of training) that a job is still running when it is
# interrupted after step 10; checkpoints every 5 steps keep the progress of a killed job.
CONFIG = {
    "defaults": {
        "model": "vgg11", "width": 0.0625, "steps": 80, "eval_steps": [0, 40, 80],
        "gc_examples": 20, "feature_examples": 60, "test_examples": 60,
        "bn_recalibration_examples": 32, "checkpoint_every": 5, "device": "cpu",
    },
    "resources": {"gpu": 0, "threads": 1, "mem_mb": 1000},
    "studies": {
        "tiny": {
            "experiment": "E1", "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 32}, "sweeps": {"lr": [0.1]}, "seeds": [0],
        },
    },
}  # fmt: skip
RUN_IDS = [run.run_id for run in study_config.validate(yaml.safe_load(yaml.safe_dump(CONFIG)))]
CANCELLED = RUN_IDS[0]  # the run whose Snakemake SLURM job is scancel'ed
WARNED = RUN_IDS[1]  # the run whose Snakemake SLURM job gets the time-limit warning
# resources.batch: run (the default): each run is its own batch, batch id = run id
TARGETS = [f"results/trained/{run_id}.json" for run_id in RUN_IDS]


# ----------------------------------------------------------------------------- helpers


@dataclass
class Background:
    """A command running in the background, its output in a file."""

    proc: subprocess.Popen
    logfile: Path
    started: float = field(default_factory=time.monotonic)
    _result: tuple[int, str, float] | None = None

    def wait(self) -> tuple[int, str, float]:
        """(return code, output, seconds taken); fails the test after TIMEOUT."""
        if self._result is None:
            try:
                rc = self.proc.wait(timeout=max(1, TIMEOUT - (time.monotonic() - self.started)))
            except subprocess.TimeoutExpired:
                self.stop()
                pytest.fail(f"{self.logfile} not done in {TIMEOUT} s:\n{self.output()[-4000:]}")
            self._result = (rc, self.output(), time.monotonic() - self.started)
        return self._result

    def output(self) -> str:
        return self.logfile.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # Snakemake cancels its SLURM jobs
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_snakemake(workdir: Path, configfile: Path, *args: str, env=None) -> Background:
    workdir.mkdir(parents=True, exist_ok=True)
    logfile = workdir / "snakemake.out"
    cmd = [
        sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
        "--configfile", str(configfile), *args,
    ]  # fmt: skip
    with open(logfile, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env={**clean_env(), **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return Background(proc, logfile)


def default_partition() -> str:
    out = run_cmd(["sinfo", "-h", "-o", "%P"]).stdout.split()
    return next(p.rstrip("*") for p in out if p.endswith("*"))


def checkpointed(run_dir: Path) -> bool:
    """A checkpoint at CHECKPOINT_STEP or later exists: the run is past that step."""
    return any(
        int(p.stem.split("-")[1]) >= CHECKPOINT_STEP for p in (run_dir / "ckpt").glob("step-*.pt")
    )


def squeue_state(job_id: str) -> str:
    out = run_cmd(["squeue", "-h", "--states=all", "-j", job_id, "-o", "%T %r"])
    return out.stdout.strip()


def slurm_train_jobs(log: str, run_id: str) -> list[str]:
    """SLURM job ids of the `train` jobs of `run_id`, in submission order."""
    wildcards = re.escape(run_id.replace("/", "_"))
    return re.findall(rf"SLURM jobid (\d+) \(log: \S*/rule_train/{wildcards}/", log)


def same_run(a: Path, b: Path) -> None:
    """Two run folders hold the same trace (all variables but wall_time, the steps and the
    spec) and bitwise the same final weights."""
    first, second = traces.read(a / "trace.h5"), traces.read(b / "trace.h5")
    assert first.attrs["status"] == second.attrs["status"] == "complete"
    assert list(first.data_vars) == list(second.data_vars)
    np.testing.assert_array_equal(first.step.values, second.step.values)
    for name in first.data_vars:
        if name != "wall_time":
            np.testing.assert_array_equal(first[name].values, second[name].values, err_msg=name)
    assert first.attrs["spec"] == second.attrs["spec"]
    weights = [torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (a, b)]
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


def trained_ids(workdir: Path) -> list[str]:
    runs = workdir / "results" / "runs"
    return sorted(str(p.parent.relative_to(runs)) for p in runs.glob("*/*/trace.h5"))


# ----------------------------------------------------------------------------- drivers


def interrupt_after_checkpoint(smk: Background, run_dir: Path, run_id: str, how: list) -> dict:
    """Once run_dir has checkpointed past step 10, interrupt its running `train` job with
    ``scancel`` + ``how`` (e.g. [] to cancel it, ["--signal=USR1"] to warn it)."""
    deadline = time.monotonic() + TIMEOUT
    while not checkpointed(run_dir):
        assert smk.proc.poll() is None, f"snakemake ended early:\n{smk.output()[-3000:]}"
        assert time.monotonic() < deadline, f"no checkpoint in {run_dir} within {TIMEOUT} s"
        time.sleep(0.05)
    jobs = wait_for(lambda: slurm_train_jobs(smk.output(), run_id), timeout=60, interval=0.1)
    assert jobs, f"no SLURM job id for {run_id}:\n{smk.output()[-3000:]}"
    state = squeue_state(jobs[0])
    finished = (run_dir / "trace.h5").exists()
    out = run_cmd(["scancel", *how, jobs[0]])
    assert out.returncode == 0, out.stderr
    return {"job": jobs[0], "state": state, "finished_before": finished}


def interrupt_and_release(plan, jobs) -> dict:
    """Interrupt task 0 as a preemption (SIGTERM, SIGUSR2) and task 1 as a time limit
    (SIGUSR2) once each has checkpointed past step 10; release each requeued task at once."""
    record: dict = {"interrupted": {}, "released": {}, "finished_before": {}}
    deadline = time.monotonic() + TIMEOUT
    waiting = dict(enumerate(jobs))
    while waiting:
        assert time.monotonic() < deadline, f"tasks {list(waiting)} not done in {TIMEOUT} s"
        for i, job in list(waiting.items()):
            run_dir = plan.run_dir(list(plan.pending)[i])
            if job.paths.result_pickle.exists():
                del waiting[i]
                continue
            state = squeue_state(job.job_id)
            ended = state.split(" ")[0] in launch.FINAL_SLURM_STATES
            assert not ended or wait_for(job.paths.result_pickle.exists, timeout=60), (
                f"task {i} ({job.job_id}) ended {state} without a result:\n"
                + (job.paths.stderr.read_text()[-3000:] if job.paths.stderr.exists() else "")
            )
            if i not in record["interrupted"]:
                if checkpointed(run_dir):
                    record["finished_before"][i] = (run_dir / "trace.h5").exists()
                    job._interrupt(timeout=i == 1)
                    record["interrupted"][i] = time.monotonic()
            elif i not in record["released"]:
                if state.startswith("PENDING") and "BeginTime" in state:
                    out = run_cmd(["scontrol", "update", f"JobId={job.job_id}", "StartTime=now"])
                    assert out.returncode == 0, out.stderr
                    record["released"][i] = state
        time.sleep(0.1)
    record["results"] = [job.result() for job in jobs]
    return record


@dataclass
class Interrupts:
    """The two interrupted Snakemake SLURM jobs, each driven in its own thread."""

    cancel: Future
    warn: Future


@dataclass
class Study:
    base: Path
    configfile: Path
    local: Background
    slurm: Background
    interrupts: Interrupts
    plan: object
    jobs: list
    planned_after: object  # launch.plan right after the submission
    submitit: Future
    submitted: float


@pytest.fixture(scope="module")
def study(slurm, tmp_path_factory):
    """The three ways, started together; each test waits for what it checks."""
    base = tmp_path_factory.mktemp("slurm-workflow")
    configfile = base / "cfg.yaml"
    configfile.write_text(yaml.safe_dump(CONFIG))
    started = time.monotonic()
    local = start_snakemake(base / "local", configfile, "--cores", "2", *TARGETS)
    site = {"SBATCH_ACCOUNT": ACCOUNT, "GCSTUDY_SLURM_PARTITION": default_partition()}
    smk = start_snakemake(
        base / "slurm", configfile, "--profile", str(TEST_PROFILE), "--verbose", *TARGETS,
        env=site,
    )  # fmt: skip
    pool = ThreadPoolExecutor(max_workers=3)
    runs = base / "slurm" / "results" / "runs"
    interrupts = Interrupts(
        pool.submit(interrupt_after_checkpoint, smk, runs / CANCELLED, CANCELLED, []),
        pool.submit(interrupt_after_checkpoint, smk, runs / WARNED, WARNED, ["--signal=USR1"]),
    )
    plan, submitted = launch.launch([configfile], executor="slurm", workdir=base / "submitit")
    jobs = list(submitted.values())
    submitted = time.monotonic() - started
    planned_after = launch.plan([configfile], workdir=base / "submitit")
    driver = pool.submit(interrupt_and_release, plan, jobs)
    yield Study(
        base, configfile, local, smk, interrupts, plan, jobs, planned_after, driver, submitted
    )
    for run in (local, smk):
        run.stop()
    if jobs and not all(job.paths.result_pickle.exists() for job in jobs):
        run_cmd(["scancel", jobs[0].job_id.split("_")[0]])
    pool.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------- tests


def test_snakemake_on_slurm_gives_the_local_runs(study):
    """Both `train` jobs go through sbatch; run ids and traces equal the local run's."""
    rc, local_log, local_s = study.local.wait()
    assert rc == 0, local_log[-4000:]
    rc, log, slurm_s = study.slurm.wait()
    assert rc == 0, log[-4000:]
    print(f"local snakemake {local_s:.0f} s, SLURM snakemake {slurm_s:.0f} s")
    local, remote = study.base / "local", study.base / "slurm"
    assert trained_ids(local) == trained_ids(remote) == sorted(RUN_IDS)
    for run_id in RUN_IDS:
        same_run(local / "results" / "runs" / run_id, remote / "results" / "runs" / run_id)
        assert (local / "results" / "runs" / run_id / "spec.yaml").read_text() == (
            remote / "results" / "runs" / run_id / "spec.yaml"
        ).read_text()

    # Evidence that the jobs ran under SLURM: job ids from sbatch, one SLURM log per job id,
    # the jobs in the controller's completion log with this working directory.
    name = re.search(r"SLURM run ID: (\S+)", log).group(1)
    records = {r["JobId"]: r for r in jobcomp_records(Name=name)}
    for run_id in RUN_IDS:
        jobs = slurm_train_jobs(log, run_id)
        assert jobs, f"no sbatch submission for {run_id}"
        wildcards = run_id.replace("/", "_")
        for job in jobs:
            assert (remote / "logs" / "slurm" / "rule_train" / wildcards / f"{job}.log").exists()
        final = wait_for(lambda j=jobs[-1]: records.get(j) or _record(name, j), timeout=10)
        assert final["JobState"] == "COMPLETED", final
        assert final["WorkDir"] == str(remote)
    assert "Nothing to be done" not in log
    assert not list(local.glob("logs/slurm/*")), "the local run must not use SLURM"

    # The profile's site settings reached sbatch, for every train job: requeue on node
    # failure, the warning signal, the partition; no -A (no accounting here: the account
    # comes from SBATCH_ACCOUNT, read by sbatch itself); only train jobs were submitted.
    calls = re.findall(r"sbatch call: (sbatch .*)", log)
    assert len(calls) == sum(len(slurm_train_jobs(log, r)) for r in RUN_IDS), calls
    for call in calls:
        assert "--comment rule_train_wildcards_" in call, call
        assert " --requeue" in call and f" {job_limits.warning_flag()}" in call, call
        assert f" -p {default_partition()} " in call and " -A " not in call, call
    for run_id in RUN_IDS:
        for job in slurm_train_jobs(log, run_id):
            record = wait_for(lambda j=job: _record(name, j), timeout=60)
            assert record["Account"] == ACCOUNT, record


def _record(name: str, job: str) -> dict | None:
    return {r["JobId"]: r for r in jobcomp_records(Name=name)}.get(job)


def interrupted_and_resumed(study, run_id: str, interrupt: Future, state: str) -> list[dict]:
    """Checks shared by the interrupted Snakemake jobs: the job was running when
    interrupted, ended in ``state``, was resubmitted once, and the retry resumed from the
    checkpoint to the uninterrupted run's results. Returns the two jobs' jobcomp records."""
    interrupted = interrupt.result(timeout=TIMEOUT)
    assert not interrupted["finished_before"], "the run finished before its interrupt"
    assert interrupted["state"].startswith("RUNNING"), interrupted
    rc, log, _ = study.slurm.wait()
    assert rc == 0, log[-4000:]
    first, *retries = slurm_train_jobs(log, run_id)
    assert first == interrupted["job"] and len(retries) == 1, (first, retries)
    assert f"SLURM-job '{first}' failed, SLURM status is: '{state}'" in log
    name = re.search(r"SLURM run ID: (\S+)", log).group(1)
    records = [wait_for(lambda j=j: _record(name, j), timeout=60) for j in (first, *retries)]
    assert [r["JobState"] for r in records] == [state, "COMPLETED"], records
    # The resubmitted job's log (the rule's log, rewritten by the retry) shows the resume.
    train_log = (study.base / "slurm" / "logs" / "train" / f"{run_id}.log").read_text()
    resumed = re.search(r"resuming from checkpoint \S+ \(step (\d+)\)", train_log)
    assert resumed and int(resumed.group(1)) >= CHECKPOINT_STEP, train_log[-3000:]
    same_run(
        study.base / "local" / "results" / "runs" / run_id,
        study.base / "slurm" / "results" / "runs" / run_id,
    )
    return records


def test_cancelled_training_job_is_resubmitted_and_resumes(study):
    """scancel of a running `train` job: reported CANCELLED, resubmitted (retries), and the
    new job resumes from the checkpoint to the uninterrupted run's results."""
    interrupted_and_resumed(study, CANCELLED, study.interrupts.cancel, "CANCELLED")


def test_time_limit_warning_checkpoints_and_a_longer_retry_resumes(study):
    """The warning signal of `--signal=USR1@120`, delivered as SLURM delivers it (to every
    process of the job's steps): gcstudy checkpoints and stops; the job step's Snakemake,
    which gets the signal too, survives it and reports the failed rule; the job FAILED is
    resubmitted with a doubled time limit and resumes to the uninterrupted run's results."""
    first, retry = interrupted_and_resumed(study, WARNED, study.interrupts.warn, "FAILED")
    # twice the expected minutes at the schema's default 10 min per 1,000 steps, >= 10 min
    limit = max(job_limits.MIN_MINUTES, round(2 * 10 * CONFIG["defaults"]["steps"] / 1000))
    assert (first["TimeLimit"], retry["TimeLimit"]) == (str(limit), str(2 * limit))
    # The job step's Snakemake outlived the signal: it ran the rule to its end and reported
    # the trainer's exit status in the job's SLURM log: 138 = 128 + SIGUSR1, what `gcstudy
    # train` returns after checkpointing on the signal (killed by it, the shell would have
    # "died with <Signals.SIGUSR1>").
    wildcards = WARNED.replace("/", "_")
    slurm_log = (study.base / "slurm" / "logs" / "slurm" / "rule_train" / wildcards
                 / f"{first['JobId']}.log").read_text()  # fmt: skip
    assert "User defined signal 1" not in slurm_log, slurm_log[-3000:]
    assert "non-zero exit status 138" in slurm_log, slurm_log[-3000:]


def test_submitit_array_is_requeued_and_resumes(study):
    """One job array; each task, interrupted as on preemption or a time limit, checkpoints,
    is requeued by submitit and resumes to the uninterrupted run's results, at the paths
    the Snakemake rules use."""
    # Right after the submission a second launch finds both runs queued (or running).
    assert study.planned_after.pending == {}
    busy = {run.run_id: holder for _, run, holder in study.planned_after.busy}
    assert {run_id: h.job for run_id, h in busy.items()} == {
        batch: job.job_id for batch, job in zip(study.plan.pending, study.jobs, strict=True)
    }
    record = study.submitit.result(timeout=TIMEOUT)
    assert not any(record["finished_before"].values()), "a task finished before its signal"
    assert sorted(record["released"]) == [0, 1], record
    assert [list(r["runs"].values()) for r in record["results"]] == [["complete"]] * 2
    array_id = study.jobs[0].job_id.split("_")[0]  # one sbatch: tasks <array>_0, <array>_1
    assert [job.job_id for job in study.jobs] == [f"{array_id}_0", f"{array_id}_1"]
    assert list(study.plan.pending) == RUN_IDS

    for i, (run_id, job) in enumerate(zip(study.plan.pending, study.jobs, strict=True)):
        stderr = job.paths.stderr.read_text()
        # Preemption sends SIGTERM then SIGUSR2 at once; when both are pending, the kernel
        # hands the lower-numbered SIGUSR2 over first, so task 0 may name either. A time
        # limit sends SIGUSR2 alone.
        stopped = re.search(r"stopped by signal (SIGTERM|SIGUSR2)", stderr)
        assert stopped and stopped.group(1) in (("SIGTERM", "SIGUSR2") if i == 0 else ("SIGUSR2",))
        # gcstudy saw submitit's signal while training (hands over at once) or only after
        # the SIGTERM had stopped it (waits for it); either way submitit requeues.
        assert "handing over to submitit" in stderr or "waiting up to" in stderr, stderr[-3000:]
        assert f"Requeued job {job.job_id}" in stderr
        resumed = re.search(r"resuming from checkpoint \S+ \(step (\d+)\)", stderr)
        assert resumed and int(resumed.group(1)) >= CHECKPOINT_STEP, stderr[-3000:]

        # Through SLURM: the controller logged the requeue, then the completion, of this task.
        # (slurmctld writes a task's completion record a moment after the task ends)
        def states(i=i):
            return [
                r["JobState"]
                for r in jobcomp_records(ArrayJobId=array_id, ArrayTaskId=str(i))
                if r["WorkDir"] == str(study.base / "submitit")  # sbatch --chdir
            ]

        logged = wait_for(lambda: "COMPLETED" in states() and states(), timeout=60)
        assert len(logged) >= 2 and logged[-1] == "COMPLETED", logged
        assert "COMPLETED" not in logged[:-1], logged
        local = study.base / "local" / "results" / "runs" / run_id
        launched = study.base / "submitit" / "results" / "runs" / run_id
        assert study.local.wait()[0] == 0
        same_run(local, launched)
        assert (launched / "spec.yaml").read_text() == (local / "spec.yaml").read_text()
        assert not (launched / "ckpt").exists()
        assert not (launched / runlock.LOCK_NAME).exists()  # released by the task at exit


def test_snakemake_after_submitit_only_aggregates(study):
    """After the launcher, Snakemake finds the batches done (their manifests, written by
    the launched tasks): for the study file it would only write the run table and
    aggregate; the launcher finds nothing left to train."""
    study.submitit.result(timeout=TIMEOUT)
    workdir = study.base / "submitit"
    dry = subprocess.run(
        [
            sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--directory", str(workdir),
            "--configfile", str(study.configfile), "-n", "results/study.nc", *TARGETS,
        ],
        capture_output=True, text=True, timeout=900, env=clean_env(),
    )  # fmt: skip
    out = dry.stdout + dry.stderr
    assert dry.returncode == 0, out[-4000:]
    stats = out.split("Job stats:")[1].split("total")[0]
    rules = dict(re.findall(r"^(\w+)\s+(\d+)$", stats, re.M))
    assert rules == {"run_table": "1", "aggregate": "1"}, out[-4000:]
    assert launch.plan([study.configfile], workdir=workdir).pending == {}
