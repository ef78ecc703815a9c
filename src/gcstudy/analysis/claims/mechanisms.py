"""Claims 2 and 3, per mechanism: each factor that acts on GC (claim 1, at a clock) moves
NC on the source classes (claim 2), target NC and few-shot accuracy (claim 3) with it.

For every (study, factor, clock) that claim 1 finds acting, in the direction ``s`` of the
factor's effect on log GC: ``relations.effect_test`` of the sweep's runs read at that clock
(where claim 1 could not decide, e.g. a sweep lost runs, the mechanism's test is
undecidable, with the reason, so that the claim cannot be supported without it),

* 2a: log NC (source classes, training features) moves with sign ``s``;
* 3a: log target NC (transfer studies) moves with sign ``s``;
* 3b: 5-way 5-shot NCC accuracy (traced during training, at the same step) moves with
  sign ``-s``: lower GC, higher accuracy.

No quantity measured after treatment (train loss, accuracy of the source task, NCC error)
enters a deciding fit: they are read out from the same features as NC, and holding one
fixed conditions on a collider (docs/claims.md).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcstudy.analysis.claims.relations import SweepFit, effect_test, usable
from gcstudy.analysis.claims.rule import Reason, Settings, Test
from gcstudy.study.factors import FACTOR_LABELS

PARTS_2 = {"2a": "each factor that lowers GC lowers NC on the source classes"}
PARTS_3 = {
    "3a": "each factor that lowers source GC lowers target NC",
    "3b": "each factor that lowers source GC raises few-shot accuracy",
}
# part -> (reading column, sign relative to the GC effect, what)
METRICS = {
    "2a": ("log_nc", 1, "NC"),
    "3a": ("log_target_nc", 1, "target NC"),
    "3b": ("fewshot_accuracy", -1, "5-shot accuracy"),
}


def decide(
    claim: int,
    readings: pd.DataFrame,
    acting: dict,
    settings: Settings,
    permutations,
) -> tuple[list[Test], pd.DataFrame, list[SweepFit]]:
    """The tests of claim 2 or 3 on every acting mechanism, their table, and a ``SweepFit``
    for every sweep, clock and part whose metric the sweep measures (without a test where
    the factor does not act on GC at that clock)."""
    parts = PARTS_2 if claim == 2 else PARTS_3
    tests, rows, fits = [], [], []
    swept = readings.groupby(["study", "factor"], sort=False)
    measures = {key: sweep_measures(sweep, parts) for key, sweep in swept}
    groups = readings.groupby(["study", "factor", "clock"], sort=False)
    for (study, factor, clock), runs in groups:
        for part in measures[(study, factor)]:
            column, relative, what = METRICS[part]
            if (study, factor, clock) not in acting or not finite(runs, column):
                fits.append(
                    SweepFit(claim, part, study, factor, clock, column, usable(runs, [column]))
                )
                continue
            gc_sign, unknown = acting[(study, factor, clock)]
            direction = "falls" if gc_sign < 0 else "rises"
            test = Test(
                claim=claim,
                part=part,
                study=study,
                name=f"{what} vs {FACTOR_LABELS[factor]} (GC {direction} as it rises)",
                expected="",
                method="",
                mechanism=factor,
                clock=clock,
            )
            if unknown:
                test.block(
                    Reason.ACTING_UNKNOWN,
                    f"claim 1 could not decide whether it acts on GC: {unknown}",
                )
            sign = relative * (gc_sign or 1)
            test, row, fit = effect_test(test, runs, column, sign, settings, permutations)
            tests.append(test)
            rows.append({**row, "part": part, "gc_sign": gc_sign, "role": "decides " + part})
            fits.append(fit)
    return tests, pd.DataFrame(rows), fits


def finite(runs: pd.DataFrame, column: str) -> bool:
    """Whether some run has a finite value in ``column``."""
    return column in runs and bool(np.isfinite(runs[column].to_numpy(float)).any())


def sweep_measures(sweep: pd.DataFrame, parts) -> list[str]:
    """The parts whose metric a sweep measures at some clock (none of claim 3 without a
    transfer evaluation)."""
    return [part for part in parts if finite(sweep, METRICS[part][0])]


def measured(readings: pd.DataFrame, part: str) -> bool:
    """Whether some sweep measures the metric of a part of claim 2 or 3."""
    return finite(readings, METRICS[part][0])
