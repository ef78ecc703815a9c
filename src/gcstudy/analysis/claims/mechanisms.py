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

from gcstudy.analysis.claims.relations import effect_test
from gcstudy.analysis.claims.rule import Settings, Test
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
) -> tuple[list[Test], pd.DataFrame]:
    """The tests of claim 2 or 3 on every acting mechanism."""
    parts = PARTS_2 if claim == 2 else PARTS_3
    tests, rows = [], []
    groups = readings.groupby(["study", "factor", "clock"], sort=False)
    for (study, factor, clock), runs in groups:
        if (study, factor, clock) not in acting:
            continue
        gc_sign, unknown = acting[(study, factor, clock)]
        for part in parts:
            column, relative, what = METRICS[part]
            if not np.isfinite(runs[column].to_numpy(float)).any():
                continue  # not measured in this study (no transfer evaluation)
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
                test.problem = f"claim 1 could not decide whether it acts on GC: {unknown}"
            test, row = effect_test(
                test, runs, column, relative * (gc_sign or 1), settings, permutations
            )
            tests.append(test)
            rows.append({**row, "part": part, "gc_sign": gc_sign, "role": "decides " + part})
    return tests, pd.DataFrame(rows)


def measured(readings: pd.DataFrame, part: str) -> bool:
    """Whether some sweep measures the metric of a part of claim 2 or 3."""
    column = METRICS[part][0]
    return column in readings and bool(np.isfinite(readings[column].to_numpy(float)).any())
