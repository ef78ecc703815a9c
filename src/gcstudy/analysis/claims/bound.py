"""Claim 4, per bound study (E3, or evaluation ``bound``), for each bound (CDNV and GC):

* **non-vacuous over most of training**: each run-step is *non-vacuous* when the bound is
  below 1 by more than ``z_(1-alpha)`` times its own noise, *vacuous* when above 1 by more;
  steps are weighted by the stretch of training they stand for (trapezoid weights over
  the evaluation steps). Supported when the mean over runs of the non-vacuous share exceeds
  one half, contradicted when the vacuous share is at least one half.
* **above the NCC test error where non-vacuous**: at each run-step with bound < 1,
  ``z = (bound - error) / sqrt(bound (1 - bound) / n_test + (bound * noise)^2)`` (the test
  error's binomial noise at the bound, and the bound's own). Supported when every such
  run-step has ``z > z_(1-alpha)`` (intersection-union); contradicted when some run-step
  has the error above the bound with a Holm-adjusted p below alpha.
* **tracks the error**, judged on every complete run on the bound study's data set (the
  sweeps' runs differ in how fast they train, which is what tracking must follow): both
  (i) within runs, first differences of log bound and log error between evaluations,
  detrended by removing the mean change over the runs of the same study at each interval,
  correlate positively (Fisher-z mean over runs, one-sided t-test over runs), and (ii)
  across runs at the end, the run-level summary of log error rises with that of the log
  bound (``log error ~ log bound + C(seed) [+ C(study)]``, t and within-seed permutation
  tests). Two curves that merely both fall pass neither.

The bound's own noise (relative): the GC bound's is the GC estimate's (``gc_stderr / gc``);
the CDNV bound's is ``sqrt(2 / n)`` for ``n`` feature-sample examples, the relative SE of a
mean within-class variance of Gaussian features (an estimate: exact for one effective
dimension, an upper bound for more). The error is offset by half an example (``0.5 /
n_test``) before taking logs.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import xarray as xr
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from gcstudy.analysis.claims.relations import fit_relation, usable
from gcstudy.analysis.claims.rule import Settings, Test
from gcstudy.analysis.summaries import error_plus_half_count

BOUNDS = {
    "bound_cdnv": ("CDNV bound", "4a", "4b", "4c"),
    "bound_gc": ("GC bound", "4d", "4e", "4f"),
}
PARTS = {
    part: text.format(label)
    for label, *parts in BOUNDS.values()
    for part, text in zip(
        parts,
        (
            "{} is non-vacuous (< 1) over most of training",
            "{} lies above the NCC test error where non-vacuous",
            "{} tracks the NCC test error",
        ),
        strict=True,
    )
}


def bound_studies(studies: dict) -> list[str]:
    return [
        s
        for s, i in studies.items()
        if i.get("experiment") == "E3" or "bound" in i.get("evaluations", [])
    ]


def decide(
    dataset: xr.Dataset, frame: pd.DataFrame, studies: dict, settings: Settings, permutations
):
    tests, rows = [], []
    for study in bound_studies(studies):
        chosen = np.flatnonzero((dataset["study"].values == study) & frame["complete"].to_numpy())
        if not len(chosen):
            continue
        runs = dataset.isel(run=chosen)
        error = runs["ncc_test_error"].values
        for name, (label, *parts) in BOUNDS.items():
            bound = runs[name].values
            noise = relative_noise(runs, name)
            row = {"study": study, "bound": label, "runs": len(chosen)}
            test_a, row_a = nonvacuous(runs, bound, noise, settings.alpha)
            test_b, row_b = above(runs, bound, error, noise, settings.alpha)
            test_c, row_c = tracks(runs, frame, dataset, name, settings, permutations)
            for test, part in zip((test_a, test_b, test_c), parts, strict=True):
                test.claim, test.part, test.study = 4, part, study
                test.name = f"{label}: {test.name}"
                tests.append(test)
            rows.append({**row, **row_a, **row_b, **row_c})
    return tests, pd.DataFrame(rows)


def relative_noise(runs: xr.Dataset, name: str) -> np.ndarray:
    """Relative SE of the bound at each run-step (module docstring)."""
    if name == "bound_gc":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(runs["gc_stderr"].values / runs["gc"].values)
    from gcstudy.config import TRAIN_SIZES

    sizes = []
    for spec in runs["spec_json"].values:
        spec = json.loads(str(spec))
        n = int(spec.get("feature_examples", 0)) or TRAIN_SIZES.get(spec.get("dataset"), 1000)
        sizes.append(n)
    return np.sqrt(2 / np.array(sizes, dtype=float))[:, None] * np.ones(runs["gc"].shape)


def time_weights(steps: np.ndarray, measured: np.ndarray) -> np.ndarray:
    """Trapezoid weights of each run's measured steps, summing to 1 per run."""
    weights = np.zeros(measured.shape)
    for i, row in enumerate(measured):
        at = np.flatnonzero(row)
        if len(at) < 2:
            weights[i, at] = 1.0
            continue
        t = steps[at].astype(float)
        gaps = np.diff(t)
        weights[i, at] = (np.r_[gaps, 0] + np.r_[0, gaps]) / 2 / (t[-1] - t[0])
    return weights


