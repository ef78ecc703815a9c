"""One figure per claim, drawn from the readings and fits that decide it.

* claims 1-3: one row of panels per sweep (claim 1) or per sweep and metric (claims 2, 3),
  one column per design clock: each run's value where the clock reads it (one marker
  colour per seed; a value 0 sits one decade below the smallest positive value) and the
  seed-blocked fit of the log metric on the log value over the positive values, with its
  CI (average seed), exactly the fit of the test that decided (``relations.effect_test``);
  the title gives the test's verdict there, or says that the factor does not act on GC
  at that clock (claims 2 and 3 then test nothing);
* claim 4: per bound study, each run's bound / NCC test error over steps (error offset by
  half an example), with the line at 1 where the bound equals the error.

Points and lines carry ``gid`` tags (``seed-<s>``, ``fit``, run ids) so that tests read
back exactly what is drawn.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from gcstudy.analysis import summaries
from gcstudy.analysis.claims import Results, Settings, analyse, bound, factors, mechanisms
from gcstudy.analysis.claims.blocked import Permutations, blocked_fit
from gcstudy.analysis.claims.relations import usable
from gcstudy.analysis.figures import STEP_LABEL, Drawn, format_value, step_axis, tidy_log_axis
from gcstudy.clocks import CLOCK_LABELS
from gcstudy.study.factors import FACTOR_LABELS

METRIC_LABELS = {
    "log_gc": "GC",
    "log_nc": "NC",
    "log_target_nc": "target NC",
    "fewshot_accuracy": "5-shot accuracy",
}


def build(dataset: xr.Dataset, settings: Settings) -> list[Drawn]:
    results = analyse(dataset, settings, extras=False)
    frame = results.tables["runs"]
    studies = summaries.studies_of(dataset)
    drawn = [
        clock_figure(results, 1, settings),
        clock_figure(results, 2, settings),
        clock_figure(results, 3, settings),
        claim4(dataset, frame, studies),
    ]
    return [d for d in drawn if d is not None]


def _interval(fit, alpha: float) -> str:
    return (
        f"slope {fit.slope:.2f}, {100 * (1 - alpha):.0f}% CI [{fit.ci_low:.2f}, {fit.ci_high:.2f}]"
    )


FIGURES = {  # claim -> (figure name, title, caption head)
    1: (
        "claim1_gc_vs_factors",
        "Claim 1: GC against each swept factor, at each design clock",
        "Claim 1: each run's GC where the clock reads it",
    ),
    2: (
        "claim2_nc_vs_factors",
        "Claim 2: NC against each factor acting on GC, at each design clock",
        "Claim 2: each run's NC (training features) where the clock reads it",
    ),
    3: (
        "claim3_transfer",
        "Claim 3: target NC and 5-shot accuracy against each factor acting on GC",
        "Claim 3: each run's target NC and traced 5-way 5-shot NCC accuracy where the clock "
        "reads it",
    ),
}


def _rows(results: Results, claim: int) -> list[tuple[str, str, str, str]]:
    """(study, factor, reading column, part) of each row of a claim's figure."""
    readings = results.tables["readings"]
    if readings.empty:
        return []
    sweeps = list(dict.fromkeys(zip(readings["study"], readings["factor"], strict=True)))
    if claim == 1:
        return [(s, f, "log_gc", factors.PART_OF[f]) for s, f in sweeps]
    parts = mechanisms.PARTS_2 if claim == 2 else mechanisms.PARTS_3
    rows = []
    for study, factor in sweeps:
        chosen = readings[(readings["study"] == study) & (readings["factor"] == factor)]
        for part in parts:
            column = mechanisms.METRICS[part][0]
            if np.isfinite(chosen[column].to_numpy(float)).any():
                rows.append((study, factor, column, part))
    return rows


def clock_figure(results: Results, claim: int, settings: Settings) -> Drawn | None:
    rows = _rows(results, claim)
    if not rows:
        return None
    clocks = settings.clocks
    name, title, head = FIGURES[claim]
    figure = Figure(figsize=(3.6 * len(clocks) + 0.8, 3.2 * len(rows) + 0.8), layout="constrained")
    axes = figure.subplots(len(rows), len(clocks), squeeze=False)
    readings = results.tables["readings"]
    tests = {(t.study, t.mechanism, t.clock, t.part): t for t in results.tests if t.claim == claim}
    for row_axes, (study, factor, column, part) in zip(axes, rows, strict=True):
        for ax, clock in zip(row_axes, clocks, strict=True):
            runs = readings[
                (readings["study"] == study)
                & (readings["factor"] == factor)
                & (readings["clock"] == clock)
            ]
            test = tests.get((study, factor, clock, part))
            panel(ax, usable(runs, [column]), factor, column, test, settings)
            ax.set_title(
                f"{study}: {FACTOR_LABELS[factor]}\n{CLOCK_LABELS[clock]}, {part}: "
                + (test.verdict if test else "does not act on GC here"),
                fontsize=9,
            )
    axes[0][0].legend(fontsize=7)
    figure.suptitle(title, fontsize=11)
    caption = (
        f"{head} (equal steps, equal examples seen, equal lr x steps: one column each), one "
        "colour per seed; the line is the seed-blocked fit of the log metric on the log value "
        f"over the positive values (average seed) with its {100 * (1 - settings.alpha):.0f}% "
        "CI: the fit of the deciding test, which conditions on the seed only (no train loss, "
        "no other post-treatment quantity). A value 0 is drawn one decade below the smallest "
        "positive value (such sweeps are decided by the rank trend test). Panel titles give "
        "the test's verdict."
    )
    if claim > 1:
        caption += (
            " Only factors that claim 1 finds acting on GC at a clock are tested there, in "
            "the direction of their effect on GC."
        )
    return Drawn(name, figure, caption)


