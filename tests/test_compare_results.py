"""scripts/compare_results.py finds every difference in what a study found, and none in
when or where it ran (it backs the claim that a refactor changed no result)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import torch
import xarray as xr

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_results.py"
spec = importlib.util.spec_from_file_location("compare_results", SCRIPT)
compare_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_results)

FOLDER = "s/lr-0.1_seed-0"


def results(root: Path) -> Path:
    """A results folder with one run: its trace, weights, study file and a stats table."""
    run = root / "runs" / FOLDER
    run.mkdir(parents=True)
    table = {"runs": [{"run_id": FOLDER, "folder": FOLDER, "seed": 0, "spec": {"lr": 0.1}}]}
    (root / "run_table.json").write_text(json.dumps(table))
    with h5py.File(run / "trace.h5", "w") as trace:
        trace["gc"] = np.array([1.0, 0.5, 0.25])
        trace["wall_time"] = np.array([0.1, 0.2, 0.3])
        trace.attrs["spec"] = json.dumps({"lr": 0.1})
        trace.attrs["segments"] = json.dumps([{"host": "a", "started_at": "t0"}])
        trace.attrs["git_commit"] = "abc"
    torch.save({"state_dict": {"w": torch.arange(4.0)}, "step": 3}, run / "model.pt")
    xr.Dataset({"gc": ("run", [1.0])}, attrs={"created_at": "t0"}).to_netcdf(root / "study.nc")
    (root / "stats").mkdir()
    (root / "stats" / "claims.json").write_text(json.dumps({"1": "supported"}))
    return root


def test_identical_results_and_volatile_records_compare_equal(tmp_path):
    old = results(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    with h5py.File(new / "runs" / FOLDER / "trace.h5", "r+") as trace:
        trace["wall_time"][...] = [9.0, 9.0, 9.0]
        trace.attrs["git_commit"] = "def"
        trace.attrs["segments"] = json.dumps([{"host": "b", "started_at": "t1"}])
    assert compare_results.compare(old, new) == ([], 5)


def test_a_difference_anywhere_is_named(tmp_path):
    old = results(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    with h5py.File(new / "runs" / FOLDER / "trace.h5", "r+") as trace:
        trace["gc"][1] = np.nextafter(0.5, 1.0)  # one ulp
    weights = new / "runs" / FOLDER / "model.pt"
    torch.save({"state_dict": {"w": torch.arange(4.0) + 1e-7}, "step": 3}, weights)
    (new / "stats" / "claims.json").write_text(json.dumps({"1": "contradicted"}))
    xr.Dataset({"gc": ("run", [2.0])}, attrs={"created_at": "t0"}).to_netcdf(new / "study.nc")
    diffs, _ = compare_results.compare(old, new)
    assert diffs == [
        f"{FOLDER}/trace.h5: array gc differs",
        f"{FOLDER}/model.pt: state_dict.w differs",
        "study.nc: variable gc differs",
        "stats/claims.json: differs",
    ]
    assert compare_results.main([str(old), str(new)]) == 1


def test_a_missing_file_or_run_is_named(tmp_path):
    old = results(tmp_path / "old")
    new = tmp_path / "new"
    shutil.copytree(old, new)
    (new / "runs" / FOLDER / "model.pt").unlink()
    table = json.loads((new / "run_table.json").read_text())
    table["runs"][0]["seed"] = 1
    (new / "run_table.json").write_text(json.dumps(table))
    diffs, _ = compare_results.compare(old, new)
    assert diffs == [f"run table: run {FOLDER} differs", f"{FOLDER}/model.pt: only in old"]
