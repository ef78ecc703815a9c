"""``gcstudy stats``: decide the claims on a study file and write every table.

Reads ``results/study.nc``; writes under ``results/stats/``, each table as CSV, Markdown and
LaTeX: ``claims`` (verdicts of the claims and their parts), ``tests`` (every deciding
test), ``runs`` (one row per run: its run-level summaries), ``sweep_slopes`` (claim 1),
``collapse_vs_gc`` (claim 2, with the placebo, the definitional check and the
sensitivity fit), ``transfer`` (claim 3), ``bound`` (claim 4), ``estimators`` (Fig. 2
numbers), ``inventory``; and ``claims.json`` (verdicts, tests, settings, decision rule,
warnings) for the report. The decisions are in ``gcstudy.analysis.claims``.
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
from gcstudy.analysis.claims import CLAIMS, Results, Settings, analyse
from gcstudy.analysis.tables import write_table

DECISION_RULE = (
    "Every test uses one summary per run (the mean of the log metric over the run's last "
    "{window} evaluations; few-shot values from the final table) with the seed as a "
    "blocking factor. A test is supported when its one-sided p-value in the predicted "
    "direction is below alpha = {alpha:g} (for a slope: both the t-test and the within-seed "
    "permutation test, {permutations} permutations), contradicted when its p-value against "
    "the prediction, Holm-adjusted over the claim's tests, is below alpha, and inconclusive "
    "otherwise or when its sweep lost runs. A part is supported when it is supported in "
    "every study that tests it; a claim is supported only when every part is supported, "
    "contradicted when any part is contradicted, and otherwise inconclusive, naming the "
    "parts not tested or not decided."
)
METHODS = {
    "1": "Per study and sweep: OLS log GC ~ log value + C(seed) on the runs of the sweep "
    "(base point included), one-sided t-test and within-seed permutation test of the slope; "
    "a sweep containing 0 (L2 or penalty off) is decided by a blocked rank trend test (the "
    "within-seed Spearman sum against its within-seed permutations), its slope fitted on the "
    "positive values. A grid point without a complete run leaves the sweep inconclusive.",
    "2": "Per study with sweeps: OLS log NC ~ log GC + C(seed) + log train loss across its "
    "complete runs (at equal training loss: equal step is not equal progress), t-test and "
    "Freedman-Lane within-seed permutation test. Shown, never deciding: a placebo (NC of "
    "another run of the same seed), the fit without the progress control, geometric "
    "collapse vs GC (definitional: built from per-class GC) and a MixedLM over run-steps.",
    "3": "Per transfer study, on the final fewshot.nc values: log target NC and 5-shot NCC "
    "accuracy against the log source GC of the final network, + C(seed) + log train loss. "
    "Accuracy vs target NC is descriptive.",
    "4": "Per bound study and bound: non-vacuous (< 1 beyond its noise) over more than half of "
    "training (time-weighted); above the test error at every non-vacuous run-step by more "
    "than the binomial noise of the error and the bound's own noise (a Holm-significant "
    "excess contradicts); tracks the error both in detrended within-run changes and across "
    "runs at the end (every complete run on the bound study's data set).",
}
CAPTIONS = {
    "claims": "Claims of SCIENCE.md section 6, their parts and verdicts (all parts or nothing).",
    "tests": "Every deciding test: p for the prediction, Holm-adjusted p against it.",
    "runs": "One row per run: run-level summaries (geometric mean over the last "
    "evaluations), final few-shot values (fewshot.nc), status and provenance.",
    "sweep_slopes": "Claim 1: slope of log GC on log swept value with the seed as a block.",
    "collapse_vs_gc": "Claim 2: NC vs GC across runs at equal training loss (decides); "
    "placebo, no-control fit, definitional check and MixedLM (shown only).",
    "transfer": "Claim 3: target NC and 5-shot accuracy vs source GC (fewshot.nc).",
    "bound": "Claim 4: the NCC-error bounds: non-vacuous share, violations, tracking.",
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
        "runs": run_table(results.tables["runs"]),
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
        "summary_window": settings.window,
        "permutations": settings.permutations,
        "study": study_path,
        "generated_by": dataset.attrs.get("generated_by", ""),
        "decision_rule": DECISION_RULE.format(**dataclasses.asdict(settings)),
        "methods": METHODS,
        "claims": results.claims_table().to_dict(orient="records"),
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
        lost = test.warning or (test.problem if test.problem.startswith("lost") else "")
        if lost:
            lines.append(f"claim {test.part} ({test.study}, {test.name}): {lost}")
    return lines


def run_table(frame: pd.DataFrame) -> pd.DataFrame:
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
    """Runs per study: complete, diverged, skipped (missing or unreadable)."""
    skipped = dataset.attrs.get("skipped", [])
    if isinstance(skipped, str):
        skipped = json.loads(skipped)
    studies = dataset.attrs.get("studies", {})
    studies = json.loads(studies) if isinstance(studies, str) else studies
    names = dict.fromkeys([str(s) for s in dataset["study"].values] + [s["study"] for s in skipped])
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
