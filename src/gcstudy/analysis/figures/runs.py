"""The figures of the paper's experiments, drawn from the study file's curves.

One figure per study, laid out after the experiment it reproduces (docs/science.md#experiments):

* E1 / E1b / E5 (``CURVES``): one row per sweep, columns GC, geometric collapse and NC
  against step; one thin line per run (each seed its own line: 2-5 seeds are too few for a
  band), one colour per swept value on a sequential colormap (dark = small value); diverged
  runs are drawn dotted, ending in an x where they stopped.
* E4 (``TRANSFER``): the same layout with source GC, target NC and 5-shot accuracy.
* E2 (``estimator_figure``): one panel per estimator, mean +/- sd of the repeated estimates
  against the sampling budget, the exact GC as a horizontal line.
* E3 (``bound_figure``): NCC test error and both bounds against step, one thin line per run.

Every run's line carries its run id as its ``gid``.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

from gcstudy.analysis import aggregate
from gcstudy.analysis.claims.inputs import studies_of, swept_factors
from gcstudy.analysis.figures.common import (
    STEP_LABEL,
    Drawn,
    format_value,
    spans_decades,
    step_axis,
    tidy_log_axis,
    value_colors,
)
from gcstudy.study.factors import FACTOR_LABELS

QUANTITIES = {
    "gc": "GC: mean $\\|J_f(x)\\|_F^2$",
    "geometric_collapse": "geometric collapse",
    "nc_train": "NC: mean CDNV (train)",
    "target_nc": "target NC: mean CDNV",
    "fewshot_5shot_accuracy": "5-way 5-shot accuracy",
    "ncc_test_error": "NCC test error",
    "bound_cdnv": "bound $4(C-1)\\,$NC",
    "bound_gc": "bound $4(C-1)\\,c\\,$geom. collapse",
}
CURVES = ("gc", "geometric_collapse", "nc_train")
TRANSFER = ("gc", "target_nc", "fewshot_5shot_accuracy")
ESTIMATOR_LABELS = {
    "examples": ("example subsampling", "examples b"),
    "hutchinson": ("Hutchinson probes", "probes per example"),
    "outputs": ("output-row sampling", "output rows per example"),
    "mask": ("Jacobian masking", "keep rate q"),
}


def draw_sweep_row(axes, runs: xr.Dataset, factor: str, quantities: tuple[str, ...]) -> None:
    """One row of an E1-style figure: one thin line per run, one colour per swept value."""
    axes[0].set_title(f"{FACTOR_LABELS[factor]} sweep", loc="left", fontsize=10, fontweight="bold")
    if not runs.sizes["run"]:
        for ax, name in zip(axes, quantities, strict=True):
            empty_panel(ax, name)
        return
    values = sorted({float(v) for v in runs[factor].values})
    colors = value_colors(values)
    complete = runs["status"].values == "complete"
    for ax, name in zip(axes, quantities, strict=True):
        if name not in runs:
            ax.text(
                0.5, 0.5, f"{name}\nnot traced", ha="center", va="center", transform=ax.transAxes
            )
            continue
        data = runs[name].values
        log = name != "fewshot_5shot_accuracy" and spans_decades(data[complete])
        for i, value in enumerate(runs[factor].values):
            run_id = str(runs["run"].values[i])
            draw_run(
                ax, runs["step"].values, data[i], colors[float(value)], run_id, complete[i], log
            )
        if log:
            ax.set_yscale("log")
            tidy_log_axis(ax.yaxis, data[complete])
        ax.set_ylabel(QUANTITIES.get(name, name))
        step_axis(ax, runs["step"].values)
        ax.grid(alpha=0.3, which="major")
    handles = [Line2D([], [], color=colors[v], lw=2, label=format_value(factor, v)) for v in values]
    if (~complete).any():
        handles.append(Line2D([], [], color="grey", ls=":", marker="x", label="diverged"))
    axes[-1].legend(
        handles=handles,
        title=FACTOR_LABELS[factor],
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        frameon=False,
        fontsize=8,
        title_fontsize=9,
    )


def empty_panel(ax, name: str) -> None:
    """A panel of a sweep none of whose runs was aggregated."""
    ax.text(
        0.5,
        0.5,
        "no run of this sweep\nwas aggregated",
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="grey",
    )
    ax.set_ylabel(QUANTITIES.get(name, name))
    ax.set_xlabel(STEP_LABEL)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_run(ax, steps, row, color, run_id: str, complete: bool, log: bool) -> None:
    """One run's curve: thin and solid, or dotted ending in an x where it diverged."""
    ok = np.isfinite(row) & ((row > 0) if log else True)
    style = {"lw": 1.0, "alpha": 0.85} if complete else {"lw": 1.0, "ls": ":"}
    ax.plot(steps[ok], row[ok], color=color, gid=run_id, **style)
    if not complete and ok.any():
        ax.plot(steps[ok][-1], row[ok][-1], "x", color=color, ms=6)


