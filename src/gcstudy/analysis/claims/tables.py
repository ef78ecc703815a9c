"""The tables of the claims (``gcstudy stats``): decide the claims on a study file and
write every table.

Reads ``results/study.nc``; writes under ``results/stats/``, each table as CSV, Markdown and
LaTeX: ``claims`` (verdicts of the claims and their parts), ``tests`` (every deciding
test), ``runs`` (one row per run: its run-level summaries), ``sweep_slopes`` (claim 1),
``readings`` (each sweep's runs read at each design clock), ``collapse_vs_gc`` and
``transfer`` (claims 2 and 3 per acting mechanism and clock), ``collapse_shown`` and
``transfer_shown`` (fits shown, never deciding), ``bound`` (claim 4), ``terminal_phase``,
``estimators`` (Fig. 2 numbers), ``inventory``; and ``claims.json`` (verdicts, tests,
settings, decision rule, warnings) for the report. The decisions are in
``gcstudy.analysis.claims``; ``run_summary_table`` is the per-run table of these summaries
(not the config's run table of run specs).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from gcstudy.analysis import aggregate
from gcstudy.analysis.claims import CLAIMS, Results, Settings, analyse, inputs
from gcstudy.analysis.table_formats import write_table

DECISION_RULE = (
    "The run is the unit, the seed a blocking factor. Claims 1-3 are judged per mechanism at "
    "each design clock ({clocks}): the runs of a sweep are read where they have made equal "
    "progress by that clock (equal steps, examples seen or lr x steps), and a test is the "
    "seed-blocked fit of the metric on the swept value (log value; a blocked rank trend when "
    "the sweep contains 0), one-sided in the predicted direction, supported when both the "
    "t-test and the within-seed permutation test ({permutations} permutations) reject at "
    "alpha = {alpha:g} (p = max(p_t, p_perm)), contradicted when its p against the prediction, "
    "Holm-adjusted over the claim's tests at that clock, is below alpha. Claims 2 and 3 test "
    "only the factors that claim 1 finds acting on GC at that clock, in the direction of "
    "their effect on GC; no quantity measured after treatment (train loss, accuracy, NCC "
    "error) decides. At a clock a part is supported when every test is, contradicted when "
    "any is; a claim is supported only when every part is supported, contradicted when any "
    "is (a GC-form bound with the Gaussian proxy is a diagnostic outside this rule). A claim or "
    "part is supported (contradicted) only when it is so at every clock, otherwise "
    "inconclusive; the whole decision is repeated with the readings at 2/3 of the budget "
    "and a verdict that changes is inconclusive: not converged. Claim 4 is judged on the "
    "bound study's runs (summaries over the last {summary_window} evaluations where a "
    "run-level value is needed)."
)
METHODS = {
    "1": "Per study, swept factor and clock: log GC read at the clock's step ~ log value + "
    "C(seed) over the sweep's runs (base point included), one-sided t-test and within-seed "
    "permutation test; a sweep containing 0 (L2 or penalty off) is decided by a blocked rank "
    "trend test, its slope fitted on the positive values. A grid point without a complete run "
    "leaves the sweep undecided. A factor significant either way at a clock acts on GC there.",
    "2": "Per acting mechanism (study, factor, clock): log NC at the clock's step ~ log value "
    "+ C(seed), one-sided in the direction of the factor's effect on GC. Shown, never "
    "deciding: NC vs GC pooled over a study's runs, the same conditioned on train loss "
    "(post-treatment), and geometric collapse vs GC (definitional: built from per-class GC).",
    "3": "Per acting mechanism of a transfer study and clock: log target NC (with the GC "
    "effect's sign) and 5-way 5-shot accuracy traced during training (against it) ~ log value "
    "+ C(seed). Accuracy vs target NC on the final table (fewshot.nc) is descriptive.",
    "4": "Per bound study, the CDNV bound 4(C-1) NC_train decides: non-vacuous (< 1 beyond its "
    "noise) over more than half of training (time-weighted); above the test error at every "
    "non-vacuous run-step by more than the binomial noise of the error and the bound's own "
    "noise (a Holm-significant excess contradicts); tracks the error in detrended within-run "
    "changes and across runs at the end. The GC-form bound decides only with a Poincare "
    "constant from the config; with the Gaussian proxy it is a diagnostic.",
}
CAPTIONS = {
    "claims": "Claims (docs/claims.md), their parts and verdicts at each clock, at 2/3 of the "
    "budget and final (all parts, every clock, stable).",
    "tests": "Every test at the full budget: p for the prediction (max of the t and permutation "
    "p for a slope), Holm-adjusted p against it (per claim and clock).",
    "runs": "One row per run: run-level summaries (geometric mean over the last "
    "evaluations), final few-shot values (fewshot.nc), status and provenance.",
    "readings": "Each run of each sweep read at each clock: the step and the values there "
    "(interpolated = no evaluation at that step: log value linear in log step).",
    "sweep_slopes": "Claim 1: slope of log GC on log swept value at each clock, seed-blocked.",
    "collapse_vs_gc": "Claim 2 (decides): per acting mechanism and clock, log NC on the swept "
    "value, in the direction of its effect on GC.",
    "collapse_shown": "Claim 2 (shown, never deciding): NC vs GC pooled over a study; the same "
    "conditioned on train loss (post-treatment); geometric collapse vs GC (definitional).",
    "transfer": "Claim 3 (decides): per acting mechanism and clock, target NC and 5-shot "
    "accuracy on the swept value.",
    "transfer_shown": "Claim 3 (descriptive): final-table relations (fewshot.nc).",
    "bound": "Claim 4: the NCC-error bounds: non-vacuous share, violations, tracking, the step "
    "where each first falls below 1 and bound / error at the end; the bound from test NC.",
    "terminal_phase": "Runs in the terminal phase: train accuracy >= 99.5 % at every evaluation "
    "of the last third of the run's evaluations, per study.",
    "estimators": "GC estimators (Fig. 2): mean, sd and relative bias against the exact GC.",
    "inventory": "Runs per study: complete, diverged (kept, excluded from tests), skipped.",
}


def run(
    study_path: str | os.PathLike, out_dir: str | os.PathLike, settings: Settings
) -> list[Path]:
    """Read the study file, decide every claim, write the tables."""
    dataset = aggregate.open_study(study_path)
    return write(analyse(dataset, settings), dataset, out_dir, str(study_path))


def write(results: Results, dataset: xr.Dataset, out_dir, study_path: str = "") -> list[Path]:
    out = Path(out_dir)
    tables = {
        **{k: v for k, v in results.tables.items() if k != "runs"},
        "runs": run_summary_table(results.tables["runs"]),
        "terminal_phase": inputs.terminal_phase(dataset),
        "estimators": estimators(dataset),
        "inventory": inventory(dataset),
    }
    written = []
    for name, frame in tables.items():
        written += write_table(frame, out, name, CAPTIONS.get(name, ""))
    settings = results.settings
    summary = {
        "settings": dataclasses.asdict(settings),
        "alpha": settings.alpha,
        "summary_window": settings.summary_window,
        "permutations": settings.permutations,
        "study": study_path,
        "generated_by": dataset.attrs.get("generated_by", ""),
        "clocks": list(settings.clocks),
        "decision_rule": DECISION_RULE.format(
            **{**dataclasses.asdict(settings), "clocks": ", ".join(settings.clocks)}
        ),
        "methods": METHODS,
        "claims": results.records(),
        "tests": [t.row() for t in results.tests],
        "warnings": warnings_of(results),
    }
    path = out / "claims.json"
    path.write_text(json.dumps(summary, indent=1, default=_plain) + "\n")
    return [*written, path]


def warnings_of(results: Results) -> list[str]:
    """A line per verdict that rests on a sweep or study that lost runs."""
    lines = []
    for test in results.tests:
        lost = test.warning or test.lost
        if lost:
            lines.append(f"claim {test.part} ({test.study}, {test.name}, {test.clock}): {lost}")
    return list(dict.fromkeys(lines))


def run_summary_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The per-run table of the report (geometric means of the window summaries)."""

    def geometric(column):
        return np.exp(frame[column]) if column in frame else np.nan

    return pd.DataFrame(
        {
            "run": frame.index,
            "study": frame["study"],
            "lr": frame["lr"],
            "batch_size": frame["batch_size"],
            "l2": frame["l2"],
            "gc_penalty": frame["gc_penalty"],
            "seed": frame["seed"],
            "status": frame["status"],
            "step": [
                f"{f} / {p}"
                for f, p in zip(frame["final_step"], frame["steps_planned"], strict=True)
            ],
            "GC": geometric("log_gc"),
            "geometric_collapse": geometric("log_geometric_collapse"),
            "NC": geometric("log_nc"),
            "train_loss": geometric("log_train_loss"),
            "target_NC_final": frame["fewshot_target_nc"],
            "5shot_accuracy_final": frame["fewshot_accuracy"],
            "device": frame.get("device", ""),
            "commit": frame.get("git_commit_run", pd.Series("", index=frame.index)).map(
                lambda c: str(c)[:12]
            ),
        }
    )


