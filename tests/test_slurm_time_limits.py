"""The time limit (`sbatch --time`) a training job gets on a real SLURM through
profiles/slurm: minutes, whether the train rule declares it or the user overrides it with
`--set-resources train:runtime=N` (Snakemake 9.16.3 to 9.19 read such an override as
seconds, snakemake issue #4039; pyproject excludes those releases).

Each Snakemake submits the study's train jobs held (`--hold` in their slurm_extra), so
nothing runs; the test reads each job's TimeLimit from SLURM and cancels it."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from slurm_support import ROOT, clean_env, run_cmd

from gcstudy.scheduling import jobs
from gcstudy.study import config as study_config

CONFIG = {
    "defaults": {
        "width": 0.0625, "steps": 3000, "eval_steps": [0], "gc_examples": 20,
        "feature_examples": 60, "test_examples": 60, "bn_recalibration_examples": 32,
        "device": "cpu",
    },
    "resources": {"minutes_per_1000_steps": 5},
    "studies": {
        "tiny": {"experiment": "E1", "dataset": "digits", "base": {"batch_size": 32},
                 "sweeps": {"lr": [0.1]}},
    },
}  # fmt: skip


def slurm_minutes(limit: str) -> int:
    """SLURM's TimeLimit ([D-]HH:MM:SS) in minutes."""
    days, _, clock = limit.rpartition("-")
    hours, minutes, seconds = map(int, clock.split(":"))
    return (int(days or 0) * 24 + hours) * 60 + minutes + (seconds > 0)


def submitted_limits(workdir: Path, *args: str, config: dict = CONFIG) -> dict[str, int]:
    """Run `snakemake --profile profiles/slurm` until both train jobs are submitted; the
    minutes of each job's TimeLimit by batch. The jobs are cancelled."""
    workdir.mkdir()
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(config))
    command = [
        sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"),
        "--profile", str(ROOT / "profiles" / "slurm"), "--configfile", "cfg.yaml",
        "--set-resources", "train:slurm_extra='--hold'", *args,
    ]  # fmt: skip
    log = workdir / "snakemake.out"
    env = {**clean_env(), "SBATCH_ACCOUNT": "gcstudy_ci"}  # a cluster without accounting
    with open(log, "w") as out:
        smk = subprocess.Popen(command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT)
    ids: list[tuple[str, str]] = []
    try:
        deadline = time.monotonic() + 600
        while len(ids) < 2:
            assert smk.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
            ids = re.findall(r"SLURM jobid (\d+) \(log: \S*/rule_train/(\S+?)/", log.read_text())
        limits = {}
        for job, wildcards in ids:
            shown = run_cmd(["scontrol", "-o", "show", "job", job]).stdout
            limits[wildcards] = slurm_minutes(re.search(r"TimeLimit=(\S+)", shown).group(1))
        return limits
    finally:
        smk.send_signal(signal.SIGINT)  # as Ctrl-C: Snakemake cancels its jobs and stops
        try:
            smk.wait(timeout=120)
        finally:
            for job, _ in ids:
                run_cmd(["scancel", job])
            smk.kill()


@pytest.mark.slow
def test_train_jobs_get_their_time_limit_in_minutes(slurm, tmp_path):
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    runs = study_config.validate(config)
    declared = 30  # the rule's limit: 2 x 5 min per 1,000 steps x 3,000 steps
    assert [jobs.train_minutes(config, [run]) for run in runs] == [declared, declared]
    wildcards = [run.run_id.replace("/", "_") for run in runs]
    assert submitted_limits(tmp_path / "rule") == dict.fromkeys(wildcards, declared)
    overridden = submitted_limits(tmp_path / "override", "train:runtime=90")
    assert overridden == dict.fromkeys(wildcards, 90)
    # batches of several runs (one per study and seed) are the same rule `train`: the limit
    # of their summed steps, and the same override reaches them
    batched = {**CONFIG, "resources": {**CONFIG["resources"], "batch": "study_seed"}}
    batched["studies"] = {"tiny": {**CONFIG["studies"]["tiny"], "seeds": [0, 1]}}
    wildcards = ["tiny_seed-0", "tiny_seed-1"]
    limits = submitted_limits(tmp_path / "batched", config=batched)
    assert limits == {w: 60 for w in wildcards}  # 2 x 5 min per 1,000 steps x 6,000 steps
    overridden = submitted_limits(tmp_path / "batched-override", "train:runtime=90", config=batched)
    assert overridden == dict.fromkeys(wildcards, 90)


@pytest.mark.slow
def test_a_study_with_its_own_rate_gets_its_own_time_limit(slurm, tmp_path):
    """Two one-run studies: `tiny` at the resources' 5 min per 1,000 steps (3,000 steps:
    2 x 15 = 30 min), `big` at its own 12 (2 x 36 = 72 min), as SLURM records them."""
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    tiny = {**CONFIG["studies"]["tiny"], "sweeps": {}}
    big = {**tiny, "base": {**tiny["base"], "lr": 0.1}, "minutes_per_1000_steps": 12}
    config["studies"] = {"tiny": tiny, "big": big}  # two specs: two folders, two jobs
    checked = study_config.validate(yaml.safe_load(yaml.safe_dump(config)))
    expected = {run.run_id.replace("/", "_"): {"tiny": 30, "big": 72}[run.study] for run in checked}
    assert sorted(expected.values()) == [30, 72]
    assert submitted_limits(tmp_path / "rates", config=config) == expected


def test_pyproject_admits_no_snakemake_that_reads_runtimes_as_seconds():
    """Every Snakemake requirement in pyproject excludes 9.16.3 to 9.19.x (issue #4039) and
    admits the releases around them."""
    import tomllib
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] + project["optional-dependencies"]["workflow"]
    pins = [Requirement(r).specifier for r in listed if Requirement(r).name == "snakemake"]
    assert len(pins) == 2
    for pin in pins:
        assert not any(v in pin for v in ("9.16.3", "9.17.0", "9.18.2", "9.19.0", "9.19.9"))
        assert all(v in pin for v in ("9.14.1", "9.16.2", "9.20.0", "9.27.1"))
