"""One figure per claim, drawn from the run-level summaries that decide it.

* claim 1: each sweep's run-level GC summary (geometric mean over the last evaluations)
  against the swept value, one marker colour per seed, with the seed-blocked fit on the
  positive values and its CI (for the average seed); a 0 sits one decade below the smallest
  positive value; lost grid points are named in red;
* claim 2: per study, the added-variable plot of the deciding fit: log NC against log GC,
  both with the seeds and the training loss projected out, and the fitted slope with its CI;
* claim 3: per transfer study, the same for target NC and 5-shot accuracy against source
  GC, and (descriptive) accuracy against target NC;
* claim 4: per bound study, each run's bound / NCC test error over steps (error offset by
  half an example), with the line at 1 where the bound equals the error.

Points and lines carry ``gid`` tags (``seed-<s>``, ``fit``, run ids) so that tests read
back exactly what is drawn.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats as sps

from gcstudy.analysis import summaries
from gcstudy.analysis.claims import Settings, bound, factors, transfer
from gcstudy.analysis.claims.blocked import Permutations, blocked_fit, partial_residuals
from gcstudy.analysis.claims.relations import PROGRESS, usable
from gcstudy.analysis.figures import STEP_LABEL, Drawn, format_value, step_axis, tidy_log_axis
from gcstudy.analysis.summaries import FACTOR_LABELS


def build(dataset: xr.Dataset, settings: Settings) -> list[Drawn]:
    frame = summaries.run_frame(dataset, settings.window)
    studies = summaries.studies_of(dataset)
    drawn = [
        claim1(frame, studies, settings),
        claim2(frame, studies, settings),
        claim3(frame, studies, settings),
        claim4(dataset, frame, studies),
    ]
    return [d for d in drawn if d is not None]


def _fit(y, x, seed, sign, settings, covariates=None):
    """The deciding slope's fit (its permutation p is not drawn: 99 permutations)."""
    permutations = Permutations(99, np.random.default_rng(settings.seed))
    return blocked_fit(y, x, seed, sign, settings.alpha, permutations, covariates)


def _grid(count: int, width: float = 3.6, height: float = 3.2):
    cols = min(4, count)
    rows = int(np.ceil(count / cols))
    figure = Figure(figsize=(width * cols + 0.8, height * rows + 0.8), layout="constrained")
    axes = figure.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return figure, axes


def _interval(fit, alpha: float) -> str:
    return (
        f"slope {fit.slope:.2f}, {100 * (1 - alpha):.0f}% CI [{fit.ci_low:.2f}, {fit.ci_high:.2f}]"
    )


def claim1(frame, studies: dict, settings: Settings) -> Drawn | None:
    sweeps = [(s, f) for s, info in studies.items() for f in summaries.swept_factors(info)]
    if not sweeps:
        return None
    figure, axes = _grid(len(sweeps))
    for ax, (study, factor) in zip(axes, sweeps, strict=False):
        runs = summaries.sweep_members(frame, study, factor)
        runs = usable(runs, ["log_gc"])
        value = runs[factor].to_numpy(float)
        positive = value[value > 0]
        zero_at = positive.min() / 10 if len(positive) else 1.0
        shown = np.where(value > 0, value, zero_at)
        for k, seed in enumerate(sorted(runs["seed"].unique())):
            pick = runs["seed"].to_numpy() == seed
            ax.plot(
                shown[pick],
                np.exp(runs["log_gc"].to_numpy()[pick]),
                "o",
                ms=5,
                color=f"C{k % 10}",
                label=f"seed {seed}",
                gid=f"seed-{seed}",
            )
        fit = None
        if (value > 0).sum() >= 3:
            keep = value > 0
            fit = _fit(
                runs["log_gc"].to_numpy()[keep],
                np.log(value[keep]),
                runs["seed"].to_numpy()[keep],
                factors.SIGN[factor],
                settings,
            )
        if fit is not None:
            grid = np.linspace(np.log(positive.min()), np.log(positive.max()), 50)
            mean, low, high = fit.mean_line(grid, settings.alpha)
            ax.plot(np.exp(grid), np.exp(mean), "k-", lw=1.2, gid="fit")
            ax.fill_between(np.exp(grid), np.exp(low), np.exp(high), color="k", alpha=0.12, lw=0)
            ax.set_title(
                f"{study}: {FACTOR_LABELS[factor]}\n{_interval(fit, settings.alpha)}", fontsize=9
            )
        else:
            ax.set_title(f"{study}: {FACTOR_LABELS[factor]}", fontsize=9)
        lost = summaries.lost_runs(frame, studies[study], study, factor)
        if lost:
            ax.text(
                0.02,
                0.02,
                "lost: " + lost,
                transform=ax.transAxes,
                fontsize=6,
                color="C3",
                va="bottom",
                wrap=True,
            )
        ax.set_xscale("log")
        ticks = sorted(set(shown))
        has_zero = bool((value <= 0).any())
        names = ["0" if has_zero and t == zero_at else format_value(factor, t) for t in ticks]
        ax.set_xticks(ticks, names, fontsize=7)
        ax.minorticks_off()
        ax.set_yscale("log")
        tidy_log_axis(ax.yaxis, np.exp(runs["log_gc"].to_numpy()))
        ax.set_xlabel(FACTOR_LABELS[factor])
        ax.set_ylabel("GC, run summary")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.suptitle("Claim 1: run-level GC against each swept factor", fontsize=11)
    caption = (
        f"Claim 1: each run's GC summary (geometric mean over its last {settings.window} "
        "evaluations) against the swept value, one colour per seed; the line is the "
        "seed-blocked fit of log GC on log value (average seed) over the positive values "
        f"with its {100 * (1 - settings.alpha):.0f}% CI. A value 0 is drawn one decade below "
        "the smallest positive value (such sweeps are decided by the rank trend test)."
    )
    return Drawn("claim1_gc_vs_factors", figure, caption)