def seeds_text(runs: xr.Dataset) -> str:
    seeds = len(np.unique(runs["seed"].values))
    return f"{seeds} seed{'s' if seeds != 1 else ''}"


# ---------------------------------------------------------------- the figures


def sweep_figure(
    dataset: xr.Dataset, study: str, info: dict, quantities: tuple[str, ...]
) -> Drawn | None:
    factors = swept_factors(info)
    runs_all = aggregate.study_runs(dataset, study)
    rows = factors or ["base"]
    fig = Figure(figsize=(13, 3.0 * len(rows) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), len(quantities), squeeze=False))
    for r, factor in enumerate(rows):
        if factor == "base":  # no sweep: every run at the base point, one colour
            draw_sweep_row(axes[r], runs_all, "lr", quantities)
        else:
            draw_sweep_row(
                axes[r], aggregate.sweep_runs(runs_all, study, factor), factor, quantities
            )
    experiment = info.get("experiment", "")
    model = f"{runs_all['model'].values[0]} (width {runs_all['width'].values[0]:g})"
    fig.suptitle(
        f"{study} ({experiment}): {model} on {runs_all['dataset'].values[0]}, "
        f"{seeds_text(runs_all)}",
        fontsize=11,
    )
    names = ", ".join(QUANTITIES[q].split(":")[0] for q in quantities)
    caption = (
        f"{experiment} on {runs_all['dataset'].values[0]}: {names} against training step, one "
        f"row per sweep ({', '.join(FACTOR_LABELS[f] for f in factors) or 'none'}), one "
        "colour per swept value (dark = smallest), one thin line per run (seed). Dotted "
        "lines ending in x: diverged runs. Measured on the fixed training sample (target NC "
        "and few-shot accuracy: target classes)."
    )
    return Drawn(f"{study}_{experiment}", fig, caption)


def estimator_figure(dataset: xr.Dataset, study: str, info: dict) -> Drawn | None:
    """E2: one row per run with an exact GC (at most 3), one panel per estimator."""
    runs = dataset.isel(run=np.flatnonzero(dataset["study"].values == study))
    if "gcest_exact" not in runs:
        return None
    runs = runs.isel(run=np.flatnonzero(np.isfinite(runs["gcest_exact"].values)))
    if not runs.sizes["run"]:
        return None
    runs = runs.isel(run=slice(0, 3))
    estimators_present = list(dict.fromkeys(str(e) for e in dataset["estimator"].values))
    fig = Figure(
        figsize=(3.2 * len(estimators_present) + 0.5, 3.0 * runs.sizes["run"] + 0.6),
        layout="constrained",
    )
    axes = fig.subplots(runs.sizes["run"], len(estimators_present), squeeze=False)
    for r in range(runs.sizes["run"]):
        run = runs.isel(run=r)
        for c, name in enumerate(estimators_present):
            chosen = np.flatnonzero(dataset["estimator"].values == name)
            estimator_panel(axes[r, c], name, dataset["budget"].values[chosen], run, chosen)
            if c == 0:
                label = "GC estimate: mean $\\|J_f(x)\\|_F^2$"
                if runs.sizes["run"] > 1:
                    label += f"\n{str(run['run'].values).split('/')[-1]}"
                axes[r, c].set_ylabel(label, fontsize=9)
        axes[r, -1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=8)
    repeats = int(np.isfinite(runs["gcest_estimate"].values[0]).sum(axis=1).max())
    which = str(runs["run"].values[0]) if runs.sizes["run"] == 1 else f"{runs.sizes['run']} runs"
    fig.suptitle(
        f"{study} ({info.get('experiment', 'E2')}): GC estimators against the exact "
        f"GC of the trained network ({which})",
        fontsize=11,
    )
    caption = (
        f"E2: each GC estimator's estimate (mean +/- sd over {repeats} independent repeats) "
        "against its sampling budget, on the fixed training sample of the final network; the "
        "dashed line is the exact GC (every output row of the Jacobian)."
    )
    return Drawn(f"{study}_{info.get('experiment', 'E2')}", fig, caption)


