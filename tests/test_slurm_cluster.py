"""The SLURM pieces against a real (single-node) SLURM: start script, sbatch, the Snakemake
profile with the SLURM executor plugin, GPU requests, failures and retries.

SLURM comes from scripts/slurm/install.sh + scripts/slurm/start.sh (Debian's slurm-wlm 22.05,
no slurmdbd). The `slurm` fixture (conftest.py, helpers in slurm_support.py) starts it when
`sinfo` does not answer and leaves it running. Without SLURM the tests skip with the reason,
except under CI=true, where they fail.

The two Snakemake runs are started together, before the sbatch test, to keep the module
well under two minutes: the plugin's status interval grows by 10 s per check while no job
succeeds (2, 12, 22, ... s; a run's shutdown also waits out the current interval), and every
job starts Snakemake twice (~5 s each on a 2-core machine).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_support import ROOT, START
from slurm_support import jobcomp_records as _jobcomp_records
from slurm_support import run_cmd as _run
from slurm_support import wait_for as _wait_for

FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY")
REAL_PROFILE = ROOT / "profiles" / "slurm"
TEST_PROFILE = ROOT / "tests" / "profiles" / "slurm-test"
# Overall bound per Snakemake run (normally ~40-60 s, a few minutes on a busy machine): the
# wait follows the process and ends when it does; this only stops a hung run.
RUN_TIMEOUT = 900


@dataclass
class SnakemakeRun:
    workdir: Path
    proc: subprocess.Popen
    logfile: Path
    _rc: int | None = None

    def wait(self) -> tuple[int, str]:
        if self._rc is None:
            try:
                self._rc = self.proc.wait(timeout=RUN_TIMEOUT)
            except subprocess.TimeoutExpired:
                # Snakemake cancels its SLURM jobs on SIGTERM; SIGKILL only if it hangs.
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
                pytest.fail(
                    f"snakemake did not finish within {RUN_TIMEOUT}s:\n"
                    + self.logfile.read_text()[-4000:]
                )
        return self._rc, self.logfile.read_text()

    @staticmethod
    def run_id(log: str) -> str:
        m = re.search(r"SLURM run ID: (\S+)", log)
        assert m, f"no 'SLURM run ID' in the snakemake output:\n{log[-3000:]}"
        return m.group(1)

    @staticmethod
    def slurm_ids(log: str) -> dict[str, list[str]]:
        """rule -> SLURM job ids, from 'submitted with SLURM jobid N (log: .../rule_X/...)'."""
        ids: dict[str, list[str]] = {}
        for jid, rule in re.findall(r"SLURM jobid (\d+) \(log: \S*/rule_(\w+)/", log):
            ids.setdefault(rule, []).append(jid)
        return ids


def _start_snakemake(workdir: Path, snakefile: str) -> SnakemakeRun:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Snakefile").write_text(textwrap.dedent(snakefile))
    logfile = workdir / "snakemake.out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    cmd = [
        sys.executable, "-m", "snakemake",
        "--profile", str(TEST_PROFILE),
        "--snakefile", str(workdir / "Snakefile"),
        "--directory", str(workdir),
    ]  # fmt: skip
    with open(logfile, "w") as log:
        proc = subprocess.Popen(
            cmd, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    return SnakemakeRun(workdir, proc, logfile)


# Two rules in a chain (so, with the failing run, no job waits for one of the 2 CPUs), in
# real-profile style: `gpu`, `cpus_per_gpu`, `runtime`, `mem_mb` on the "train" rule (the
# test node advertises fake GPUs, so the request reaches sbatch unchanged).
OK_SNAKEFILE = """
rule all:
    input: "summary.txt"

rule train:
    output: "trained.txt"
    resources: gpu=1, cpus_per_gpu=1, runtime=3, mem_mb=150
    shell: "echo job=$SLURM_JOB_ID > {output}; env | grep -E '^(SLURM_.*GPU|CUDA)' >> {output}"

rule summarize:
    input: "trained.txt"
    output: "summary.txt"
    shell: "echo job=$SLURM_JOB_ID > {output}"
"""

# Fails on every attempt; the runtime grows with the attempt (2, then 4 minutes).
FAIL_SNAKEFILE = """
rule all:
    input: "never.txt"

rule broken:
    output: "never.txt"
    resources: runtime=lambda wildcards, attempt: 2 * attempt
    shell: "echo failing on purpose >&2; exit 1"