def panel(ax, runs, factor: str, column: str, test, settings: Settings) -> None:
    """One sweep at one clock: the runs' values where the clock reads them and the fit."""
    log = column.startswith("log_")
    value = runs["value"].to_numpy(float)
    y = runs[column].to_numpy(float)
    shown_y = np.exp(y) if log else y
    positive = value > 0
    zero_at = value[positive].min() / 10 if positive.any() else 1.0
    shown_x = np.where(positive, value, zero_at)
    seeds = runs["seed"].to_numpy()
    for k, seed in enumerate(sorted(np.unique(seeds))):
        pick = seeds == seed
        ax.plot(
            shown_x[pick],
            shown_y[pick],
            "o",
            ms=5,
            color=f"C{k % 10}",
            label=f"seed {seed}",
            gid=f"seed-{seed}",
        )
    if test is not None and positive.sum() >= 3:
        permutations = Permutations(99, np.random.default_rng(settings.seed))
        sign = 1 if test.expected == "slope > 0" else -1
        fit = blocked_fit(
            y[positive],
            np.log(value[positive]),
            seeds[positive],
            sign,
            settings.alpha,
            permutations,
        )
        if fit is not None:
            grid = np.linspace(np.log(value[positive].min()), np.log(value[positive].max()), 50)
            mean, low, high = fit.mean_line(grid, settings.alpha)
            back = np.exp if log else (lambda v: v)
            ax.plot(np.exp(grid), back(mean), "k-", lw=1.2, gid="fit")
            ax.fill_between(np.exp(grid), back(low), back(high), color="k", alpha=0.12, lw=0)
            ax.text(
                0.02,
                0.98,
                _interval(fit, settings.alpha),
                transform=ax.transAxes,
                fontsize=7,
                va="top",
            )
    if test is not None and test.lost:
        ax.text(
            0.02,
            0.02,
            test.lost,
            transform=ax.transAxes,
            fontsize=6,
            color="C3",
            va="bottom",
            wrap=True,
        )
    ax.set_xscale("log")
    ticks = sorted(set(shown_x))
    has_zero = bool((~positive).any())
    names = ["0" if has_zero and t == zero_at else format_value(factor, t) for t in ticks]
    ax.set_xticks(ticks, names, fontsize=7)
    ax.minorticks_off()
    if log:
        ax.set_yscale("log")
        if len(shown_y):
            tidy_log_axis(ax.yaxis, shown_y)
    ax.set_xlabel(FACTOR_LABELS[factor])
    ax.set_ylabel(METRIC_LABELS[column], fontsize=8)
    ax.grid(alpha=0.3)


def claim4(dataset: xr.Dataset, frame, studies: dict) -> Drawn | None:
    chosen = bound.bound_studies(studies)
    if not chosen:
        return None
    figure = Figure(figsize=(11, 3.6 * len(chosen) + 0.6), layout="constrained")
    axes = figure.subplots(len(chosen), 2, squeeze=False)
    for row, study in zip(axes, chosen, strict=True):
        pick = np.flatnonzero((dataset["study"].values == study) & frame["complete"].to_numpy())
        runs = dataset.isel(run=pick)
        error = summaries.error_plus_half_count(runs)
        steps = runs["step"].values
        for ax, (name, (label, *_)) in zip(row, bound.BOUNDS.items(), strict=True):
            for i, run_id in enumerate(runs["run"].values):
                ratio = runs[name].values[i] / error[i]
                ok = np.isfinite(ratio) & (ratio > 0)
                ax.plot(
                    steps[ok],
                    ratio[ok],
                    lw=1.0,
                    alpha=0.85,
                    color=f"C{i % 10}",
                    gid=str(run_id),
                    label=f"seed {int(runs['seed'].values[i])}",
                )
            ax.axhline(1.0, color="k", lw=1.0, ls="--", gid="ratio-1")
            ax.set_yscale("log")
            ax.set_ylabel(f"{label} / NCC test error", fontsize=9)
            ax.set_title(f"{study}: {label}", fontsize=10)
            step_axis(ax, steps)
            ax.set_xlabel(STEP_LABEL)
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    figure.suptitle(
        "Claim 4: bound / NCC test error over training (above 1: the bound holds)", fontsize=11
    )
    caption = (
        "Claim 4: each run's bound divided by its NCC test error (plus half a test example, "
        "so that an error of 0 stays finite) against training step; the dashed line at 1 is "
        "where the bound equals the error. Where the bound itself is >= 1 it is vacuous "
        "(see the bound figure)."
    )
    return Drawn("claim4_bound_ratio", figure, caption)
