"""The claims of the project (docs/claims.md) and the decisions on them.

One module per job: ``inputs`` (what the claims decide on: run-level summaries and each
sweep's readings at each design clock), ``factors`` (claim 1, per sweep and design clock;
it also says which factors *act* on GC), ``mechanisms`` (claims 2 and 3, per acting
mechanism and clock), ``collapse`` and ``transfer`` (the fits shown beside claims 2 and 3,
never deciding), ``bound`` (claim 4); ``relations`` holds the fits, ``blocked`` their
statistical engine (seed-blocked OLS and within-seed permutation tests), ``rule`` the
decision rule (all parts, every clock, stable at 2/3 of the budget). ``analyse`` runs them
all on a study file; ``tables`` writes what it decided (``gcstudy stats``).

Stable names for callers: ``analyse(dataset, settings)`` returns ``Results``;
``Results.verdict(key)`` is "supported", "contradicted" or "inconclusive" for a claim
(1-4) or a part ("1a".."1d", "2a", "3a", "3b", "4a".."4f"); ``Results.label(key)`` adds
the reason where the report says it ("inconclusive: not converged");
``Results.claims[key].reason`` is the reason as a ``rule.Reason``, ``.clocks`` the verdict
at each clock and ``.stability`` the verdict at 2/3 of the budget; ``Results.stability`` is
the whole decision at 2/3 (its tests and tables); ``Results.fits`` and
``Results.bound_runs`` are what the claim figures draw. Part 2a is one part (every acting
mechanism); 3a and 3b likewise. The GC-form parts 4d-4f are diagnostics (reason
``DIAGNOSTIC``, outside the all-parts rule) unless every bound run's config supplies a
Poincare constant. Changed in issue 18: part statements (per mechanism, no "at equal
training loss"), the tables ``collapse_vs_gc`` and ``transfer`` (now per mechanism and
clock), ``collapse_shown``, ``transfer_shown`` and ``readings`` (new); the placebo and the
mixed-model rows are gone (the per-mechanism test's permutation test is its placebo).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from gcstudy.analysis.claims import bound, collapse, factors, inputs, mechanisms, transfer
from gcstudy.analysis.claims.blocked import Permutations
from gcstudy.analysis.claims.relations import SweepFit
from gcstudy.analysis.claims.rule import (
    NO_CLOCK,
    VERDICTS,
    Reason,
    Settings,
    Test,
    Verdict,
    claim_verdict,
    converged,
    decide_per_clock,
    decide_tests,
    over_clocks,
    part_verdict,
)
from gcstudy.study.clocks import STABILITY_FRACTION

CLAIMS = {
    1: "Larger learning rate, smaller batch, larger L2 and larger GC penalty lower the GC",
    2: "Each of these mechanisms, where it lowers GC, also lowers NC on the source classes",
    3: "Where a mechanism lowers source GC, it also lowers target NC and raises few-shot accuracy",
    4: "The NCC-error bound is non-vacuous over most of training, lies above the NCC test "
    "error and tracks it",
}
PARTS = {**factors.PARTS, **mechanisms.PARTS_2, **mechanisms.PARTS_3, **bound.PARTS}

__all__ = ["CLAIMS", "PARTS", "VERDICTS", "Reason", "Results", "Settings", "Test", "analyse"]


@dataclass
class Decision:
    """Every verdict from the readings at one fraction of the budget."""

    fraction: float
    tests: list[Test] = field(default_factory=list)
    claims: dict[int, Verdict] = field(default_factory=dict)
    parts: dict[str, Verdict] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    fits: list[SweepFit] = field(default_factory=list)
    bound_runs: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Results:
    """The verdicts (the final ones, checked against those at 2/3 of the budget), the
    tests behind them, every table of the statistics stage, and what the figures draw:
    ``fits``, each sweep of claims 1-3 at each clock with the fit and readings its test
    decided on (``relations.SweepFit``), and ``bound_runs``, the runs claim 4 judged in
    each bound study (run ids)."""

    settings: Settings
    tests: list[Test] = field(default_factory=list)
    claims: dict[int, Verdict] = field(default_factory=dict)
    parts: dict[str, Verdict] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    stability: Decision | None = None
    fits: list[SweepFit] = field(default_factory=list)
    bound_runs: dict[str, list[str]] = field(default_factory=dict)

    def _get(self, key: int | str) -> Verdict:
        return self.claims[key] if isinstance(key, int) else self.parts[key]

    def verdict(self, key: int | str) -> str:
        """The verdict of a claim (1-4) or of a part ("1a")."""
        return self._get(key).verdict

    def label(self, key: int | str) -> str:
        """The verdict with its reason where the report names it."""
        return self._get(key).label

    def records(self) -> list[dict]:
        """Each claim, then its parts: statement, verdict, label, reason (``Reason`` name),
        the verdict at each clock (``clocks``; "" for claim 4's bound study), the verdict
        at 2/3 of the budget (``stability``) and the detail in words."""
        rows = []
        for number, statement in CLAIMS.items():
            keyed = [(str(number), statement, self.claims[number])]
            keyed += [(p, t, self.parts[p]) for p, t in PARTS.items() if p.startswith(str(number))]
            for key, text, verdict in keyed:
                rows.append(
                    {
                        "claim": key,
                        "statement": text,
                        "verdict": verdict.verdict,
                        "label": verdict.label,
                        "reason": verdict.reason.name,
                        "clocks": dict(verdict.clocks),
                        "stability": verdict.stability,
                        "detail": verdict.detail,
                    }
                )
        return rows

    def claims_table(self) -> pd.DataFrame:
        """``records`` as a flat table: one column per clock ("at steps", ...)."""
        rows = []
        for record in self.records():
            clocks = record.pop("clocks")
            stability, detail = record.pop("stability"), record.pop("detail")
            rows.append(
                {
                    **record,
                    **{f"at {c or 'bound study'}": v for c, v in clocks.items()},
                    "at 2/3 of the budget": stability,
                    "detail": detail,
                }
            )
        return pd.DataFrame(rows)


def analyse(dataset: xr.Dataset, settings: Settings | None = None, extras: bool = True) -> Results:
    """Decide every claim on a study file: at the full budget and, for the stability
    check, at 2/3 of it. ``extras=False`` skips the fits that never decide (for the
    calibration benchmark)."""
    settings = settings or Settings()
    permutations = Permutations(settings.permutations, np.random.default_rng(settings.seed))
    frame = inputs.run_frame(dataset, settings.summary_window)
    studies = inputs.studies_of(dataset)
    final = decide(dataset, frame, studies, settings, permutations, 1.0)
    early = decide(dataset, frame, studies, settings, permutations, STABILITY_FRACTION)
    results = Results(
        settings, final.tests, stability=early, fits=final.fits, bound_runs=final.bound_runs
    )
    for key, verdict in final.parts.items():
        results.parts[key] = converged(verdict, early.parts[key])
    for key, verdict in final.claims.items():
        results.claims[key] = converged(verdict, early.claims[key])
    results.tables.update(final.tables)
    if extras:
        results.tables["collapse_shown"] = collapse.shown(frame, studies, settings, permutations)
        results.tables["transfer_shown"] = transfer.shown(frame, studies, settings, permutations)
    results.tables["tests"] = pd.DataFrame([t.row() for t in results.tests])
    results.tables["claims"] = results.claims_table()
    results.tables["runs"] = frame
    return results


def decide(dataset, frame, studies, settings: Settings, permutations, fraction: float) -> Decision:
    """Every test, part and claim from the readings at ``fraction`` of the budget."""
    out = Decision(fraction)
    readings = inputs.clock_readings(dataset, frame, studies, settings.clocks, fraction)
    out.tables["readings"] = readings
    tests1, out.tables["sweep_slopes"], fits1 = (
        factors.decide(readings, frame, studies, settings, permutations)
        if len(readings)
        else ([], pd.DataFrame(), [])
    )
    decide_per_clock(tests1, settings)
    acting = factors.acting(tests1)
    tests2, out.tables["collapse_vs_gc"], fits2 = (
        mechanisms.decide(2, readings, acting, settings, permutations)
        if len(readings)
        else ([], pd.DataFrame(), [])
    )
    tests3, out.tables["transfer"], fits3 = (
        mechanisms.decide(3, readings, acting, settings, permutations)
        if len(readings)
        else ([], pd.DataFrame(), [])
    )
    out.fits = fits1 + fits2 + fits3
    decide_per_clock(tests2, settings)
    decide_per_clock(tests3, settings)
    tests4, out.tables["bound"], out.bound_runs = bound.decide(
        bound.up_to(dataset, fraction), studies, settings, permutations
    )
    decide_tests(tests4, settings.alpha)
    # a part of claim 2 or 3 without a test: no acting mechanism where its metric is
    # measured, or (no study measures it) not tested
    measured = {part: mechanisms.measured(readings, part) for part in mechanisms.METRICS}
    for number, tests in zip(CLAIMS, (tests1, tests2, tests3, tests4), strict=True):
        clocks = settings.clocks if number < 4 else (NO_CLOCK,)
        names = [p for p in PARTS if p.startswith(str(number))]
        by_clock = {}
        for clock in clocks:
            at = [t for t in tests if t.clock == clock]
            parts = {
                p: part_verdict(
                    [t for t in at if t.part == p],
                    Reason.NO_MECHANISM if measured.get(p) else Reason.NOT_TESTED,
                )
                for p in names
            }
            by_clock[clock] = (parts, claim_verdict(parts))
        for p in names:
            out.parts[p] = over_clocks({c: parts[p] for c, (parts, _) in by_clock.items()})
        out.claims[number] = over_clocks({c: claim for c, (_, claim) in by_clock.items()})
        out.tests += tests
    return out