"""


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def snakemake_runs(slurm, tmp_path_factory) -> dict[str, SnakemakeRun]:
    """Both Snakemake runs, started at once; each test waits for its own."""
    base = tmp_path_factory.mktemp("slurm-snakemake")
    runs = {
        "ok": _start_snakemake(base / "ok", OK_SNAKEFILE),
        "fail": _start_snakemake(base / "fail", FAIL_SNAKEFILE),
    }
    yield runs
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                run.proc.kill()


# ----------------------------------------------------------------------------- tests


def test_profiles_parse_and_agree(monkeypatch):
    """The test profile has the real profile's keys; site settings come from the env."""
    from snakemake.profiles import ProfileConfigFileParser

    def parse(profile: Path, env: dict[str, str]) -> dict:
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        with open(profile / "config.yaml") as f:
            return dict(ProfileConfigFileParser().parse(f))

    unset = {"GCSTUDY_SLURM_ACCOUNT": "", "GCSTUDY_SLURM_PARTITION": ""}
    real = parse(REAL_PROFILE, unset)
    site = parse(
        REAL_PROFILE, {"GCSTUDY_SLURM_ACCOUNT": "proj42", "GCSTUDY_SLURM_PARTITION": "gpu"}
    )
    test = parse(TEST_PROFILE, unset)

    assert real["executor"] == "slurm"
    assert real["slurm-status-command"] == test["slurm-status-command"] == "squeue"
    assert real["retries"] == "2" and test["retries"] == "1"
    assert not any(r.startswith("slurm_account=") for r in real["default-resources"])
    assert "set-resources" not in real  # no partition given: the cluster's default
    assert "slurm_account=proj42" in site["default-resources"]
    # The partition only for the rule that may use a GPU, train (its batches' evaluations
    # run in the same job; the other rules are small).
    assert site["set-resources"] == ["train:slurm_partition=gpu"]
    assert not any(r.startswith("slurm_partition") for r in site["default-resources"])
    # A default cpus_per_task would override the training rules' cpus_per_gpu.
    assert not any(r.startswith("cpus_per_task") for r in real["default-resources"])
    # Requeue on node failure / preemption; keep every SLURM log, none deleted by age.
    for profile in (real, test):
        assert profile["slurm-requeue"] == "True"
        assert profile["slurm-keep-successful-logs"] == "True"
        assert profile["slurm-delete-logfiles-older-than"] == "0"
    missing = set(real) - set(test)
    assert not missing, f"tests/profiles/slurm-test lacks keys of profiles/slurm: {missing}"
    assert (
        parse(TEST_PROFILE, {"GCSTUDY_SLURM_PARTITION": "gpu"})["set-resources"]
        == (site["set-resources"])
    )
    assert int(test["slurm-init-seconds-before-status-checks"]) <= 5
    # For squeue polling, finished jobs must stay visible >= 3x the first status interval.
    assert 3 * int(real["slurm-init-seconds-before-status-checks"]) <= 300


def test_sbatch_job_completes(slurm, snakemake_runs, tmp_path):
    """(a) The node is idle, start.sh is idempotent, and a trivial batch job completes.

    Requests `snakemake_runs` only to start them now, so that they overlap with this test.
    """
    again = _run(["bash", str(START)], timeout=90)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout

    out = _run([
        "sbatch", "--parsable", "--time=1", "--mem=50", "-D", str(tmp_path),
        "--output", str(tmp_path / "%j.out"), "--wrap", "echo hello from slurm",
    ])  # fmt: skip
    assert out.returncode == 0, out.stderr
    jobid = out.stdout.strip().split(";")[0]

    def state() -> str:
        q = _run(["squeue", "--states=all", "--noheader", "-j", jobid, "-o", "%T"])
        return q.stdout.strip()

    assert _wait_for(lambda: state() in FINAL_STATES, timeout=600), f"job {jobid}: {state()!r}"
    assert state() == "COMPLETED"
    recs = _wait_for(lambda: _jobcomp_records(JobId=jobid), timeout=60)
    assert recs and recs[0]["JobState"] == "COMPLETED"
    assert "hello from slurm" in (tmp_path / f"{jobid}.out").read_text()