def estimator_panel(ax, name: str, budgets: np.ndarray, run: xr.Dataset, chosen) -> None:
    """One estimator on one run: mean +/- sd of its repeats at each budget (the
    ``chosen`` settings), the exact GC dashed."""
    estimates = run["gcest_estimate"].values[chosen]
    with warnings.catch_warnings():  # a budget without any finite repeat: NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(estimates, axis=1)
        sd = np.nanstd(estimates, axis=1, ddof=1)
    ax.errorbar(
        budgets, mean, yerr=sd, fmt="o-", color="C0", capsize=3, ms=4, label="estimate, mean +/- sd"
    )
    ax.axhline(float(run["gcest_exact"]), color="k", lw=1.2, ls="--", label="exact GC")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(budgets))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_minor_locator(FixedLocator([]))
    title, xlabel = ESTIMATOR_LABELS.get(name, (name, "budget"))
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(f"sampling budget: {xlabel}")
    ax.grid(alpha=0.3)


def bound_figure(dataset: xr.Dataset, study: str, info: dict) -> Drawn | None:
    runs = aggregate.study_runs(dataset, study)
    runs = runs.isel(run=np.flatnonzero(runs["status"].values == "complete"))
    if not runs.sizes["run"]:
        return None
    steps = runs["step"].values
    fig = Figure(figsize=(8.5, 4.2), layout="constrained")
    ax = fig.subplots()
    styles = {"ncc_test_error": ("k", "-"), "bound_cdnv": ("C0", "--"), "bound_gc": ("C3", "-.")}
    for name, (color, style) in styles.items():
        for i, run_id in enumerate(runs["run"].values):
            row = runs[name].values[i]
            ok = np.isfinite(row) & (row > 0)
            ax.plot(steps[ok], row[ok], color=color, ls=style, lw=1.0, alpha=0.85, gid=str(run_id))
    handles = [
        Line2D([], [], color=c, ls=ls, lw=1.5, label=QUANTITIES[n]) for n, (c, ls) in styles.items()
    ]
    ax.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax.text(
        steps.max(),
        1.0,
        " error = 1 (vacuous above)",
        va="bottom",
        ha="right",
        fontsize=8,
        color="grey",
    )
    ax.set_yscale("log")
    tidy_log_axis(ax.yaxis, np.concatenate([runs[n].values.ravel() for n in styles]))
    ax.set_ylabel("NCC error / bound")
    step_axis(ax, steps)
    ax.grid(alpha=0.3)
    ax.legend(
        handles=handles, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, fontsize=9
    )
    ax.set_title(
        f"{study} ({info.get('experiment', 'E3')}): {runs['model'].values[0]} on "
        f"{runs['dataset'].values[0]}, {seeds_text(runs)}",
        fontsize=11,
    )
    caption = (
        "E3: NCC test error and its two bounds against training step, computed from training "
        f"statistics; one thin line per run ({seeds_text(runs)}). The bound holds where its "
        "curve lies above the error; above 1 it is vacuous."
    )
    return Drawn(f"{study}_{info.get('experiment', 'E3')}", fig, caption)


def build(dataset: xr.Dataset) -> list[Drawn]:
    """The figure of each study's experiment (nothing written)."""
    drawn = []
    for study, info in studies_of(dataset).items():
        experiment = info.get("experiment", "")
        if experiment == "E2":
            figure = estimator_figure(dataset, study, info)
        elif experiment == "E3":
            figure = bound_figure(dataset, study, info)
        elif experiment == "E4":
            figure = sweep_figure(dataset, study, info, TRANSFER)
        else:
            figure = sweep_figure(dataset, study, info, CURVES)
        if figure is not None:
            drawn.append(figure)
    return drawn
