"""Claim 2, per study with sweeps: lower GC goes with lower NC on the source classes.

Decided across the study's complete runs by ``log NC ~ log GC + C(seed) + log train loss``
on run-level summaries (``relations``), slope > 0: the t-test and the within-seed
permutation test must both reject. Shown, never deciding:

* the **placebo**: the same rule with each run's NC replaced by that of another run of the
  same seed (``placebo_draws`` random within-seed permutations): it must come out supported
  in about alpha of the draws, or the rule finds relations where there are none;
* **without the progress control** (the slope of NC on GC alone, seed-blocked);
* the **definitional check** ``log geometric collapse ~ log GC + C(seed)``: geometric
  collapse is built from the per-class GC, so a relation is expected by construction;
* a trajectory-level **sensitivity** fit (statsmodels ``MixedLM``: ``log NC ~ log GC +
  log train loss + C(step)`` over every run-step after step 0, a random intercept per seed
  and a variance component per run).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import xarray as xr

from gcstudy.analysis.claims.relations import (
    PROGRESS,
    fit_relation,
    fit_row,
    relation_test,
    usable,
)
from gcstudy.analysis.claims.rule import Settings, Test
from gcstudy.analysis.summaries import lost_runs, swept_factors

PARTS = {"2a": "lower GC <-> lower NC on the source classes, at equal training loss"}
PLACEBO_DRAWS = 100


def decide(dataset, frame, studies, settings: Settings, permutations, extras: bool = True):
    tests, rows = [], []
    for study, info in studies.items():
        if not swept_factors(info):
            continue
        runs = usable(frame[frame["study"] == study], ["log_gc", "log_nc", PROGRESS])
        fit = fit_relation(runs, "log_nc", "log_gc", 1, settings, permutations, [PROGRESS])
        lost = lost_runs(frame, info, study)
        test = Test(
            claim=2,
            part="2a",
            study=study,
            name="NC vs GC at equal training loss",
            expected="slope > 0",
            method="OLS log NC ~ log GC + C(seed) + log train loss on run summaries; t-test "
            "and within-seed (Freedman-Lane) permutation test",
            warning=f"runs lost ({lost}): the verdict rests on the others" if lost else "",
        )
        tests.append(relation_test(test, fit, runs))
        rows.append(
            fit_row(
                fit, study=study, relation="NC vs GC, given train loss and seed", role="decides"
            )
        )
        if not extras:
            continue
        rows.append(
            fit_row(
                fit_relation(runs, "log_nc", "log_gc", 1, settings, permutations),
                study=study,
                relation="NC vs GC, given seed (no progress control)",
                role="shown",
            )
        )
        definitional = usable(frame[frame["study"] == study], ["log_gc", "log_geometric_collapse"])
        rows.append(
            fit_row(
                fit_relation(
                    definitional, "log_geometric_collapse", "log_gc", 1, settings, permutations
                ),
                study=study,
                relation="geometric collapse vs GC, given seed",
                role="definitional check (does not decide)",
            )
        )
        rows.append(placebo_row(runs, study, settings, permutations))
        rows.append(mixed_model_row(dataset, runs, study))
    return tests, pd.DataFrame(rows)


def placebo_row(runs: pd.DataFrame, study: str, settings: Settings, permutations) -> dict:
    """How often the deciding rule says 'supported' when NC is another run's (same seed)."""
    supported = 0
    placebo = runs.copy()
    seeds = runs["seed"].to_numpy()
    for _ in range(PLACEBO_DRAWS):
        order = np.arange(len(runs))
        for seed in np.unique(seeds):
            members = np.flatnonzero(seeds == seed)
            order[members] = permutations.rng.permutation(members)
        placebo["log_nc"] = runs["log_nc"].to_numpy()[order]
        fit = fit_relation(placebo, "log_nc", "log_gc", 1, settings, permutations, [PROGRESS])
        supported += bool(fit is not None and fit.p_decide < settings.alpha)
    return {
        "study": study,
        "relation": f"placebo: NC of another run of the same seed, {PLACEBO_DRAWS} draws",
        "role": "placebo check (does not decide)",
        "slope": np.nan,
        "p": supported / PLACEBO_DRAWS,
        "n": len(runs),
        "note": f"supported in {supported} of {PLACEBO_DRAWS} draws "
        f"(expected about {settings.alpha * PLACEBO_DRAWS:.0f})",
    }


def mixed_model_row(dataset: xr.Dataset, runs: pd.DataFrame, study: str) -> dict:
    """Trajectory-level sensitivity fit (module docstring); never decides."""
    import statsmodels.formula.api as smf

    row = {
        "study": study,
        "relation": "MixedLM log NC ~ log GC + log loss + C(step), seed RE, "
        "run VC (every step > 0)",
        "role": "sensitivity (does not decide)",
    }
    chosen = dataset.sel(run=runs.index.to_numpy())[["gc", "nc_train", "train_loss"]]
    long = chosen.to_dataframe().reset_index()
    long = long[(long["step"] > 0)].dropna()
    long = long[(long[["gc", "nc_train", "train_loss"]] > 0).all(axis=1)]
    long = long.assign(
        log_gc=np.log(long["gc"]),
        log_nc=np.log(long["nc_train"]),
        log_loss=np.log(long["train_loss"]),
        seed=runs.loc[long["run"], "seed"].to_numpy(),
    )
    if long["run"].nunique() < 4 or long["seed"].nunique() < 2:
        return {**row, "note": "too few runs or seeds"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = smf.mixedlm(
                "log_nc ~ log_gc + log_loss + C(step)",
                long,
                groups="seed",
                re_formula="1",
                vc_formula={"run": "0 + C(run)"},
            ).fit(reml=True)
        low, high = fit.conf_int().loc["log_gc"]
        return {
            **row,
            "slope": float(fit.params["log_gc"]),
            "se": float(fit.bse["log_gc"]),
            "ci_low": float(low),
            "ci_high": float(high),
            "p": float(fit.pvalues["log_gc"]),
            "n": len(long),
            "note": "two-sided Wald p" + ("" if fit.converged else "; did not converge"),
        }
    except (ValueError, np.linalg.LinAlgError) as error:
        return {**row, "note": f"not fitted: {error}"}
