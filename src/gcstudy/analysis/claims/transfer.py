"""Claim 3, per transfer study: lower source GC -> lower target NC -> higher few-shot accuracy.

Decided on the final few-shot table (``fewshot.nc``: target NC on every target image, 5-way
5-shot NCC accuracy over 10,000 episodes) against the source GC of the same final network
(its last evaluation), across the study's complete runs, seed-blocked and at equal training
loss (also at the last evaluation; ``relations``): 3a ``log target NC ~ log GC`` (slope >
0) and 3b ``accuracy ~ log GC`` (slope < 0). The window summaries would compare a network
at the end with an average over the last evaluations, and progress is not linear in that
average: in simulation that left a progress-only null rejected in ~10 % of studies.
Target NC -> accuracy is shown (descriptive): it links the two parts but does not decide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gcstudy.analysis.claims.relations import fit_relation, fit_row, relation_test, usable
from gcstudy.analysis.claims.rule import Settings, Test
from gcstudy.analysis.summaries import lost_runs

PARTS = {
    "3a": "lower source GC -> lower target NC (at equal training loss)",
    "3b": "lower source GC -> higher few-shot accuracy (at equal training loss)",
}
GC, LOSS = "log_gc_final", "log_train_loss_final"
RELATIONS = (  # part, y column, sign, what
    ("3a", "log_fewshot_target_nc", 1, "target NC vs source GC"),
    ("3b", "fewshot_accuracy", -1, "5-shot accuracy vs source GC"),
)


def decide(frame: pd.DataFrame, studies: dict, settings: Settings, permutations):
    tests, rows = [], []
    for study, info in studies.items():
        runs = frame[frame["study"] == study]
        if not np.isfinite(runs["fewshot_accuracy"].to_numpy(float)).any():
            continue
        lost = lost_runs(frame, info, study)
        for part, y, sign, what in RELATIONS:
            chosen = usable(runs, [GC, y, LOSS])
            fit = fit_relation(chosen, y, GC, sign, settings, permutations, [LOSS])
            test = Test(
                claim=3,
                part=part,
                study=study,
                name=f"{what} at equal training loss",
                expected="slope > 0" if sign > 0 else "slope < 0",
                method=f"OLS {y} ~ log GC + C(seed) + log train loss (fewshot.nc; GC and "
                "loss at the last evaluation); t-test and within-seed permutation test",
                warning=f"runs lost ({lost}): the verdict rests on the others" if lost else "",
            )
            tests.append(relation_test(test, fit, chosen))
            rows.append(fit_row(fit, study=study, relation=what, role="decides " + part))
        chosen = usable(runs, ["log_fewshot_target_nc", "fewshot_accuracy"])
        fit = fit_relation(
            chosen, "fewshot_accuracy", "log_fewshot_target_nc", -1, settings, permutations
        )
        rows.append(
            fit_row(
                fit,
                study=study,
                relation="5-shot accuracy vs target NC",
                role="descriptive (does not decide)",
            )
        )
    return tests, pd.DataFrame(rows)
