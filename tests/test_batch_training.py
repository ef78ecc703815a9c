"""A batch of runs trained by one process (`gcstudy train --batch F --manifest M`): each
run ends as it would alone, a failing run fails alone and the batch gets no manifest, a
rerun trains only what is unfinished, and a run whose spec changed is trained again."""

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from gcstudy.study import seals as runfiles
from gcstudy.study import traces

TINY = dict(
    model="vgg11", width=0.0625, dataset="digits", lr=0.05, batch_size=32, steps=12,
    eval_steps=[0, 5], gc_examples=40, feature_examples=120, test_examples=100,
    bn_recalibration_examples=64, checkpoint_every=4, device="cpu",
)  # fmt: skip


def gcstudy(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gcstudy.cli", "-q", *map(str, args)], capture_output=True, text=True
    )


def batch(root: Path, runs: dict[str, dict], evaluations=()) -> tuple[Path, Path]:
    """A batch file of run folders ``root/<name>`` (spec: TINY with the changes), and where
    its manifest goes."""
    entries = [{"folder": str(root / name), "spec": {**TINY, **changes},
                "evaluations": list(evaluations)} for name, changes in runs.items()]  # fmt: skip
    content = {"runs": entries}
    if evaluations:
        content["evaluate"] = {"gc_examples": 20, "gc_repeats": 2, "fewshot_episodes": 50,
                               "budgets": {"examples": [5], "hutchinson": [1], "outputs": [2],
                                           "mask": [0.01]}}  # fmt: skip
    path = root / "batches" / "b.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))
    return path, root / "trained" / "b.json"


def train(batch_file: Path, manifest: Path) -> subprocess.CompletedProcess:
    return gcstudy("train", "--batch", batch_file, "--manifest", manifest)


def alone(root: Path, name: str, **changes) -> Path:
    """A run trained by itself (`gcstudy train spec.yaml --out`), for reference."""
    spec = root / f"{name}.yaml"
    spec.write_text(yaml.safe_dump({**TINY, **changes}))
    result = gcstudy("train", spec, "--out", root / name)
    assert result.returncode == 0, result.stderr
    return root / name


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
    """Three run folders trained by one `gcstudy train --batch`; the middle one cannot find
    its data set and fails; plus the two good runs trained alone, for reference."""
    root = tmp_path_factory.mktemp("batch")
    runs = {"a": {}, "broken": {"dataset": "mnist", "data_root": str(root / "no-data")},
            "c": {"lr": 0.1, "batch_size": 16}}  # fmt: skip
    batch_file, manifest = batch(root, runs)
    result = train(batch_file, manifest)
    alone(root, "alone-a")
    alone(root, "alone-c", lr=0.1, batch_size=16)
    return root, batch_file, manifest, result


def test_each_run_of_a_batch_ends_as_it_would_alone(group):
    root, *_ = group
    same_results(root / "a", root / "alone-a")
    same_results(root / "c", root / "alone-c")
    assert traces.load(root / "c" / "trace.h5").attrs["spec"]["lr"] == 0.1
    for folder in (root / "a", root / "c"):
        assert (
            yaml.safe_load((folder / "spec.yaml").read_text())
            == traces.load(folder / "trace.h5").attrs["spec"]
        )
        assert not (folder / "trace.running.h5").exists() and not (folder / "ckpt").exists()


def test_a_failing_run_fails_alone_and_the_batch_gets_no_manifest(group):
    root, _, manifest, result = group
    a, broken, c = root / "a", root / "broken", root / "c"
    assert result.returncode == 1
    assert f"run {broken} failed; going on with the others" in result.stderr
    assert "Dataset 'mnist' not available" in result.stderr
    assert f"1 of 3 runs failed: {broken}" in result.stderr
    assert f"{a}\tcomplete" in result.stdout and f"{c}\tcomplete" in result.stdout
    assert not (broken / "trace.h5").exists()
    assert traces.status(a / "trace.h5") == traces.status(c / "trace.h5") == "complete"
    assert not manifest.exists()