def nonvacuous(runs, bound, noise, alpha) -> tuple[Test, dict]:
    measured = np.isfinite(bound)
    z = sps.norm.ppf(1 - alpha)
    weights = time_weights(runs["step"].values, measured)
    below = measured & (bound * np.exp(z * noise) < 1)
    above_one = measured & (bound * np.exp(-z * noise) >= 1)
    share = float((weights * below).sum(axis=1).mean())
    vacuous = float((weights * above_one).sum(axis=1).mean())
    test = Test(
        0,
        "",
        "",
        "non-vacuous over most of training",
        "share > 1/2",
        "time-weighted share of run-steps with bound < 1 beyond its noise",
    )
    test.estimate, test.n = share, f"{bound.shape[0]} runs, {int(measured.sum())} run-steps"
    if share > 0.5:
        test.preset, test.reason = "supported", f"non-vacuous over {share:.0%} of training"
    elif vacuous >= 0.5:
        test.preset = "contradicted"
        test.reason = f"vacuous (>= 1 beyond noise) over {vacuous:.0%} of training"
    else:
        test.preset = "inconclusive"
        test.reason = f"non-vacuous over {share:.0%}, vacuous over {vacuous:.0%}"
    row = {
        "nonvacuous_share": share,
        "vacuous_share": vacuous,
        "bound_min": float(np.nanmin(bound)),
        "bound_max": float(np.nanmax(bound)),
    }
    return test, row


def above(runs, bound, error, noise, alpha) -> tuple[Test, dict]:
    n_test = runs["test_examples"].values.astype(float)[:, None] * np.ones(bound.shape)
    judged = np.isfinite(bound) & np.isfinite(error) & (bound < 1)
    b, e, n, r = bound[judged], error[judged], n_test[judged], noise[judged]
    sigma = np.sqrt(b * (1 - b) / n + (b * r) ** 2)
    z = (b - e) / sigma
    test = Test(
        0,
        "",
        "",
        "above the NCC test error where non-vacuous",
        "bound > error",
        "per run-step z-test (binomial + bound noise); all must hold, Holm for violations",
    )
    test.n = f"{int(judged.sum())} non-vacuous run-steps"
    row = {"judged_run_steps": int(judged.sum()), "violations": int((e > b).sum())}
    if not judged.any():
        test.problem = "the bound is >= 1 at every run-step: nothing to judge"
        return test, {**row, "significant_violations": 0}
    against = multipletests(sps.norm.sf(-z), method="holm")[1]
    test.estimate = float((z > sps.norm.ppf(1 - alpha)).mean())
    test.p, test.p_against = float(sps.norm.sf(z).max()), float(against.min())
    return test, {
        **row,
        "significant_violations": int((against < alpha).sum()),
        "share_clearly_above": test.estimate,
    }


