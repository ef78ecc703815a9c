"""Result files and their seals (gcstudy.study.seals) on real files: HDF5 traces written by
gcstudy.study.traces, torch zip files written by torch.save, damaged the ways a disk or a user
damages them; the study check (gcstudy.study.runfolder) removes what is broken, never a
folder a live process holds; and the workflow's lock of a results folder
(gcstudy.scheduling.studylock) held by a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gcstudy.scheduling import studylock
from gcstudy.study import seals as runfiles
from gcstudy.study import traces
from gcstudy.study.runfolder import STUDY_CHECK, TRAINED, RunFolder, check_study


def write_trace(path: Path, state: str = "complete") -> Path:
    """A small trace of ``state`` (values irrelevant here)."""
    values = {name: np.zeros(2) for name, v in traces.VARIABLES.items() if not v.transfer_only}
    values["gc_per_class"] = np.zeros((2, 2))
    values["examples_seen"] = np.array([0, 32])
    path.parent.mkdir(parents=True, exist_ok=True)
    return traces.write(path, np.array([0, 1]), np.array([0, 1]), values, {}, state)


def write_model(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.arange(5000.0)}}, path)
    return path


def finished_run(folder: Path) -> Path:
    """A run folder with both result files, sealed as the trainer seals them."""
    folder.mkdir(parents=True, exist_ok=True)
    runfiles.seal(write_model(folder / "model.pt"))
    runfiles.seal(write_trace(folder / "trace.h5"))
    return folder


def truncate(path: Path, keep: float = 0.5) -> None:
    os.truncate(path, int(path.stat().st_size * keep))


def flip_byte(path: Path, at: int = -100) -> None:
    """Change one byte, keeping the size (a new modification time, as any write)."""
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def folders(results: Path, evaluations: dict[str, list[str]]) -> list[RunFolder]:
    """The run folders ``results/runs/<name>`` with the evaluation kinds they need."""
    return [RunFolder.under(results, name, kinds) for name, kinds in evaluations.items()]


@pytest.mark.parametrize("name", TRAINED)
def test_a_sealed_file_is_fine_until_damaged(tmp_path, name):
    path = finished_run(tmp_path) / name
    assert runfiles.problem(path) is None and runfiles.verify(path) is None
    os.utime(path)  # touched: a new time, the same bytes (the hash decides)
    assert runfiles.problem(path) is None
    flip_byte(path)
    assert "content changed" in runfiles.problem(path)
    truncate(path)
    assert "truncated" in runfiles.problem(path)
    path.unlink()
    assert runfiles.problem(path) == "missing"


def test_the_cheap_check_trusts_size_and_time_the_thorough_one_reads(tmp_path):
    """A flipped bit that keeps size and time (disk rot) passes the per-parse check, not
    the check before a restore."""
    path = finished_run(tmp_path) / "trace.h5"
    before = path.stat()
    flip_byte(path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert runfiles.problem(path) is None
    assert "content changed" in runfiles.verify(path)


def test_unsealed_files_are_judged_by_their_format(tmp_path):
    trace, model = write_trace(tmp_path / "trace.h5"), write_model(tmp_path / "model.pt")
    assert runfiles.problem(trace) is None and runfiles.problem(model) is None
    assert "no seal" in runfiles.verify(trace)
    truncate(trace)
    truncate(model)
    assert "not a readable HDF5 file" in runfiles.problem(trace)
    assert "not a readable torch file" in runfiles.problem(model)
    running = write_trace(tmp_path / "r" / "trace.h5", "running")
    assert "not a finished run" in runfiles.problem(running, finished_trace=True)
    assert "not a finished run" in RunFolder(tmp_path / "r").problem(running)
    assert runfiles.problem(running) is None  # an HDF5 file that is no trace has no status


def test_study_check_removes_a_broken_result_whole_and_records_it(tmp_path):
    results = tmp_path / "results"
    intact = finished_run(results / "runs" / "s" / "intact")
    no_model = finished_run(results / "runs" / "s" / "no_model")
    (no_model / "model.pt").unlink()
    damaged = finished_run(results / "runs" / "s" / "damaged")
    runfiles.seal(write_trace(damaged / "fewshot.nc"))  # any sealed HDF5 file
    truncate(damaged / "fewshot.nc")
    needed = {"s/intact": [], "s/no_model": [], "s/damaged": ["fewshot", "bound"], "s/new": []}

    found = check_study(results, folders(results, needed))

    by_path = {Path(f.path).relative_to(results / "runs").as_posix(): f for f in found}
    assert set(by_path) == {"s/no_model/model.pt", "s/no_model/trace.h5",
                            "s/damaged/fewshot.nc", "s/new/model.pt", "s/new/trace.h5"}  # fmt: skip
    partner = by_path["s/no_model/trace.h5"]
    assert partner.removed and "partner" in partner.reason
    assert not by_path["s/no_model/model.pt"].removed  # it was missing already
    assert not (no_model / "trace.h5").exists() and not (no_model / "trace.h5.sum").exists()
    assert by_path["s/damaged/fewshot.nc"].removed and (damaged / "trace.h5").exists()
    assert runfiles.problem(intact / "trace.h5") is None
    record = results / STUDY_CHECK
    assert len(json.loads(record.read_text())["findings"]) == 5
    assert record.stat().st_mtime_ns > 0


def test_an_intact_study_leaves_an_ancient_record(tmp_path):
    """Nothing found: the record is created with time 0, so no rule that reads it runs."""
    results = tmp_path / "results"
    finished_run(results / "runs" / "a")
    assert check_study(results, folders(results, {"a": []})) == []
    assert (results / STUDY_CHECK).stat().st_mtime_ns == 0


HOLD = (
    "import importlib, sys, time; importlib.import_module('{module}').{call}(sys.argv[1]);"
    "print('held', flush=True); time.sleep(600)"
)


def hold(module: str, call: str, path: Path) -> subprocess.Popen:
    """A real process that takes a lock (``module.call(path)``) and sleeps."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(module=module, call=call), str(path)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_study_check_leaves_a_folder_a_live_trainer_holds(tmp_path):
    results = tmp_path / "results"
    folder = finished_run(results / "runs" / "held")
    (folder / "trace.h5").unlink()  # as while the trainer writes its result
    holder = hold("gcstudy.study.runlock", "acquire", folder)
    try:
        assert check_study(results, folders(results, {"held": []})) == []
        assert (folder / "model.pt").exists()
    finally:
        holder.kill()
        holder.wait()
    assert [f.removed for f in check_study(results, folders(results, {"held": []}))] == [
        True,
        False,
    ]


def test_the_workflow_lock_names_its_live_holder_and_dies_with_it(tmp_path, capsys):
    holder = hold("gcstudy.scheduling.studylock", "acquire", tmp_path)
    try:
        assert not studylock.acquire(tmp_path)
        with pytest.raises(studylock.StudyInUse, match=f"pid {holder.pid} on host "):
            studylock.guard(tmp_path, dry_run=False)
        assert studylock.guard(tmp_path, dry_run=True) is False
        assert f"pid {holder.pid}" in capsys.readouterr().err
    finally:
        holder.kill()
        holder.wait()
    assert studylock.guard(tmp_path, dry_run=False) is True  # released by the kernel
    assert studylock.holder(tmp_path)["pid"] == os.getpid()
