"""Several runs trained by one process (`gcstudy train --runs DIR ...`): each run ends as
it would alone, a failing run fails alone, and a finished run survives the deletion of
its job's outputs (what Snakemake does to every output of a failed job)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gcstudy import traces

TINY = dict(
    model="vgg11", width=0.0625, dataset="digits", lr=0.05, batch_size=32, steps=12,
    eval_steps=[0, 5], gc_examples=40, feature_examples=120, test_examples=100,
    bn_recalibration_examples=64, checkpoint_every=4, device="cpu",
)  # fmt: skip


def gcstudy(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gcstudy.cli", "-q", *map(str, args)], capture_output=True, text=True
    )


def run_folder(path: Path, **changes) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "spec.yaml").write_text(yaml.safe_dump({**TINY, **changes}))
    return path


def same_results(a: Path, b: Path) -> None:
    """Bitwise equal traces (but wall times) and weights."""
    first, second = traces.load(a / "trace.h5"), traces.load(b / "trace.h5")
    assert first.values.keys() == second.values.keys()
    for name in first.values:
        if name != "wall_time":
            np.testing.assert_array_equal(first.values[name], second.values[name], err_msg=name)
    weights = [torch.load(d / "model.pt", weights_only=True)["state_dict"] for d in (a, b)]
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    """Three run folders trained by one `gcstudy train --runs`; the middle one cannot find
    its data set and fails; plus the two good runs trained alone, for reference."""
    root = tmp_path_factory.mktemp("group")
    folders = [
        run_folder(root / "a"),
        run_folder(root / "broken", dataset="mnist", data_root=str(root / "no-data")),
        run_folder(root / "c", lr=0.1, batch_size=16),
    ]
    result = gcstudy("train", "--runs", *folders)
    for name in ("a", "c"):
        alone = gcstudy("train", root / name / "spec.yaml", "--out", root / f"alone-{name}")
        assert alone.returncode == 0, alone.stderr
    return root, folders, result


def test_each_run_of_a_group_ends_as_it_would_alone(group):
    root, (a, _, c), _ = group
    same_results(a, root / "alone-a")
    same_results(c, root / "alone-c")
    assert traces.load(c / "trace.h5").attrs["spec"]["lr"] == 0.1
    for folder in (a, c):
        assert not (folder / "trace.running.h5").exists()
        assert sorted(p.name for p in (folder / "ckpt").iterdir()) == ["result"]


def test_a_failing_run_fails_alone(group):
    _, (a, broken, c), result = group
    assert result.returncode == 1
    assert f"run {broken} failed; going on with the others" in result.stderr
    assert "Dataset 'mnist' not available" in result.stderr
    assert f"1 of 3 runs failed: {broken}" in result.stderr
    assert f"{a}\tcomplete" in result.stdout and f"{c}\tcomplete" in result.stdout
    assert not (broken / "trace.h5").exists()
    assert traces.status(a / "trace.h5") == traces.status(c / "trace.h5") == "complete"


def test_finished_runs_are_restored_after_their_outputs_are_deleted(tmp_path):
    """As Snakemake does before it reruns a failed group job: the outputs go, the rerun
    puts back the kept result (the same bytes) and trains nothing."""
    folders = [run_folder(tmp_path / "a"), run_folder(tmp_path / "b", lr=0.1)]
    assert gcstudy("train", "--runs", *folders).returncode == 0
    before = {f: (f / "trace.h5").read_bytes() for f in folders}
    for folder in folders:
        (folder / "trace.h5").unlink()
        (folder / "model.pt").unlink()
    again = gcstudy("train", "--runs", *folders)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("restored the finished run") == 2
    assert "non-finite" not in again.stderr and "resuming" not in again.stderr
    for folder in folders:
        assert (folder / "trace.h5").read_bytes() == before[folder]
        for name in ("model.pt", "trace.h5"):
            kept = folder / "ckpt" / "result" / name
            assert (folder / name).stat().st_ino != kept.stat().st_ino  # a copy, not a link
            assert kept.read_bytes() == (folder / name).read_bytes()


def test_a_damaged_kept_result_is_never_restored(tmp_path):
    """The run's trace truncated leaves the kept copy whole (it is a copy); a kept copy
    damaged in turn is discarded and the run trained anew, to the same results."""
    folder = run_folder(tmp_path / "a")
    assert gcstudy("train", "--runs", folder).returncode == 0
    reference = tmp_path / "reference"
    shutil.copytree(folder, reference)
    os.truncate(folder / "trace.h5", 1000)
    kept = folder / "ckpt" / "result"
    assert (kept / "trace.h5").read_bytes() == (reference / "trace.h5").read_bytes()

    again = gcstudy("train", "--runs", folder)  # the broken pair goes, the kept one comes back
    assert again.returncode == 0, again.stderr
    assert "is broken (trace.h5: its size is 1000 bytes" in again.stderr
    assert "restored the finished run" in again.stderr
    assert (folder / "trace.h5").read_bytes() == (reference / "trace.h5").read_bytes()

    data = bytearray((kept / "model.pt").read_bytes())
    data[-200] ^= 0xFF  # one byte of the kept weights, the size unchanged
    (kept / "model.pt").write_bytes(bytes(data))
    (folder / "trace.h5").unlink()
    third = gcstudy("train", "--runs", folder)
    assert third.returncode == 0, third.stderr
    assert "not restoring the broken kept result" in third.stderr
    assert "model.pt: its content changed" in third.stderr
    assert "restored the finished run" not in third.stderr
    same_results(folder, reference)
    assert (kept / "model.pt").read_bytes() == (reference / "model.pt").read_bytes()


def test_a_kept_result_of_another_spec_is_trained_anew(tmp_path):
    folder = run_folder(tmp_path / "a")
    assert gcstudy("train", "--runs", folder).returncode == 0
    (folder / "trace.h5").unlink()
    (folder / "model.pt").unlink()
    run_folder(folder, lr=0.02)
    again = gcstudy("train", "--runs", folder)
    assert again.returncode == 0, again.stderr
    assert "belongs to another run spec: training anew" in again.stderr
    assert traces.load(folder / "trace.h5").attrs["spec"]["lr"] == 0.02


def test_an_interrupted_group_resumes_to_the_same_results(tmp_path):
    """SIGUSR1 while the second run trains: it checkpoints, the job stops with 128 + 10;
    the same command then finishes both runs exactly as an uninterrupted job does."""
    spec = dict(steps=40, eval_steps=[0, 20], checkpoint_every=100)
    folders = [run_folder(tmp_path / "a", **spec), run_folder(tmp_path / "b", lr=0.1, **spec)]
    reference = [
        run_folder(tmp_path / "ref-a", **spec),
        run_folder(tmp_path / "ref-b", lr=0.1, **spec),
    ]
    assert gcstudy("train", "--runs", *reference).returncode == 0
    process = subprocess.Popen(
        [sys.executable, "-m", "gcstudy.cli", "-q", "train", "--runs", *map(str, folders)],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (folders[1] / "trace.running.h5").exists():  # the second run has begun
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGUSR1)
    _, stderr = process.communicate(timeout=300)
    if process.returncode == 0:
        pytest.fail("the group finished before the signal arrived; make its runs longer")
    assert process.returncode == 128 + signal.SIGUSR1, stderr
    assert "a checkpoint was written" in stderr
    assert traces.status(folders[0] / "trace.h5") == "complete"
    assert list((folders[1] / "ckpt").glob("step-*.pt"))
    resumed = gcstudy("train", "--runs", *folders)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint" in resumed.stderr
    for mine, ref in zip(folders, reference, strict=True):
        same_results(mine, ref)


def test_train_takes_a_spec_or_run_folders_not_both(tmp_path):
    folder = run_folder(tmp_path / "a")
    result = gcstudy("train", folder / "spec.yaml", "--out", tmp_path / "x", "--runs", folder)
    assert result.returncode == 2 and "either RUN.yaml --out DIR or --runs" in result.stderr
    missing = gcstudy("train", "--runs", folder, tmp_path / "nowhere")
    assert missing.returncode == 2 and "nowhere/spec.yaml" in missing.stderr
    assert not (folder / "trace.h5").exists()  # a bad spec stops the job before any run
    assert os.listdir(folder) == ["spec.yaml"]
