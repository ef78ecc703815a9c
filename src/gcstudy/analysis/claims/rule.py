"""The decision rule: tests -> parts -> claims, all parts or nothing.

A **test** (one study, one relation) is *supported* when its deciding p-value for the
predicted direction is below alpha; *contradicted* when its p-value against that direction,
Holm-adjusted over every test of its claim (statsmodels ``multipletests``), is below alpha;
*inconclusive* otherwise, and always when its design lost runs or it could not be
estimated (the reason is named). A few tests decide by a stated rule instead (``preset``).

A **part** is supported when every one of its tests is (it holds in every study that tests
it); contradicted when any is; not tested when no study tests it; inconclusive otherwise.
A **claim** is supported only when every part is supported (intersection-union: each part
tested at level alpha keeps the claim at level alpha, no adjustment needed); contradicted
when any part is contradicted; otherwise inconclusive, naming the parts not tested or not
decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from statsmodels.stats.multitest import multipletests

VERDICTS = ("supported", "contradicted", "inconclusive")


@dataclass
class Settings:
    """What the statistics stage reads from the config's ``stats`` section."""

    alpha: float = 0.05
    window: int = 3  # run-level summary: mean of the log metric over the last k evaluations
    permutations: int = 2000
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"stats.alpha = {self.alpha}: expected a level in (0, 0.5)")
        if self.window < 1:
            raise ValueError(f"stats.summary_window = {self.window}: expected >= 1")
        if self.permutations < 99:
            raise ValueError(f"stats.permutations = {self.permutations}: expected >= 99")


@dataclass
class Test:
    """One deciding test of one part of a claim, on one study."""

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
    problem: str = ""  # why the test cannot decide (lost runs, too few runs, ...)
    preset: str = ""  # a verdict decided by the test's own stated rule
    reason: str = ""
    warning: str = ""  # shown beside the verdict (e.g. runs lost to divergence)
    p_against_holm: float = math.nan
    verdict: str = "inconclusive"

    def row(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


@dataclass
class Verdict:
    """A claim's or part's verdict and the sentence that explains it."""

    verdict: str
    detail: str
    parts: dict[str, str] = field(default_factory=dict)


def decide_tests(tests: list[Test], alpha: float) -> None:
    """Set every test's verdict (module docstring); Holm over the claim's tests."""
    against = np.array([t.p_against for t in tests], dtype=float)
    finite = np.isfinite(against)
    adjusted = np.full(len(tests), np.nan)
    if finite.any():
        adjusted[finite] = multipletests(against[finite], method="holm")[1]
    for test, p_holm in zip(tests, adjusted, strict=True):
        test.p_against_holm = float(p_holm)
        if test.preset:
            test.verdict = test.preset
        elif test.problem:
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


def part_verdict(tests: list[Test]) -> Verdict:
    if not tests:
        return Verdict("inconclusive", "not tested: no study of this config tests it")
    verdicts = [t.verdict for t in tests]
    where = ", ".join(f"{t.study}: {t.verdict}" for t in tests)
    if "contradicted" in verdicts:
        return Verdict(
            "contradicted",
            f"contradicted in {verdicts.count('contradicted')} of {len(tests)} studies ({where})",
        )
    if all(v == "supported" for v in verdicts):
        return Verdict("supported", f"supported in every study that tests it ({where})")
    return Verdict("inconclusive", f"not supported in every study ({where})")


def claim_verdict(parts: dict[str, Verdict]) -> Verdict:
    """All parts or nothing, said in words."""
    by = {v: [p for p, part in parts.items() if part.verdict == v] for v in VERDICTS}
    untested = [p for p, part in parts.items() if part.detail.startswith("not tested")]
    names = {p: part.verdict for p, part in parts.items()}
    if by["contradicted"]:
        return Verdict("contradicted", f"part {', '.join(by['contradicted'])} contradicted", names)
    if len(by["supported"]) == len(parts):
        return Verdict("supported", f"every part supported ({', '.join(parts)})", names)
    pieces = []
    if untested:
        pieces.append(f"{', '.join(untested)} not tested")
    undecided = [p for p in by["inconclusive"] if p not in untested]
    if undecided:
        pieces.append(f"{', '.join(undecided)} inconclusive")
    if by["supported"]:
        pieces.append(f"{', '.join(by['supported'])} supported")
    return Verdict("inconclusive", "not every part supported: " + "; ".join(pieces), names)