def test_snakemake_profile_runs_jobs_through_sbatch(snakemake_runs):
    """(b) Both rules run as SLURM jobs via the test profile, GPU request included."""
    run = snakemake_runs["ok"]
    rc, log = run.wait()
    assert rc == 0, log[-4000:]

    ids = run.slurm_ids(log)
    assert set(ids) == {"train", "summarize"}, ids
    for rule, out in (("train", "trained.txt"), ("summarize", "summary.txt")):
        text = (run.workdir / out).read_text()
        assert f"job={ids[rule][0]}" in text, text  # written inside that SLURM job
        # slurm-logdir + slurm-keep-successful-logs
        assert (run.workdir / "logs" / "slurm" / f"rule_{rule}" / f"{ids[rule][0]}.log").exists()

    # sacct-less evidence: the jobcomp log lists both jobs under this run's job name.
    name = run.run_id(log)
    assert name.startswith("gcstudy_")  # slurm-jobname-prefix
    recs = _wait_for(
        lambda: len(_jobcomp_records(Name=name)) >= 2 and _jobcomp_records(Name=name), 60
    )
    assert {r["JobId"]: r["JobState"] for r in recs} == {
        ids["train"][0]: "COMPLETED",
        ids["summarize"][0]: "COMPLETED",
    }

    # The GPU request reached sbatch: --gpus=1 --cpus-per-gpu=1 (finished jobs stay in
    # slurmctld for MinJobAge).
    show = _run(["scontrol", "show", "job", ids["train"][0]]).stdout
    assert "TresPerJob=gres:gpu:1" in show, show
    assert "CpusPerTres=gres:gpu:1" in show, show
    assert "SLURM_GPUS_ON_NODE=1" in (run.workdir / "trained.txt").read_text()
    show = _run(["scontrol", "show", "job", ids["summarize"][0]]).stdout
    assert "gres:gpu" not in show, show


def test_failing_rule_is_retried_and_reported(snakemake_runs):
    """(c) A failing job is reported FAILED, retried once with more runtime, run exits != 0."""
    run = snakemake_runs["fail"]
    rc, log = run.wait()
    assert rc != 0, log[-4000:]

    ids = run.slurm_ids(log).get("broken", [])
    assert len(ids) == 2, f"expected 2 attempts (retries: 1), got SLURM jobs {ids}\n{log[-4000:]}"
    for jid in ids:
        assert f"SLURM-job '{jid}' failed, SLURM status is: 'FAILED'" in log
    assert not (run.workdir / "never.txt").exists()

    recs = {r["JobId"]: r for r in _jobcomp_records(Name=run.run_id(log))}
    assert [recs[j]["JobState"] for j in ids] == ["FAILED", "FAILED"]
    # `attempt` reached the resource callable: 2 minutes, then 4.
    assert [recs[j]["TimeLimit"] for j in ids] == ["2", "4"]
    # The failed job's SLURM log is kept and shows the rule's error.
    assert (
        "failing on purpose"
        in (run.workdir / "logs" / "slurm" / "rule_broken" / f"{ids[0]}.log").read_text()
    )


def _sbatch_sleep(tmp_path: Path, *args: str) -> str:
    out = _run([
        "sbatch", "--parsable", "--time=5", "--mem=50", "-D", str(tmp_path),
        "--output", str(tmp_path / "%j.out"), *args, "--wrap", "sleep 300",
    ])  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().split(";")[0]


def test_run_folder_held_by_a_slurm_job_is_refused_until_the_job_ends(slurm, tmp_path):
    """A holder recorded by a job on another node (here: a queued launch task, and a
    running trainer) is live while squeue lists the job unfinished, stale once it ended."""
    import json

    from gcstudy.study import runlock

    held = _sbatch_sleep(tmp_path)  # runs (or waits for a CPU): a live job either way
    queued = _sbatch_sleep(tmp_path, "--begin=now+1hour")  # stays PENDING
    try:
        for job, state in ((held, "running"), (queued, "queued")):
            folder = tmp_path / job
            folder.mkdir()
            (folder / runlock.LOCK_NAME).write_text(json.dumps({
                "pid": 4242, "host": "node-17", "job": job, "start": None,
                "since": "2026-01-01T00:00:00+00:00", "state": state,
            }))  # fmt: skip
            with pytest.raises(runlock.RunLocked, match=f"job {job}, host node-17, pid 4242"):
                runlock.acquire(folder)
            assert runlock.holder(folder).job == job
    finally:
        _run(["scancel", held, queued])
    for job in (held, queued):
        assert _wait_for(
            lambda j=job: _run(["squeue", "-h", "--states=all", "-j", j, "-o", "%T"]).stdout
            .strip() in ("CANCELLED", ""),
            timeout=600,
        )  # fmt: skip
        assert runlock.holder(tmp_path / job) is None  # the job ended: stale
        assert runlock.acquire(tmp_path / job).job is None  # taken over by this process
