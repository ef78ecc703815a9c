"""A relation between two run-level summaries across the runs of a study, seed-blocked and
controlled for training progress: shared by claims 2, 3 and 4.

``log NC ~ log GC + C(seed) + log train loss`` (and the like), one run one observation. The
training loss (its run-level summary on the fixed training sample) stands for training
progress: equal step is not equal progress across learning rates and batch sizes, and two
metrics that both fall as training proceeds are related through progress alone; the slope
that decides is the one that remains at equal training loss.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcstudy.analysis.claims.blocked import Fit, Permutations, blocked_fit
from gcstudy.analysis.claims.rule import Settings, Test

PROGRESS = "log_train_loss"


def usable(runs: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Complete runs with a finite value in every column."""
    ok = runs["complete"].to_numpy(bool).copy()
    for column in columns:
        ok &= np.isfinite(runs[column].to_numpy(float))
    return runs[ok]


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


def relation_test(test: Test, fit: Fit | None, runs: pd.DataFrame) -> Test:
    """Copy a fit into a claim test (too few runs: the test cannot decide)."""
    test.n = f"{len(runs)} runs, {runs['seed'].nunique()} seeds"
    if fit is None:
        test.problem = test.problem or f"too few runs to fit ({test.n})"
        return test
    test.estimate, test.ci_low, test.ci_high = fit.slope, fit.ci_low, fit.ci_high
    test.p, test.p_against = fit.p_decide, fit.p_decide_against
    return test


def fit_row(fit: Fit | None, **labels) -> dict:
    """A table row for a fit (deciding or not)."""
    keys = ("slope", "se", "ci_low", "ci_high", "p", "p_perm", "n")
    values = {k: getattr(fit, k) if fit else np.nan for k in keys}
    return {**labels, **values}
