"""gcstudy aggregate: generated traces (written with the real writer) into one study file."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from gcstudy import cli, testing
from gcstudy.analysis import aggregate
from gcstudy.study import traces

DIVERGED = "sweeps/lr-0.1_bs-32_l2-0_gcp-0_seed-1"


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    config = testing.small_config(steps=30, seeds=(0, 1))
    table, _ = testing.make_study(root, config, diverged=(DIVERGED,))
    return root, table


def copy_study(generated, tmp_path):
    root, table = generated
    shutil.copytree(root, tmp_path / "s")
    return tmp_path / "s", table


def test_values_round_trip_exactly(generated, tmp_path):
    root, table = generated
    out = tmp_path / "study.nc"
    assert (
        cli.main(
            [
                "aggregate",
                "--table",
                str(root / "run_table.json"),
                "--runs",
                str(root / "runs"),
                "--out",
                str(out),
                "--allow-generated",
            ]
        )
        == 0
    )
    study = aggregate.open_study(out)
    assert study.sizes["run"] == len(table["runs"])
    for entry in table["runs"][::5] + [e for e in table["runs"] if e["run_id"] == DIVERGED]:
        trace = traces.read(root / "runs" / entry["run_id"] / "trace.h5")
        row = study.sel(run=entry["run_id"])
        steps = trace["step"].values
        for name in (
            "gc",
            "nc_train",
            "geometric_collapse",
            "ncc_test_error",
            "bound_gc",
            "examples_seen",
        ):
            got = row[name].sel(step=steps).values
            np.testing.assert_array_equal(got, trace[name].values.astype(float))
        got = row["gc_per_class"].sel(step=steps, **{"class": trace["class"].values})
        np.testing.assert_array_equal(got.values, trace["gc_per_class"].values)
        # no interpolation: steps the run did not measure stay NaN
        others = np.setdiff1d(study["step"].values, steps)
        assert np.isnan(row["gc"].sel(step=others).values).all()
        assert row["seed"].item() == entry["seed"]
        assert row["lr"].item() == entry["point"]["lr"]
        assert row["study"].item() == entry["study"]
        assert row["sweeps"].item() == ",".join(entry["sweeps"])
    assert study.attrs["config_hash"] == table["config_hash"]
    for key in ("versions", "git_commit", "created_at"):
        assert study.attrs[key]
    assert study.attrs["skipped"] == []


def test_diverged_runs_are_kept_and_marked(generated):
    root, table = generated
    study = aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    assert study["status"].sel(run=DIVERGED).item() == "diverged"
    assert (study["status"] == "complete").sum().item() == len(table["runs"]) - 1
    diverged = study.sel(run=DIVERGED)
    assert diverged["final_step"].item() < diverged["steps_planned"].item()
    assert np.isnan(diverged["gc"].sel(step=diverged["steps_planned"].item())).item()


def test_evaluations_are_merged(generated):
    root, table = generated
    study = aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    transfer = study["study"].values == "transfer"
    accuracy = study["fewshot_accuracy"].sel(classifier="ncc", shots=5).values
    assert np.isfinite(accuracy[transfer]).all() and np.isnan(accuracy[~transfer]).all()
    run = next(e["run_id"] for e in table["runs"] if e["study"] == "estimators")
    estimates = study["gcest_estimate"].sel(run=run)
    assert np.isfinite(estimates.values).all()
    assert set(study["estimator"].values) == {"examples", "hutchinson", "outputs", "mask"}
    # class dims of different studies (10 digits, 5 source classes) align by label
    assert study.sizes["class"] == 10


def test_sweep_selection(generated):
    root, _ = generated
    study = aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    lr = aggregate.sweep_runs(study, "sweeps", "lr")
    assert sorted(set(lr["lr"].values)) == [0.02, 0.05, 0.1]
    assert (lr["batch_size"].values == 32).all()


def test_corrupt_trace_is_named(generated, tmp_path):
    root, table = copy_study(generated, tmp_path)
    bad = root / "runs" / table["runs"][3]["run_id"] / "trace.h5"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])
    with pytest.raises(aggregate.AggregateError, match=str(bad)):
        aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    assert (
        cli.main(
            [
                "aggregate",
                "--table",
                str(root / "run_table.json"),
                "--runs",
                str(root / "runs"),
                "--out",
                str(tmp_path / "x.nc"),
            ]
        )
        == 2
    )
    assert not (tmp_path / "x.nc").exists()


def test_running_and_missing_traces_are_refused(generated, tmp_path):
    root, table = copy_study(generated, tmp_path)
    running = root / "runs" / table["runs"][1]["run_id"]
    trace = traces.read(running / "trace.h5")
    (running / "trace.h5").unlink()
    values = {name: trace[name].values for name in trace.data_vars}
    traces.write(
        running / "trace.h5",
        trace["step"].values,
        trace["class"].values,
        values,
        {"spec": trace.attrs["spec"]},
        "running",
    )
    with pytest.raises(aggregate.AggregateError, match="running"):
        aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    (running / "trace.h5").rename(running / "trace.running.h5")
    with pytest.raises(aggregate.AggregateError, match="still running"):
        aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    (running / "trace.running.h5").unlink()
    with pytest.raises(aggregate.AggregateError, match="does not exist"):
        aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)


def test_missing_evaluation_and_stale_spec(generated, tmp_path):
    root, table = copy_study(generated, tmp_path)
    entry = next(e for e in table["runs"] if e["study"] == "transfer")
    (root / "runs" / entry["run_id"] / "fewshot.nc").unlink()
    with pytest.raises(aggregate.AggregateError, match=r"fewshot\.nc"):
        aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    stale = json.loads((root / "run_table.json").read_text())
    stale["runs"] = [e for e in stale["runs"] if e["study"] == "sweeps"]
    stale["runs"][0]["spec"]["steps"] = 999
    with pytest.raises(aggregate.AggregateError, match="different run spec"):
        aggregate.aggregate(stale, root / "runs", allow_generated=True)


def test_skip_bad_lists_the_skipped(generated, tmp_path):
    root, table = copy_study(generated, tmp_path)
    bad = table["runs"][2]["run_id"]
    (root / "runs" / bad / "trace.h5").write_bytes(b"not an hdf5 file")
    gone = table["runs"][4]["run_id"]
    (root / "runs" / gone / "trace.h5").unlink()
    out = tmp_path / "study.nc"
    args = [
        "aggregate",
        "--table",
        str(root / "run_table.json"),
        "--runs",
        str(root / "runs"),
        "--out",
        str(out),
        "--skip-bad",
        "--allow-generated",
    ]
    assert cli.main(args) == 0
    study = aggregate.open_study(out)
    skipped = {item["run_id"]: item["reason"] for item in study.attrs["skipped"]}
    assert set(skipped) == {bad, gone}
    assert "corrupt" in skipped[bad] and "does not exist" in skipped[gone]
    assert study.sizes["run"] == len(table["runs"]) - 2
    assert bad not in study["run"].values


def test_the_feature_sample_size_is_taken_from_each_trace(generated, tmp_path):
    """The number of feature-sample examples a run measured NC on, as its trace's facts
    record it (claim 4's bound noise uses it); NaN where a trace does not record it."""
    root, table = copy_study(generated, tmp_path)
    run_id = table["runs"][2]["run_id"]
    path = root / "runs" / run_id / "trace.h5"
    trace = traces.load(path)
    attrs = {k: v for k, v in trace.attrs.items() if k not in ("status", "schema_version")}
    attrs["facts"] = {**attrs["facts"], "feature_examples": 123}
    path.unlink()
    traces.write(path, trace.steps, trace.classes, trace.values, attrs, trace.attrs["status"])
    study = aggregate.aggregate(root / "run_table.json", root / "runs", allow_generated=True)
    assert study["feature_examples"].sel(run=run_id).item() == 123
    assert np.isnan(study["feature_examples"].drop_sel(run=run_id).values).all()
