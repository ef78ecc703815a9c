"""Claim 1, per sweep and design clock: larger lr, smaller batch, larger L2, larger GC
penalty -> lower GC.

For each study, swept factor and clock: ``relations.effect_test`` of the run's log GC, read
where the sweep's runs have made equal progress by that clock, on the swept value, in the
predicted direction (``SIGN``). A factor whose test is supported (or contradicted) at a
clock **acts** on GC there, in the predicted (or the opposite) direction: claims 2 and 3
then ask whether it moves NC, target NC and few-shot accuracy with it (``acting``).
"""

from __future__ import annotations

import pandas as pd

from gcstudy.analysis.claims.inputs import lost_runs
from gcstudy.analysis.claims.relations import SweepFit, effect_test
from gcstudy.analysis.claims.rule import Reason, Settings, Test
from gcstudy.study.factors import FACTOR_LABELS

PARTS = {
    "1a": "larger learning rate -> lower GC",
    "1b": "smaller batch -> lower GC",
    "1c": "larger L2 -> lower GC",
    "1d": "larger GC penalty -> lower GC",
}
PART_OF = {"lr": "1a", "batch_size": "1b", "l2": "1c", "gc_penalty": "1d"}
SIGN = {"lr": -1, "batch_size": 1, "l2": -1, "gc_penalty": -1}  # predicted d log GC / d factor


def decide(
    readings: pd.DataFrame, frame: pd.DataFrame, studies: dict, settings: Settings, permutations
) -> tuple[list[Test], pd.DataFrame, list[SweepFit]]:
    """The test of every sweep at every clock, the ``sweep_slopes`` table and the fits the
    tests decided on."""
    tests, rows, fits = [], [], []
    for (study, factor, clock), runs in readings.groupby(["study", "factor", "clock"], sort=False):
        lost = lost_runs(frame, studies[study], study, factor)
        test = Test(
            claim=1,
            part=PART_OF[factor],
            study=study,
            name=f"GC vs {FACTOR_LABELS[factor]}",
            expected="",
            method="",
            mechanism=factor,
            clock=clock,
            lost=f"lost grid points, sweep not decided: {lost}" if lost else "",
        )
        if lost:
            test.block(Reason.LOST_RUNS, test.lost)
        test, row, fit = effect_test(test, runs, "log_gc", SIGN[factor], settings, permutations)
        tests.append(test)
        rows.append(row)
        fits.append(fit)
    return tests, pd.DataFrame(rows), fits


def acting(tests: list[Test]) -> dict[tuple[str, str, str], tuple[int, str]]:
    """(study, factor, clock) -> (the sign of the factor's significant effect on log GC,
    ""): claim 1's test supported gives the predicted sign, contradicted the opposite; or
    (0, why in words) where claim 1 could not decide (``Test.blocked``: lost runs, too few
    to fit)."""
    out = {}
    for test in tests:
        key = (test.study, test.mechanism, test.clock)
        if test.verdict in ("supported", "contradicted"):
            out[key] = (SIGN[test.mechanism] * (1 if test.verdict == "supported" else -1), "")
        elif test.blocked is not None:
            out[key] = (0, test.problem)
    return out
