"""The Snakemake workflow on a tiny config, the paper grid's dry run, and config refusal."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from gcstudy import config as study_config
from gcstudy import traces

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]

TINY_CONFIG = {
    "defaults": {
        "width": 0.0625, "steps": 6, "eval_steps": [0, 3], "gc_examples": 20,
        "feature_examples": 60, "test_examples": 60, "bn_recalibration_examples": 32,
        "fewshot_episodes": 20, "checkpoint_every": 3, "device": "cpu",
    },
    "studies": {
        "tiny": {
            "experiment": "E1", "dataset": "digits",
            "base": {"lr": 0.05, "batch_size": 16}, "sweeps": {"lr": [0.1]}, "seeds": [0],
        },
    },
}  # fmt: skip


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*SNAKEMAKE, "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=workdir,
    )


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny config run once through `snakemake --cores 2` up to the study file."""
    workdir = tmp_path_factory.mktemp("tiny")
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(TINY_CONFIG))
    result = snakemake(workdir, "--configfile", "cfg.yaml", "--cores", "2", "results/study.nc")
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_tiny_study_trains_each_run_and_aggregates(tiny_study):
    ids = [r.run_id for r in study_config.validate(yaml.safe_load(yaml.safe_dump(TINY_CONFIG)))]
    assert ids == ["tiny/lr-0.05_bs-16_l2-0_gcp-0_seed-0", "tiny/lr-0.1_bs-16_l2-0_gcp-0_seed-0"]
    for run_id in ids:
        trace = traces.read(tiny_study / "results" / "runs" / run_id / "trace.h5")
        assert trace.step.values.tolist() == [0, 3, 6]
        assert trace.attrs["spec"]["lr"] == float(run_id.split("_")[0].split("-")[1])
        assert (tiny_study / "logs" / "train" / f"{run_id}.log").exists()
        assert (tiny_study / "results" / "benchmarks" / "train" / f"{run_id}.tsv").exists()
    with xr.open_dataset(tiny_study / "results" / "study.nc", engine="h5netcdf") as study:
        assert study.sizes["run"] == 2
        first = traces.read(tiny_study / "results" / "runs" / ids[0] / "trace.h5")
        assert sorted(study.run.values.tolist()) == ids
        gc = study.gc.sel(run=ids[0]).dropna("step")
        np.testing.assert_array_equal(gc.step.values, first.step.values)
        np.testing.assert_array_equal(gc.values, first.gc.values)


def test_finished_study_has_nothing_left_to_do(tiny_study):
    result = snakemake(
        tiny_study, "--configfile", "cfg.yaml", "--cores", "1", "-n", "results/study.nc"
    )
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


def test_bad_config_is_refused_before_any_job(tmp_path):
    broken = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    broken["studies"]["tiny"]["sweeps"]["lr"] = [0.1, -1]
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(broken))
    result = snakemake(tmp_path, "--configfile", "cfg.yaml", "--cores", "1")
    assert result.returncode != 0
    assert "studies.tiny.sweeps.lr[1]: key 'lr' = -1: must be > 0" in result.stderr
    assert not (tmp_path / "results").exists()


def test_paper_grid_dry_run_lists_every_job(tmp_path):
    result = snakemake(
        tmp_path,
        "-n",
        "--configfile",
        str(REPO / "config" / "paper.yaml"),
        "--cores",
        "1",
        "results/study.nc",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    runs = study_config.expand(study_config.load(REPO / "config" / "paper.yaml"))
    assert int(counts["train"]) == len(runs) == 203
    assert int(counts["evaluate_fewshot"]) == sum("fewshot" in r.evaluations for r in runs)
    assert int(counts["evaluate_gc_estimators"]) == 3
    assert int(counts["prepare_data"]) == 4  # cifar10, mnist, fashion_mnist, cifar_fs


def test_tiny_study_report_uses_the_configs_stats_keys(tiny_study):
    """stats / figures / report through Snakemake, with the config's `stats` keys reaching
    `gcstudy stats` and recorded in claims.json (after the other tiny-study tests: the new
    keys change the run table)."""
    keyed = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    keyed["stats"] = {"alpha": 0.01, "summary_window": 1, "permutations": 199}
    (tiny_study / "cfg_stats.yaml").write_text(yaml.safe_dump(keyed))
    result = snakemake(
        tiny_study, "--configfile", "cfg_stats.yaml", "--cores", "2", "results/report.html"
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((tiny_study / "results" / "stats" / "claims.json").read_text())
    assert (summary["alpha"], summary["summary_window"], summary["permutations"]) == (0.01, 1, 199)
    assert summary["settings"]["seed"] == 0  # the schema's default
    assert not summary["generated_by"]  # trained, not generated
    text = (tiny_study / "results" / "report.html").read_text()
    assert "GENERATED STUDY" not in text and "claim 1:" in text