def estimators(dataset: xr.Dataset) -> pd.DataFrame:
    """Fig. 2 numbers: each estimator's mean, sd and bias against the exact GC."""
    if "gcest_estimate" not in dataset:
        return pd.DataFrame()
    rows = []
    for i in np.flatnonzero(np.isfinite(dataset["gcest_exact"].values)):
        run = dataset.isel(run=i)
        exact = float(run["gcest_exact"])
        for s in range(dataset.sizes["setting"]):
            values = run["gcest_estimate"].values[s]
            values = values[np.isfinite(values)]
            if not len(values):
                continue
            sd = float(values.std(ddof=1)) if len(values) > 1 else math.nan
            rows.append(
                {
                    "run": str(run["run"].values),
                    "estimator": str(dataset["estimator"].values[s]),
                    "budget": float(dataset["budget"].values[s]),
                    "exact": exact,
                    "mean": float(values.mean()),
                    "sd": sd,
                    "relative_bias": float(values.mean() / exact - 1),
                    "relative_sd": sd / exact,
                    "mean_reported_se": float(np.nanmean(run["gcest_reported_stderr"].values[s])),
                    "repeats": len(values),
                }
            )
    return pd.DataFrame(rows)


def inventory(dataset: xr.Dataset) -> pd.DataFrame:
    """Runs per study: complete, diverged, skipped (missing or unreadable); every study
    that has runs in the study file, was skipped or is in the config (``studies``)."""
    skipped = dataset.attrs.get("skipped", [])
    if isinstance(skipped, str):
        skipped = json.loads(skipped)
    studies = dataset.attrs.get("studies", {})
    studies = json.loads(studies) if isinstance(studies, str) else studies
    names = dict.fromkeys(
        [str(s) for s in dataset["study"].values] + [s["study"] for s in skipped] + list(studies)
    )
    status = dataset["status"].values
    return pd.DataFrame(
        [
            {
                "study": name,
                "experiment": studies.get(name, {}).get("experiment", ""),
                "complete": int((status[dataset["study"].values == name] == "complete").sum()),
                "diverged": int((status[dataset["study"].values == name] == "diverged").sum()),
                "skipped": sum(s["study"] == name for s in skipped),
            }
            for name in names
        ]
    )


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


__all__ = ["CLAIMS", "run", "write"]
