"""gcstudy figures: the plotted lines are read back from the matplotlib axes and compared
with the study file's values for that panel's metric, runs and steps, and with the fits
the claims' decisions made (the figures fit nothing again)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from gcstudy import cli, testing
from gcstudy.analysis import aggregate, claims, figures
from gcstudy.analysis.claims import blocked, inputs
from gcstudy.analysis.figures import claims as claim_figures
from gcstudy.analysis.figures.common import format_value
from gcstudy.study.clocks import CLOCK_LABELS
from gcstudy.study.factors import FACTOR_LABELS

DIVERGED = "sweeps/lr-0.1_bs-32_l2-0_gcp-0_seed-1"
# what each column of a sweep figure must show (the paper's Fig. 1 and Fig. 4 layouts)
COLUMNS = {
    "E1": ("gc", "geometric_collapse", "nc_train"),
    "E5": ("gc", "geometric_collapse", "nc_train"),
    "E4": ("gc", "target_nc", "fewshot_5shot_accuracy"),
}
SETTINGS = claims.Settings(permutations=199)


@pytest.fixture(scope="module")
def dataset():
    chosen = testing.layout(testing.small_config(steps=40, seeds=(0, 1, 2)))
    ds = testing.simulate(chosen, testing.Laws(), np.random.default_rng(0))
    return testing.diverge(ds, [DIVERGED])


@pytest.fixture(scope="module")
def results(dataset):
    return claims.analyse(dataset, SETTINGS, extras=False)


@pytest.fixture(scope="module")
def drawn(dataset, results):
    return {item.name: item for item in figures.build(dataset, results)}


def panels(figure):
    return [ax for ax in figure.axes if ax.get_visible()]


def run_lines(ax):
    return [line for line in ax.get_lines() if str(line.get_gid()).count("/") == 1]


def test_one_figure_per_experiment_and_per_claim(drawn):
    assert set(drawn) == {
        "sweeps_E1",
        "transfer_E4",
        "estimators_E2",
        "bound_E3",
        "penalty_E5",
        "claim1_gc_vs_factors",
        "claim2_nc_vs_factors",
        "claim3_transfer",
        "claim4_bound_ratio",
    }
    for item in drawn.values():
        assert len(item.caption) > 60


@pytest.mark.parametrize("name", ["sweeps_E1", "transfer_E4", "penalty_E5"])
def test_sweep_panels_show_each_runs_own_metric_against_its_steps(drawn, dataset, name):
    study, experiment = name.rsplit("_", 1)
    info = inputs.studies_of(dataset)[study]
    factors = inputs.swept_factors(info)
    axes = np.array(panels(drawn[name].figure)).reshape(len(factors), 3)
    steps = dataset["step"].values
    for factor, row in zip(factors, axes, strict=True):
        members = aggregate.sweep_runs(dataset, study, factor)
        legend = {
            t.get_text(): h.get_color()
            for t, h in zip(
                row[-1].get_legend().get_texts(), row[-1].get_legend().legend_handles, strict=True
            )
        }
        for ax, metric in zip(row, COLUMNS[experiment], strict=True):
            lines = {line.get_gid(): line for line in run_lines(ax)}
            assert set(lines) == set(members["run"].values), (factor, metric)
            for run_id, line in lines.items():
                values = dataset[metric].sel(run=run_id).values
                shown = np.isfinite(values) & ((values > 0) if ax.get_yscale() == "log" else True)
                np.testing.assert_array_equal(line.get_xdata(), steps[shown])
                np.testing.assert_array_equal(line.get_ydata(), values[shown])
                value = float(dataset[factor].sel(run=run_id))
                label = format_value(factor, value)
                assert to_rgba(line.get_color()) == to_rgba(legend[label]), (run_id, metric)
                assert (line.get_linestyle() == ":") == (run_id == DIVERGED)


def test_bound_figure_shows_every_runs_error_and_bounds(drawn, dataset):
    (ax,) = panels(drawn["bound_E3"].figure)
    runs = dataset["run"].values[dataset["study"].values == "bound"]
    colours = {"k": "ncc_test_error", "C0": "bound_cdnv", "C3": "bound_gc"}
    seen = set()
    for line in run_lines(ax):
        metric = colours[next(c for c in colours if to_rgba(c) == to_rgba(line.get_color()))]
        values = dataset[metric].sel(run=line.get_gid()).values
        shown = np.isfinite(values) & (values > 0)
        np.testing.assert_array_equal(line.get_xdata(), dataset["step"].values[shown])
        np.testing.assert_array_equal(line.get_ydata(), values[shown])
        seen.add((line.get_gid(), metric))
    assert seen == {(r, m) for r in runs for m in colours.values()}
    assert ax.get_legend().get_texts()[0].get_text() == "NCC test error"


CLAIM_FIGURES = {"claim1_gc_vs_factors": 1, "claim2_nc_vs_factors": 2, "claim3_transfer": 3}


@pytest.mark.parametrize("name, claim", CLAIM_FIGURES.items())
def test_claims_1_to_3_draw_the_readings_and_fits_that_decide(drawn, dataset, results, name, claim):
    """Each panel (sweep x clock): the points are the runs' readings at that clock, the line
    is the deciding test's fit (its slope the test's estimate, its band the fit's CI), the
    title its verdict."""
    readings = results.tables["readings"]
    tests = {(t.study, t.mechanism, t.clock, t.part): t for t in results.tests if t.claim == claim}
    fits = {(f.study, f.factor, f.clock, f.part): f.fit for f in results.fits if f.test}
    factor_of = {v: k for k, v in FACTOR_LABELS.items()}
    clock_of = {v: k for k, v in CLOCK_LABELS.items()}
    fitted = 0
    for ax in panels(drawn[name].figure):
        head, tail = ax.get_title().split("\n")
        study, label = head.split(": ")
        where, verdict = tail.split(": ")
        clock_label, part = where.split(", ")
        factor, clock = factor_of[label], clock_of[clock_label]
        test = tests.get((study, factor, clock, part))
        assert verdict == (test.verdict if test else "does not act on GC here")
        column = {"2a": "log_nc", "3a": "log_target_nc", "3b": "fewshot_accuracy"}.get(
            part, "log_gc"
        )
        runs = readings[
            (readings["study"] == study)
            & (readings["factor"] == factor)
            & (readings["clock"] == clock)
            & readings["complete"]
        ]
        for line in ax.get_lines():
            if str(line.get_gid()).startswith("seed-"):
                seed = int(line.get_gid().split("-")[1])
                mine = runs[runs["seed"] == seed]
                values = mine[column].to_numpy()
                expected = np.exp(values) if column.startswith("log_") else values
                np.testing.assert_allclose(line.get_ydata(), expected)
                positive = mine["value"].to_numpy() > 0
                np.testing.assert_allclose(line.get_xdata()[positive], mine["value"][positive])
        fit = [line for line in ax.get_lines() if line.get_gid() == "fit"]
        if test is None:
            assert not fit  # a factor not acting at this clock: no test, no line
            continue
        (fit,) = fit
        x, y = np.log(fit.get_xdata()), fit.get_ydata()
        y = np.log(y) if column.startswith("log_") else y
        assert (y[-1] - y[0]) / (x[-1] - x[0]) == pytest.approx(test.estimate)
        decided = fits[(study, factor, clock, part)]
        mean, low, high = decided.mean_line(x, SETTINGS.alpha)
        np.testing.assert_allclose(y, mean)
        (band,) = ax.collections
        top = band.get_paths()[0].vertices[:, 1]
        back = np.log if column.startswith("log_") else (lambda v: v)
        np.testing.assert_allclose(np.sort(back(top))[[0, -1]], [low.min(), high.max()])
        fitted += 1
    assert fitted > 0


def doctored(fit):
    """A fit the data do not give: the figure can only show it by drawing the object."""
    return dataclasses.replace(fit, slope=fit.slope + 1.0, y_mean=fit.y_mean + 0.5)


def test_claim_figures_draw_the_decisions_fit_objects_and_fit_nothing(
    dataset, results, monkeypatch
):
    """The line of each panel is drawn from ``Results.fits`` (a doctored fit object shows
    up as drawn), and drawing fits nothing: the statistical engine refuses to run."""
    fits = [
        dataclasses.replace(f, fit=doctored(f.fit)) if f.fit is not None else f
        for f in results.fits
    ]

    def refuse(*args, **kwargs):
        raise AssertionError("the figure code fitted again")

    monkeypatch.setattr(blocked, "design", refuse)
    monkeypatch.setattr(blocked, "within_block_permutations", refuse)
    drawn = claim_figures.build(dataset, dataclasses.replace(results, fits=fits))
    factor_of = {v: k for k, v in FACTOR_LABELS.items()}
    clock_of = {v: k for k, v in CLOCK_LABELS.items()}
    by_panel = {(f.study, f.factor, f.clock, f.part): f for f in fits}
    checked = 0
    for figure in drawn[:3]:
        for ax in panels(figure.figure):
            head, tail = ax.get_title().split("\n")
            study, label = head.split(": ")
            clock_label, part = tail.split(": ")[0].split(", ")
            shown = by_panel[(study, factor_of[label], clock_of[clock_label], part)]
            for line in ax.get_lines():
                if line.get_gid() == "fit":
                    x, y = np.log(line.get_xdata()), line.get_ydata()
                    y = np.log(y) if shown.metric.startswith("log_") else y
                    np.testing.assert_allclose(y, shown.fit.mean_line(x, SETTINGS.alpha)[0])
                    checked += 1
    assert checked > 0


def test_claim4_shows_bound_over_error_with_the_line_at_one(drawn, dataset):
    axes = panels(drawn["claim4_bound_ratio"].figure)
    assert len(axes) == 2
    error = inputs.error_plus_half_count(dataset)
    for ax, name in zip(axes, ("bound_cdnv", "bound_gc"), strict=True):
        assert any(
            line.get_gid() == "ratio-1" and set(line.get_ydata()) == {1.0}
            for line in ax.get_lines()
        )
        lines = run_lines(ax)
        assert {line.get_gid() for line in lines} == set(
            dataset["run"].values[dataset["study"].values == "bound"]
        )
        for line in lines:
            i = int(np.flatnonzero(dataset["run"].values == line.get_gid())[0])
            ratio = dataset[name].values[i] / error[i]
            np.testing.assert_allclose(line.get_ydata(), ratio[np.isfinite(ratio)])
            np.testing.assert_array_equal(
                line.get_xdata(), dataset["step"].values[np.isfinite(ratio)]
            )


def test_estimator_figure_layout(drawn):
    estimators = panels(drawn["estimators_E2"].figure)
    assert len(estimators) == 4
    for ax in estimators:
        assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("sampling budget")
        assert any(line.get_linestyle() == "--" for line in ax.get_lines())  # exact GC


def test_files_are_valid_png_and_pdf(dataset, tmp_path):
    aggregate.write(dataset, tmp_path / "study.nc")
    out = tmp_path / "figures"
    args = ["figures", str(tmp_path / "study.nc"), "--out", str(out), "--permutations", "199"]
    assert cli.main(args) == 0
    index = json.loads((out / "figures.json").read_text())
    assert len(index) == 9
    for item in index:
        png = (out / item["png"]).read_bytes()
        pdf = (out / item["pdf"]).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
        assert pdf[:5] == b"%PDF-" and pdf.rstrip().endswith(b"%%EOF")
