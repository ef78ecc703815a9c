"""Claim 1, per sweep: larger lr, smaller batch, larger L2, larger GC penalty -> lower GC.

For each study and swept factor, over the sweep's complete runs (the base point included):

* positive values: OLS ``log GC ~ log value + C(seed)`` (GC: the run-level summary), slope
  one-sided in the predicted direction; supported only if the t-test and the within-seed
  permutation test both reject (``Fit.p_decide``);
* values with 0 (L2 or penalty off): the blocked rank trend test decides (``rank_trend``);
  the slope is fitted on the positive values and shown;
* a grid point (value, seed) without a complete run (diverged, not aggregated) makes the
  sweep inconclusive, with the points named: the missing run is not missing at random.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcstudy.analysis.claims.blocked import blocked_fit, rank_trend
from gcstudy.analysis.claims.rule import Settings, Test
from gcstudy.analysis.summaries import FACTOR_LABELS, lost_runs, sweep_members, swept_factors

PARTS = {
    "1a": "larger learning rate -> lower GC",
    "1b": "smaller batch -> lower GC",
    "1c": "larger L2 -> lower GC",
    "1d": "larger GC penalty -> lower GC",
}
PART_OF = {"lr": "1a", "batch_size": "1b", "l2": "1c", "gc_penalty": "1d"}
SIGN = {"lr": -1, "batch_size": 1, "l2": -1, "gc_penalty": -1}  # predicted d log GC / d factor


def decide(
    frame: pd.DataFrame, studies: dict, settings: Settings, permutations
) -> tuple[list, pd.DataFrame]:
    tests, rows = [], []
    for study, info in studies.items():
        for factor in swept_factors(info):
            test, row = sweep_test(frame, study, info, factor, settings, permutations)
            tests.append(test)
            rows.append(row)
    return tests, pd.DataFrame(rows)


def sweep_test(frame, study: str, info: dict, factor: str, settings: Settings, permutations):
    runs = sweep_members(frame, study, factor)
    runs = runs[runs["complete"] & np.isfinite(runs["log_gc"])]
    value, y, seed = (
        runs[factor].to_numpy(float),
        runs["log_gc"].to_numpy(),
        runs["seed"].to_numpy(),
    )
    sign, positive = SIGN[factor], value > 0
    fit = (
        blocked_fit(
            y[positive], np.log(value[positive]), seed[positive], sign, settings.alpha, permutations
        )
        if positive.sum() >= 3
        else None
    )
    has_zero = bool((value <= 0).any())
    rank = rank_trend(y, value, seed, sign, permutations) if has_zero else None
    test = Test(
        claim=1,
        part=PART_OF[factor],
        study=study,
        name=f"GC vs {FACTOR_LABELS[factor]}",
        expected="slope < 0" if sign < 0 else "slope > 0",
        method="blocked rank trend (within-seed permutation); slope on positive values shown"
        if has_zero
        else "OLS log GC ~ log value + C(seed), t-test and within-seed permutation test",
        n=f"{len(runs)} runs, {len(np.unique(value))} values, {len(np.unique(seed))} seeds",
        problem=_lost(frame, info, study, factor),
    )
    if fit is not None:
        test.estimate, test.ci_low, test.ci_high = fit.slope, fit.ci_low, fit.ci_high
    if has_zero and rank is not None:
        test.p, test.p_against = rank.p_perm, rank.p_perm_against
    elif not has_zero and fit is not None:
        test.p, test.p_against = fit.p_decide, fit.p_decide_against
    elif not test.problem:
        test.problem = f"too few runs or values to test ({test.n})"
    row = {
        "study": study,
        "sweep": factor,
        "runs": len(runs),
        "values": len(np.unique(value)),
        "seeds": len(np.unique(seed)),
        "expected": test.expected,
        "slope": test.estimate,
        "ci_low": test.ci_low,
        "ci_high": test.ci_high,
        "p_t": fit.p if fit else np.nan,
        "p_permutation": fit.p_perm if fit else np.nan,
        "rank_rho": rank.rho if rank else np.nan,
        "p_rank": rank.p_perm if rank else np.nan,
        "decided_by": "rank test" if has_zero else "slope (t and permutation)",
        "lost": test.problem if test.problem.startswith("lost") else "",
    }
    return test, row


def _lost(frame, info: dict, study: str, factor: str) -> str:
    lost = lost_runs(frame, info, study, factor)
    return f"lost grid points, sweep not decided: {lost}" if lost else ""
