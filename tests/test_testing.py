"""Generated studies (gcstudy.testing): their laws respect the definitions, they round-trip
through the real writers and aggregate, and aggregate refuses them as measurements."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from generated import study

from gcstudy import cli, testing
from gcstudy.analysis import aggregate
from gcstudy.metrics.collapse import geometric_collapse


def test_pair_mean_is_the_metric_definition():
    # the generator's CDNV-form pair mean against gcstudy.metrics.collapse, on class means
    rng = np.random.default_rng(0)
    means = rng.standard_normal((7, 5))
    per_class = rng.uniform(0.5, 2.0, 7)
    squared = ((means[:, None] - means[None]) ** 2).sum(-1)
    expected = geometric_collapse(torch.tensor(per_class), torch.tensor(means)).value
    assert testing.pair_mean(per_class, squared) == pytest.approx(expected, rel=1e-12)


def test_laws_respect_the_definitions():
    ds = study(0)
    measured = np.isfinite(ds["gc"].values)
    per_class = ds["gc_per_class"].values
    # GC over a balanced sample is the mean of the per-class GC
    np.testing.assert_allclose(np.nanmean(per_class, axis=2)[measured], ds["gc"].values[measured])
    classes = np.isfinite(per_class).any(axis=1).sum(axis=1)[:, None]
    np.testing.assert_allclose(ds["bound_cdnv"].values, 4 * (classes - 1) * ds["nc_train"].values)
    c = ds["poincare_constant"].values[:, None]
    np.testing.assert_allclose(
        ds["bound_gc"].values, 4 * (classes - 1) * c * ds["geometric_collapse"].values
    )
    # Poincare: Var_c <= c_c GC_c, hence NC <= c * geometric collapse (up to measurement noise)
    ratio = ds["nc_train"].values[measured] / (c * ds["geometric_collapse"].values)[measured]
    assert ratio.max() < 1.2 and np.median(ratio) < 0.6
    # the NCC error lies below the CDNV bound (binomial noise aside) and a non-vacuous regime
    # exists: the bound is < 1 at the end of every run
    error, bound = ds["ncc_test_error"].values, ds["bound_cdnv"].values
    assert np.mean(error[measured] <= bound[measured]) > 0.95
    last = ds["step"].values == ds["steps_planned"].values.max()
    assert (bound[:, last] < 1).all()


def test_planted_slopes_are_the_laws():
    # the run-level GC of a generated sweep follows the planted effect (no noise, no seeds)
    ds = study(0, run_sd=0.0, gc_noise=0.0, rate_sd=0.0, speed_exponents=(0.0, 0.0))
    sweep = aggregate.sweep_runs(ds, "sweeps", "lr")
    final = np.log(aggregate.final_values(sweep, "gc"))
    slope = np.polyfit(np.log(sweep["lr"].values), final, 1)[0]
    assert slope == pytest.approx(testing.REALISTIC_EFFECTS["lr"], rel=0.05)


def test_files_round_trip_and_are_refused_as_measurements(tmp_path):
    _, generated = testing.make_study(
        tmp_path,
        testing.small_config(steps=20),
        diverged=("sweeps/lr-0.1_bs-32_l2-0_gcp-0_seed-1",),
    )
    with pytest.raises(aggregate.GeneratedError, match="written by a generator"):
        aggregate.aggregate(tmp_path / "run_table.json", tmp_path / "runs")
    with pytest.raises(aggregate.GeneratedError):  # --skip-bad does not skip them either
        aggregate.aggregate(tmp_path / "run_table.json", tmp_path / "runs", skip_bad=True)
    args = [
        "aggregate",
        "--table",
        str(tmp_path / "run_table.json"),
        "--runs",
        str(tmp_path / "runs"),
        "--out",
        str(tmp_path / "study.nc"),
    ]
    assert cli.main(args) == 2 and not (tmp_path / "study.nc").exists()
    assert cli.main([*args, "--allow-generated"]) == 0
    read = aggregate.open_study(tmp_path / "study.nc")
    assert read.attrs["generated_by"] == testing.GENERATED_BY
    assert list(read["run"].values) == list(generated["run"].values)
    for name in (
        "gc",
        "gc_per_class",
        "nc_train",
        "bound_gc",
        "ncc_test_error",
        "target_nc",
        "fewshot_accuracy",
        "fewshot_target_nc",
        "gcest_estimate",
    ):
        np.testing.assert_array_equal(read[name].values, generated[name].values, err_msg=name)
    for name in ("status", "final_step", "seed", "lr", "test_examples"):
        np.testing.assert_array_equal(read[name].values, generated[name].values, err_msg=name)
