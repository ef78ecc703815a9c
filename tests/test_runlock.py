"""One writer per run folder (gcstudy.study.runlock): real `gcstudy train` processes on one folder;
holders on other hosts and stale holders. SLURM job holders: test_slurm_cluster.py."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gcstudy.study import runlock, traces

SPEC = {
    "model": "vgg11", "width": 0.0625, "dataset": "digits", "steps": 400, "batch_size": 32,
    "eval_steps": [0, 400], "gc_examples": 20, "feature_examples": 60, "test_examples": 60,
    "bn_recalibration_examples": 32, "checkpoint_every": 5, "device": "cpu",
}  # fmt: skip


def train(spec: Path, out: Path, **kw) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "gcstudy.cli", "-q", "train", str(spec), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, **kw,
    )  # fmt: skip


def wait_until(predicate, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Poll ``predicate`` while ``proc`` lives (an event, not a fixed delay)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"not reached within {timeout} s"
        time.sleep(0.05)


@pytest.mark.slow
def test_second_trainer_is_refused_and_a_dead_holder_does_not_block(tmp_path):
    spec = tmp_path / "run.yaml"
    spec.write_text(yaml.safe_dump(SPEC))
    out = tmp_path / "run"
    first = train(spec, out)
    try:
        wait_until(lambda: any(out.glob("ckpt/step-*.pt")), first)
        held = json.loads((out / runlock.LOCK_NAME).read_text())
        assert (held["pid"], held["host"], held["job"]) == (first.pid, platform.node(), None)

        second = train(spec, out)
        _, err = second.communicate(timeout=600)
        assert second.returncode == 2, err
        assert f"{out} is being trained by job -, host {platform.node()}, pid {first.pid}" in err
        assert first.poll() is None  # the holder trains on, its lock untouched
        assert json.loads((out / runlock.LOCK_NAME).read_text()) == held
    finally:
        first.kill()  # SIGKILL: no chance to release the lock
        first.wait()
    assert (out / runlock.LOCK_NAME).exists()  # a stale holder: dead process

    third = train(spec, out)
    _, err = third.communicate(timeout=900)
    assert third.returncode == 0, err
    assert "resuming from checkpoint" in err
    assert traces.status(out / "trace.h5") == "complete"
    assert not (out / runlock.LOCK_NAME).exists()  # released at exit


def write_holder(folder: Path, **fields) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    holder = {"pid": None, "host": platform.node(), "job": None, "start": None,
              "since": "2026-01-01T00:00:00+00:00", "state": "running", **fields}  # fmt: skip
    (folder / runlock.LOCK_NAME).write_text(json.dumps(holder))


def test_holders_that_cannot_write_any_more_are_stale(tmp_path):
    # a pid on this host that is dead
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_holder(tmp_path / "dead", pid=dead.pid)
    assert runlock.holder(tmp_path / "dead") is None
    # a live pid whose start time differs: the pid was reused by another process
    write_holder(tmp_path / "reused", pid=os.getppid(), start=1)
    assert runlock.holder(tmp_path / "reused") is None
    # a file that is not a holder
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / runlock.LOCK_NAME).write_text("{not json")
    assert runlock.holder(tmp_path / "junk") is None
    for name in ("dead", "reused", "junk"):
        me = runlock.acquire(tmp_path / name)  # replaced
        assert runlock.holder(tmp_path / name) == me


def test_holder_on_another_host_without_a_job_is_respected(tmp_path):
    """It cannot be checked from here: refused, and the message says what to remove."""
    write_holder(tmp_path, pid=4242, host="node-17")
    with pytest.raises(runlock.RunLocked) as refused:
        runlock.acquire(tmp_path)
    assert "job -, host node-17, pid 4242" in str(refused.value)
    assert f"remove {tmp_path / runlock.LOCK_NAME}" in str(refused.value)


def test_own_process_and_own_requeued_job_take_over(tmp_path, monkeypatch):
    me = runlock.acquire(tmp_path / "again")
    assert runlock.acquire(tmp_path / "again") == me  # re-entrant in one process
    # an earlier incarnation of this very SLURM job (a requeued array task), another host
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    write_holder(tmp_path / "requeued", pid=1, host="node-3", job="77_3")
    assert runlock.acquire(tmp_path / "requeued").job == "77_3"


def test_lock_is_released_on_a_normal_exit_not_on_a_signal(tmp_path):
    code = "import sys, os, signal; from gcstudy.study import runlock; runlock.acquire(sys.argv[1])"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "a")], check=True)
    assert not (tmp_path / "a" / runlock.LOCK_NAME).exists()
    killed = subprocess.run(
        [sys.executable, "-c", code + "; os.kill(os.getpid(), signal.SIGKILL)",
         str(tmp_path / "b")]
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    assert (tmp_path / "b" / runlock.LOCK_NAME).exists()
    assert runlock.holder(tmp_path / "b") is None
