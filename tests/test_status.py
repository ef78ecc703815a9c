"""`gcstudy status`: a study's progress from real run folders (HDF5 traces written by
gcstudy.study.traces, checkpoints, a lock held by a live process)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gcstudy import cli
from gcstudy.scheduling import status
from gcstudy.study import config as study_config
from gcstudy.study import runlock, traces
from gcstudy.study import seals as runfiles

CONFIG = {
    "defaults": {"width": 0.0625, "steps": 100, "eval_steps": [0, 50, 100], "device": "cpu"},
    "studies": {
        "grid": {
            "experiment": "E1", "dataset": "digits", "base": {"lr": 0.05, "batch_size": 32},
            "sweeps": {"lr": [0.02, 0.1], "batch_size": [16, 64]}, "seeds": [0],
        },
    },
}  # fmt: skip


def write_trace(
    path: Path, steps: list[int], wall: list[float], state: str, spec: dict | None = None
) -> None:
    """A trace of ``state`` with these steps and wall times (other values irrelevant)."""
    n = len(steps)
    values = {name: np.zeros(n) for name, v in traces.VARIABLES.items() if not v.transfer_only}
    values["gc_per_class"] = np.zeros((n, 2))
    values["examples_seen"] = np.array(steps, dtype=np.int64) * 32
    values["wall_time"] = np.array(wall, dtype=float)
    path.parent.mkdir(parents=True, exist_ok=True)
    traces.write(path, np.array(steps), np.array([0, 1]), values, {"spec": spec or {}}, state)


def write_result(folder: Path, run, steps: list[int], wall: list[float], state: str) -> None:
    """A finished run's two result files, sealed as the trainer seals them."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}}, folder / "model.pt")
    runfiles.seal(folder / "model.pt")
    write_trace(folder / "trace.h5", steps, wall, state, run.spec.to_dict())
    runfiles.seal(folder / "trace.h5")


