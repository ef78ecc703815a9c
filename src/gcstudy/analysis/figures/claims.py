"""One figure per claim, drawn from the readings and fits that decided it
(``claims.Results``: nothing is fitted or selected again here).

* claims 1-3: one row of panels per sweep (claim 1) or per sweep and metric (claims 2, 3),
  one column per design clock, each panel one ``relations.SweepFit``: each run's value
  where the clock reads it (the runs the test used; one marker colour per seed; a value 0
  sits one decade below the smallest positive value) and the test's own seed-blocked fit
  of the log metric on the log value over the positive values, with its CI (average
  seed); the title gives the test's verdict there, or says that the factor does not act
  on GC at that clock (claims 2 and 3 then test nothing);
* claim 4: per bound study, each run claim 4 judged (``Results.bound_runs``): its bound /
  NCC test error over steps (error offset by half an example), with the line at 1 where
  the bound equals the error.

Points and lines carry ``gid`` tags (``seed-<s>``, ``fit``, run ids) so that tests read
back exactly what is drawn.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from gcstudy.analysis.claims import Results, bound, inputs
from gcstudy.analysis.claims.relations import SweepFit
from gcstudy.analysis.figures.common import (
    STEP_LABEL,
    Drawn,
    format_value,
    step_axis,
    tidy_log_axis,
)
from gcstudy.study.clocks import CLOCK_LABELS
from gcstudy.study.factors import FACTOR_LABELS

METRIC_LABELS = {
    "log_gc": "GC",
    "log_nc": "NC",
    "log_target_nc": "target NC",
    "fewshot_accuracy": "5-shot accuracy",
}


def build(dataset: xr.Dataset, results: Results) -> list[Drawn]:
    """The figures of claims 1-4 from the decisions' ``results``."""
    drawn = [
        clock_figure(results, 1),
        clock_figure(results, 2),
        clock_figure(results, 3),
        claim4(dataset, results.bound_runs),
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


def clock_figure(results: Results, claim: int) -> Drawn | None:
    """Claim 1, 2 or 3: a row per sweep (and metric), a column per clock."""
    fits = [f for f in results.fits if f.claim == claim]
    if not fits:
        return None
    rows = list(dict.fromkeys((f.study, f.factor, f.part) for f in fits))
    by_panel = {(f.study, f.factor, f.part, f.clock): f for f in fits}
    clocks = results.settings.clocks
    alpha = results.settings.alpha
    name, title, head = FIGURES[claim]
    figure = Figure(figsize=(3.6 * len(clocks) + 0.8, 3.2 * len(rows) + 0.8), layout="constrained")
    axes = figure.subplots(len(rows), len(clocks), squeeze=False)
    for row_axes, (study, factor, part) in zip(axes, rows, strict=True):
        for ax, clock in zip(row_axes, clocks, strict=True):
            shown = by_panel[(study, factor, part, clock)]
            panel(ax, shown, alpha)
            ax.set_title(
                f"{study}: {FACTOR_LABELS[factor]}\n{CLOCK_LABELS[clock]}, {part}: "
                + (shown.test.verdict if shown.test else "does not act on GC here"),
                fontsize=9,
            )
    axes[0][0].legend(fontsize=7)
    figure.suptitle(title, fontsize=11)
    caption = (
        f"{head} (equal steps, equal examples seen, equal lr x steps: one column each), one "
        "colour per seed; the line is the seed-blocked fit of the log metric on the log value "
        f"over the positive values (average seed) with its {100 * (1 - alpha):.0f}% "
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


def panel(ax, shown: SweepFit, alpha: float) -> None:
    """One sweep at one clock: the runs' values where the clock reads them and the fit."""
    runs, column = shown.readings, shown.metric
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
    if shown.test is not None and shown.fit is not None:
        fit_line(ax, shown, alpha)
    if shown.test is not None and shown.test.lost:
        ax.text(
            0.02,
            0.02,
            shown.test.lost,
            transform=ax.transAxes,
            fontsize=6,
            color="C3",
            va="bottom",
            wrap=True,
        )
    ax.set_xscale("log")
    ticks = sorted(set(shown_x))
    has_zero = bool((~positive).any())
    names = ["0" if has_zero and t == zero_at else format_value(shown.factor, t) for t in ticks]
    ax.set_xticks(ticks, names, fontsize=7)
    ax.minorticks_off()
    if log:
        ax.set_yscale("log")
        if len(shown_y):
            tidy_log_axis(ax.yaxis, shown_y)
    ax.set_xlabel(FACTOR_LABELS[shown.factor])
    ax.set_ylabel(METRIC_LABELS[column], fontsize=8)
    ax.grid(alpha=0.3)


def fit_line(ax, shown: SweepFit, alpha: float) -> None:
    """The test's fit over the positive values it was fitted on, with its CI band."""
    value = shown.readings["value"].to_numpy(float)
    positive = value[value > 0]
    grid = np.linspace(np.log(positive.min()), np.log(positive.max()), 50)
    mean, low, high = shown.fit.mean_line(grid, alpha)
    back = np.exp if shown.metric.startswith("log_") else (lambda v: v)
    ax.plot(np.exp(grid), back(mean), "k-", lw=1.2, gid="fit")
    ax.fill_between(np.exp(grid), back(low), back(high), color="k", alpha=0.12, lw=0)
    ax.text(0.02, 0.98, _interval(shown.fit, alpha), transform=ax.transAxes, fontsize=7, va="top")


def claim4(dataset: xr.Dataset, judged: dict[str, list[str]]) -> Drawn | None:
    """Per bound study, each judged run's bound / NCC test error over steps."""
    if not judged:
        return None
    figure = Figure(figsize=(11, 3.6 * len(judged) + 0.6), layout="constrained")
    axes = figure.subplots(len(judged), 2, squeeze=False)
    for row, (study, run_ids) in zip(axes, judged.items(), strict=True):
        runs = dataset.sel(run=run_ids)
        error = inputs.error_plus_half_count(runs)
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