def test_a_rerun_trains_only_the_unfinished_runs_then_writes_the_manifest(tmp_path):
    """A batch whose second run was stopped (its result removed, as the start-up check
    does with a broken file): the rerun trains that run alone, leaves the first one's
    files as they were and writes a manifest with the seals of every result file."""
    batch_file, manifest = batch(tmp_path, {"a": {}, "b": {"lr": 0.1}}, ["gc_estimators"])
    assert train(batch_file, manifest).returncode == 0
    first = {name: (tmp_path / "a" / name).stat().st_mtime_ns
             for name in ("trace.h5", "model.pt", "gc_estimators.nc")}  # fmt: skip
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path / "b", reference)
    for name in ("trace.h5", "model.pt"):
        (tmp_path / "b" / name).unlink()
    manifest.unlink()
    again = train(batch_file, manifest)
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("training from step 0") == 1
    assert f"{tmp_path / 'a' / 'trace.h5'} is already complete" in again.stderr
    assert {name: (tmp_path / "a" / name).stat().st_mtime_ns for name in first} == first
    same_results(tmp_path / "b", reference)
    written = json.loads(manifest.read_text())["runs"]
    assert sorted(written) == [str(tmp_path / "a"), str(tmp_path / "b")]
    for folder, entry in written.items():
        assert entry["status"] == "complete"
        assert sorted(entry["sha256"]) == ["gc_estimators.nc", "model.pt", "trace.h5"]
        for name, digest in entry["sha256"].items():
            assert runfiles.sha256(Path(folder) / name) == digest
    # the evaluation of the run trained again is of its new weights, not the old file
    new = (tmp_path / "b" / "gc_estimators.nc").stat().st_mtime_ns
    assert new > (tmp_path / "b" / "model.pt").stat().st_mtime_ns


def test_a_run_of_another_spec_is_trained_again(tmp_path):
    batch_file, manifest = batch(tmp_path, {"a": {}})
    assert train(batch_file, manifest).returncode == 0
    batch_file, manifest = batch(tmp_path, {"a": {"lr": 0.02}})
    again = train(batch_file, manifest)
    assert again.returncode == 0, again.stderr
    assert "was trained with another run spec: training it again" in again.stderr
    assert traces.load(tmp_path / "a" / "trace.h5").attrs["spec"]["lr"] == 0.02
    assert yaml.safe_load((tmp_path / "a" / "spec.yaml").read_text())["lr"] == 0.02


def test_evaluations_of_other_settings_are_made_again(tmp_path):
    batch_file, manifest = batch(tmp_path, {"a": {"dataset": "digits_fs"}}, ["fewshot"])
    assert train(batch_file, manifest).returncode == 0
    path = tmp_path / "a" / "fewshot.nc"
    made = path.stat().st_mtime_ns
    assert train(batch_file, manifest).returncode == 0
    assert path.stat().st_mtime_ns == made  # the same settings: kept
    content = json.loads(batch_file.read_text())
    content["evaluate"]["fewshot_episodes"] = 60
    batch_file.write_text(json.dumps(content))
    assert train(batch_file, manifest).returncode == 0
    assert path.stat().st_mtime_ns > made
    with h5py.File(path, "r") as f:
        assert json.loads(f.attrs["settings"])["fewshot_episodes"] == 60


def test_an_interrupted_batch_resumes_to_the_same_results(tmp_path):
    """SIGUSR1 while the second run trains: it checkpoints, the job stops with 128 + 10;
    the same command then finishes both runs exactly as an uninterrupted job does."""
    spec = dict(steps=40, eval_steps=[0, 20], checkpoint_every=100)
    reference = [alone(tmp_path, "ref-a", **spec), alone(tmp_path, "ref-b", lr=0.1, **spec)]
    batch_file, manifest = batch(tmp_path, {"a": spec, "b": {"lr": 0.1, **spec}})
    folders = [tmp_path / "a", tmp_path / "b"]
    process = subprocess.Popen(
        [sys.executable, "-m", "gcstudy.cli", "-q", "train", "--batch", str(batch_file),
         "--manifest", str(manifest)],
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not (folders[1] / "trace.running.h5").exists():  # the second run has begun
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGUSR1)
    _, stderr = process.communicate(timeout=300)
    if process.returncode == 0:
        pytest.fail("the batch finished before the signal arrived; make its runs longer")
    assert process.returncode == 128 + signal.SIGUSR1, stderr
    assert "a checkpoint was written" in stderr
    assert not manifest.exists()
    assert traces.status(folders[0] / "trace.h5") == "complete"
    assert list((folders[1] / "ckpt").glob("step-*.pt"))
    resumed = train(batch_file, manifest)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint" in resumed.stderr
    for mine, ref in zip(folders, reference, strict=True):
        same_results(mine, ref)
    assert manifest.is_file()


def test_train_takes_a_spec_or_a_batch_not_both(tmp_path):
    batch_file, manifest = batch(tmp_path, {"a": {}, "b": {"lr": -1}})
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(TINY))
    result = gcstudy("train", spec, "--out", tmp_path / "x", "--batch", batch_file,
                     "--manifest", manifest)  # fmt: skip
    assert result.returncode == 2 and "either RUN.yaml --out DIR or --batch" in result.stderr
    alone_batch = gcstudy("train", "--batch", batch_file)
    assert alone_batch.returncode == 2 and "--manifest FILE go together" in alone_batch.stderr
    bad = train(batch_file, manifest)  # a bad spec stops the job before any run
    assert bad.returncode == 2 and f"{batch_file}: {tmp_path / 'b'}" in bad.stderr
    assert not (tmp_path / "a").exists()
