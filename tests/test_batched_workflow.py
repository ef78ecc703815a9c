"""The workflow with several runs per job (resources.runs_per_job > 1) and a run shared by
two studies, through real Snakemake."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from gcstudy import traces

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "defaults": {
        "width": 0.0625, "steps": 6, "eval_steps": [0, 3], "gc_examples": 20,
        "feature_examples": 60, "test_examples": 60, "bn_recalibration_examples": 32,
        "checkpoint_every": 3, "device": "cpu",
    },
    "resources": {"runs_per_job": 2},
    "evaluate": {
        "gc_examples": 20, "gc_repeats": 2,
        "budgets": {"examples": [5], "hutchinson": [1], "outputs": [2], "mask": [0.01]},
    },
    "studies": {
        "tiny": {
            "experiment": "E1", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 16},
            "sweeps": {"lr": [0.1, 0.2]}, "seeds": [0],
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


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
         str(workdir), "--configfile", "cfg.yaml", *args],
        capture_output=True, text=True, timeout=600, cwd=workdir,
    )  # fmt: skip


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("grouped")
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(CONFIG, sort_keys=False))  # study order
    dry = snakemake(workdir, "-n", "--cores", "2", "results/study.nc")
    assert dry.returncode == 0, dry.stderr[-3000:]
    result = snakemake(workdir, "--cores", "2", "results/study.nc")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, dry.stdout


def test_runs_are_trained_in_balanced_group_jobs(study):
    workdir, dry = study
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", dry, flags=re.M))
    assert counts["train_group_0"] == counts["train_group_1"] == "1"
    assert "train" not in counts and "run_spec" not in counts  # no per-run jobs
    assert not [rule for rule in counts if rule.startswith("evaluate")]  # done by the groups
    runs = workdir / "results" / "runs"
    for lr in ("0.05", "0.1", "0.2"):
        run_id = f"tiny/lr-{lr}_bs-16_l2-0_gcp-0_seed-0"
        assert traces.status(runs / run_id / "trace.h5") == "complete"
        spec = yaml.safe_load((runs / run_id / "spec.yaml").read_text())
        assert spec == traces.load(runs / run_id / "trace.h5").attrs["spec"]
    assert not (runs / "bound").exists() and not (runs / "estimators").exists()  # shared
    assert (runs / SHARED / "gc_estimators.nc").is_file()
    logs = sorted(p.name for p in (workdir / "logs" / "train_group").iterdir())
    assert logs == ["0.log", "1.log"]


def test_a_shared_run_is_one_training_under_two_run_ids(study):
    workdir, _ = study
    with xr.open_dataset(workdir / "results" / "study.nc", engine="h5netcdf") as data:
        bound = "bound/lr-0.05_bs-16_l2-0_gcp-0_seed-0"
        assert set(data.run.values) == {bound, SHARED, "tiny/lr-0.1_bs-16_l2-0_gcp-0_seed-0",
                                        "tiny/lr-0.2_bs-16_l2-0_gcp-0_seed-0",
                                        "estimators/lr-0.05_bs-16_l2-0_gcp-0_seed-0"}  # fmt: skip
        assert data.study.sel(run=bound).item() == "bound"
        assert data.run_folder.sel(run=bound).item() == SHARED
        np.testing.assert_array_equal(data.gc.sel(run=bound).values, data.gc.sel(run=SHARED).values)
        estimators = "estimators/lr-0.05_bs-16_l2-0_gcp-0_seed-0"
        assert np.isfinite(data.gcest_exact.sel(run=estimators).item())
        assert np.isnan(data.gcest_exact.sel(run=SHARED).item())  # tiny asks for no E2


def test_a_rerun_group_restores_its_finished_runs(study):
    """Asking for a deleted output makes Snakemake rerun the whole group job (deleting its
    other outputs first); both runs come back from their kept results, the same bytes."""
    workdir, _ = study
    runs = workdir / "results" / "runs"
    logs = {log: [line.split("\t")[0] for line in log.read_text().splitlines()
                  if line.endswith("\tcomplete")]
            for log in (workdir / "logs" / "train_group").iterdir()}  # fmt: skip
    log_path, group = next((log, runs) for log, runs in logs.items() if len(runs) == 2)
    kept = (workdir / group[1] / "trace.h5").read_bytes()
    (workdir / group[0] / "trace.h5").unlink()
    result = snakemake(workdir, "--cores", "2", f"{group[0]}/trace.h5")
    assert result.returncode == 0, result.stderr[-4000:]
    log = log_path.read_text()
    assert log.count("restored the finished run") == 2  # both: the deleted one was kept too
    assert (workdir / group[1] / "trace.h5").read_bytes() == kept
    assert traces.status(runs / SHARED / "trace.h5") == "complete"
