"""`gcstudy status`: a study's progress from real run folders (HDF5 traces written by
gcstudy.traces, checkpoints, a lock held by a live process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from gcstudy import cli, runlock, status, traces
from gcstudy import config as study_config

CONFIG = {
    "defaults": {"width": 0.0625, "steps": 100, "eval_steps": [0, 50, 100], "device": "cpu"},
    "studies": {
        "grid": {
            "experiment": "E1", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 32},
            "sweeps": {"lr": [0.02, 0.1], "batch_size": [16, 64]}, "seeds": [0],
        },
    },
}  # fmt: skip


def write_trace(path: Path, steps: list[int], wall: list[float], state: str) -> None:
    """A trace of ``state`` with these steps and wall times (other values irrelevant)."""
    n = len(steps)
    values = {name: np.zeros(n) for name, v in traces.VARIABLES.items() if not v.transfer_only}
    values["gc_per_class"] = np.zeros((n, 2))
    values["examples_seen"] = np.array(steps, dtype=np.int64) * 32
    values["wall_time"] = np.array(wall, dtype=float)
    path.parent.mkdir(parents=True, exist_ok=True)
    traces.write(path, np.array(steps), np.array([0, 1]), values, {}, state)


@pytest.fixture
def study(tmp_path):
    """Five runs, one in each state, as their folders are on disk."""
    configfile = tmp_path / "cfg.yaml"
    configfile.write_text(yaml.safe_dump(CONFIG))
    runs = study_config.load_all([configfile])
    ids = [run.run_id for run in study_config.expand(runs)]
    folder = {run_id: tmp_path / "results" / "runs" / run_id for run_id in ids}
    complete, diverged, running, failed, _pending = ids
    write_trace(folder[complete] / "trace.h5", [0, 50, 100], [0, 25, 50], "complete")  # 0.5 s/step
    write_trace(folder[diverged] / "trace.h5", [0, 50], [0, 50], "diverged")  # 1 s/step
    write_trace(folder[running] / "trace.running.h5", [0, 50], [0, 75], "running")  # 1.5 s/step
    write_trace(folder[failed] / "trace.running.h5", [0], [0.0], "running")
    (folder[failed] / "ckpt").mkdir()
    (folder[failed] / "ckpt" / "step-00000030.pt").write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gcstudy import runlock;"
         "runlock.acquire(sys.argv[1]); print('held', flush=True); time.sleep(600)",
         str(folder[running])],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    yield configfile, ids, holder
    holder.kill()
    holder.wait()


def test_each_run_state_is_read_from_its_folder(study, tmp_path):
    configfile, _ids, holder = study
    found = status.survey(study_config.expand(study_config.load_all([configfile])),
                          tmp_path / "results")  # fmt: skip
    assert [s.state for s in found] == ["complete", "diverged", "running", "failed", "pending"]
    running = found[2]
    assert (running.step, running.wall_time, running.holder.pid) == (50, 75.0, holder.pid)
    assert "resumes from step 30" in found[3].note

    # ETA: steps left (running 50, failed 100 - 0, pending 100) x mean s/step of the three
    # runs that traced steps (0.5, 1, 1.5 -> 1 s), one run in parallel
    eta, per_step, parallel = status.eta_seconds(found)
    assert (per_step, parallel) == (1.0, 1)
    assert eta == pytest.approx((50 + 100 + 100) * 1.0)


def test_cli_prints_counts_steps_and_eta(study, tmp_path, capsys):
    configfile, ids, holder = study
    assert cli.main(["status", "--configfile", str(configfile), "-d", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 runs: 1 complete, 1 running, 1 pending, 1 diverged, 1 failed" in out
    assert f"running  {ids[2]}: step 50/100, 1.50 s/step (job -, host" in out
    assert f"pid {holder.pid})" in out
    assert f"failed   {ids[3]}: step 0/100: no live trainer" in out
    assert "ETA: ~4 min 10 s (1.00 s/step measured, 1 run(s) in parallel)" in out


def test_a_stopped_holder_turns_running_into_failed(study, tmp_path):
    _configfile, ids, holder = study
    holder.kill()
    holder.wait()
    found = status.run_status(ids[2], 100, tmp_path / "results" / "runs" / ids[2])
    assert found.state == "failed" and found.step == 50
    assert runlock.holder(tmp_path / "results" / "runs" / ids[2]) is None
