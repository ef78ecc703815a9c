"""Generated studies (gcstudy.testing): their laws respect the definitions, they round-trip
through the real writers and aggregate, and aggregate refuses them as measurements; every run
is evaluated where the design clocks read it, progress follows its declared clock, the
collider loss follows its law, and every scenario's declared truth is its laws' truth."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from generated import study

from gcstudy import cli, testing
from gcstudy.analysis import aggregate
from gcstudy.metrics.collapse import geometric_collapse
from gcstudy.study import clocks


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


# ---------------------------------------------------------------- design clocks and scenarios


def test_every_run_is_evaluated_where_the_clocks_read_it():
    # each sweep's runs, at each clock's common value and 2/3 of it, have a measured value
    ds = study(0)
    studies = json.loads(ds.attrs["studies"])
    checked = 0
    for name, info in studies.items():
        for factor in [*info.get("sweeps", {}), "base"]:
            sweep = aggregate.sweep_runs(ds, name, factor)
            if not sweep.sizes["run"]:
                continue
            lr, batch = sweep["lr"].values, sweep["batch_size"].values
            budget = sweep["steps_planned"].values
            for clock in clocks.CLOCKS:
                common = clocks.common_value(clock, lr, batch, budget)
                for fraction in clocks.FRACTIONS:
                    steps = clocks.read_step(clock, fraction * common, lr, batch, budget)
                    at = sweep["gc"].sel(step=xr.DataArray(steps, dims="run"))
                    assert np.isfinite(at.values).all(), (name, factor, clock, fraction)
                    checked += len(steps)
    assert checked > 500


def test_progress_in_a_clock_is_equal_at_that_clock():
    # progress in examples seen: GC of the batch sweep is equal at equal examples, and at
    # equal steps a smaller batch is behind (higher GC)
    laws = dict(progress_only=True, rate_sd=0.0, gc_noise=0.0, seed_sd=0.0, tau=0.5)
    ds = study(0, speed_exponents=testing.laws.PROGRESS_CLOCKS["examples"], **laws)
    sweep = aggregate.sweep_runs(ds, "sweeps", "batch_size")
    sweep = sweep.isel(run=np.flatnonzero(sweep["seed"].values == 0))  # seeds are alike here
    batch = sweep["batch_size"].values
    budget = sweep["steps_planned"].values
    lr = sweep["lr"].values

    def gc_at(clock):
        steps = clocks.read_step(
            clock, clocks.common_value(clock, lr, batch, budget), lr, batch, budget
        )
        return sweep["gc"].sel(step=xr.DataArray(steps, dims="run")).values

    examples = gc_at("examples")
    np.testing.assert_allclose(examples, examples[0], rtol=0.01)  # read steps are whole
    at_steps = gc_at("steps")
    order = np.argsort(batch)
    assert (np.diff(at_steps[order]) < 0).all()
    assert at_steps.max() / at_steps.min() > 1.2


def test_the_collider_loss_follows_the_issue_18_law():
    # at a plateau, without noise on NC and loss: final log loss = const + 2 log NC
    # - 0.8 log(lr / 0.05) + 0.4 log(batch / 32), exactly, across every run of the sweeps
    ds = study(
        0,
        **testing.laws.PLATEAU,
        **testing.laws.COLLIDER_LOSS,
        nc_noise=0.0,
        loss_noise=0.0,
        seed_sd=0.5,
    )
    runs = ds.isel(run=np.flatnonzero(ds["study"].values == "sweeps"))
    loss = np.log(aggregate.final_values(runs, "train_loss"))
    nc = np.log(aggregate.final_values(runs, "nc_train"))
    design = np.column_stack(
        [
            np.ones_like(nc),
            nc,
            np.log(runs["lr"].values / 0.05),
            np.log(runs["batch_size"].values / 32),
        ]
    )
    coefficients = np.linalg.lstsq(design, loss, rcond=None)[0]
    np.testing.assert_allclose(coefficients[1:], [2.0, -0.8, 0.4], atol=1e-6)


@pytest.mark.parametrize(
    "effects, claim1, claim2",
    [
        # both clocks: lr lowers GC and NC
        (
            {("s", "lr", "steps"): (-0.3, -0.3), ("s", "lr", "examples"): (-0.3, -0.2)},
            "true",
            "true",
        ),
        # batch raises GC but lowers NC at every clock: claim 2 false
        (
            {
                ("s", "batch_size", "steps"): (0.3, -0.3),
                ("s", "batch_size", "examples"): (0.2, -0.1),
            },
            "true",
            "false",
        ),
        # apart at one clock only: no relation
        (
            {
                ("s", "batch_size", "steps"): (0.3, -0.3),
                ("s", "batch_size", "examples"): (0.2, 0.2),
            },
            "true",
            "no relation",
        ),
        # GC moved the wrong way at every clock, NC following it: claim 1 false, claim 2 true
        ({("s", "lr", "steps"): (0.3, 0.3), ("s", "lr", "examples"): (0.3, 0.1)}, "false", "true"),
        # no factor moves GC: nothing acts
        (
            {("s", "lr", "steps"): (0.0, 0.3), ("s", "lr", "examples"): (0.01, -0.3)},
            "no relation",
            "no relation",
        ),
    ],
)
def test_truth_at_the_design_clocks(effects, claim1, claim2):
    rows = pd.DataFrame(
        [
            {
                "study": s,
                "factor": f,
                "clock": c,
                "fraction": 1.0,
                "gc": g,
                "nc": n,
                "target_nc": np.nan,
            }
            for (s, f, c), (g, n) in effects.items()
        ]
    )
    assert testing.laws.truth(rows, 1) == claim1
    assert testing.laws.truth(rows, 2) == claim2


@pytest.mark.parametrize("size", [(4, 3, 3), (5, 3, 5)], ids=["default", "paper"])
def test_declared_truths_are_the_laws_truths(size):
    # every scenario's declared truth of claims 1-3 is what its noise-free laws give at
    # the design clocks (a wrong declaration would make the benchmark check the wrong rate)
    chosen = testing.layout(testing.shaped_config(*size))
    for name, scenario in testing.laws.SCENARIOS.items():
        effects = testing.laws.clock_effects(chosen, testing.Laws(**scenario.laws))
        found = tuple(testing.laws.truth(effects, claim) for claim in (1, 2, 3))
        assert found == scenario.truth[:3], name
