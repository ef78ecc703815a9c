"""Files are the truth: a plain rerun of the workflow retrains a run whose files were lost
or broken and rebuilds everything after it; a second Snakemake on a results folder in use
is refused, whatever flags it is given, and names the first. Real Snakemake on a study of
one tiny run, finished once and copied for each test."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_study import TINY_DEFAULTS

from gcstudy.study import seals as runfiles
from gcstudy.study import traces
from gcstudy.study.runfolder import RunFolder

REPO = Path(__file__).resolve().parents[1]
CONFIG = {
    "defaults": TINY_DEFAULTS,
    "studies": {
        "tiny": {"experiment": "E1", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 16},
                 "seeds": [0]},
    },
}  # fmt: skip
RUN = "results/runs/tiny/lr-0.05_bs-16_l2-0_gcp-0_seed-0"
DOWNSTREAM = ("aggregate", "stats", "figures", "report")


def snakemake(workdir: Path, *args: str, wait: bool = True):
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "--directory", str(workdir), "--configfile", "cfg.yaml", *args]  # fmt: skip
    if not wait:
        return subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)


def planned(result: subprocess.CompletedProcess) -> dict[str, int]:
    """The job counts of a dry run."""
    assert result.returncode == 0, result.stderr[-3000:]
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.M)}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("finished")
    (workdir / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    result = snakemake(workdir, "--cores", "2")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Nothing to be done" in snakemake(workdir, "-n").stdout
    return workdir


@pytest.fixture
def study(finished, tmp_path) -> Path:
    """A copy of the finished study (files, times and Snakemake's records)."""
    return shutil.copytree(finished, tmp_path / "study", symlinks=True)


def truncate_trace(run: Path) -> None:
    os.truncate(run / "trace.h5", (run / "trace.h5").stat().st_size // 2)


def change_trace(run: Path) -> None:
    """One byte of the trace's data changed, its size kept."""
    data = bytearray((run / "trace.h5").read_bytes())
    data[-64] ^= 0xFF
    (run / "trace.h5").write_bytes(bytes(data))


DAMAGES = {
    "truncated trace": truncate_trace,
    "changed trace": change_trace,
    "deleted trace": lambda run: (run / "trace.h5").unlink(),
    "deleted weights": lambda run: (run / "model.pt").unlink(),
    "deleted run folder": shutil.rmtree,
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_plain_rerun_plans_to_retrain_the_run_and_rebuild_all_after_it(study, damage):
    """The start-up check removes what is broken and the manifest of the run's batch, so
    that Snakemake trains the batch again."""
    assert (study / "results" / "trained" / f"{RUN.split('/', 2)[2]}.json").is_file()
    DAMAGES[damage](study / RUN)
    jobs = planned(snakemake(study, "-n"))
    assert jobs["train"] == 1, jobs
    assert all(jobs[rule] == 1 for rule in DOWNSTREAM), jobs
    assert "batch_spec" not in jobs  # the batch file is not in the run folder
    assert not (study / "results" / "trained" / f"{RUN.split('/', 2)[2]}.json").exists()
    for path in RunFolder(study / RUN).trained:  # a broken result goes whole: trained anew
        assert runfiles.problem(path) == "missing"


def test_a_rerun_beside_a_running_snakemake_is_refused_and_the_first_recovers(study):
    """The first Snakemake retrains a truncated trace. Meanwhile a second one is refused
    with --unlock and with --rerun-incomplete (naming the first's pid); its dry run goes
    through. The first ends with the run's results as before and a newer report."""
    reference = traces.load(study / RUN / "trace.h5")
    report_before = (study / "results" / "report.html").stat().st_mtime_ns
    truncate_trace(study / RUN)
    first = snakemake(study, "--cores", "1", wait=False)
    try:
        deadline = time.monotonic() + 300
        while not (study / RUN / "lock.json").exists():  # its trainer has started
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for flags in (["--unlock"], ["--cores", "1", "--rerun-incomplete"]):
            second = snakemake(study, *flags)
            assert second.returncode != 0, flags
            assert f"is in use by another Snakemake: pid {first.pid} on host" in second.stderr
        dry = snakemake(study, "-n")
        assert dry.returncode == 0, dry.stderr[-3000:]
        assert f"note: results is in use by another Snakemake (pid {first.pid} on" in dry.stderr
        _, log = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, log[-4000:]
    again = traces.load(study / RUN / "trace.h5")
    for name, values in reference.values.items():
        if name != "wall_time":
            np.testing.assert_array_equal(again.values[name], values, err_msg=name)
    assert runfiles.verify(study / RUN / "trace.h5") is None
    assert (study / "results" / "report.html").stat().st_mtime_ns > report_before
    assert "Nothing to be done" in snakemake(study, "-n").stdout
