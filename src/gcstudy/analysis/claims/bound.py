"""Claim 4, per bound study (E3, or evaluation ``bound``), for each bound (CDNV and GC).

The CDNV bound ``4 (C - 1) NC`` (NC on the training features, as traced in ``bound_cdnv``)
decides parts 4a-4c. The GC-form bound ``4 (C - 1) c geometric collapse`` decides 4d-4f
only when every run's config supplies the Poincare constant ``c`` (``poincare_constant``);
with the default Gaussian proxy (``c = max_i lambda_max(Cov(x | i))``, not a valid
Poincare constant for image classes) its tests are diagnostics: computed and shown with
their arithmetic (``c``, the gap to the CDNV bound, the geometric collapse the bound would
need), never deciding and never contradicting the claim (docs/claims.md). The table also
gives, per study, the step where each bound first falls below 1, the bound / error ratio
at the end, and the same for the bound from test-feature NC, ``4 (C - 1) NC_test``.

The parts:

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
the CDNV bound's is ``sqrt(2 / n)`` for the run's ``n`` feature-sample examples (as its trace
records them, ``feature_examples``), the relative SE of a
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

from gcstudy.analysis.claims.inputs import error_plus_half_count, run_frame, window_mean_log
from gcstudy.analysis.claims.relations import fit_relation, usable
from gcstudy.analysis.claims.rule import Reason, Settings, Test, holm

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


FED_BY = {
    "bound_cdnv": "NC of the training features, 4 (C - 1) NC_train",
    "bound_gc": "geometric collapse of the training features, 4 (C - 1) c x collapse",
}


def bound_studies(studies: dict) -> list[str]:
    return [
        s
        for s, i in studies.items()
        if i.get("experiment") == "E3" or "bound" in i.get("evaluations", [])
    ]


def up_to(dataset: xr.Dataset, fraction: float) -> xr.Dataset:
    """The study file as it was at ``fraction`` of each run's budget: every per-step value
    after step ``fraction * steps_planned`` removed (the stability reading of claim 4)."""
    if fraction >= 1:
        return dataset
    late = dataset["step"].values[None, :] > fraction * dataset["steps_planned"].values[:, None]
    out = dataset.copy()
    for name, variable in dataset.data_vars.items():
        if variable.dims[:2] == ("run", "step") and variable.dtype.kind == "f":
            mask = late.reshape(late.shape + (1,) * (variable.ndim - 2))
            out[name] = variable.where(~mask)
    return out


def decide(dataset: xr.Dataset, studies: dict, settings: Settings, permutations):
    """The tests of claim 4 and the ``bound`` table, per bound study on its complete runs;
    and those runs' ids per bound study (``judged``; empty where none is complete)."""
    tests, rows, judged = [], [], {}
    frame = run_frame(dataset, settings.summary_window)
    for study in bound_studies(studies):
        chosen = np.flatnonzero((dataset["study"].values == study) & frame["complete"].to_numpy())
        judged[study] = [str(r) for r in dataset["run"].values[chosen]]
        if not len(chosen):
            continue
        runs = dataset.isel(run=chosen)
        error = runs["ncc_test_error"].values
        proxy = gaussian_proxy(runs)
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
                if name == "bound_gc" and proxy:
                    test.diagnostic = proxy
                tests.append(test)
            fed = FED_BY[name]
            rows.append({**row, **row_a, **row_b, **row_c, **landmarks(runs, bound, error, fed)})
        rows.append(test_feature_row(study, runs, error))
    return tests, pd.DataFrame(rows), judged


def gaussian_proxy(runs: xr.Dataset) -> str:
    """Why the GC-form bound cannot decide ("" when every run's config supplies ``c``):
    the Gaussian proxy's value, the gap to the CDNV bound at the end, and the geometric
    collapse the bound would need to be below 1."""
    supplied = [json.loads(str(s)).get("poincare_constant") for s in runs["spec_json"].values]
    if all(c is not None for c in supplied):
        return ""
    c = float(np.nanmedian(runs["poincare_constant"].values))
    factor = float(np.nanmedian(runs["bound_cdnv"].values / runs["nc_train"].values))
    gap = window_mean_log(runs["bound_gc"].values / runs["bound_cdnv"].values, 1)[0]
    return (
        f"diagnostic: c = {c:.4g} is the Gaussian proxy max_i lambda_max(Cov(x|i)), not a "
        f"Poincare constant the config supplies; the GC-form bound is 4(C-1) c = "
        f"{factor * c:.4g} x geometric collapse, < 1 only below {1 / (factor * c):.2g}; at "
        f"the end it is {np.exp(np.nanmedian(gap)):.3g} x the CDNV bound (median over runs), "
        "roughly lambda_max over the mean eigenvalue of a class covariance for an embedding "
        "near-linear within a class (the trace records c only, not that mean)"
    )


