"""The workflow with batches of several runs per job (resources.batch: study_seed) and a run
shared by two studies, through real Snakemake: one rule `train` whatever the config, batch
membership that no added run or changed resource moves, and a failed or damaged batch
whose rerun trains only what is unfinished."""

import copy
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from tiny_study import TINY_DEFAULTS

from gcstudy.study import traces

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "defaults": TINY_DEFAULTS,
    "resources": {"batch": "study_seed"},
    "evaluate": {
        "gc_examples": 20, "gc_repeats": 2,
        "budgets": {"examples": [5], "hutchinson": [1], "outputs": [2], "mask": [0.01]},
    },
    "studies": {
        "tiny": {
            "experiment": "E1", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 16},
            "sweeps": {"lr": [0.1, 0.2]}, "seeds": [0, 1],
        },
        "bound": {
            "experiment": "E3", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 16},
            "seeds": [0], "evaluations": ["bound"],
        },
        "estimators": {
            "experiment": "E2", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 16},
            "seeds": [0], "evaluations": ["gc_estimators"],
        },
    },
}  # fmt: skip
SHARED = "tiny/lr-0.05_bs-16_l2-0_gcp-0_seed-0"
BATCHES = ("tiny/seed-0", "tiny/seed-1")


def snakemake(workdir: Path, *args: str, config: str = "cfg.yaml") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
         str(workdir), "--configfile", config, *args],
        capture_output=True, text=True, timeout=600, cwd=workdir,
    )  # fmt: skip


def planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The job counts of a dry run."""
    assert result.returncode == 0, result.stderr[-3000:]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M)}


def write_config(workdir: Path, name: str, config: dict) -> str:
    (workdir / name).write_text(yaml.safe_dump(config, sort_keys=False))  # study order
    return name


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("batched")
    write_config(workdir, "cfg.yaml", CONFIG)
    dry = snakemake(workdir, "-n", "--cores", "2", "results/study.nc")
    assert dry.returncode == 0, dry.stderr[-3000:]
    result = snakemake(workdir, "--cores", "2", "results/study.nc")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, dry.stdout, result.stderr


def test_the_rules_are_the_same_for_every_batch_setting(tmp_path):
    listed = {}
    for batch in ("run", "study_seed"):
        name = write_config(tmp_path, f"{batch}.yaml", {**CONFIG, "resources": {"batch": batch}})
        result = snakemake(tmp_path, "--list-rules", config=name)
        assert result.returncode == 0, result.stderr[-3000:]
        listed[batch] = result.stdout.split()
    assert listed["run"] == listed["study_seed"]
    assert {"train", "batch_spec", "aggregate"} <= set(listed["run"])


def test_runs_are_trained_in_one_job_per_study_and_seed(study):
    workdir, dry, terminal = study
    counts = planned(subprocess.CompletedProcess([], 0, dry, ""))
    assert counts["train"] == counts["batch_spec"] == 2  # tiny/seed-0, tiny/seed-1
    assert not [rule for rule in counts if rule.startswith("evaluate")]  # done by the batches
    runs = workdir / "results" / "runs"
    for seed in (0, 1):
        for lr in ("0.05", "0.1", "0.2"):
            run_id = f"tiny/lr-{lr}_bs-16_l2-0_gcp-0_seed-{seed}"
            assert traces.status(runs / run_id / "trace.h5") == "complete"
            spec = yaml.safe_load((runs / run_id / "spec.yaml").read_text())
            assert spec == traces.load(runs / run_id / "trace.h5").attrs["spec"]
            assert re.search(rf"run \d of 3 complete: {re.escape(run_id)} ", terminal)
    assert not (runs / "bound").exists() and not (runs / "estimators").exists()  # shared
    assert (runs / SHARED / "gc_estimators.nc").is_file()
    for batch in BATCHES:
        assert (workdir / "logs" / "train" / f"{batch}.log").is_file()
        assert (workdir / "results" / "trained" / f"{batch}.json").is_file()


def test_a_shared_run_is_one_training_under_two_run_ids(study):
    workdir, *_ = study
    with xr.open_dataset(workdir / "results" / "study.nc", engine="h5netcdf") as data:
        bound = "bound/lr-0.05_bs-16_l2-0_gcp-0_seed-0"
        assert bound in data.run.values and SHARED in data.run.values
        assert data.sizes["run"] == 8  # 6 tiny, bound, estimators
        assert data.study.sel(run=bound).item() == "bound"
        assert data.run_folder.sel(run=bound).item() == SHARED
        np.testing.assert_array_equal(data.gc.sel(run=bound).values, data.gc.sel(run=SHARED).values)
        estimators = "estimators/lr-0.05_bs-16_l2-0_gcp-0_seed-0"
        assert np.isfinite(data.gcest_exact.sel(run=estimators).item())
        assert np.isnan(data.gcest_exact.sel(run=SHARED).item())  # tiny asks for no E2


def test_an_added_run_or_changed_resource_moves_no_other_run(study):
    """A new seed is a batch of its own: the dry run trains it alone. Other resources
    (time limit, memory, threads) train nothing again."""
    workdir, *_ = study
    resources = {"batch": "study_seed", "minutes_per_1000_steps": 1, "mem_mb": 3000}
    name = write_config(workdir, "resources.yaml", {**CONFIG, "resources": resources})
    jobs = planned(snakemake(workdir, "-n", "results/study.nc", config=name))
    assert "train" not in jobs and "batch_spec" not in jobs, jobs  # (the run table hashes
    # the whole config: it and study.nc are made again)
    more = copy.deepcopy(CONFIG)  # in study order: the first study's folder is shared
    more["studies"]["tiny"]["seeds"] = [0, 1, 2]
    name = write_config(workdir, "more.yaml", more)
    dry = snakemake(workdir, "-n", "results/study.nc", config=name)
    assert planned(dry)["train"] == planned(dry)["batch_spec"] == 1
    assert "wildcards: batch=tiny/seed-2" in dry.stdout
    assert "batch=tiny/seed-0" not in dry.stdout and "batch=tiny/seed-1" not in dry.stdout


def test_a_damaged_run_retrains_alone_in_its_batch(study):
    """A deleted trace: the start-up check removes the batch's manifest, Snakemake reruns
    that batch, which trains the damaged run alone and skips the finished ones."""
    workdir, *_ = study
    runs = workdir / "results" / "runs"
    damaged = "tiny/lr-0.1_bs-16_l2-0_gcp-0_seed-1"
    untouched = {p: p.stat().st_mtime_ns for p in (runs / "tiny").glob("*seed-1/trace.h5")}
    reference = traces.load(runs / damaged / "trace.h5")
    (runs / damaged / "trace.h5").unlink()
    result = snakemake(workdir, "--cores", "2", "results/study.nc")
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = re.findall(r"wildcards: batch=(\S+)", result.stderr)
    assert jobs == ["tiny/seed-1"], jobs
    log = (workdir / "logs" / "train" / "tiny" / "seed-1.log").read_text()
    assert log.count("training from step 0") == 1 and log.count("is already complete") == 2
    again = traces.load(runs / damaged / "trace.h5")
    for name, values in reference.values.items():
        if name != "wall_time":
            np.testing.assert_array_equal(again.values[name], values, err_msg=name)
    for path, mtime in untouched.items():
        if damaged not in str(path):
            assert path.stat().st_mtime_ns == mtime