@pytest.fixture
def study(tmp_path):
    """Five runs, one in each state, as their folders are on disk."""
    configfile = tmp_path / "cfg.yaml"
    configfile.write_text(yaml.safe_dump(CONFIG))
    runs = study_config.expand(study_config.load_all([configfile]))
    ids = [run.run_id for run in runs]
    folder = {run_id: tmp_path / "results" / "runs" / run_id for run_id in ids}
    complete, diverged, running, failed, _pending = ids
    write_result(folder[complete], runs[0], [0, 50, 100], [0, 25, 50], "complete")  # 0.5 s/step
    write_result(folder[diverged], runs[1], [0, 50], [0, 50], "diverged")  # 1 s/step
    write_trace(folder[running] / "trace.running.h5", [0, 50], [0, 75], "running")  # 1.5 s/step
    write_trace(folder[failed] / "trace.running.h5", [0], [0.0], "running")
    (folder[failed] / "ckpt").mkdir()
    (folder[failed] / "ckpt" / "step-00000030.pt").write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from gcstudy.study import runlock;"
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
    assert cli.main(["status", "--configfile", str(configfile), "-d", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "5 runs in 5 run folders: 1 complete, 1 running, 1 pending, 1 diverged, 1 failed, " \
           "0 broken, 0 stale" in out  # fmt: skip
    assert f"running  {ids[2]}: step 50/100, 1.50 s/step (job -, host" in out
    assert f"pid {holder.pid})" in out
    assert f"failed   {ids[3]}: step 0/100: no live trainer" in out
    assert "ETA: ~4 min 10 s (1.00 s/step measured, 1 run(s) in parallel)" in out


def test_a_stopped_holder_turns_running_into_failed(study, tmp_path):
    _configfile, ids, holder = study
    holder.kill()
    holder.wait()
    run = study_config.expand(study_config.load_all([_configfile]))[2]
    found = status.run_status(run, tmp_path / "results" / "runs" / ids[2])
    assert found.state == "failed" and found.step == 50
    assert runlock.holder(tmp_path / "results" / "runs" / ids[2]) is None


SHARED = {
    "defaults": CONFIG["defaults"],
    "studies": {
        "grid": {**CONFIG["studies"]["grid"], "sweeps": {"lr": [0.1]}},
        "bound": {"experiment": "E3", "dataset": "digits", "seeds": [0],
                  "base": {"lr": 0.05, "batch_size": 32}, "evaluations": ["bound"]},
    },
}  # fmt: skip


def test_a_finished_study_with_shared_runs_is_complete_and_says_what_is_wrong(
    tmp_path, monkeypatch, capsys
):
    """The bound study's run is trained in the grid's base folder: counted there. The
    config is config/config.yaml of the working directory (the default). A missing
    model.pt is a broken run, a trace of another spec a stale one, each named, exit 1."""
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(SHARED, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    runs = study_config.expand(study_config.load_all(["config/config.yaml"]))
    folders = {run.trained_in for run in runs}
    assert len(runs) == 3 and len(folders) == 2
    for run in study_config.trained_runs(runs):
        write_result(tmp_path / "results" / "runs" / run.run_id, run, [0, 100], [0, 10], "complete")

    assert cli.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "3 runs in 2 run folders: 3 complete, 0 running, 0 pending" in out
    assert "ETA: done" in out

    base = runs[0].run_id
    (tmp_path / "results" / "runs" / base / "model.pt").unlink()
    assert cli.main(["status"]) == 1
    out = capsys.readouterr().out
    assert "3 runs in 2 run folders: 1 complete, 0 running, 0 pending, 0 diverged, " \
           "0 failed, 2 broken, 0 stale" in out  # fmt: skip
    assert f"  broken   {base}: step 0/100: model.pt: missing; run the workflow again" in out

    changed = {**SHARED, "defaults": {**SHARED["defaults"], "steps": 120}}
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(changed, sort_keys=False))
    assert cli.main(["status"]) == 1
    out = capsys.readouterr().out
    assert f"  stale    {runs[1].run_id}: step 100/120: trained with another run spec " \
           "than the config's (keys eval_clock_steps, steps differ)" in out  # fmt: skip


def test_a_fresh_study_is_in_progress(study, tmp_path):
    fresh = [status.RunStatus("a", "pending", 100), status.RunStatus("b", "complete", 100)]
    assert status.exit_status(fresh) == 3
    assert status.exit_status([fresh[1]]) == 0


def test_the_step_of_a_running_run_advances_between_evaluations(tmp_path):
    """A real trainer evaluating only at step 0 (and at its end, far away): its step as
    status sees it goes up while its running trace still ends at step 0."""
    spec = {"model": "vgg11", "width": 0.0625, "dataset": "digits", "batch_size": 16,
            "steps": 100000, "eval_steps": [0], "gc_examples": 20, "feature_examples": 60,
            "test_examples": 60, "bn_recalibration_examples": 32, "checkpoint_every": 100000,
            "device": "cpu"}  # fmt: skip
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    folder = tmp_path / "run"
    trainer = subprocess.Popen(
        [sys.executable, "-m", "gcstudy.cli", "-q", "train", str(tmp_path / "spec.yaml"),
         "--out", str(folder)], stderr=subprocess.DEVNULL,
    )  # fmt: skip
    run = type("Run", (), {"run_id": "run", "spec": type("Spec", (), {"steps": 100000})})
    seen = []
    try:
        deadline = time.monotonic() + 240
        while len(set(seen)) < 3 and time.monotonic() < deadline:
            found = status.run_status(run, folder)
            if found.state == "running" and found.step > 0:
                seen.append(found.step)
            time.sleep(0.5)
        assert traces.load(folder / "trace.running.h5", allow_running=True).steps.tolist() == [0]
    finally:
        trainer.send_signal(signal.SIGTERM)
        trainer.wait(timeout=120)
    assert len(set(seen)) >= 3 and seen == sorted(seen), seen