def landmarks(runs: xr.Dataset, bound: np.ndarray, error: np.ndarray, fed_by: str) -> dict:
    """Where a bound first falls below 1 (median and range over runs of the first evaluated
    step with bound < 1; NaN for a run where it never does) and bound / error at each
    run's last evaluation (error offset by half an example), median over runs."""
    steps = runs["step"].values
    below = np.isfinite(bound) & (bound < 1)
    crossing = np.array([steps[np.argmax(row)] if row.any() else np.nan for row in below])
    offset = error_plus_half_count(runs) - error
    last = window_mean_log(bound, 1)[0] - window_mean_log(error + offset, 1)[0]
    return {
        "crossing_step_median": float(np.nanmedian(crossing)) if below.any() else np.nan,
        "crossing_step_range": _range(crossing),
        "never_below_1": int(np.isnan(crossing).sum()),
        "end_ratio_to_error": float(np.exp(np.nanmedian(last))),
        "fed_by": fed_by,
    }


def test_feature_row(study: str, runs: xr.Dataset, error: np.ndarray) -> dict:
    """What the CDNV bound would be from the NC of the test features, ``4 (C - 1)
    NC_test`` (shown, not deciding)."""
    row = {"study": study, "bound": "CDNV bound from test NC (shown)", "runs": runs.sizes["run"]}
    if "nc_test" not in runs or not np.isfinite(runs["nc_test"].values).any():
        return {**row, "fed_by": "NC of the test features: not traced"}
    factor = np.nanmedian(runs["bound_cdnv"].values / runs["nc_train"].values, axis=1)
    bound = factor[:, None] * runs["nc_test"].values
    return {
        **row,
        "bound_min": float(np.nanmin(bound)),
        "bound_max": float(np.nanmax(bound)),
        **landmarks(runs, bound, error, "NC of the test features, 4 (C - 1) NC_test"),
    }


def _range(values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    return f"{finite.min():g}-{finite.max():g}" if len(finite) else "never"


def relative_noise(runs: xr.Dataset, name: str) -> np.ndarray:
    """Relative SE of the bound at each run-step (module docstring)."""
    if name == "bound_gc":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.abs(runs["gc_stderr"].values / runs["gc"].values)
    sizes = feature_examples(runs)
    return np.sqrt(2 / sizes)[:, None] * np.ones(runs["gc"].shape)


def feature_examples(runs: xr.Dataset) -> np.ndarray:
    """Each run's number of feature-sample examples (on which NC is measured): as its
    trace records it (the study file's ``feature_examples``), else as its run spec asks
    for it (``spec_json``: a study file from before the trace's count was aggregated, or
    a generated one); an error naming the run when neither says."""
    recorded = (
        runs["feature_examples"].values.astype(float)
        if "feature_examples" in runs
        else np.full(runs.sizes["run"], np.nan)
    )
    sizes = []
    for run, count, spec in zip(
        runs["run"].values, recorded, runs["spec_json"].values, strict=True
    ):
        asked = int(json.loads(str(spec)).get("feature_examples", 0))
        if np.isfinite(count) and count > 0:
            sizes.append(float(count))
        elif asked > 0:
            sizes.append(float(asked))
        else:
            raise ValueError(
                f"study file, run {run}: the feature-sample size is not recorded (variable "
                "'feature_examples') and the run spec asks for all training examples "
                "(feature_examples = 0): aggregate the traces again to record it"
            )
    return np.array(sizes)


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
        test.block(Reason.NOTHING_TO_JUDGE, "the bound is >= 1 at every run-step: nothing to judge")
        return test, {**row, "significant_violations": 0}
    against = holm(sps.norm.sf(-z))
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
        test.block(Reason.TOO_FEW_RUNS, f"too few runs to judge tracking ({test.n})")
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
