"""The claims of SCIENCE.md section 6 and the decisions on them.

One module per claim family, each deciding from the run-level summaries of
``gcstudy.analysis.summaries``: ``factors`` (claim 1), ``collapse`` (claim 2), ``transfer``
(claim 3), ``bound`` (claim 4); ``blocked`` is their statistical engine (seed-blocked OLS
and within-seed permutation tests), ``rule`` the all-parts decision rule. ``analyse`` runs
them all on a study file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from gcstudy.analysis import summaries
from gcstudy.analysis.claims import bound, collapse, factors, transfer
from gcstudy.analysis.claims.blocked import Permutations
from gcstudy.analysis.claims.rule import (
    VERDICTS,
    Settings,
    Test,
    Verdict,
    claim_verdict,
    decide_tests,
    part_verdict,
)

CLAIMS = {
    1: "Larger learning rate, smaller batch, larger L2 and larger GC penalty lower the GC",
    2: "Lower GC goes with lower NC on the source classes",
    3: "Lower source GC goes with lower target NC and higher few-shot accuracy",
    4: "The NCC-error bounds are non-vacuous, lie above the NCC test error and track it",
}
PARTS = {**factors.PARTS, **collapse.PARTS, **transfer.PARTS, **bound.PARTS}

__all__ = ["CLAIMS", "PARTS", "VERDICTS", "Results", "Settings", "Test", "analyse"]


@dataclass
class Results:
    """The verdicts, the tests behind them and every table of the statistics stage."""

    settings: Settings
    tests: list[Test] = field(default_factory=list)
    claims: dict[int, Verdict] = field(default_factory=dict)
    parts: dict[str, Verdict] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def verdict(self, key: int | str) -> str:
        """The verdict of a claim (1-4) or of a part ("1a")."""
        return (self.claims[key] if isinstance(key, int) else self.parts[key]).verdict

    def claims_table(self) -> pd.DataFrame:
        rows = []
        for number, statement in CLAIMS.items():
            claim = self.claims[number]
            rows.append(
                {
                    "claim": str(number),
                    "statement": statement,
                    "verdict": claim.verdict,
                    "detail": claim.detail,
                }
            )
            for part, text in PARTS.items():
                if part.startswith(str(number)):
                    verdict = self.parts[part]
                    rows.append(
                        {
                            "claim": part,
                            "statement": text,
                            "verdict": verdict.verdict,
                            "detail": verdict.detail,
                        }
                    )
        return pd.DataFrame(rows)


def analyse(dataset: xr.Dataset, settings: Settings | None = None, extras: bool = True) -> Results:
    """Decide every claim on a study file. ``extras=False`` skips what never decides (the
    placebo and the mixed-model sensitivity fit), for the calibration benchmark."""
    settings = settings or Settings()
    permutations = Permutations(settings.permutations, np.random.default_rng(settings.seed))
    frame = summaries.run_frame(dataset, settings.window)
    studies = summaries.studies_of(dataset)
    results = Results(settings)
    tests1, results.tables["sweep_slopes"] = factors.decide(frame, studies, settings, permutations)
    tests2, results.tables["collapse_vs_gc"] = collapse.decide(
        dataset, frame, studies, settings, permutations, extras
    )
    tests3, results.tables["transfer"] = transfer.decide(frame, studies, settings, permutations)
    tests4, results.tables["bound"] = bound.decide(dataset, frame, studies, settings, permutations)
    for number, tests in zip(CLAIMS, (tests1, tests2, tests3, tests4), strict=True):
        decide_tests(tests, settings.alpha)
        parts = {
            part: part_verdict([t for t in tests if t.part == part])
            for part in PARTS
            if part.startswith(str(number))
        }
        results.parts.update(parts)
        results.claims[number] = claim_verdict(parts)
        results.tests += tests
    results.tables["tests"] = pd.DataFrame([t.row() for t in results.tests])
    results.tables["claims"] = results.claims_table()
    results.tables["runs"] = frame
    return results
