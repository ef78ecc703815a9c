"""The decision rule: tests -> parts -> clocks -> claims, all parts, every clock, stable.

A **test** (one study, one mechanism, one design clock) is *supported* when its deciding
p-value for the predicted direction is below alpha; *contradicted* when its p-value against
that direction, Holm-adjusted over every test of its claim at the same clock (``holm``),
is below alpha; *inconclusive* otherwise, and always when its design
lost runs or it could not be estimated (``Test.blocked`` says why, ``Test.problem`` in
words). A few tests decide by a stated rule instead (``preset``).

At one clock, a **part** is supported when every one of its tests is (every study and every
acting mechanism), contradicted when any is, inconclusive otherwise, and untested when it
has no test (no study sweeps the factor; for claims 2 and 3: no mechanism acts on GC at that
clock). At one clock a **claim** is supported only when every part is (intersection-union:
each part tested at level alpha keeps the claim at level alpha), contradicted when any part
is, otherwise inconclusive, naming the parts not tested or not decided.

Across the **clocks** (``gcstudy.study.clocks``) a part or claim is supported only when it is
supported at every clock, contradicted only when it is contradicted at every clock, and
otherwise inconclusive, naming the verdict at each clock. The whole decision is made twice:
with the readings at the full budget and at ``STABILITY_FRACTION`` of it; a verdict that
differs between the two is *inconclusive: not converged*.

Each verdict carries why it is what it is as a field (``Reason``), not only in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from gcstudy.study.clocks import CLOCK_LABELS
from gcstudy.study.settings import StatsSettings

VERDICTS = ("supported", "contradicted", "inconclusive")
NO_CLOCK = ""  # claim 4: one design point per bound study, nothing to hold equal


class Reason(StrEnum):
    """Why a part or claim has its verdict (``Verdict.reason``), and why a test cannot
    decide (``Test.blocked``: the members from ``LOST_RUNS`` on)."""

    SUPPORTED = "supported at every clock"
    CONTRADICTED = "contradicted at every clock"
    NOT_SIGNIFICANT = "not significant"
    NOT_DECIDABLE = "not decidable (lost runs or too few to fit)"
    CLOCK_DEPENDENT = "the verdict depends on the clock"
    NOT_CONVERGED = "not converged"
    NOT_TESTED = "not tested"
    NO_MECHANISM = "no mechanism acts on GC"
    PARTS = "not every part supported"
    DIAGNOSTIC = "diagnostic only"
    # why a test cannot decide
    LOST_RUNS = "a grid point of the design has no complete run"
    TOO_FEW_RUNS = "too few runs or values to fit"
    ACTING_UNKNOWN = "claim 1 could not decide whether the factor acts on GC"
    NOTHING_TO_JUDGE = "nothing to judge"


BLOCKERS = (Reason.LOST_RUNS, Reason.TOO_FEW_RUNS, Reason.ACTING_UNKNOWN, Reason.NOTHING_TO_JUDGE)


# What the statistics stage reads from the config's ``stats`` section: declared, with its
# defaults and ranges, once for the config, the workflow and the command line.
Settings = StatsSettings


@dataclass
class Test:
    """One deciding test of one part of a claim, on one study (and mechanism, clock)."""

    __test__ = False  # not a pytest test class

    claim: int
    part: str
    study: str
    name: str
    expected: str
    method: str
    estimate: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    p: float = math.nan  # for the predicted direction
    p_against: float = math.nan  # against it (Holm-adjusted within the claim: p_against_holm)
    n: str = ""
    problem: str = ""  # why the test cannot decide, in words (``blocked``: as a field)
    lost: str = ""  # grid points of the design without a complete run
    preset: str = ""  # a verdict decided by the test's own stated rule
    reason: str = ""
    warning: str = ""  # shown beside the verdict (e.g. runs lost to divergence)
    mechanism: str = ""  # the swept factor (claims 1-3)
    clock: str = NO_CLOCK
    interpolated: str = ""  # runs whose reading lies between evaluations (say how many)
    diagnostic: str = ""  # why this test is shown but never decides (its part neither)
    p_against_holm: float = math.nan
    verdict: str = "inconclusive"
    blocked: Reason | None = None  # why the test cannot decide (one of ``BLOCKERS``)

    def __post_init__(self):
        if (self.blocked is None) == bool(self.problem) or self.blocked not in (None, *BLOCKERS):
            raise ValueError(
                f"test {self.name!r}: blocked = {self.blocked!r} with problem = "
                f"{self.problem!r}: expected both (blocked one of {[b.name for b in BLOCKERS]}) "
                "or neither"
            )

    def block(self, reason: Reason, words: str) -> None:
        """Mark the test as unable to decide: why (``reason``, one of ``BLOCKERS``) and the
        words the tables show. A test blocked already keeps its first reason."""
        if reason not in BLOCKERS:
            raise ValueError(f"{reason!r} does not block a test: expected one of {BLOCKERS}")
        if self.blocked is None:
            self.blocked, self.problem = reason, words

    def row(self) -> dict:
        """The test's row of the tables: every field but ``blocked`` (the tables give its
        words, ``problem``)."""
        return {k: v for k, v in self.__dict__.items() if k != "blocked"}


@dataclass
class Verdict:
    """A claim's or part's verdict, why (``reason``), and the sentence that explains it."""

    verdict: str
    detail: str
    reason: Reason = Reason.NOT_SIGNIFICANT
    parts: dict[str, str] = field(default_factory=dict)
    clocks: dict[str, str] = field(default_factory=dict)  # clock -> verdict there
    stability: str = ""  # the verdict from the readings at 2/3 of the budget

    @property
    def label(self) -> str:
        """The verdict as the report says it ("inconclusive: not converged")."""
        if self.verdict == "inconclusive" and self.reason in (
            Reason.NOT_CONVERGED,
            Reason.NOT_TESTED,
            Reason.CLOCK_DEPENDENT,
            Reason.DIAGNOSTIC,
            Reason.NO_MECHANISM,
        ):
            return f"inconclusive: {self.reason.value}"
        return self.verdict


def clock_name(clock: str) -> str:
    return CLOCK_LABELS.get(clock, "the bound study")


def holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, ``p_(i) (m - i + 1)`` made
    monotone by a running maximum, capped at 1 (what statsmodels' ``multipletests(p,
    method="holm")`` returns; that function runs a full garbage collection per call, which
    cost the claims most of their time)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p)
    scaled = np.minimum(1.0, np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p)))))
    adjusted = np.empty(len(p))
    adjusted[order] = scaled
    return adjusted


def decide_tests(tests: list[Test], alpha: float) -> None:
    """Set every test's verdict (module docstring); Holm over the tests of one claim at
    one clock (call once per clock)."""
    against = np.array([t.p_against for t in tests], dtype=float)
    finite = np.isfinite(against)
    adjusted = np.full(len(tests), np.nan)
    if finite.any():
        adjusted[finite] = holm(against[finite])
    for test, p_holm in zip(tests, adjusted, strict=True):
        test.p_against_holm = float(p_holm)
        if test.diagnostic:
            test.verdict, test.reason = "inconclusive", test.diagnostic
        elif test.preset:
            test.verdict = test.preset
        elif test.blocked is not None:
            test.verdict, test.reason = "inconclusive", test.problem
        elif np.isfinite(test.p) and test.p < alpha:
            test.verdict = "supported"
            test.reason = f"p = {test.p:.2g} < {alpha:g} in the predicted direction"
        elif np.isfinite(p_holm) and p_holm < alpha:
            test.verdict = "contradicted"
            test.reason = f"against the prediction: Holm p = {p_holm:.2g} < {alpha:g}"
        else:
            test.verdict = "inconclusive"
            test.reason = (
                f"p = {test.p:.2g} >= {alpha:g}" if np.isfinite(test.p) else "not estimable"
            )


def _where(test: Test) -> str:
    return f"{test.study}: {test.mechanism}" if test.mechanism else test.study


def part_verdict(tests: list[Test], untested: Reason = Reason.NOT_TESTED) -> Verdict:
    """A part at one clock from its tests (module docstring)."""
    if not tests:
        what = "no study of this config tests it"
        if untested is Reason.NO_MECHANISM:
            what = "claim 1 finds no factor acting on GC here"
        return Verdict("inconclusive", f"{untested.value}: {what}", untested)
    if all(t.diagnostic for t in tests):
        return Verdict("inconclusive", tests[0].diagnostic, Reason.DIAGNOSTIC)
    verdicts = [t.verdict for t in tests]
    where = ", ".join(f"{_where(t)} {t.verdict}" for t in tests)
    if "contradicted" in verdicts:
        return Verdict(
            "contradicted",
            f"contradicted by {verdicts.count('contradicted')} of {len(tests)} ({where})",
            Reason.CONTRADICTED,
        )
    if all(v == "supported" for v in verdicts):
        return Verdict("supported", f"supported by every test ({where})", Reason.SUPPORTED)
    blocked = all(t.blocked is not None and not t.preset for t in tests if t.verdict != "supported")
    return Verdict(
        "inconclusive",
        f"not supported by every test ({where})",
        Reason.NOT_DECIDABLE if blocked else Reason.NOT_SIGNIFICANT,
    )


def claim_verdict(parts: dict[str, Verdict]) -> Verdict:
    """All parts or nothing, said in words; parts that are diagnostics do not take part."""
    names = {p: part.label for p, part in parts.items()}
    parts = {p: v for p, v in parts.items() if v.reason is not Reason.DIAGNOSTIC}
    by = {v: [p for p, part in parts.items() if part.verdict == v] for v in VERDICTS}
    untested = [p for p, v in parts.items() if v.reason in (Reason.NOT_TESTED, Reason.NO_MECHANISM)]
    if by["contradicted"]:
        return Verdict(
            "contradicted",
            f"part {', '.join(by['contradicted'])} contradicted",
            Reason.CONTRADICTED,
            names,
        )
    if len(by["supported"]) == len(parts):
        return Verdict(
            "supported", f"every part supported ({', '.join(parts)})", Reason.SUPPORTED, names
        )
    pieces = []
    if untested:
        pieces.append(f"{', '.join(untested)} not tested")
    undecided = [p for p in by["inconclusive"] if p not in untested]
    if undecided:
        pieces.append(f"{', '.join(undecided)} inconclusive")
    if by["supported"]:
        pieces.append(f"{', '.join(by['supported'])} supported")
    reason = Reason.NOT_TESTED if untested and not undecided else Reason.PARTS
    return Verdict("inconclusive", "not every part supported: " + "; ".join(pieces), reason, names)


def over_clocks(by_clock: dict[str, Verdict]) -> Verdict:
    """Supported (contradicted) only when so at every clock; otherwise inconclusive, naming
    the verdict at each clock. One clock (claim 4): its verdict."""
    verdicts = {clock: v.verdict for clock, v in by_clock.items()}
    if len(by_clock) == 1:
        (only,) = by_clock.values()
        return Verdict(only.verdict, only.detail, only.reason, only.parts, verdicts)
    first = next(iter(by_clock.values()))
    parts = first.parts
    if len(set(verdicts.values())) == 1 and first.verdict != "inconclusive":
        reason = Reason.SUPPORTED if first.verdict == "supported" else Reason.CONTRADICTED
        return Verdict(first.verdict, reason.value, reason, parts, verdicts)
    reasons = {v.reason for v in by_clock.values()}
    if len(set(verdicts.values())) > 1:
        reason = Reason.CLOCK_DEPENDENT
    else:  # inconclusive everywhere: say the common reason, or the first
        reason = reasons.pop() if len(reasons) == 1 else Reason.NOT_SIGNIFICANT
    detail = "; ".join(
        f"{v.verdict} at {clock_name(clock)} ({v.detail})" for clock, v in by_clock.items()
    )
    return Verdict("inconclusive", detail, reason, parts, verdicts)


def converged(final: Verdict, early: Verdict) -> Verdict:
    """The final verdict if the readings at 2/3 of the budget give the same, else
    inconclusive: not converged."""
    final.stability = early.verdict
    if final.verdict == early.verdict:
        return final
    return Verdict(
        "inconclusive",
        f"not converged: {final.verdict} with the whole budget, {early.verdict} with 2/3 of "
        f"it ({final.detail})",
        Reason.NOT_CONVERGED,
        final.parts,
        final.clocks,
        early.verdict,
    )


def decide_per_clock(tests: list[Test], settings: Settings) -> None:
    """``decide_tests`` at each clock: Holm over one claim's tests at that clock (its
    mechanisms and studies), none across clocks (a contradiction must hold at every one)."""
    for clock in dict.fromkeys(t.clock for t in tests):
        decide_tests([t for t in tests if t.clock == clock], settings.alpha)
