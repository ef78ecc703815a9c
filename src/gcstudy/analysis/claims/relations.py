"""How a swept factor moves a metric, and how two run-level values relate: the fits of
claims 1-4.

``effect_test`` is the one test of claims 1, 2 and 3: across the runs of one sweep (the
base point included, every seed) read at one design clock, the seed-blocked fit of the
metric on the factor, one observation per run, one-sided in the predicted direction:

* positive values: OLS ``y ~ log value + C(seed)``; the t-test and the within-seed
  permutation test must both reject (``Fit.p_decide``: the larger of the two p-values);
* values with 0 (L2 or penalty off): the blocked rank trend test (``rank_trend``) decides;
  the slope is fitted on the positive values and shown;
* a grid point (value, seed) without a complete run makes the test undecidable, with the
  points named: the missing run is not missing at random.

No covariate enters: the factor is randomised (set by design) and its total effect is the
estimand. ``effect_test`` also returns the ``SweepFit`` it decided on (the runs it used and
the fit with its CI): what the claim figures draw. ``fit_relation`` fits one run-level
value on another (seed-blocked, optional covariates) for what is shown beside the
decisions and for claim 4's across-run tracking.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gcstudy.analysis.claims.blocked import Fit, Permutations, blocked_fit, rank_trend
from gcstudy.analysis.claims.rule import Reason, Settings, Test


def usable(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Complete runs with a finite value in every column."""
    ok = runs["complete"].to_numpy(bool).copy()
    for column in columns:
        ok &= np.isfinite(runs[column].to_numpy(float))
    return runs[ok]


@dataclass(frozen=True)
class SweepFit:
    """One sweep read at one design clock, as a test of claims 1-3 decided on it: the runs
    it used (``readings``: complete runs with a finite ``metric``, one row per run with
    ``value``, ``seed`` and the metric), the seed-blocked fit of the metric on the log
    value over the positive values (``fit``: ``Fit``, its CI at the settings' alpha; None
    with fewer than 3 positive values or not estimable) and the ``test`` (None where
    nothing was tested: claims 2 and 3 at a clock where the factor does not act on GC).
    The figures draw these; nothing is fitted again."""

    claim: int
    part: str
    study: str
    factor: str
    clock: str
    metric: str
    readings: pd.DataFrame
    fit: Fit | None = None
    test: Test | None = None


def effect_test(test: Test, runs: pd.DataFrame, y: str, sign: int, settings, permutations):
    """Fill ``test`` with the effect of ``runs["value"]`` (the swept factor) on column
    ``y`` (module docstring); returns the test, a table row of both fits and the
    ``SweepFit`` it decided on."""
    runs = usable(runs, [y])
    value, response, seed = (
        runs["value"].to_numpy(float),
        runs[y].to_numpy(float),
        runs["seed"].to_numpy(),
    )
    positive = value > 0
    fit = (
        blocked_fit(
            response[positive],
            np.log(value[positive]),
            seed[positive],
            sign,
            settings.alpha,
            permutations,
        )
        if positive.sum() >= 3
        else None
    )
    has_zero = bool((value <= 0).any())
    rank = rank_trend(response, value, seed, sign, permutations) if has_zero else None
    test.expected = "slope < 0" if sign < 0 else "slope > 0"
    test.method = (
        f"blocked rank trend of {y} along the value (within-seed permutation); slope on "
        "positive values shown"
        if has_zero
        else f"OLS {y} ~ log value + C(seed); decides max(p_t, p_permutation)"
    )
    test.n = f"{len(runs)} runs, {len(np.unique(value))} values, {len(np.unique(seed))} seeds"
    interpolated = int(runs["interpolated"].sum()) if "interpolated" in runs else 0
    test.interpolated = f"{interpolated} of {len(runs)} readings" if interpolated else ""
    if fit is not None:
        test.estimate, test.ci_low, test.ci_high = fit.slope, fit.ci_low, fit.ci_high
    if has_zero and rank is not None:
        test.p, test.p_against = rank.p_perm, rank.p_perm_against
    elif not has_zero and fit is not None:
        test.p, test.p_against = fit.p_decide, fit.p_decide_against
    else:
        test.block(Reason.TOO_FEW_RUNS, f"too few runs or values to test ({test.n})")
    shown = SweepFit(
        test.claim, test.part, test.study, test.mechanism, test.clock, y, runs, fit, test
    )
    return test, effect_row(test, runs, y, fit, rank, interpolated), shown


def effect_row(test: Test, runs: pd.DataFrame, y: str, fit, rank, interpolated: int) -> dict:
    """The table row of an ``effect_test``: its design, the slope fit and the rank test."""
    has_zero = bool((runs["value"].to_numpy(float) <= 0).any())
    return {
        "study": test.study,
        "sweep": test.mechanism,
        "clock": test.clock,
        "metric": y,
        "runs": len(runs),
        "values": len(np.unique(runs["value"])),
        "seeds": len(np.unique(runs["seed"])),
        "read_steps": _steps(runs),
        "interpolated": interpolated,
        "expected": test.expected,
        "slope": test.estimate,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "p_t": fit.p if fit else np.nan,
        "p_permutation": fit.p_perm if fit else np.nan,
        "rank_rho": rank.rho if rank else np.nan,
        "p_rank": rank.p_perm if rank else np.nan,
        "decided_by": "rank test" if has_zero else "slope (t and permutation)",
        "lost": test.lost,
    }


def _steps(runs: pd.DataFrame) -> str:
    """The steps a sweep's runs are read at, per value ("0.01: 300, 0.02: 150")."""
    if "read_step" not in runs:
        return ""
    pairs = runs.groupby("value")["read_step"].agg(lambda s: "/".join(map(str, sorted(set(s)))))
    return ", ".join(f"{v:g}: {s}" for v, s in pairs.items())


def fit_relation(
    runs: pd.DataFrame,
    y: str,
    x: str,
    sign: int,
    settings: Settings,
    permutations: Permutations,
    control: list[str] | None = None,
) -> Fit | None:
    """The seed-blocked slope of column ``y`` on column ``x`` (plus ``control`` columns)."""
    covariates = runs[control].to_numpy(float) if control else None
    return blocked_fit(
        runs[y].to_numpy(float),
        runs[x].to_numpy(float),
        runs["seed"].to_numpy(),
        sign,
        settings.alpha,
        permutations,
        covariates,
    )


def fit_row(fit: Fit | None, **labels) -> dict:
    """A table row for a fit (deciding or not)."""
    keys = ("slope", "se", "ci_low", "ci_high", "p", "p_perm", "n")
    values = {k: getattr(fit, k) if fit else np.nan for k in keys}
    return {**labels, **values}