def tracks(runs, frame, dataset, name: str, settings: Settings, permutations):
    test = Test(
        0,
        "",
        "",
        "tracks the NCC test error",
        "both > 0",
        "within-run detrended changes (t over runs) and across runs at the end "
        "(seed-blocked OLS, t and permutation), every run on the data set",
    )
    same = same_dataset_runs(frame, runs)
    within = within_run_changes(dataset, same, name)
    across, fit = across_runs(same, name, settings, permutations)
    row = {
        "within_mean_r": within["r"],
        "p_within": within["p"],
        "across_slope": np.nan,
        "p_across": np.nan,
        "tracking_runs": len(across),
    }
    test.n = f"{within['runs']} runs within, {len(across)} runs across"
    if within["runs"] < 3 or fit is None:
        test.problem = f"too few runs to judge tracking ({test.n})"
        return test, row
    test.estimate, test.ci_low, test.ci_high = fit.slope, fit.ci_low, fit.ci_high
    test.p = max(within["p"], fit.p_decide)
    test.p_against = max(within["p_against"], fit.p_decide_against)
    return test, {**row, "across_slope": fit.slope, "p_across": fit.p_decide}


def same_dataset_runs(frame: pd.DataFrame, runs: xr.Dataset) -> pd.DataFrame:
    return frame[frame["complete"] & frame["dataset"].isin(set(runs["dataset"].values))]


def within_run_changes(dataset: xr.Dataset, runs: pd.DataFrame, name: str) -> dict:
    """Per run, the correlation of detrended first differences of log bound and log error
    (module docstring); the mean Fisher z over runs and its one-sided t-test (df runs - 1)."""
    z = []
    for study in runs["study"].unique():
        chosen = dataset.sel(run=runs.index[runs["study"] == study].to_numpy())
        log_bound = np.log(chosen[name].values)
        log_error = np.log(error_plus_half_count(chosen))
        common = np.isfinite(log_bound).all(axis=0) & np.isfinite(log_error).all(axis=0)
        db, de = np.diff(log_bound[:, common], axis=1), np.diff(log_error[:, common], axis=1)
        if db.shape[0] < 2 or db.shape[1] < 3:
            continue
        db, de = db - db.mean(axis=0), de - de.mean(axis=0)
        db, de = db - db.mean(axis=1, keepdims=True), de - de.mean(axis=1, keepdims=True)
        scale = np.sqrt((db**2).sum(axis=1) * (de**2).sum(axis=1))
        ok = scale > 0
        z += list(np.arctanh(np.clip((db * de).sum(axis=1)[ok] / scale[ok], -0.999, 0.999)))
    z = np.array(z)
    out = {
        "r": float(np.tanh(z.mean())) if len(z) else np.nan,
        "p": np.nan,
        "p_against": np.nan,
        "runs": len(z),
    }
    if len(z) >= 3 and z.std(ddof=1) > 0:
        t = z.mean() / (z.std(ddof=1) / np.sqrt(len(z)))
        out.update(p=float(sps.t.sf(t, len(z) - 1)), p_against=float(sps.t.sf(-t, len(z) - 1)))
    return out


def across_runs(same: pd.DataFrame, name: str, settings: Settings, permutations):
    """log error ~ log bound across runs, seed-blocked, study as a covariate when several
    studies share the data set."""
    summary = "log_bound_cdnv" if name == "bound_cdnv" else "log_bound_gc"
    chosen = usable(same, ["log_error", summary]).copy()
    control = []
    for other in sorted(chosen["study"].unique())[1:]:
        chosen[f"study_{other}"] = (chosen["study"] == other).astype(float)
        control.append(f"study_{other}")
    return chosen, fit_relation(
        chosen, "log_error", summary, 1, settings, permutations, control or None
    )