def added_variable(ax, runs, y: str, x: str, sign: int, settings, control, labels) -> None:
    """The added-variable plot of the deciding fit ``y ~ x + C(seed) + control``."""
    covariates = runs[control].to_numpy(float) if control else None
    seeds = runs["seed"].to_numpy()
    fit = _fit(runs[y].to_numpy(float), runs[x].to_numpy(float), seeds, sign, settings, covariates)
    if fit is None:
        ax.text(0.5, 0.5, "too few runs", ha="center", transform=ax.transAxes, color="grey")
        return
    rx, ry = partial_residuals(runs[y].to_numpy(float), runs[x].to_numpy(float), seeds, covariates)
    for k, seed in enumerate(sorted(np.unique(seeds))):
        pick = seeds == seed
        ax.plot(
            rx[pick],
            ry[pick],
            "o",
            ms=5,
            color=f"C{k % 10}",
            label=f"seed {seed}",
            gid=f"seed-{seed}",
        )
    grid = np.linspace(rx.min(), rx.max(), 50)
    half = sps.t.ppf(1 - settings.alpha / 2, fit.df) * fit.se * np.abs(grid)
    ax.plot(grid, fit.slope * grid, "k-", lw=1.2, gid="fit")
    ax.fill_between(
        grid, fit.slope * grid - half, fit.slope * grid + half, color="k", alpha=0.12, lw=0
    )
    ax.set_xlabel(labels[0], fontsize=8)
    ax.set_ylabel(labels[1], fontsize=8)
    ax.set_title(f"{labels[2]}\n{_interval(fit, settings.alpha)}", fontsize=9)
    ax.grid(alpha=0.3)


def claim2(frame, studies: dict, settings: Settings) -> Drawn | None:
    chosen = [s for s, info in studies.items() if summaries.swept_factors(info)]
    if not chosen:
        return None
    figure, axes = _grid(len(chosen))
    given = "given seed and training loss"
    for ax, study in zip(axes, chosen, strict=False):
        runs = usable(frame[frame["study"] == study], ["log_gc", "log_nc", PROGRESS])
        added_variable(
            ax,
            runs,
            "log_nc",
            "log_gc",
            1,
            settings,
            [PROGRESS],
            (f"log GC, {given}", f"log NC, {given}", study),
        )
    axes[0].legend(fontsize=7)
    figure.suptitle("Claim 2: NC against GC across runs, at equal training loss", fontsize=11)
    caption = (
        "Claim 2, the deciding fit as an added-variable plot: each complete run's log NC and "
        f"log GC summaries (last {settings.window} evaluations) with the seed and the log "
        "training loss projected out; the line is the fitted slope with its "
        f"{100 * (1 - settings.alpha):.0f}% CI. A relation that only comes from training "
        "progress (or from shared seeds) leaves no slope here."
    )
    return Drawn("claim2_nc_vs_gc", figure, caption)


def claim3(frame, studies: dict, settings: Settings) -> Drawn | None:
    chosen = [
        s
        for s in studies
        if np.isfinite(frame.loc[frame["study"] == s, "fewshot_accuracy"].to_numpy(float)).any()
    ]
    if not chosen:
        return None
    figure = Figure(figsize=(12, 3.4 * len(chosen) + 0.8), layout="constrained")
    axes = figure.subplots(len(chosen), 3, squeeze=False)
    given = "given seed and training loss"
    for row, study in zip(axes, chosen, strict=True):
        runs = frame[frame["study"] == study]
        for ax, (part, y, sign, what) in zip(row, transfer.RELATIONS, strict=False):
            added_variable(
                ax,
                usable(runs, [transfer.GC, y, transfer.LOSS]),
                y,
                transfer.GC,
                sign,
                settings,
                [transfer.LOSS],
                (
                    f"log source GC, {given}",
                    f"{what.split(' vs ')[0]}, {given}",
                    f"{study}: {part} {what}",
                ),
            )
        ok = usable(runs, ["log_fewshot_target_nc", "fewshot_accuracy"])
        added_variable(
            row[2],
            ok,
            "fewshot_accuracy",
            "log_fewshot_target_nc",
            -1,
            settings,
            None,
            (
                "log target NC, given seed",
                "5-shot accuracy, given seed",
                f"{study}: accuracy vs target NC (descriptive)",
            ),
        )
    axes[0][0].legend(fontsize=7)
    figure.suptitle("Claim 3: transfer relations on the final few-shot table", fontsize=11)
    caption = (
        "Claim 3, on the final few-shot table (fewshot.nc): target NC and 5-way 5-shot NCC "
        "accuracy against the source GC of the final network, as added-variable plots (seed "
        "and training loss projected out; these fits decide 3a and 3b), and accuracy against "
        "target NC (seed projected out; descriptive)."
    )
    return Drawn("claim3_transfer", figure, caption)


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
